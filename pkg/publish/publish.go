// Package publish puts a set of boot files into the TFTP root
// ($DISKLESS_ROOT, default /diskless) atomically, keeps earlier generations
// for rollback, and verifies what is live.
//
// Layout: each published file lives in a generation directory
// .diskless/generations/NNNNNN/ with its SHA256SUMS and manifest.json;
// .diskless/current is a relative symlink to the live generation; every
// published top-level name (bzImage_x86_64, pxelinux.cfg, SHA256SUMS, ...)
// is a relative symlink NAME -> .diskless/current/NAME. Switching is one
// rename(2) of the current link, so at every instant all names resolve into
// one complete, fsynced, checksummed generation, and a TFTP server chrooted
// into the root (tftpd -s) follows the links. Anything else in the root
// (the admins' per-slave /diskless/<ip>/ directories) is never touched.
//
// A publish can keep the live generation's other arches (Options.Merge),
// combine several CI bundles (Combine), and writes pxelinux.cfg/default for
// the x86 arches of the result (Options.PXE, rendered by pkg/pxe).
//
// It copies, links and renders configuration; it does not build kernels.
package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/diskless/diskless/internal/fsutil"
	"github.com/diskless/diskless/pkg/pxe"
	"github.com/diskless/diskless/pkg/sign"
)

const (
	stateDir = ".diskless"
	genDir   = ".diskless/generations"
	current  = ".diskless/current"
	lockName = ".diskless/lock"
	// SumsName and ManifestName are published with every generation.
	SumsName     = "SHA256SUMS"
	ManifestName = "manifest.json"
	// DefaultKeep is how many generations are kept for rollback.
	DefaultKeep = 3
)

// File is one file to publish.
type File struct {
	// Name is the path in the root: "bzImage_x86_64", "pxelinux.cfg/default".
	Name string `json:"name"`
	// Source is where to copy it from (or Data, for generated files).
	Source string `json:"-"`
	Data   []byte `json:"-"`
	// Arch and Kind describe it in the manifest ("x86_64", "kernel").
	Arch string `json:"arch,omitempty"`
	Kind string `json:"kind"`
	// SHA256, when set before publishing, is what the file must hash to
	// (from the build's metadata): a file changed since its build is refused.
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Build carries the build's inputs (its metadata) into the manifest.
	Build json.RawMessage `json:"build,omitempty"`
	// Private files (a stateless node's overlay: its SSH host keys) are
	// written 0640, group PrivateGroup: nginx's workers read them (and
	// serve each only to its node), tftpd-hpa, which serves only files
	// anyone may read, does not.
	Private bool `json:"private,omitempty"`
	// SecureBoot, for an EFI binary signed for Secure Boot before it was
	// published (SECUREBOOT_KEY), is the signing certificate's subject.
	SecureBoot string `json:"secure_boot_signed_by,omitempty"`
}

// PrivateGroup is the group of Private files: nginx's workers run as
// www-data on Debian (and in the lab).
const PrivateGroup = "www-data"

// KindSquashfs is an image's squashfs file: published by a hard link to
// the image's generation (immutable, 80 MB: not copied per generation).
const KindSquashfs = "squashfs"

// Manifest is manifest.json.
type Manifest struct {
	Generation int       `json:"generation"`
	Published  time.Time `json:"published"`
	// Signed: the generation has SHA256SUMS.sig.
	Signed bool   `json:"signed,omitempty"`
	Files  []File `json:"files"`
}

// Options for Publish.
type Options struct {
	Root string
	// Keep generations (DefaultKeep when 0).
	Keep int
	// NoWait fails at once when another publish holds the lock.
	NoWait bool
	// Merge keeps the files of the live generation that the new set has
	// nothing of: other arches, the x86 loaders while an x86 arch stays, the
	// per-node files. Without it the new set is the whole generation.
	Merge bool
	// Drop names arches whose live files a Merge leaves out.
	Drop []string
	// Nodes says the per-node boot files in the set (pxelinux.cfg/01-<mac>,
	// ipxe/<mac>.ipxe) are all the new generation has: rendered from the
	// inventory loaded now, they replace the live ones even when there are
	// none, so a node removed from the inventory loses its files and a
	// changed MAC is served under the new name only. Without it a Merge
	// keeps the live per-node files when the set has none.
	Nodes bool
	// PXE, when set, makes pxelinux.cfg/default anew for every x86 arch of
	// the final set with this command line.
	PXE *pxe.Settings
	// Sign, when set, writes SHA256SUMS.sig into the generation.
	Sign *Signer
	// Trusted keys (TRUSTED_KEY): with Merge, the live generation's
	// signature must verify before any of its files is carried over.
	Trusted []*sign.PublicKey
	Log     *slog.Logger
	// wrap, in tests, wraps each file's writer (fault injection).
	wrap func(name string, w io.Writer) io.Writer
}

func (o *Options) log() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o.Log
}

// CheckRoot checks that root is a writable directory.
func CheckRoot(root string) error {
	st, err := os.Stat(root)
	if err != nil {
		return fmt.Errorf("DISKLESS_ROOT=%s: %w (create it, e.g. mkdir -p %s)", root, unwrap(err), root)
	}
	return checkDirWritable(root, st)
}

// EnsureRoot is CheckRoot, but creates a missing root (not its parents):
// the HOWTO's /diskless on a fresh master.
func EnsureRoot(root string) error {
	if _, err := os.Lstat(root); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(root, 0o755); err != nil {
			return fmt.Errorf("DISKLESS_ROOT=%s: cannot create it: %w", root, unwrap(err))
		}
	}
	return CheckRoot(root)
}

func checkDirWritable(root string, st fs.FileInfo) error {
	if !st.IsDir() {
		return fmt.Errorf("DISKLESS_ROOT=%s: not a directory", root)
	}
	if err := syscall.Access(root, 2 /* W_OK */); err != nil {
		return fmt.Errorf("DISKLESS_ROOT=%s: not writable by this user: %w", root, err)
	}
	return nil
}

func unwrap(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Lock takes the publish lock of root (flock on .diskless/lock). With
// noWait a held lock is an error; otherwise it waits, saying so.
func Lock(root string, noWait bool, log *slog.Logger) (func(), error) {
	if err := os.MkdirAll(filepath.Join(root, genDir), 0o755); err != nil {
		return nil, err
	}
	lock := filepath.Join(root, lockName)
	unlock, err := fsutil.Lock(lock, noWait, func() { log.Info("another publish is running; waiting for it", "lock", lock) })
	if errors.Is(err, fsutil.ErrLocked) {
		return nil, fmt.Errorf("another publish or rollback holds %s (PUBLISH_NOWAIT=1): try again when it is done", lock)
	}
	return unlock, err
}

// Publish makes files the live generation of o.Root and returns its
// manifest. The live tree is untouched on any error.
func Publish(ctx context.Context, files []File, o Options) (*Manifest, error) {
	log := o.log()
	nothing := errors.New("nothing to publish: build something first (build:slave, build:netboot, build:initramfs)")
	if len(files) == 0 && !(o.Merge && o.Nodes) {
		return nil, nothing
	}
	if err := EnsureRoot(o.Root); err != nil {
		return nil, err
	}
	if err := checkNames(files); err != nil {
		return nil, err
	}
	unlock, err := Lock(o.Root, o.NoWait, log)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cleanTemp(o.Root)
	if o.Merge && len(o.Trusted) > 0 {
		if cur, err := Current(o.Root); err == nil {
			if err := checkDirSignature(filepath.Join(o.Root, genDir, fmt.Sprintf("%06d", cur)), o.Trusted); err != nil {
				return nil, fmt.Errorf("the live generation %d, whose other arches this publish keeps: %w; nothing published", cur, err)
			}
		}
	}
	if o.Merge {
		// under the lock: the live generation cannot be pruned meanwhile
		if files, err = keepLive(o.Root, files, o.Drop, o.Nodes); err != nil {
			return nil, err
		}
	} else if len(o.Drop) > 0 {
		return nil, errors.New("PUBLISH_DROP is for a publish that keeps the other arches (merge)")
	}
	if len(files) == 0 {
		return nil, nothing
	}
	if o.PXE != nil {
		if files, err = withDefaultConfig(files, *o.PXE); err != nil {
			return nil, err
		}
	}
	if err := checkTopLevel(o.Root, files); err != nil {
		return nil, err
	}
	gens, _ := generations(o.Root)
	n := 1
	if len(gens) > 0 {
		n = gens[len(gens)-1] + 1
	}
	if cur, err := Current(o.Root); err == nil && cur >= n {
		n = cur + 1
	}
	if files, err = pinConfigs(files, n); err != nil {
		return nil, err
	}
	for _, f := range files {
		if !IsNodeFile(f.Name) {
			continue
		}
		for _, name := range unpinned(string(f.Data)) {
			log.Warn("a per-node file names a file this generation does not have: that node will not boot from it", "file", f.Name, "names", name)
		}
	}
	tmp := filepath.Join(o.Root, genDir, fmt.Sprintf(".tmp-%06d", n))
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	fail := func(err error) (*Manifest, error) {
		os.RemoveAll(tmp)
		return nil, err
	}
	m := &Manifest{Generation: n, Published: time.Now().UTC().Truncate(time.Second), Signed: o.Sign != nil}
	gid := -1
	for _, f := range files {
		if f.Private && gid < 0 {
			if gid, err = privateGID(); err != nil {
				return fail(fmt.Errorf("%s: %w", f.Name, err))
			}
		}
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		out, err := writeFile(tmp, f, o.wrap, gid)
		if err != nil {
			return fail(err)
		}
		m.Files = append(m.Files, out)
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Name < m.Files[j].Name })
	sums := []byte(Sums(m.Files))
	if err := writeBytes(filepath.Join(tmp, SumsName), sums); err != nil {
		return fail(err)
	}
	if o.Sign != nil {
		if err := writeBytes(filepath.Join(tmp, SigName), o.Sign.signature(sums)); err != nil {
			return fail(err)
		}
	}
	data, _ := json.MarshalIndent(m, "", "  ")
	if err := writeBytes(filepath.Join(tmp, ManifestName), append(data, '\n')); err != nil {
		return fail(err)
	}
	// every file re-read and checked against the manifest before the switch
	if err := checkDir(tmp, m); err != nil {
		return fail(fmt.Errorf("generation %d failed its check before going live: %w", n, err))
	}
	if err := syncTree(tmp); err != nil {
		return fail(err)
	}
	final := filepath.Join(o.Root, genDir, fmt.Sprintf("%06d", n))
	if err := os.Rename(tmp, final); err != nil {
		return fail(err)
	}
	syncDir(filepath.Join(o.Root, genDir))
	if err := activate(o.Root, n, m); err != nil {
		return nil, err
	}
	prune(o.Root, n, o.Keep, log)
	log.Info("published", "root", o.Root, "generation", n, "files", len(m.Files))
	return m, nil
}

// GenerationDir is generation n's directory relative to the root, as TFTP
// and HTTP clients name it.
func GenerationDir(n int) string { return fmt.Sprintf("%s/%06d", genDir, n) }

// Pinned says whether a published file is a boot configuration that
// Publish pins to its generation (pxe.Pin): PXELINUX configurations, iPXE
// scripts, shim nodes' GRUB configurations (grub/) and the command lines
// of stateless arm64 nodes (cmdline/<mac>).
func Pinned(name string) bool {
	return strings.HasPrefix(name, "pxelinux.cfg/") || strings.HasSuffix(name, ".ipxe") || strings.HasPrefix(name, pxe.NodeCmdlineDir+"/") ||
		strings.HasPrefix(name, pxe.GRUBDir+"/")
}

// pinConfigs makes every boot configuration of generation n name the
// files it loads next inside generation n (pxe.Pin), so that a node never
// mixes two generations' files when a publish switches during its boot. A
// file carried over with a known checksum is checked before it is changed.
func pinConfigs(files []File, n int) ([]File, error) {
	tops := map[string]bool{}
	for _, t := range TopLevel(files) {
		tops[t] = true
	}
	out := make([]File, len(files))
	for i, f := range files {
		out[i] = f
		if !Pinned(f.Name) {
			continue
		}
		data := f.Data
		if data == nil {
			var err error
			if data, err = os.ReadFile(f.Source); err != nil {
				return nil, fmt.Errorf("%s: %w", f.Name, err)
			}
		}
		if f.SHA256 != "" {
			if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != f.SHA256 {
				return nil, fmt.Errorf("%s (%s) changed since it was recorded: sha256 %x, want %s", f.Name, f.Source, sum, f.SHA256)
			}
		}
		out[i].Data = []byte(pxe.Pin(string(data), GenerationDir(n), func(top string) bool { return tops[top] }))
		out[i].Source, out[i].SHA256 = "", ""
	}
	return out, nil
}

// unpinned lists what a pinned boot configuration loads that Pin left as
// it was (its KERNEL, INITRD, or iPXE kernel and initrd): a file the
// generation does not have.
func unpinned(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		var names []string
		switch {
		case strings.EqualFold(f[0], "KERNEL"):
			names = f[1:2]
		case strings.EqualFold(f[0], "INITRD") && f[0] == strings.ToUpper(f[0]):
			names = strings.Split(f[1], ",")
		case f[0] == "kernel", f[0] == "linux": // iPXE's; GRUB's
			names = f[1:2]
		case f[0] == "initrd":
			names = f[len(f)-1:]
		}
		// a stateless node's image and overlay, on any line
		for _, w := range f {
			for _, a := range pxe.PinnedArgs {
				if v, ok := strings.CutPrefix(w, a); ok {
					names = append(names, v)
				}
			}
		}
		for _, n := range names {
			if !strings.Contains(n, genDir+"/") {
				out = append(out, n)
			}
		}
	}
	return out
}

// TopLevel returns the top-level names of a file set: "pxelinux.cfg" for
// "pxelinux.cfg/default".
func TopLevel(files []File) []string {
	seen := map[string]bool{SumsName: true, ManifestName: true}
	out := []string{SumsName, ManifestName}
	for _, f := range files {
		top, _, _ := strings.Cut(f.Name, "/")
		if !seen[top] {
			seen[top] = true
			out = append(out, top)
		}
	}
	sort.Strings(out)
	return out
}

// names are the top-level names of a generation: its files', SHA256SUMS,
// manifest.json and, when signed, SHA256SUMS.sig.
func (m *Manifest) names() []string {
	n := TopLevel(m.Files)
	if m.Signed {
		n = append(n, SigName)
		sort.Strings(n)
	}
	return n
}

func checkNames(files []File) error {
	seen := map[string]bool{}
	for _, f := range files {
		clean := filepath.ToSlash(filepath.Clean(f.Name))
		if f.Name == "" || clean != f.Name || strings.HasPrefix(clean, "../") || clean == ".." || filepath.IsAbs(f.Name) || strings.HasPrefix(f.Name, ".") {
			return fmt.Errorf("bad file name %q: want a relative path inside the root", f.Name)
		}
		if f.Name == SumsName || f.Name == ManifestName || f.Name == SigName {
			return fmt.Errorf("%s is generated by publish", f.Name)
		}
		if seen[f.Name] {
			return fmt.Errorf("%s given twice", f.Name)
		}
		seen[f.Name] = true
	}
	return nil
}

// checkTopLevel refuses to replace anything in the root that publish does
// not manage (a real file or directory, or a link elsewhere).
func checkTopLevel(root string, files []File) error {
	for _, name := range append(TopLevel(files), SigName) {
		p := filepath.Join(root, name)
		st, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			return fmt.Errorf("%s exists and is not managed by diskless (a real %s): move it away, publish manages this name", p, kindOf(st))
		}
		target, _ := os.Readlink(p)
		if target != linkTarget(name) {
			return fmt.Errorf("%s is a link to %s, not one diskless made: move it away, publish manages this name", p, target)
		}
	}
	return nil
}

func kindOf(st fs.FileInfo) string {
	if st.IsDir() {
		return "directory"
	}
	return "file"
}

func linkTarget(name string) string { return current + "/" + name }

// privateGID is PrivateGroup's id.
func privateGID() (int, error) {
	g, err := user.LookupGroup(PrivateGroup)
	if err != nil {
		return 0, fmt.Errorf("a private file is readable by group %s (nginx's workers), which this machine does not have: %w (apt-get install nginx, or groupadd %s)", PrivateGroup, err, PrivateGroup)
	}
	return strconv.Atoi(g.Gid)
}

// writeFile writes f under dir and returns it with its checksum and size;
// a Private file ends 0640, group gid.
func writeFile(dir string, f File, wrap func(string, io.Writer) io.Writer, gid int) (File, error) {
	dst := filepath.Join(dir, f.Name)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return f, err
	}
	if f.Kind == KindSquashfs && f.Source != "" && f.SHA256 != "" && wrap == nil {
		// an image generation's file never changes (a new one is a new
		// inode): linked; checkDir hashes it, as every file, before the
		// generation goes live
		if err := os.Link(f.Source, dst); err == nil {
			st, err := os.Stat(dst)
			if err != nil {
				return f, err
			}
			f.Size = st.Size()
			return f, nil
		}
	}
	var src io.Reader
	if f.Source != "" {
		in, err := os.Open(f.Source)
		if err != nil {
			return f, err
		}
		defer in.Close()
		src = in
	} else {
		src = strings.NewReader(string(f.Data))
	}
	// a private file is root's alone until it is whole (then it goes to
	// nginx's group): nobody reads it meanwhile
	perm := os.FileMode(0o644)
	if f.Private {
		perm = 0o600
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return f, err
	}
	h := sha256.New()
	var w io.Writer = out
	if wrap != nil {
		w = wrap(f.Name, out)
	}
	n, err := io.CopyBuffer(io.MultiWriter(w, h), src, make([]byte, 1<<20))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return f, fmt.Errorf("writing %s: %w", f.Name, err)
	}
	os.Chmod(dst, perm)
	if f.Private {
		// whole now: nginx's group may read it
		if err := os.Chown(dst, os.Geteuid(), gid); err != nil {
			return f, fmt.Errorf("%s: %w (a private file needs the publish to run as root)", dst, err)
		}
		os.Chmod(dst, 0o640)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if f.SHA256 != "" && f.SHA256 != sum {
		src := f.Source
		if src == "" {
			src = f.Name
		}
		return f, fmt.Errorf("%s changed since it was built: its build recorded sha256 %s, it now hashes to %s; rebuild it", src, f.SHA256, sum)
	}
	f.SHA256, f.Size = sum, n
	return f, nil
}

func writeBytes(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Sums renders SHA256SUMS in sha256sum's format ("<hash>  <name>").
func Sums(files []File) string {
	var b strings.Builder
	for _, f := range files {
		fmt.Fprintf(&b, "%s  %s\n", f.SHA256, f.Name)
	}
	return b.String()
}

// SumLine is one line of SHA256SUMS.
type SumLine = sign.SumLine

// ParseSums reads SHA256SUMS (sign.ParseSums).
func ParseSums(data []byte) ([]SumLine, error) { return sign.ParseSums(data) }

// checkDir re-reads every file of m under dir.
func checkDir(dir string, m *Manifest) error {
	var bad []string
	for _, f := range m.Files {
		sum, n, err := fsutil.HashFile(filepath.Join(dir, f.Name))
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s: %v", f.Name, unwrap(err)))
		case sum != f.SHA256 || n != f.Size:
			bad = append(bad, fmt.Sprintf("%s: sha256 %s (%d bytes), manifest says %s (%d bytes)", f.Name, sum, n, f.SHA256, f.Size))
		}
	}
	sums, err := os.ReadFile(filepath.Join(dir, SumsName))
	if err != nil {
		bad = append(bad, fmt.Sprintf("%s: %v", SumsName, unwrap(err)))
	} else if string(sums) != Sums(m.Files) {
		bad = append(bad, SumsName+": does not match the manifest")
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "\n  "))
	}
	return nil
}

func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			syncDir(p)
		}
		return nil
	})
}

func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}

// activate makes generation n live: top-level links for its names first
// (new ones dangle harmlessly until the switch), then the current link is
// replaced with one rename, then links for names it no longer has go.
func activate(root string, n int, m *Manifest) error {
	names := m.names()
	for _, name := range names {
		if err := ensureLink(filepath.Join(root, name), linkTarget(name)); err != nil {
			return err
		}
	}
	if err := replaceLink(filepath.Join(root, current), fmt.Sprintf("generations/%06d", n)); err != nil {
		return err
	}
	syncDir(filepath.Join(root, stateDir))
	keep := map[string]bool{}
	for _, name := range names {
		keep[name] = true
	}
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		p := filepath.Join(root, e.Name())
		if keep[e.Name()] || e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		if t, _ := os.Readlink(p); t == linkTarget(e.Name()) {
			os.Remove(p)
		}
	}
	syncDir(root)
	return nil
}

func ensureLink(p, target string) error {
	if t, err := os.Readlink(p); err == nil && t == target {
		return nil
	}
	return replaceLink(p, target)
}

func replaceLink(p, target string) error {
	tmp := filepath.Join(filepath.Dir(p), fmt.Sprintf(".%s.tmp-%d", filepath.Base(p), os.Getpid()))
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// generations lists the complete generation numbers, ascending.
func generations(root string) ([]int, error) {
	entries, err := os.ReadDir(filepath.Join(root, genDir))
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out, nil
}

// Current returns the live generation number.
func Current(root string) (int, error) {
	t, err := os.Readlink(filepath.Join(root, current))
	if err != nil {
		return 0, fmt.Errorf("nothing published in %s yet", root)
	}
	n, err := strconv.Atoi(filepath.Base(t))
	if err != nil {
		return 0, fmt.Errorf("%s points to %s: not a generation", filepath.Join(root, current), t)
	}
	return n, nil
}

// cleanTemp removes what an interrupted publish left (under the lock).
func cleanTemp(root string) {
	entries, _ := os.ReadDir(filepath.Join(root, genDir))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			os.RemoveAll(filepath.Join(root, genDir, e.Name()))
		}
	}
	for _, dir := range []string{root, filepath.Join(root, stateDir)} {
		entries, _ = os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), ".tmp-") && e.Type()&fs.ModeSymlink != 0 {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
}

// prune keeps the newest keep generations and always the live one.
func prune(root string, live, keep int, log *slog.Logger) {
	if keep <= 0 {
		keep = DefaultKeep
	}
	gens, _ := generations(root)
	for i := 0; i < len(gens)-keep; i++ {
		if gens[i] == live {
			continue
		}
		if err := os.RemoveAll(filepath.Join(root, genDir, fmt.Sprintf("%06d", gens[i]))); err == nil {
			log.Info("pruned generation", "generation", gens[i])
		}
	}
}

// ReadManifest reads the live manifest.
func ReadManifest(root string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(root, current, ManifestName))
	if err != nil {
		if _, cerr := Current(root); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestName, err)
	}
	return &m, nil
}

// Verify re-reads the live tree through its top-level names, as a TFTP
// client would, and checks each file against the manifest and SHA256SUMS;
// with trusted keys, SHA256SUMS.sig must verify against one of them. The
// error names every file that does not match.
func Verify(root string, trusted ...*sign.PublicKey) (*Manifest, error) {
	m, err := ReadManifest(root)
	if err != nil {
		return nil, err
	}
	n, _ := Current(root)
	if m.Generation != n {
		return m, fmt.Errorf("manifest says generation %d, current link says %d", m.Generation, n)
	}
	var bad []string
	for _, name := range m.names() {
		if t, err := os.Readlink(filepath.Join(root, name)); err != nil || t != linkTarget(name) {
			bad = append(bad, fmt.Sprintf("%s: not linked into the live generation", name))
		}
	}
	if err := checkDir(root, m); err != nil {
		bad = append(bad, err.Error())
	}
	if len(trusted) > 0 {
		if err := checkDirSignature(root, trusted); err != nil {
			bad = append(bad, err.Error())
		}
	}
	if len(bad) > 0 {
		return m, fmt.Errorf("%s (generation %d) does not match its manifest:\n  %s", root, m.Generation, strings.Join(bad, "\n  "))
	}
	return m, nil
}

// Rollback makes the generation before the live one live again. With no
// earlier generation it says so and changes nothing.
// With trusted keys, the earlier generation's signature must verify.
func Rollback(root string, noWait bool, log *slog.Logger, trusted ...*sign.PublicKey) (from, to int, err error) {
	if err := CheckRoot(root); err != nil {
		return 0, 0, err
	}
	unlock, err := Lock(root, noWait, log)
	if err != nil {
		return 0, 0, err
	}
	defer unlock()
	cur, err := Current(root)
	if err != nil {
		return 0, 0, err
	}
	gens, _ := generations(root)
	prev := 0
	for _, g := range gens {
		if g < cur {
			prev = g
		}
	}
	if prev == 0 {
		return cur, cur, fmt.Errorf("no generation before %d is kept in %s: nothing to roll back to (nothing was changed)", cur, filepath.Join(root, genDir))
	}
	data, err := os.ReadFile(filepath.Join(root, genDir, fmt.Sprintf("%06d", prev), ManifestName))
	if err != nil {
		return cur, cur, err
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return cur, cur, err
	}
	if err := checkDir(filepath.Join(root, genDir, fmt.Sprintf("%06d", prev)), &m); err != nil {
		return cur, cur, fmt.Errorf("generation %d is damaged, not rolling back to it:\n  %w", prev, err)
	}
	if len(trusted) > 0 {
		if err := checkDirSignature(filepath.Join(root, genDir, fmt.Sprintf("%06d", prev)), trusted); err != nil {
			return cur, cur, fmt.Errorf("not rolling back to generation %d: %w", prev, err)
		}
	}
	if err := activate(root, prev, &m); err != nil {
		return cur, cur, err
	}
	return cur, prev, nil
}
