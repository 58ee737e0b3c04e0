package kbuild

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Source is a resolved kernel source tree.
type Source struct {
	// Origin is what the user gave (or the default found): a tarball or a
	// directory.
	Origin string
	// Dir is the tree make runs in (the extracted tarball or Origin).
	Dir string
	// Identity changes whenever the source content may have changed: for a
	// tarball its path, size and mtime; for a directory a walk of every
	// file's path, size and mtime.
	Identity string
	// Version is the kernel version from the top-level Makefile (6.1.192).
	Version string
	// Epoch is the release date used for SOURCE_DATE_EPOCH: the mtime of the
	// top-level Makefile, which tar preserves.
	Epoch int64
}

// DefaultSourceGlob is where Debian's linux-source packages put their tarball.
const DefaultSourceGlob = "/usr/src/linux-source-*.tar.*"

// FindDefaultSource returns the newest Debian linux-source tarball, by
// version in the name.
func FindDefaultSource(glob string) (string, error) {
	matches, _ := filepath.Glob(glob)
	var tars []string
	for _, m := range matches {
		if strings.HasSuffix(m, ".tar.xz") || strings.HasSuffix(m, ".tar.gz") || strings.HasSuffix(m, ".tar.bz2") {
			tars = append(tars, m)
		}
	}
	if len(tars) == 0 {
		return "", fmt.Errorf("no kernel source: nothing matches %s; install Debian's linux-source-6.1 (sudo apt-get install linux-source-6.1) or set KERNEL_SRC to a kernel source directory or .tar.xz/.tar.gz tarball", glob)
	}
	sort.Slice(tars, func(i, j int) bool { return versionLess(tars[i], tars[j]) })
	return tars[len(tars)-1], nil
}

// versionLess compares strings with embedded numbers numerically
// (linux-source-6.9 < linux-source-6.10).
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		na, ra := leadingNum(a)
		nb, rb := leadingNum(b)
		if na >= 0 && nb >= 0 {
			if na != nb {
				return na < nb
			}
			a, b = ra, rb
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func leadingNum(s string) (int, string) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return -1, s
	}
	n := 0
	for _, c := range s[:i] {
		n = n*10 + int(c-'0')
		if n > 1<<30 {
			break
		}
	}
	return n, s[i:]
}

// ResolveSource turns KERNEL_SRC (or the default tarball when empty) into a
// tree make can use, extracting a tarball once into cacheDir/src.
func ResolveSource(ctx context.Context, kernelSrc, cacheDir string) (*Source, error) {
	origin := kernelSrc
	if origin == "" {
		var err error
		if origin, err = FindDefaultSource(DefaultSourceGlob); err != nil {
			return nil, err
		}
	}
	abs, err := filepath.Abs(origin)
	if err != nil {
		return nil, fmt.Errorf("KERNEL_SRC=%s: %w", origin, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		if kernelSrc != "" {
			return nil, fmt.Errorf("KERNEL_SRC=%s: %w (give a kernel source directory or a .tar.xz/.tar.gz tarball)", kernelSrc, errors.Unwrap(err))
		}
		return nil, err
	}
	src := &Source{Origin: abs}
	if st.IsDir() {
		src.Dir = abs
		if src.Identity, err = dirIdentity(abs); err != nil {
			return nil, fmt.Errorf("KERNEL_SRC=%s: %w", kernelSrc, err)
		}
	} else {
		if !isTarball(abs) {
			return nil, fmt.Errorf("KERNEL_SRC=%s: not a directory or a .tar.xz/.tar.gz/.tar.bz2 tarball", origin)
		}
		src.Identity = fmt.Sprintf("%x", sha256.Sum256([]byte(fmt.Sprintf("tar\x00%s\x00%d\x00%d", abs, st.Size(), st.ModTime().UnixNano()))))
		if src.Dir, err = extract(ctx, abs, filepath.Join(cacheDir, "src", src.Identity[:16])); err != nil {
			return nil, err
		}
	}
	mk := filepath.Join(src.Dir, "Makefile")
	if src.Version, err = kernelVersion(mk); err != nil {
		return nil, fmt.Errorf("%s does not look like a Linux source tree: %w", src.Origin, err)
	}
	if mst, err := os.Stat(mk); err == nil {
		src.Epoch = mst.ModTime().Unix()
	}
	return src, nil
}

func isTarball(p string) bool {
	for _, s := range []string{".tar.xz", ".tar.gz", ".tgz", ".tar.bz2", ".tar"} {
		if strings.HasSuffix(p, s) {
			return true
		}
	}
	return false
}

// dirIdentity hashes every file's relative path, size and mtime (skipping
// .git): ~0.2 s for a kernel tree with a warm page cache.
func dirIdentity(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\n", p[len(dir):], info.Size(), info.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "dir\x00%s", dir)
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// extract unpacks tarball into dest once (dest/.complete marks success) and
// returns the kernel tree inside it.
func extract(ctx context.Context, tarball, dest string) (string, error) {
	done := filepath.Join(dest, ".complete")
	if data, err := os.ReadFile(done); err == nil {
		return filepath.Join(dest, strings.TrimSpace(string(data))), nil
	}
	if _, err := exec.LookPath("tar"); err != nil {
		return "", fmt.Errorf("tar not found: install the Debian package tar")
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), ".extract-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "tar", "-xf", tarball, "-C", tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("extracting %s: %w\n%s (xz tarballs need the Debian package xz-utils)", tarball, err, out)
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return "", err
	}
	top := ""
	for _, e := range entries {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(tmp, e.Name(), "Makefile")); err == nil {
				top = e.Name()
			}
		}
	}
	if top == "" {
		if _, err := os.Stat(filepath.Join(tmp, "Makefile")); err != nil {
			return "", fmt.Errorf("%s: no kernel tree (top-level Makefile) inside", tarball)
		}
		top = "."
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), []byte(top+"\n"), 0o644); err != nil {
		return "", err
	}
	os.RemoveAll(dest) // a partial earlier attempt
	if err := os.Rename(tmp, dest); err != nil {
		return "", err
	}
	return filepath.Join(dest, top), nil
}

// kernelVersion reads VERSION, PATCHLEVEL, SUBLEVEL and EXTRAVERSION from the
// top-level Makefile.
func kernelVersion(makefile string) (string, error) {
	f, err := os.Open(makefile)
	if err != nil {
		return "", err
	}
	defer f.Close()
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	for i := 0; sc.Scan() && i < 20; i++ {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			vals[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if vals["VERSION"] == "" || vals["PATCHLEVEL"] == "" {
		return "", fmt.Errorf("no VERSION/PATCHLEVEL in %s", makefile)
	}
	v := vals["VERSION"] + "." + vals["PATCHLEVEL"]
	if s := vals["SUBLEVEL"]; s != "" {
		v += "." + s
	}
	return v + vals["EXTRAVERSION"], nil
}
