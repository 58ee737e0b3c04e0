package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/diskless/diskless/internal/fsutil"
	"github.com/diskless/diskless/internal/textutil"
	"github.com/diskless/diskless/pkg/arch"
)

// builderVersion is part of every cache key: bump it when what Build does
// to a tree changes.
const builderVersion = "1"

// Options say which image to build.
type Options struct {
	// Name of the image: a definition in images/ (debian-12), or any valid
	// name for an image From a directory or tarball.
	Name string
	Arch arch.Arch
	// ProjectDir holds images/; CacheDir is $XDG_CACHE_HOME/diskless.
	ProjectDir, CacheDir string
	// Mirror is the Debian mirror (the host's apt sources by default).
	Mirror string
	// From (IMAGE_FROM) is a directory or a tarball with a root filesystem.
	From string
	Log  *slog.Logger
}

// Result is a built (or cached) image.
type Result struct {
	// Dir is the image's cache directory; Tree its root filesystem.
	Dir, Tree string
	Manifest  Manifest
	// Cached is true when nothing changed and nothing was done.
	Cached bool
}

// Manifest describes an image.
type Manifest struct {
	Name   string `json:"name"`
	Arch   string `json:"arch"`
	Source string `json:"source"` // "debootstrap <suite> <mirror>" or "IMAGE_FROM <path>"
	// Key is the hash of every input: the same key is the same image.
	Key string `json:"key"`
	// TreeSHA256 hashes every path, mode, owner, size, content and link.
	TreeSHA256 string    `json:"tree_sha256"`
	Files      int       `json:"files"`
	Bytes      int64     `json:"bytes"`
	Packages   []PkgInfo `json:"packages"`
	// PackageDB says where Packages came from (dpkg, portage or none).
	PackageDB string    `json:"package_db"`
	Built     time.Time `json:"built"`
	Seconds   float64   `json:"build_seconds"`
	// Squashfs is the published generation as one file (image:publish
	// writes it; a build has none).
	Squashfs *Squashfs `json:"squashfs,omitempty"`
}

// PkgInfo is one installed package.
type PkgInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// DebArch is Debian's name for the arch (amd64, i386, arm64, riscv64).
func DebArch(a arch.Arch) string {
	if a.GOARCH == "386" {
		return "i386"
	}
	return a.GOARCH
}

// QEMUUser is the qemu-user-static emulator's name for the arch.
func QEMUUser(a arch.Arch) string {
	switch a.GOARCH {
	case "amd64":
		return "x86_64"
	case "386":
		return "i386"
	case "arm64":
		return "aarch64"
	}
	return a.GOARCH
}

// Prepare checks the options and returns the definition (nil for From)
// and the cache key, before any expensive step.
func Prepare(o Options) (*Definition, string, error) {
	if err := ValidName(o.Name); err != nil {
		return nil, "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "builder %s\nname %s\narch %s\n", builderVersion, o.Name, o.Arch.Name)
	if o.From != "" {
		st, err := os.Stat(o.From)
		if err != nil {
			return nil, "", fmt.Errorf("IMAGE_FROM=%s: %w", o.From, err)
		}
		if st.IsDir() {
			if err := looksLikeRootDir(o.From); err != nil {
				return nil, "", fmt.Errorf("IMAGE_FROM=%s: %w", o.From, err)
			}
			// a directory is identified by what is in it
			sum, _, _, err := TreeHash(o.From)
			if err != nil {
				return nil, "", fmt.Errorf("IMAGE_FROM=%s: %w", o.From, err)
			}
			fmt.Fprintf(h, "from-dir %s\n", sum)
		} else {
			if _, err := tarCompression(o.From); err != nil {
				return nil, "", fmt.Errorf("IMAGE_FROM=%s: %w", o.From, err)
			}
			sum, _, err := fsutil.HashFile(o.From)
			if err != nil {
				return nil, "", err
			}
			fmt.Fprintf(h, "from-tar %s\n", sum)
		}
		return nil, hex.EncodeToString(h.Sum(nil))[:24], nil
	}
	def, err := LoadDefinition(o.ProjectDir, o.Name)
	if err != nil {
		return nil, "", err
	}
	if o.Mirror == "" {
		return nil, "", errors.New("no Debian mirror: set DEBIAN_MIRROR (the host's /etc/apt sources name none)")
	}
	fmt.Fprintf(h, "suite %s\nmirror %s\npackages %s\n", def.Suite, o.Mirror, strings.Join(def.Names(), ","))
	return def, hex.EncodeToString(h.Sum(nil))[:24], nil
}

// CacheDir is where an image is built and kept.
func CacheDir(cacheDir, name string, a arch.Arch) string {
	return filepath.Join(cacheDir, "images", name+"-"+a.Name)
}

// Build makes the image, or finds it in the cache when nothing changed.
func Build(ctx context.Context, o Options) (*Result, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	def, key, err := Prepare(o)
	if err != nil {
		return nil, err
	}
	dir := CacheDir(o.CacheDir, o.Name, o.Arch)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := fsutil.Lock(filepath.Join(dir, ".lock"), false, func() {
		log.Info("waiting for another build of this image", "dir", dir)
	})
	if err != nil {
		return nil, err
	}
	defer unlock()
	res := &Result{Dir: dir, Tree: filepath.Join(dir, "tree")}
	if m, err := ReadManifest(filepath.Join(dir, "manifest.json")); err == nil && m.Key == key {
		if _, err := os.Stat(filepath.Join(res.Tree, "etc")); err == nil {
			res.Manifest, res.Cached = *m, true
			log.Info("image up to date", "image", o.Name, "arch", o.Arch.Name, "key", key)
			return res, nil
		}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("building a node image needs root (files owned by other users, device nodes): run as root or with sudo")
	}
	start := time.Now()
	work := filepath.Join(dir, "tree.new")
	if err := os.RemoveAll(work); err != nil {
		return nil, err
	}
	var source string
	if def != nil {
		source = fmt.Sprintf("debootstrap %s %s", def.Suite, o.Mirror)
		err = debootstrap(ctx, o, def, work, log)
	} else {
		source = "IMAGE_FROM " + o.From
		err = unpack(ctx, o.From, work, log)
	}
	if err == nil {
		err = looksLikeRootDir(work)
		if err != nil && o.From != "" {
			err = fmt.Errorf("IMAGE_FROM=%s: %w", o.From, err)
		}
	}
	if err == nil {
		err = prepareForDiskless(work)
	}
	if err != nil {
		os.RemoveAll(work)
		return nil, err
	}
	m := Manifest{Name: o.Name, Arch: o.Arch.Name, Source: source, Key: key, Built: time.Now().UTC()}
	if m.TreeSHA256, m.Files, m.Bytes, err = TreeHash(work); err != nil {
		return nil, err
	}
	m.Packages, m.PackageDB = Packages(work)
	m.Seconds = time.Since(start).Seconds()
	// the old tree goes only once the new one is complete
	old := filepath.Join(dir, "tree.old")
	os.RemoveAll(old)
	if _, err := os.Stat(res.Tree); err == nil {
		if err := os.Rename(res.Tree, old); err != nil {
			return nil, err
		}
	}
	if err := os.Rename(work, res.Tree); err != nil {
		return nil, err
	}
	if err := WriteManifest(filepath.Join(dir, "manifest.json"), &m); err != nil {
		return nil, err
	}
	os.RemoveAll(old)
	res.Manifest = m
	log.Info("image built", "image", o.Name, "arch", o.Arch.Name, "packages", len(m.Packages), "bytes", m.Bytes, "seconds", fmt.Sprintf("%.0f", m.Seconds))
	return res, nil
}

var missingDebsRe = regexp.MustCompile(`Couldn't find these debs: (.*)`)

func debootstrap(ctx context.Context, o Options, def *Definition, dir string, log *slog.Logger) error {
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return errors.New("debootstrap not found: apt-get install debootstrap (or go run mage.go deps)")
	}
	if DebArch(o.Arch) != hostDebArch() {
		if err := EnsureBinfmt(o.Arch); err != nil {
			return err
		}
	}
	args := []string{"--variant=minbase", "--arch=" + DebArch(o.Arch)}
	if len(def.Packages) > 0 {
		args = append(args, "--include="+strings.Join(def.Names(), ","))
	}
	args = append(args, def.Suite, dir, o.Mirror)
	log.Info("debootstrap", "image", o.Name, "arch", o.Arch.Name, "suite", def.Suite, "mirror", o.Mirror, "packages", len(def.Packages))
	cmd := exec.CommandContext(ctx, "debootstrap", args...)
	// read by the progress lines while debootstrap writes it
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive")
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				log.Info("debootstrap", "image", o.Name, "step", textutil.FirstLine(lastLine(out.String())))
			}
		}
	}()
	err := cmd.Run()
	close(stop)
	if err == nil {
		return nil
	}
	text := out.String()
	if m := missingDebsRe.FindStringSubmatch(text); m != nil {
		var where []string
		for _, p := range strings.Fields(m[1]) {
			where = append(where, fmt.Sprintf("%s (%s)", p, def.lineOf(p)))
		}
		return fmt.Errorf("image %s: no such package in %s: %s; fix %s", o.Name, def.Suite, strings.Join(where, ", "), def.File)
	}
	return fmt.Errorf("debootstrap %s: %v\n%s", strings.Join(args, " "), err, textutil.Tail(text, 15))
}

// lockedBuffer is a bytes.Buffer one goroutine writes while another reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}

func hostDebArch() string {
	if runtime.GOARCH == "386" {
		return "i386"
	}
	return runtime.GOARCH
}

// EnsureBinfmt makes the kernel run the arch's binaries through
// qemu-user-static (debootstrap's second stage runs them in a chroot): it
// mounts binfmt_misc when needed and registers the handler from Debian's
// /usr/lib/binfmt.d/qemu-<arch>.conf, as systemd-binfmt would.
func EnsureBinfmt(a arch.Arch) error {
	q := QEMUUser(a)
	const mnt = "/proc/sys/fs/binfmt_misc"
	if _, err := os.Stat(filepath.Join(mnt, "qemu-"+q)); err == nil {
		return nil
	}
	conf := filepath.Join("/usr/lib/binfmt.d", "qemu-"+q+".conf")
	line, err := os.ReadFile(conf)
	if err != nil {
		return fmt.Errorf("building a %s image on this %s host needs qemu-user-static (%s missing): apt-get install qemu-user-static", a.Name, hostDebArch(), conf)
	}
	if _, err := os.Stat(filepath.Join(mnt, "register")); err != nil {
		if out, err := exec.Command("mount", "-t", "binfmt_misc", "binfmt_misc", mnt).CombinedOutput(); err != nil {
			return fmt.Errorf("building a %s image needs binfmt_misc, and mounting it failed (%s): %v; this host cannot run %s binaries", a.Name, strings.TrimSpace(string(out)), err, a.Name)
		}
	}
	if err := os.WriteFile(filepath.Join(mnt, "register"), bytes.TrimSpace(line), 0); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("registering qemu-%s with binfmt_misc: %w", q, err)
	}
	return nil
}

// tarCompression checks a tarball's name and returns tar's option for it.
func tarCompression(path string) (string, error) {
	for _, s := range []struct{ ext, opt string }{
		{".tar", ""}, {".tar.gz", "--gzip"}, {".tgz", "--gzip"}, {".tar.xz", "--xz"},
		{".tar.zst", "--zstd"}, {".tar.bz2", "--bzip2"},
	} {
		if strings.HasSuffix(path, s.ext) {
			return s.opt, nil
		}
	}
	return "", errors.New("not a directory or a tarball (.tar, .tar.gz, .tgz, .tar.xz, .tar.zst, .tar.bz2)")
}

// unpack copies a directory or extracts a tarball into dir, keeping owners,
// modes, links, device nodes and extended attributes (cp -a, GNU tar).
func unpack(ctx context.Context, from, dir string, log *slog.Logger) error {
	st, err := os.Stat(from)
	if err != nil {
		return err
	}
	var cmd *exec.Cmd
	if st.IsDir() {
		log.Info("copying image", "from", from)
		cmd = exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", from+"/.", dir+"/")
	} else {
		opt, err := tarCompression(from)
		if err != nil {
			return err
		}
		// only what a root filesystem has: look before unpacking
		list, err := exec.CommandContext(ctx, "tar", append(nonEmpty(opt), "-tf", from)...).Output()
		if err != nil {
			return fmt.Errorf("IMAGE_FROM=%s: not a readable tarball: %v", from, err)
		}
		if err := looksLikeRootList(strings.Split(string(list), "\n")); err != nil {
			return fmt.Errorf("IMAGE_FROM=%s: %w", from, err)
		}
		log.Info("extracting image", "from", from)
		cmd = exec.CommandContext(ctx, "tar", append(nonEmpty(opt), "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf", from, "-C", dir)...)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, textutil.Tail(string(out), 10))
	}
	return nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// initPaths are where an init system lives in a root filesystem.
var initPaths = []string{"sbin/init", "usr/sbin/init", "lib/systemd/systemd", "usr/lib/systemd/systemd", "bin/busybox"}

func looksLikeRootDir(dir string) error {
	return rootVerdict(func(p string) bool {
		st, err := os.Stat(filepath.Join(dir, p))
		return err == nil && st.IsDir()
	}, func(p string) bool {
		_, err := os.Lstat(filepath.Join(dir, p))
		return err == nil
	})
}

func looksLikeRootList(names []string) error {
	dir := map[string]bool{}
	for _, n := range names {
		n = strings.TrimPrefix(strings.TrimPrefix(n, "./"), "/")
		if n == "" {
			continue
		}
		top, _, _ := strings.Cut(n, "/")
		dir[top] = true
		dir[strings.TrimSuffix(n, "/")] = true
	}
	has := func(p string) bool { return dir[p] }
	return rootVerdict(has, has)
}

// rootVerdict says what a root filesystem lacks: etc/ and usr/
// directories and an init (isDir and exists look at a tree or a listing).
func rootVerdict(isDir, exists func(string) bool) error {
	var missing []string
	for _, d := range []string{"etc", "usr"} {
		if !isDir(d) {
			missing = append(missing, d+"/")
		}
	}
	found := false
	for _, p := range initPaths {
		found = found || exists(p)
	}
	if !found {
		missing = append(missing, "an init ("+strings.Join(initPaths[:2], " or ")+")")
	}
	if len(missing) > 0 {
		list := missing[0]
		if n := len(missing); n > 1 {
			list = strings.Join(missing[:n-1], ", ") + " and " + missing[n-1]
		}
		return fmt.Errorf("not a root filesystem: it has no %s", list)
	}
	return nil
}

// prepareForDiskless removes what must differ per node or is only a cache:
// the machine-id and SSH host keys (provision makes them per node), apt's
// package lists and downloaded debs (tens of MB copied into every node's
// /var otherwise).
func prepareForDiskless(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "etc/machine-id"), nil, 0o444); err != nil {
		return err
	}
	if p := filepath.Join(dir, "var/lib/dbus/machine-id"); isRegular(p) {
		os.Remove(p)
	}
	keys, _ := filepath.Glob(filepath.Join(dir, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		os.Remove(k)
	}
	for _, g := range []string{"var/lib/apt/lists/*_*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/log/bootstrap.log"} {
		m, _ := filepath.Glob(filepath.Join(dir, g))
		for _, p := range m {
			os.Remove(p)
		}
	}
	return nil
}

func isRegular(p string) bool {
	st, err := os.Lstat(p)
	return err == nil && st.Mode().IsRegular()
}

// ReadManifest reads a manifest file.
func ReadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &m, nil
}

// WriteManifest writes it atomically.
func WriteManifest(path string, m *Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteAtomic(path, append(data, '\n'))
}

// Packages reads the tree's package database: dpkg's status file, or
// Gentoo's /var/db/pkg.
func Packages(tree string) ([]PkgInfo, string) {
	if data, err := os.ReadFile(filepath.Join(tree, "var/lib/dpkg/status")); err == nil {
		return parseDpkgStatus(data), "dpkg"
	}
	if cats, err := os.ReadDir(filepath.Join(tree, "var/db/pkg")); err == nil {
		var out []PkgInfo
		for _, c := range cats {
			pkgs, _ := os.ReadDir(filepath.Join(tree, "var/db/pkg", c.Name()))
			for _, p := range pkgs {
				name, ver := splitPortage(p.Name())
				out = append(out, PkgInfo{Name: c.Name() + "/" + name, Version: ver})
			}
		}
		return out, "portage"
	}
	return nil, "none"
}

var portageVerRe = regexp.MustCompile(`-[0-9][^-]*(-r[0-9]+)?$`)

func splitPortage(s string) (string, string) {
	if loc := portageVerRe.FindStringIndex(s); loc != nil {
		return s[:loc[0]], s[loc[0]+1:]
	}
	return s, ""
}

func parseDpkgStatus(data []byte) []PkgInfo {
	var out []PkgInfo
	for _, para := range strings.Split(string(data), "\n\n") {
		var p PkgInfo
		installed := false
		for _, l := range strings.Split(para, "\n") {
			k, v, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			switch k {
			case "Package":
				p.Name = v
			case "Version":
				p.Version = v
			case "Status":
				installed = strings.HasSuffix(v, " installed")
			}
		}
		if p.Name != "" && installed {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
