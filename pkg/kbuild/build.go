// Package kbuild builds a kernel from the project's config fragments with the
// kernel's own make: it resolves the source, checks the toolchain, configures
// out of tree (tinyconfig or defconfig + fragments + olddefconfig), verifies
// every requested value before compiling, compiles in a reproducible
// environment with ccache when installed, and records what went in and came
// out in build_<arch>.json. An unchanged build does not run make at all.
//
// It does not publish anything, reads no environment variable and does not
// know about boot loaders: a built-in command line and checks of the final
// .config come in its Options.
package kbuild

import (
	"bufio"
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
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/diskless/diskless/internal/fsutil"

	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/deps"
	"github.com/diskless/diskless/pkg/kconfig"
)

// Role is which kernel to build.
type Role string

const (
	// Slave is the diskless node's kernel: tinyconfig + slave + arch fragments.
	Slave Role = "slave"
	// Master is the server's kernel: defconfig + master fragment.
	Master Role = "master"
)

// Options for one build. Zero values get the documented defaults.
type Options struct {
	Arch arch.Arch
	Role Role
	// KernelsDir holds master.config, slave.config and arch/<arch>.config.
	KernelsDir string
	// Extra are user fragments applied last (KCONFIG_EXTRA).
	Extra []string
	// KernelSrc is KERNEL_SRC: a source directory or tarball; empty means the
	// newest /usr/src/linux-source-*.tar.*.
	KernelSrc string
	// CacheDir holds extracted sources and build trees.
	CacheDir string
	// OutDir receives the artifacts (artifacts/<arch>, or .../master).
	OutDir string
	// Jobs for make -j; 0 means the number of CPUs.
	Jobs int
	// ConfigOnly stops after the configuration is verified.
	ConfigOnly bool
	// NoCcache disables ccache even when it is installed.
	NoCcache bool
	// Cmdline, for slave kernels of arches with an EFI zboot image, is
	// built in as CONFIG_CMDLINE (the EFI stub uses it when the firmware
	// passes no options), so vmlinuz_<arch> boots with the node's
	// settings. It is part of the cache key like any requested value.
	Cmdline string
	// Initramfs, for slave kernels of arches with an EFI zboot image, is a
	// cpio archive (.cpio, or .cpio.gz/.xz/.zst, which the kernel's RD_*
	// options unpack) built into the kernel as CONFIG_INITRAMFS_SOURCE: the
	// firmware loads the EFI kernel alone, so vmlinuz_<arch> carries the
	// fallback initramfs inside. Its content is in the cache key.
	Initramfs string
	// SourceDateEpoch is the build timestamp (SOURCE_DATE_EPOCH); 0 means
	// the source tree's release date. It is part of the cache key.
	SourceDateEpoch int64
	// DistccHosts (DISTCC_HOSTS) spreads compile jobs over distccd hosts:
	// CC="distcc <gcc>", or ccache with CCACHE_PREFIX=distcc; -j is the
	// hosts' total slots unless Jobs is set.
	DistccHosts string
	// Path is the PATH make runs with; make, the compiler and ccache are
	// looked up in it too, so the compiler whose version is in the cache
	// key is the one make runs. Empty: DefaultPath.
	Path string
	// Home is HOME for make (ccache's and distcc's default state lives
	// under it); empty: not set (ccache then asks the password database).
	Home string
	// CcacheDir is ccache's CCACHE_DIR; empty: ccache's default
	// ($XDGCacheHome/ccache, else under Home).
	CcacheDir string
	// XDGCacheHome is XDG_CACHE_HOME for make, where ccache keeps its
	// cache by default; empty: not set.
	XDGCacheHome string
	// Targets overrides the make targets (partial builds, tests).
	Targets []string
	// SignPayload, for slave kernels of arches with an EFI zboot image,
	// signs the payload (the Image) for UEFI Secure Boot before it is
	// compressed into vmlinuz.efi: the zboot decompressor hands it to the
	// firmware's LoadImage, which refuses it unsigned. It returns the
	// signed copy's path. SignPayloadCert names the signing certificate
	// (its SHA-256) in the cache key.
	SignPayload     func(ctx context.Context, path string) (string, error)
	SignPayloadCert string
	// Checks run on the final .config before compiling (e.g. the NFS
	// version in the settings against the kernel's NFS options).
	Checks []func(final *kconfig.Config) error
	// Log receives progress and notices; nil discards.
	Log *slog.Logger
	// Terminal, when set, receives a live progress line instead of periodic
	// log lines.
	Terminal io.Writer
}

// Artifact is one output file.
type Artifact struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// FileHash names an input file and its hash.
type FileHash struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// Meta is build_<arch>.json: what went into a build and what came out.
type Meta struct {
	Arch          string     `json:"arch"`
	Role          Role       `json:"role"`
	KernelVersion string     `json:"kernel_version"`
	Source        string     `json:"source"`
	SourceID      string     `json:"source_identity"`
	SourceEpoch   int64      `json:"source_date_epoch"`
	BaseConfig    string     `json:"base_config"`
	Fragments     []FileHash `json:"fragments"`
	// Initramfs is the cpio archive built into the kernel, if any.
	Initramfs   *FileHash `json:"initramfs,omitempty"`
	Compiler    string    `json:"compiler"`
	CompilerVer string    `json:"compiler_version"`
	Ccache      bool      `json:"ccache"`
	Jobs        int       `json:"jobs"`
	Targets     []string  `json:"make_targets"`
	ConfigOnly  bool      `json:"config_only"`
	// ConfigReused says make's config steps were skipped: the tree's
	// .config was the one the same config inputs gave (configKey).
	ConfigReused bool      `json:"config_reused,omitempty"`
	Key          string    `json:"cache_key"`
	DistccHosts  string    `json:"distcc_hosts,omitempty"`
	RemoteJobs   int       `json:"distcc_remote_jobs,omitempty"`
	Started      time.Time `json:"started"`
	Duration     float64   `json:"duration_seconds"`
	CompileSteps int       `json:"compile_steps"`
	// FullSteps is the step count of the last build from an empty tree:
	// the total the progress line shows for the next one.
	FullSteps int        `json:"full_compile_steps,omitempty"`
	Artifacts []Artifact `json:"artifacts"`
}

// Result of Build.
type Result struct {
	Meta
	// MakeSkipped is true when nothing changed and make did not run.
	MakeSkipped bool
	// BuildDir is the out-of-tree build directory (for vmlinuz.efi etc.).
	BuildDir string
	// Warnings are fragment redefinitions.
	Warnings []kconfig.Warning
}

// Path returns the path of the named artifact in dir.
func (r *Result) Path(dir, name string) string { return filepath.Join(dir, name) }

// Names of a build's output files for a role and arch. EFI is set for slave
// kernels of arches that build an EFI zboot application: it is that arch's
// vmlinuz_<arch> netboot image.
type Names struct{ Image, EFI, Config, Meta string }

// OutputNames returns the artifact names: bzImage_<arch>, config_<arch>,
// build_<arch>.json for a slave; bzImage-master, config-master,
// build-master.json for a master.
func OutputNames(a arch.Arch, role Role) Names {
	if role == Master {
		return Names{Image: a.ImageName + "-master", Config: "config-master", Meta: "build-master.json"}
	}
	n := Names{Image: a.ArtifactName(), Config: "config_" + a.Name, Meta: "build_" + a.Name + ".json"}
	if a.EFIImagePath != "" {
		n.EFI = "vmlinuz_" + a.Name
	}
	return n
}

// Fragments lists the fragment files for a build, in merge order.
func (o *Options) Fragments() []string {
	var f []string
	switch o.Role {
	case Master:
		f = append(f, filepath.Join(o.KernelsDir, "master.config"))
	default:
		f = append(f, filepath.Join(o.KernelsDir, "slave.config"), filepath.Join(o.KernelsDir, "arch", o.Arch.Name+".config"))
	}
	return append(f, o.Extra...)
}

func (o *Options) baseConfig() string {
	if o.Role == Master {
		return "defconfig"
	}
	return "tinyconfig"
}

func (o *Options) targets() []string {
	if o.ConfigOnly {
		return nil
	}
	if len(o.Targets) > 0 {
		return o.Targets
	}
	if o.Role == Slave && o.Arch.EFIImagePath != "" {
		// only the EFI application: its payload is the Image, which the
		// same sub-make builds first. Asking for both makes the top-level
		// Makefile run two sub-makes of arch/<arch>/boot in parallel, one
		// rewriting Image while the other compresses it (a 20-byte gzip
		// of an empty Image, seen on a fresh riscv64 build).
		return []string{filepath.Base(o.Arch.EFIImagePath)}
	}
	return []string{o.Arch.ImageTarget}
}

// Plan is a validated build, ready to run: everything that can be checked
// cheaply has been.
type Plan struct {
	opts     Options
	req      *kconfig.Config
	warnings []kconfig.Warning
	frags    []FileHash
	cc       string // compiler command (without ccache)
	ccVer    string
	ccache   string // ccache path, or ""
	make     string // make's path in the build PATH
	src      *Source
	buildDir string
	key      string
	// initramfs is Options.Initramfs and its checksum
	initramfs FileHash
}

// builtinInitramfsName is the name, in the build tree, of the initramfs
// built into the kernel: its suffix says the kernel how it is compressed.
func builtinInitramfsName(o Options) (string, error) {
	if o.Role != Slave || o.Arch.EFIImagePath == "" {
		return "", fmt.Errorf("an initramfs built into the kernel is for the EFI zboot slave kernels (arm64, riscv64), not the %s %s kernel", o.Arch.Name, o.Role)
	}
	base := filepath.Base(o.Initramfs)
	i := strings.Index(base, ".cpio")
	if i < 0 || (base[i:] != ".cpio" && !slices.Contains([]string{".cpio.gz", ".cpio.xz", ".cpio.zst"}, base[i:])) {
		return "", fmt.Errorf("%s: the initramfs built into the kernel must be a .cpio, .cpio.gz, .cpio.xz or .cpio.zst archive", o.Initramfs)
	}
	return "diskless-initramfs" + base[i:], nil
}

// Prepare validates the inputs in the order of cost: role, fragments
// (parse, merge, slave rule), toolchain, then the kernel source (which may
// extract a tarball once). Nothing is compiled.
func Prepare(ctx context.Context, o Options) (*Plan, error) {
	if o.Role != Slave && o.Role != Master {
		return nil, fmt.Errorf("unknown role %q: slave or master", o.Role)
	}
	if o.Log == nil {
		o.Log = discard()
	}
	p := &Plan{opts: o}
	if o.DistccHosts != "" {
		hosts, err := ParseDistccHosts(o.DistccHosts)
		if err != nil {
			return nil, err
		}
		if _, err := deps.LookTool("distcc", "distcc"); err != nil {
			return nil, fmt.Errorf("DISTCC_HOSTS is set: %w", err)
		}
		bad := Unreachable(hosts, 2*time.Second)
		for addr, err := range bad {
			o.Log.Warn("distcc host unreachable: building without it", "host", addr, "err", err)
		}
		if len(bad) > 0 {
			kept, left := DropHosts(o.DistccHosts, bad)
			if !left {
				o.Log.Warn("no distcc host reachable: compiling locally")
				kept = ""
			}
			o.DistccHosts = kept
			if hosts, err = ParseDistccHosts(kept); err != nil {
				hosts = nil
			}
		}
		if o.Jobs <= 0 && len(hosts) > 0 {
			o.Jobs = Slots(hosts)
		}
		p.opts = o
	}
	if o.Jobs <= 0 {
		o.Jobs = runtime.NumCPU()
		p.opts = o
	}
	var cfgs []*kconfig.Config
	for _, f := range o.Fragments() {
		c, err := kconfig.ParseFile(f)
		if err != nil {
			return nil, err
		}
		data, _ := os.ReadFile(f)
		p.frags = append(p.frags, FileHash{Path: f, SHA256: sum(data)})
		cfgs = append(cfgs, c)
	}
	if o.Role == Slave && o.Arch.EFIImagePath != "" && o.Cmdline != "" {
		gen := &kconfig.Config{Name: "settings", Entries: []kconfig.Entry{{
			Symbol: "CMDLINE", Value: kconfig.Quote(o.Cmdline), File: "settings (NFS_SERVER, NFS_ROOT, NFS_OPTS, KERNEL_ARGS)", Line: 1,
		}}}
		cfgs = append(cfgs, gen)
	}
	if o.Initramfs != "" {
		name, err := builtinInitramfsName(o)
		if err != nil {
			return nil, err
		}
		sum, _, err := fsutil.HashFile(o.Initramfs)
		if err != nil {
			return nil, fmt.Errorf("the initramfs to build into the kernel: %w (build:initramfs arch=%s)", err, o.Arch.Name)
		}
		p.initramfs = FileHash{Path: o.Initramfs, SHA256: sum}
		// relative to the build tree, where make runs: the same value on
		// every machine
		cfgs = append(cfgs, &kconfig.Config{Name: "settings", Entries: []kconfig.Entry{{
			Symbol: "INITRAMFS_SOURCE", Value: kconfig.Quote(name), File: "settings (NETBOOT_INITRAMFS: the fallback initramfs inside vmlinuz_" + o.Arch.Name + ")", Line: 1,
		}}})
	}
	p.req, p.warnings = kconfig.Merge(cfgs...)
	for _, w := range p.warnings {
		o.Log.Warn("config override", "at", w.New.Pos(), "value", w.New.String(), "was", w.Old.String(), "from", w.Old.Pos())
	}
	if o.Role == Slave {
		if err := kconfig.SlaveRequested(p.req); err != nil {
			return nil, err
		}
	}
	if err := p.checkTools(); err != nil {
		return nil, err
	}
	src, err := ResolveSource(ctx, o.KernelSrc, o.CacheDir)
	if err != nil {
		return nil, err
	}
	p.src = src
	p.buildDir = filepath.Join(o.CacheDir, "build", o.Arch.Name+"-"+string(o.Role))
	p.key = p.computeKey()
	return p, nil
}

// DefaultPath is the PATH of a build whose Options.Path is empty.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func (o *Options) path() string {
	if o.Path != "" {
		return o.Path
	}
	return DefaultPath
}

// lookPath finds an executable name in the directories of the PATH list
// pathList, as make's shell will (not in the PATH of this process).
func lookPath(name, pathList string) (string, error) {
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue // a relative entry depends on make's working directory
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH=%s", name, pathList)
}

func (p *Plan) checkTools() error {
	o := &p.opts
	for _, t := range deps.KernelPrograms(o.Arch, KernelCompressor(p.req), false) {
		path, err := lookPath(t.Name, o.path())
		if err != nil {
			return fmt.Errorf("kernel build for %s: %w: install the Debian package %s (%s)", o.Arch.Name, err, t.Package, deps.InstallLine([]string{t.Package}))
		}
		if t.Name == "make" {
			p.make = path
		}
	}
	cc, _ := o.Arch.Compiler()
	for _, h := range [][2]string{{"/usr/include/gelf.h", "libelf-dev"}, {"/usr/include/openssl/ssl.h", "libssl-dev"}} {
		if _, err := os.Stat(h[0]); err != nil && !o.ConfigOnly {
			return fmt.Errorf("kernel build needs %s: install the Debian package %s (%s)", h[0], h[1], deps.InstallLine([]string{h[1]}))
		}
	}
	ccPath, err := lookPath(cc, o.path())
	if err != nil {
		return fmt.Errorf("kernel build for %s: %w", o.Arch.Name, err)
	}
	ver := exec.Command(ccPath, "--version")
	ver.Env = []string{"PATH=" + o.path(), "LC_ALL=C"} // as make runs it: the line is in the key
	out, err := ver.Output()
	if err != nil {
		return fmt.Errorf("%s --version: %w", ccPath, err)
	}
	p.cc = cc
	p.ccVer, _, _ = strings.Cut(string(out), "\n")
	if !o.NoCcache {
		if path, err := lookPath("ccache", o.path()); err == nil {
			p.ccache = path
		}
	}
	return nil
}

// KernelCompressor is the CONFIG_KERNEL_<X> compression the requested
// config chooses (a key of deps.Compressors), or "" for the kernel's
// default (gzip).
func KernelCompressor(req *kconfig.Config) string {
	chosen := ""
	for _, e := range req.Entries {
		if c, ok := strings.CutPrefix(e.Symbol, "KERNEL_"); ok && e.Value == "y" {
			if _, known := deps.Compressors[c]; known {
				chosen = c // the last one asked for wins, as in Kconfig
			}
		}
	}
	return chosen
}

// computeKey hashes every input that decides the output: a match with the
// last successful build's key means make has nothing to do.
//
// make's environment is built by env, not inherited, so no variable of
// the caller's shell (KCFLAGS, ARCH, CROSS_COMPILE, CC, KBUILD_*, ...)
// reaches it; what env sets that changes the output is a documented
// setting in the key (SOURCE_DATE_EPOCH, via epoch) or a constant.
// Path, Home, CcacheDir and XDGCacheHome are not in the key: they decide
// where tools and caches are found, not what is built; the compiler found
// in Path is in the key by name and version (ccache returns what that
// compiler would produce, distcc runs the same version on its hosts).
func (p *Plan) computeKey() string {
	h := sha256.New()
	o := &p.opts
	fmt.Fprintf(h, "diskless-kbuild-v1\x00%s\x00%s\x00%s\x00%s\x00%d\x00", o.Arch.Name, o.Role, p.src.Identity, p.src.Dir, p.epoch())
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%v\x00", p.opts.baseConfig(), p.cc, p.ccVer, p.opts.targets())
	for _, e := range p.req.Entries {
		fmt.Fprintf(h, "%s\n", e)
	}
	if p.initramfs.SHA256 != "" {
		// "assembled without ccache": a kernel an earlier version built
		// may carry a stale initramfs (initramfsObject)
		fmt.Fprintf(h, "initramfs %s assembled without ccache\n", p.initramfs.SHA256)
	}
	if p.signsPayload() {
		fmt.Fprintf(h, "payload signed by %s\n", o.SignPayloadCert)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// signsPayload says whether this build signs its zboot payload.
func (p *Plan) signsPayload() bool {
	o := &p.opts
	return o.SignPayload != nil && o.Role == Slave && o.Arch.EFIImagePath != "" && !o.ConfigOnly && len(o.Targets) == 0
}

// payloadMark, in the build tree, says its Image was signed in place
// (SignPayload): a build without signing makes it again from vmlinux.
const payloadMark = "diskless-payload-signed"

// Key is the cache key of this plan.
func (p *Plan) Key() string { return p.key }

// BuildDir is where make O= builds.
func (p *Plan) BuildDir() string { return p.buildDir }

// Source is the resolved kernel source.
func (p *Plan) Source() *Source { return p.src }

// Build prepares and runs a build: see Prepare and Plan.Run.
func Build(ctx context.Context, o Options) (*Result, error) {
	p, err := Prepare(ctx, o)
	if err != nil {
		return nil, err
	}
	return p.Run(ctx)
}

const stampName = "diskless-build.json"

// UpToDate returns the last build's metadata when its key matches this plan
// and its outputs in the build directory are intact.
func (p *Plan) UpToDate() (*Meta, bool) {
	data, err := os.ReadFile(filepath.Join(p.buildDir, stampName))
	if err != nil {
		return nil, false
	}
	var m Meta
	if json.Unmarshal(data, &m) != nil || m.Key != p.key {
		return nil, false
	}
	for _, a := range m.Artifacts {
		if !fileMatches(filepath.Join(p.buildDir, "diskless-out", a.Name), a) {
			return nil, false
		}
	}
	return &m, true
}

// Run configures, verifies and compiles, or skips make when nothing changed.
func (p *Plan) Run(ctx context.Context) (*Result, error) {
	o := &p.opts
	names := OutputNames(o.Arch, o.Role)
	res := &Result{BuildDir: p.buildDir, Warnings: p.warnings}
	if err := os.MkdirAll(p.buildDir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockDir(p.buildDir, o.Log)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if m, ok := p.UpToDate(); ok {
		res.Meta = *m
		res.MakeSkipped = true
		o.Log.Info("kernel up to date: make skipped", "arch", o.Arch.Name, "role", o.Role, "key", p.key[:12])
		return res, p.install(m, names)
	}
	start := time.Now()
	prevFull := p.previousFullSteps()
	// A failed or interrupted build must not look up to date.
	os.Remove(filepath.Join(p.buildDir, stampName))

	m := Meta{
		Arch: o.Arch.Name, Role: o.Role, KernelVersion: p.src.Version,
		Source: p.src.Origin, SourceID: p.src.Identity, SourceEpoch: p.epoch(),
		BaseConfig: o.baseConfig(), Fragments: p.frags,
		Compiler: p.cc, CompilerVer: p.ccVer, Ccache: p.ccache != "",
		Jobs: o.Jobs, Targets: o.targets(), ConfigOnly: o.ConfigOnly,
		Key: p.key, Started: start.UTC().Truncate(time.Second),
	}
	if o.Initramfs != "" {
		ih := p.initramfs
		m.Initramfs = &ih
		if err := p.placeInitramfs(); err != nil {
			return nil, err
		}
	}
	reused, err := p.configure(ctx)
	if err != nil {
		return nil, err
	}
	m.ConfigReused = reused
	outDir := filepath.Join(p.buildDir, "diskless-out")
	os.RemoveAll(outDir)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	if err := copyFile(filepath.Join(p.buildDir, ".config"), filepath.Join(outDir, names.Config)); err != nil {
		return nil, err
	}
	if !o.ConfigOnly {
		os.Remove(p.distccLog())
		// a build from an empty tree can be measured against the last one
		_, statErr := os.Stat(filepath.Join(p.buildDir, "vmlinux"))
		fresh := os.IsNotExist(statErr)
		expect := 0
		if fresh {
			expect = prevFull
		}
		if o.Initramfs != "" {
			if err := p.initramfsObject(ctx); err != nil {
				return nil, err
			}
		}
		// an Image signed in place by an earlier build is not this one's
		// (make would take it as newer than vmlinux)
		if _, err := os.Stat(filepath.Join(p.buildDir, payloadMark)); err == nil {
			os.Remove(filepath.Join(p.buildDir, o.Arch.ImagePath))
			os.Remove(filepath.Join(p.buildDir, payloadMark))
		}
		targets := o.targets()
		if p.signsPayload() {
			targets = []string{o.Arch.ImageTarget}
		}
		steps, err := p.compile(ctx, expect, targets, false)
		if err != nil {
			return nil, err
		}
		if p.signsPayload() {
			n, err := p.signPayload(ctx)
			if err != nil {
				return nil, err
			}
			steps += n
		}
		m.CompileSteps, m.FullSteps = steps, prevFull
		if fresh {
			m.FullSteps = steps
		}
		if o.DistccHosts != "" {
			m.DistccHosts = o.DistccHosts
			remote, local := RemoteJobs(p.distccLog())
			m.RemoteJobs = remote
			o.Log.Info("distcc", "remote_jobs", remote, "local_jobs", local)
		}
		if len(o.Targets) > 0 {
			// a partial build: no image, nothing to install
			m.Duration = time.Since(start).Round(10 * time.Millisecond).Seconds()
			res.Meta = m
			return res, nil
		}
		if err := copyFile(filepath.Join(p.buildDir, o.Arch.ImagePath), filepath.Join(outDir, names.Image)); err != nil {
			return nil, fmt.Errorf("make finished but the image is missing: %w", err)
		}
		if names.EFI != "" {
			if err := copyFile(filepath.Join(p.buildDir, o.Arch.EFIImagePath), filepath.Join(outDir, names.EFI)); err != nil {
				return nil, fmt.Errorf("make finished but the EFI image is missing: %w", err)
			}
			if err := CheckZboot(filepath.Join(outDir, names.EFI), o.Arch); err != nil {
				return nil, fmt.Errorf("make finished but the EFI image is broken (the build tree is %s): %w", p.buildDir, err)
			}
		}
	}
	for _, n := range []string{names.Image, names.EFI, names.Config} {
		if n == "" || o.ConfigOnly && n != names.Config {
			continue
		}
		a, err := hashArtifact(filepath.Join(outDir, n))
		if err != nil {
			return nil, err
		}
		m.Artifacts = append(m.Artifacts, a)
	}
	m.Duration = time.Since(start).Round(10 * time.Millisecond).Seconds()
	res.Meta = m
	if err := p.install(&m, names); err != nil {
		return nil, err
	}
	data, _ := json.MarshalIndent(m, "", "  ")
	if err := fsutil.WriteAtomic(filepath.Join(p.buildDir, stampName), append(data, '\n')); err != nil {
		return nil, err
	}
	o.Log.Info("kernel built", "arch", o.Arch.Name, "role", o.Role, "seconds", m.Duration, "out", o.OutDir)
	return res, nil
}

// install copies the build's outputs and metadata into OutDir (atomically,
// each file) unless they are already there and intact.
func (p *Plan) install(m *Meta, names Names) error {
	if err := os.MkdirAll(p.opts.OutDir, 0o755); err != nil {
		return err
	}
	for _, a := range m.Artifacts {
		dst := filepath.Join(p.opts.OutDir, a.Name)
		if fileMatches(dst, a) {
			continue
		}
		if err := copyFile(filepath.Join(p.buildDir, "diskless-out", a.Name), dst); err != nil {
			return err
		}
	}
	data, _ := json.MarshalIndent(m, "", "  ")
	return fsutil.WriteAtomic(filepath.Join(p.opts.OutDir, names.Meta), append(data, '\n'))
}

// epoch is the build timestamp: SourceDateEpoch, or the tree's release date.
func (p *Plan) epoch() int64 {
	if p.opts.SourceDateEpoch > 0 {
		return p.opts.SourceDateEpoch
	}
	return p.src.Epoch
}

// env is the reproducible build environment: built from the options, never
// inherited from this process (see computeKey).
func (p *Plan) env() []string {
	o := &p.opts
	epoch := p.epoch()
	env := []string{"PATH=" + o.path()}
	for _, v := range []struct{ name, val string }{{"HOME", o.Home}, {"CCACHE_DIR", o.CcacheDir}, {"XDG_CACHE_HOME", o.XDGCacheHome}} {
		if v.val != "" {
			env = append(env, v.name+"="+v.val)
		}
	}
	if p.ccache != "" && p.opts.DistccHosts == "" {
		// depend mode: a miss is not preprocessed first to be hashed (the
		// compiler's -MD list is hashed after it); with the preprocessor,
		// a cold ccache made a build 35 % slower (riscv64: 309 s, 228 s
		// without ccache). distcc needs the preprocessed source.
		env = append(env, "CCACHE_DEPEND=1")
	}
	if p.opts.DistccHosts != "" {
		env = append(env, "DISTCC_HOSTS="+p.opts.DistccHosts, "DISTCC_LOG="+p.distccLog(), "DISTCC_VERBOSE=1")
		if p.ccache != "" {
			env = append(env, "CCACHE_PREFIX=distcc")
		}
	}
	return append(env,
		"LC_ALL=C", "TZ=UTC",
		fmt.Sprintf("SOURCE_DATE_EPOCH=%d", epoch),
		"KBUILD_BUILD_TIMESTAMP="+time.Unix(epoch, 0).UTC().Format(time.UnixDate),
		"KBUILD_BUILD_USER=diskless", "KBUILD_BUILD_HOST=diskless", "KBUILD_BUILD_VERSION=1",
	)
}

// makePath is make as found in the build PATH.
func (p *Plan) makePath() string {
	if p.make != "" {
		return p.make
	}
	return "make"
}

func (p *Plan) makeArgs(targets ...string) []string {
	o := &p.opts
	args := []string{"-C", p.src.Dir, "O=" + p.buildDir, "ARCH=" + o.Arch.KernelArch}
	if cc := o.Arch.CrossCompile(); cc != "" {
		args = append(args, "CROSS_COMPILE="+cc)
	}
	switch {
	case p.ccache != "":
		// with distcc, ccache hands misses to distcc (CCACHE_PREFIX, in env)
		args = append(args, "CC="+p.ccache+" "+p.cc, "HOSTCC="+p.ccache+" gcc")
	case o.DistccHosts != "":
		args = append(args, "CC=distcc "+p.cc)
	}
	return append(args, targets...)
}

// placeInitramfs copies the initramfs into the build tree under the name
// CONFIG_INITRAMFS_SOURCE gives (left as it is when it already has that
// content: make then has nothing to relink for it), checked against the
// checksum in the key.
func (p *Plan) placeInitramfs() error {
	name, err := builtinInitramfsName(p.opts)
	if err != nil {
		return err
	}
	dst := filepath.Join(p.buildDir, name)
	if sum, _, err := fsutil.HashFile(dst); err == nil && sum == p.initramfs.SHA256 {
		return nil
	}
	data, err := os.ReadFile(p.opts.Initramfs)
	if err != nil {
		return err
	}
	if sum(data) != p.initramfs.SHA256 {
		return fmt.Errorf("%s changed while the kernel build was prepared: build again", p.opts.Initramfs)
	}
	return fsutil.WriteAtomic(dst, data)
}

// initramfsObject assembles usr/initramfs_data.o, which .incbin's the
// initramfs, without ccache: the archive is no dependency ccache sees (not
// in the preprocessed source nor in the -MD list its depend mode hashes),
// so a cached object would carry an earlier initramfs into the kernel.
func (p *Plan) initramfsObject(ctx context.Context) error {
	os.Remove(filepath.Join(p.buildDir, "usr", "initramfs_data.o"))
	logf := filepath.Join(p.buildDir, "diskless-initramfs.log")
	lf, err := os.Create(logf)
	if err != nil {
		return err
	}
	defer lf.Close()
	cmd := exec.CommandContext(ctx, p.makePath(), append(p.makeArgs("usr/initramfs_data.o"), fmt.Sprintf("-j%d", p.opts.Jobs))...)
	cmd.Env = append(p.env(), "CCACHE_DISABLE=1")
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("make usr/initramfs_data.o for %s failed: %w\nlast lines of %s:\n%s", p.opts.Arch.Name, err, logf, tail(logf, 30))
	}
	return nil
}

func (p *Plan) distccLog() string { return filepath.Join(p.buildDir, "diskless-distcc.log") }

// configure writes the verified final .config into the build directory,
// or verifies the one there when the same config inputs made it (reused).
func (p *Plan) configure(ctx context.Context) (reused bool, err error) {
	o := &p.opts
	cfgPath := filepath.Join(p.buildDir, ".config")
	stamp := filepath.Join(p.buildDir, configStamp)
	ckey := p.configKey()
	reused = p.configUpToDate(stamp, ckey, cfgPath)
	if reused {
		// the same inputs gave this .config: make's config steps (~20 s,
		// the .config rewritten) would give it again
		o.Log.Info("config unchanged: make's config steps skipped", "arch", o.Arch.Name, "role", o.Role, "config_key", ckey[:12])
	} else {
		os.Remove(stamp)
		if err := p.makeConfig(ctx, cfgPath); err != nil {
			return false, err
		}
	}
	final, err := kconfig.ParseFile(cfgPath)
	if err != nil {
		return false, fmt.Errorf("reading the final config: %w", err)
	}
	if ms := kconfig.Verify(final, p.req); len(ms) > 0 {
		return false, &kconfig.VerifyError{Config: cfgPath, Mismatches: ms}
	}
	if o.Role == Slave {
		if err := kconfig.SlaveFinal(final, p.req); err != nil {
			return false, err
		}
	}
	for _, check := range o.Checks {
		if err := check(final); err != nil {
			return false, err
		}
	}
	o.Log.Info("config verified", "arch", o.Arch.Name, "role", o.Role, "requested", len(p.req.Entries))
	if reused {
		return true, nil // the stamp already says so
	}
	h, _, err := fsutil.HashFile(cfgPath)
	if err != nil {
		return false, err
	}
	return false, fsutil.WriteAtomic(stamp, []byte(ckey+" "+h+"\n"))
}

// makeConfig runs make's config steps: the base config, the requested
// values applied, olddefconfig.
func (p *Plan) makeConfig(ctx context.Context, cfgPath string) error {
	o := &p.opts
	logf := filepath.Join(p.buildDir, "diskless-config.log")
	lf, err := os.Create(logf)
	if err != nil {
		return err
	}
	defer lf.Close()
	run := func(target string) error {
		cmd := exec.CommandContext(ctx, p.makePath(), p.makeArgs(target)...)
		cmd.Env = p.env()
		cmd.Stdout, cmd.Stderr = lf, lf
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("make %s for %s failed: %w\n%s\nfull log: %s", target, o.Arch.Name, err, tail(logf, 30), logf)
		}
		return nil
	}
	o.Log.Info("configuring kernel", "arch", o.Arch.Name, "role", o.Role, "base", o.baseConfig(), "source", p.src.Origin, "version", p.src.Version)
	if err := run(o.baseConfig()); err != nil {
		return err
	}
	base, err := os.ReadFile(cfgPath)
	if err != nil {
		return err
	}
	if err := os.WriteFile(cfgPath, kconfig.Apply(base, p.req), 0o644); err != nil {
		return err
	}
	return run("olddefconfig")
}

// configStamp, in the build tree, holds the config key of its .config
// and the .config's checksum, written once the .config was verified.
const configStamp = "diskless-config.key"

// configKey hashes what decides the .config, the key's inputs without
// what only make's targets see (the targets, the initramfs's content, the
// payload's signing): the source, arch, role, base config, the requested
// entries, the compiler by name and version (Kconfig asks it), and how make
// runs it (ccache, distcc).
func (p *Plan) configKey() string {
	o := &p.opts
	h := sha256.New()
	fmt.Fprintf(h, "diskless-kconfig-v1\x00%s\x00%s\x00%s\x00%s\x00%s\x00", o.Arch.Name, o.Role, p.src.Identity, p.src.Dir, o.baseConfig())
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00", p.cc, p.ccVer, p.ccache, o.DistccHosts)
	for _, e := range p.req.Entries {
		fmt.Fprintf(h, "%s\n", e)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// configUpToDate says whether the tree's .config is the one the stamp
// recorded for key: unchanged since it was verified.
func (p *Plan) configUpToDate(stamp, key, cfgPath string) bool {
	data, err := os.ReadFile(stamp)
	if err != nil {
		return false
	}
	k, sum, ok := strings.Cut(strings.TrimSpace(string(data)), " ")
	if !ok || k != key {
		return false
	}
	h, _, err := fsutil.HashFile(cfgPath)
	return err == nil && h == sum
}

// previousFullSteps is the step count of the last build from an empty tree
// of this arch and role: from the build tree's record, or the artifacts'
// (which outlive a deleted cache).
func (p *Plan) previousFullSteps() int {
	if data, err := os.ReadFile(filepath.Join(p.buildDir, stampName)); err == nil {
		var m Meta
		if json.Unmarshal(data, &m) == nil && m.FullSteps > 0 {
			return m.FullSteps
		}
	}
	if m, err := ReadMeta(p.opts.OutDir, p.opts.Arch, p.opts.Role); err == nil {
		return m.FullSteps
	}
	return 0
}

// compile runs make for the targets with progress (against expect steps
// when known), keeping the full log.
// signPayload signs the Image in the tree in place (SignPayload), marks
// the tree, and makes the EFI image from it: the zboot payload is then the
// signed Image. It returns make's steps.
func (p *Plan) signPayload(ctx context.Context) (int, error) {
	o := &p.opts
	img := filepath.Join(p.buildDir, o.Arch.ImagePath)
	signed, err := o.SignPayload(ctx, img)
	if err != nil {
		return 0, fmt.Errorf("signing the %s kernel's EFI zboot payload (%s) for Secure Boot: %w", o.Arch.Name, img, err)
	}
	if err := os.WriteFile(filepath.Join(p.buildDir, payloadMark), nil, 0o644); err != nil {
		return 0, err
	}
	if signed != img {
		if err := copyFile(signed, img); err != nil {
			return 0, err
		}
	}
	o.Log.Info("EFI zboot payload signed for Secure Boot", "arch", o.Arch.Name, "image", img)
	return p.compile(ctx, 0, o.targets(), true)
}

func (p *Plan) compile(ctx context.Context, expect int, targets []string, appendLog bool) (int, error) {
	o := &p.opts
	logf := filepath.Join(p.buildDir, "diskless-make.log")
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if appendLog {
		flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
	}
	lf, err := os.OpenFile(logf, flags, 0o644)
	if err != nil {
		return 0, err
	}
	defer lf.Close()
	args := append(p.makeArgs(targets...), fmt.Sprintf("-j%d", o.Jobs))
	o.Log.Info("compiling kernel", "arch", o.Arch.Name, "role", o.Role, "targets", strings.Join(targets, " "), "jobs", o.Jobs, "ccache", p.ccache != "", "log", logf)
	pr := newProgress(o.Log, o.Terminal, fmt.Sprintf("kernel %s %s", o.Arch.Name, o.Role), expect, lf)
	cmd := exec.CommandContext(ctx, p.makePath(), args...)
	cmd.Env = p.env()
	cmd.Stdout, cmd.Stderr = pr, pr
	err = cmd.Run()
	pr.Close()
	if err != nil {
		return pr.Steps(), fmt.Errorf("make %s for %s failed: %w\nlast lines of %s:\n%s", strings.Join(targets, " "), o.Arch.Name, err, logf, tail(logf, 40))
	}
	return pr.Steps(), nil
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

func sum(data []byte) string { return fsutil.HashBytes(data) }

func hashArtifact(path string) (Artifact, error) {
	h, n, err := fsutil.HashFile(path)
	if err != nil {
		return Artifact{}, err
	}
	return Artifact{Name: filepath.Base(path), Size: n, SHA256: h}, nil
}

func fileMatches(path string, a Artifact) bool { return fsutil.Matches(path, a.Size, a.SHA256) }

// copyFile copies src to dst through a temporary file and a rename, so dst
// is never seen half-written.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, bufio.NewReader(in)); err != nil {
		return err
	}
	return fsutil.WriteAtomic(dst, buf.Bytes())
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// lockDir takes an exclusive flock on dir/.lock, waiting (with a message)
// while another build of the same arch and role runs.
func lockDir(dir string, log *slog.Logger) (func(), error) {
	return fsutil.Lock(filepath.Join(dir, ".lock"), false, func() {
		log.Info("another build of this kernel is running; waiting for it", "dir", dir)
	})
}

// ErrNotBuilt is returned by ReadMeta when no build has been recorded.
var ErrNotBuilt = errors.New("not built yet")

// ReadMeta reads build_<arch>.json (or build-master.json) from dir.
func ReadMeta(dir string, a arch.Arch, role Role) (*Meta, error) {
	data, err := os.ReadFile(filepath.Join(dir, OutputNames(a, role).Meta))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s %s kernel in %s: %w (run build:%s %s)", a.Name, role, dir, ErrNotBuilt, role, a.Name)
	}
	if err != nil {
		return nil, err
	}
	var m Meta
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, OutputNames(a, role).Meta), err)
	}
	return &m, nil
}
