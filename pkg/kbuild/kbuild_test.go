package kbuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/deptest"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/deps"
	"github.com/diskless/diskless/pkg/kconfig"
	"github.com/diskless/diskless/pkg/pxe"
)

func mustArch(t *testing.T, n string) arch.Arch {
	t.Helper()
	a, err := arch.Lookup(n)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// project makes a copy of the repository's kernels/ in a temp project dir.
func project(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	err := filepath.Walk("../../kernels", func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("../../kernels", p)
		dst := filepath.Join(dir, "kernels", rel)
		if info.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// testOptions is what pkg/settings makes for a project dir with default
// settings, plus extra fragments (paths relative to dir).
func testOptions(dir string, a arch.Arch, role Role, extra ...string) Options {
	o := NewOptions(dir, testCacheDir(), a, role)
	for _, e := range extra {
		o.Extra = append(o.Extra, filepath.Join(dir, e))
	}
	o.KernelSrc = os.Getenv("KERNEL_SRC")
	o.Path, o.Home, o.CcacheDir, o.XDGCacheHome = os.Getenv("PATH"), os.Getenv("HOME"), os.Getenv("CCACHE_DIR"), os.Getenv("XDG_CACHE_HOME")
	if role == Slave {
		st := pxe.Settings{}.WithDefaults()
		o.Cmdline = st.Cmdline(a)
		o.Checks = append(o.Checks, st.CheckKernel)
	}
	return o
}

// testCacheDir is the shared cache the tests build in (the user's).
func testCacheDir() string { return CacheDir(os.Getenv("XDG_CACHE_HOME"), os.Getenv("HOME")) }

func TestNewOptions(t *testing.T) {
	dir := project(t)
	x := mustArch(t, "x86_64")
	os.WriteFile(filepath.Join(dir, "extra.config"), []byte("CONFIG_HZ_100=y\n"), 0o644)
	o := testOptions(dir, x, Slave, "extra.config")
	fr := o.Fragments()
	if len(fr) != 3 || !strings.HasSuffix(fr[0], "kernels/slave.config") || !strings.HasSuffix(fr[1], "kernels/arch/x86_64.config") || !strings.HasSuffix(fr[2], "extra.config") {
		t.Errorf("fragments %v", fr)
	}
	if o.OutDir != filepath.Join(dir, "artifacts", "x86_64") {
		t.Errorf("options %+v", o)
	}
	m := NewOptions(dir, "/c", x, Master)
	if len(m.Fragments()) != 1 || !strings.HasSuffix(m.Fragments()[0], "master.config") || !strings.HasSuffix(m.OutDir, "x86_64/master") || m.CacheDir != "/c" {
		t.Errorf("master options %+v", m)
	}
	for _, c := range []struct{ xdg, home, want string }{{"/x", "/h", "/x/diskless"}, {"", "/h", "/h/.cache/diskless"}} {
		if got := CacheDir(c.xdg, c.home); got != c.want {
			t.Errorf("CacheDir(%q, %q) = %s, want %s", c.xdg, c.home, got, c.want)
		}
	}
}

// A missing arch fragment is named before any work.
func TestPrepareNamesMissingFragment(t *testing.T) {
	testutil.NeedTool(t, "make", "make")
	dir := project(t)
	os.Remove(filepath.Join(dir, "kernels", "arch", "riscv64.config"))
	o := testOptions(dir, mustArch(t, "riscv64"), Slave)
	o.CacheDir = t.TempDir()
	_, err := Prepare(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "kernels/arch/riscv64.config") {
		t.Errorf("missing arch fragment: %v", err)
	}
}

// Bad input is rejected by Prepare before any make runs: a fresh CacheDir
// stays empty, proving nothing was extracted or configured.
func TestPrepareRejectsBadInputBeforeAnyWork(t *testing.T) {
	testutil.NeedTool(t, "make", "make")
	dir := project(t)
	x := mustArch(t, "x86_64")
	prep := func(extra string, mod func(*Options)) error {
		t.Helper()
		cache := t.TempDir()
		var e []string
		if extra != "" {
			os.WriteFile(filepath.Join(dir, "extra.config"), []byte(extra), 0o644)
			e = append(e, "extra.config")
		}
		o := testOptions(dir, x, Slave, e...)
		o.CacheDir = cache
		if mod != nil {
			mod(&o)
		}
		_, err := Prepare(context.Background(), o)
		if left, _ := os.ReadDir(cache); len(left) != 0 {
			t.Errorf("bad input left %d entries in the cache", len(left))
		}
		return err
	}

	err := prep("CONFIG_OK=y\nCONFIG_BROKEN\n", nil)
	var pe *kconfig.ParseError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "extra.config:2") {
		t.Errorf("malformed fragment: %v", err)
	}
	err = prep("CONFIG_ROOT_NFS=m\n", nil)
	if err == nil || !strings.Contains(err.Error(), "extra.config:1: CONFIG_ROOT_NFS=m") {
		t.Errorf("=m on the NFS-root chain: %v", err)
	}
	err = prep("", func(o *Options) { o.KernelSrc = "/nonexistent/linux-9.9" })
	if err == nil || !strings.Contains(err.Error(), "KERNEL_SRC=/nonexistent/linux-9.9") {
		t.Errorf("missing KERNEL_SRC: %v", err)
	}
	notSrc := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(notSrc, []byte("hi"), 0o644)
	err = prep("", func(o *Options) { o.KernelSrc = notSrc })
	if err == nil || !strings.Contains(err.Error(), "not a directory or a .tar") {
		t.Errorf("KERNEL_SRC a plain file: %v", err)
	}
	empty := t.TempDir()
	err = prep("", func(o *Options) { o.KernelSrc = empty })
	if err == nil || !strings.Contains(err.Error(), "does not look like a Linux source tree") {
		t.Errorf("KERNEL_SRC an empty dir: %v", err)
	}
}

// A missing cross compiler is named with its Debian package, before any
// work: PATH holds every other tool but not aarch64-linux-gnu-gcc.
func TestPrepareMissingCrossCompilerNamesPackage(t *testing.T) {
	bin := t.TempDir()
	for _, tool := range []string{"make", "flex", "bison", "bc", "perl", "gcc"} {
		p := testutil.NeedTool(t, tool, tool)
		os.Symlink(p, filepath.Join(bin, tool))
	}
	t.Setenv("PATH", bin)
	dir := project(t)
	o := testOptions(dir, mustArch(t, "arm64"), Slave)
	o.CacheDir = t.TempDir()
	_, err := Prepare(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "aarch64-linux-gnu-gcc") || !strings.Contains(err.Error(), "gcc-aarch64-linux-gnu") {
		t.Errorf("missing cross compiler: %v", err)
	}
}

func TestFindDefaultSourcePicksNewest(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"linux-source-6.1.tar.xz", "linux-source-6.10.tar.xz", "linux-source-6.9.tar.xz", "linux-source-7.0.tar.bz2.sig"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	got, err := FindDefaultSource(filepath.Join(dir, "linux-source-*.tar.*"))
	if err != nil || filepath.Base(got) != "linux-source-6.10.tar.xz" {
		t.Errorf("FindDefaultSource = %s, %v", got, err)
	}
	_, err = FindDefaultSource(filepath.Join(t.TempDir(), "linux-source-*.tar.*"))
	if err == nil || !strings.Contains(err.Error(), "apt-get install linux-source-6.1") || !strings.Contains(err.Error(), "KERNEL_SRC") {
		t.Errorf("no source: %v", err)
	}
}

func TestVersionLess(t *testing.T) {
	for _, c := range [][2]string{{"a-6.1", "a-6.2"}, {"a-6.9", "a-6.10"}, {"a-5.19", "a-6.1"}, {"a-6.1", "a-6.1.1"}} {
		if !versionLess(c[0], c[1]) || versionLess(c[1], c[0]) {
			t.Errorf("versionLess(%s, %s) wrong", c[0], c[1])
		}
	}
}

// fakeTree writes a tarball holding a directory with a kernel-style Makefile.
func fakeTree(t *testing.T, path string, mtime time.Time) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	mk := "# SPDX\nVERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 192\nEXTRAVERSION = -test\nNAME = x\n"
	tw.WriteHeader(&tar.Header{Name: "linux-source-6.1/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime})
	tw.WriteHeader(&tar.Header{Name: "linux-source-6.1/Makefile", Mode: 0o644, Size: int64(len(mk)), ModTime: mtime})
	tw.Write([]byte(mk))
	tw.Close()
	gz.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestResolveSourceTarballExtractsOnce(t *testing.T) {
	testutil.NeedBaseTool(t, "tar", "tar")
	cache := t.TempDir()
	tarball := filepath.Join(t.TempDir(), "linux-source-6.1.tar.gz")
	rel := time.Date(2026, 11, 16, 10, 17, 40, 0, time.UTC)
	fakeTree(t, tarball, rel)
	s1, err := ResolveSource(context.Background(), tarball, cache)
	if err != nil {
		t.Fatal(err)
	}
	if s1.Version != "6.1.192-test" || s1.Epoch != rel.Unix() || filepath.Base(s1.Dir) != "linux-source-6.1" {
		t.Errorf("source %+v", s1)
	}
	// Second resolve reuses the extraction: a marker we drop survives.
	os.WriteFile(filepath.Join(s1.Dir, "marker"), nil, 0o644)
	s2, err := ResolveSource(context.Background(), tarball, cache)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Dir != s1.Dir || s2.Identity != s1.Identity {
		t.Errorf("second resolve differs: %+v vs %+v", s2, s1)
	}
	if _, err := os.Stat(filepath.Join(s2.Dir, "marker")); err != nil {
		t.Error("tarball extracted again")
	}
	// A changed tarball (new mtime) has a new identity.
	os.Chtimes(tarball, time.Now(), time.Now().Add(time.Hour))
	s3, err := ResolveSource(context.Background(), tarball, cache)
	if err != nil {
		t.Fatal(err)
	}
	if s3.Identity == s1.Identity {
		t.Error("identity did not change with the tarball")
	}
	// Directory sources: identity follows file changes.
	d1, err := ResolveSource(context.Background(), s1.Dir, cache)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(s1.Dir, "init.c"), []byte("x"), 0o644)
	d2, _ := ResolveSource(context.Background(), s1.Dir, cache)
	if d1.Identity == d2.Identity {
		t.Error("directory identity ignores a new file")
	}
}

func TestProgressCountsKbuildSteps(t *testing.T) {
	var sink, term bytes.Buffer
	p := newProgress(nil, &term, "kernel x86_64 slave", 4, &sink)
	p.every = 0
	in := "make[1]: Entering directory\n  CC      init/main.o\n  LD      vmlinux\n  AS      arch/x86/boot/head.o\nwarning: foo\n  GEN     Makefile\n    CC  indented-more\n"
	for _, chunk := range []string{in[:20], in[20:50], in[50:]} {
		p.Write([]byte(chunk))
	}
	p.Close()
	if p.Steps() != 4 {
		t.Errorf("steps = %d, want 4", p.Steps())
	}
	if sink.String() != in {
		t.Error("log sink did not get the whole output")
	}
	if !strings.Contains(term.String(), "4 steps in") || !strings.Contains(term.String(), "(") {
		t.Errorf("terminal output %q", term.String())
	}
}

func TestOutputNames(t *testing.T) {
	if n := OutputNames(mustArch(t, "arm64"), Slave); n.Image != "Image_arm64" || n.Config != "config_arm64" || n.Meta != "build_arm64.json" {
		t.Errorf("arm64 slave names %+v", n)
	}
	if n := OutputNames(mustArch(t, "x86_64"), Master); n.Image != "bzImage-master" || n.Config != "config-master" {
		t.Errorf("x86_64 master names %+v", n)
	}
}

func TestLockDirSerializes(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDir(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		u, err := lockDir(dir, discard())
		if err == nil {
			u()
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("second lock taken while the first is held")
	case <-time.After(200 * time.Millisecond):
	}
	unlock()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("second lock not taken after unlock")
	}
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, nil))
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// SOURCE_DATE_EPOCH is baked into the kernel: a different one is a
// different build (not "make skipped"), and it is what make is given.
func TestSourceDateEpochIsInTheKeyAndTheEnvironment(t *testing.T) {
	x := mustArch(t, "x86_64")
	plan := func(epoch int64) *Plan {
		o := NewOptions(t.TempDir(), t.TempDir(), x, Slave)
		o.SourceDateEpoch = epoch
		return &Plan{opts: o, src: &Source{Identity: "id", Dir: "/src", Epoch: 1600000000}, req: &kconfig.Config{}}
	}
	def, a, b := plan(0), plan(1700000000), plan(1700000001)
	if def.computeKey() == a.computeKey() || a.computeKey() == b.computeKey() {
		t.Error("SOURCE_DATE_EPOCH does not change the cache key")
	}
	if plan(0).computeKey() != def.computeKey() {
		t.Error("the key is not stable")
	}
	has := func(p *Plan, want string) bool {
		for _, e := range p.env() {
			if e == want {
				return true
			}
		}
		return false
	}
	if !has(def, "SOURCE_DATE_EPOCH=1600000000") || !has(a, "SOURCE_DATE_EPOCH=1700000000") {
		t.Error("make does not get the build timestamp")
	}
}

// An initramfs built into the kernel is for the EFI slave kernels, by a
// name whose suffix the kernel understands, and its content is in the key.
func TestBuiltinInitramfs(t *testing.T) {
	arm, x := mustArch(t, "arm64"), mustArch(t, "x86_64")
	for _, c := range []struct {
		a    arch.Arch
		role Role
		file string
		want string // name, or the error's words
	}{
		{arm, Slave, "/a/initramfs_arm64.cpio.zst", "diskless-initramfs.cpio.zst"},
		{arm, Slave, "/a/x.cpio", "diskless-initramfs.cpio"},
		{arm, Slave, "/a/x.cpio.lz4", "must be a .cpio"},
		{arm, Slave, "/a/x.tar", "must be a .cpio"},
		{arm, Master, "/a/x.cpio", "not the arm64 master kernel"},
		{x, Slave, "/a/x.cpio", "not the x86_64 slave kernel"},
	} {
		o := NewOptions(t.TempDir(), t.TempDir(), c.a, c.role)
		o.Initramfs = c.file
		got, err := builtinInitramfsName(o)
		if (err == nil && got != c.want) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s %s %s: %q %v, want %q", c.a.Name, c.role, c.file, got, err, c.want)
		}
	}
	plan := func(sum string) *Plan {
		return &Plan{opts: NewOptions(t.TempDir(), t.TempDir(), arm, Slave), src: &Source{Identity: "id", Dir: "/src"}, req: &kconfig.Config{}, initramfs: FileHash{SHA256: sum}}
	}
	if plan("").computeKey() == plan("aa").computeKey() || plan("aa").computeKey() == plan("bb").computeKey() {
		t.Error("the initramfs's content does not change the cache key")
	}
}

// Every program a kernel build runs, the compressor its fragments choose
// included (x86 asks for zstd, which Debian 12 minimal lacks), comes from a
// package the kernel-build stage installs; dpkg -S is the oracle. Without
// ccache (NO_CCACHE=1) nothing asks for the ccache package.
func TestKernelProgramsComeFromKernelBuildPackages(t *testing.T) {
	for _, a := range arch.All() {
		o := testOptions("../..", a, Slave)
		var cfgs []*kconfig.Config
		for _, f := range o.Fragments() {
			c, err := kconfig.ParseFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cfgs = append(cfgs, c)
		}
		req, _ := kconfig.Merge(cfgs...)
		comp := KernelCompressor(req)
		if a.SrcArch == "x86" && comp != "ZSTD" {
			t.Errorf("%s: the fragments choose %q, the README says zstd", a.Name, comp)
		}
		deptest.CheckPrograms(t, "kernel "+a.Name, deps.KernelPrograms(a, comp, true), deps.KernelBuild(a, true, true))
		for _, p := range deps.KernelBuild(a, false, false) {
			if p == "ccache" {
				t.Errorf("%s: NO_CCACHE=1 still needs the ccache package", a.Name)
			}
		}
	}
}

// With the total from a previous full build, the line says done/total and
// how long is left (elapsed / done * remaining).
func TestProgressShowsTotalAndEstimate(t *testing.T) {
	var sink bytes.Buffer
	p := newProgress(nil, nil, "kernel", 100, &sink)
	p.start = time.Now().Add(-50 * time.Second)
	p.Write([]byte(strings.Repeat("  CC      x.o\n", 25)))
	got := p.status()
	if !strings.HasPrefix(got, "25/100 steps (25%), 50s, about 2m30s left") {
		t.Errorf("status %q", got)
	}
	q := newProgress(nil, nil, "kernel", 0, &sink)
	q.Write([]byte("  CC      x.o\n"))
	if got := q.status(); !strings.HasPrefix(got, "1 steps, ") || strings.Contains(got, "left") {
		t.Errorf("without a total: %q", got)
	}
}

// A zboot image whose payload is the gzip of an empty Image (what the
// parallel sub-makes produced) is refused; the real layout with a real
// Image header passes.
func TestCheckZboot(t *testing.T) {
	a, _ := arch.Lookup("riscv64")
	mk := func(img []byte) string {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(img)
		zw.Close()
		hdr := make([]byte, 64)
		copy(hdr, "MZ")
		copy(hdr[4:], "zimg")
		binary.LittleEndian.PutUint32(hdr[8:], 64)
		binary.LittleEndian.PutUint32(hdr[12:], uint32(gz.Len()))
		copy(hdr[24:], "gzip")
		p := filepath.Join(t.TempDir(), "vmlinuz.efi")
		if err := os.WriteFile(p, append(hdr, gz.Bytes()...), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := make([]byte, 4096)
	copy(good[0x38:], "RSC\x05")
	if err := CheckZboot(mk(good), a); err != nil {
		t.Errorf("a good image: %v", err)
	}
	err := CheckZboot(mk(nil), a)
	if err == nil || !strings.Contains(err.Error(), "not a riscv64 kernel Image") {
		t.Errorf("empty payload: %v", err)
	}
	arm, _ := arch.Lookup("arm64")
	if err := CheckZboot(mk(good), arm); err == nil {
		t.Error("a riscv64 Image passed as arm64")
	}
	p := filepath.Join(t.TempDir(), "x")
	os.WriteFile(p, []byte("MZ not zboot at all, just some bytes to fill 64 of them......."), 0o644)
	if err := CheckZboot(p, a); err == nil || !strings.Contains(err.Error(), "zimg") {
		t.Errorf("not zboot: %v", err)
	}
}

// make's environment is built from the options, not inherited: a stray
// KCFLAGS, ARCH, CROSS_COMPILE, CC, KBUILD_* or MAKEFLAGS in the caller's
// environment would change the build without changing the key. PATH, HOME
// and the cache locations come from the options and are not in the key.
func TestMakeEnvironmentIsBuiltNotInherited(t *testing.T) {
	for k, v := range map[string]string{"KCFLAGS": "-O0", "ARCH": "arm", "CROSS_COMPILE": "nonexistent-", "CC": "clang", "LD": "ld.lld",
		"KBUILD_OUTPUT": "/tmp/elsewhere", "KBUILD_BUILD_USER": "admin", "MAKEFLAGS": "-k", "LLVM": "1", "CCACHE_PREFIX": "icecc"} {
		t.Setenv(k, v)
	}
	x := mustArch(t, "x86_64")
	plan := func(o Options) *Plan {
		return &Plan{opts: o, src: &Source{Identity: "id", Dir: "/src", Epoch: 1600000000}, req: &kconfig.Config{}, cc: "gcc", ccVer: "gcc 12", ccache: "/usr/bin/ccache"}
	}
	o := NewOptions(t.TempDir(), t.TempDir(), x, Slave)
	o.Path, o.Home, o.CcacheDir, o.XDGCacheHome = "/opt/cross/bin:/usr/bin", "/home/builder", "/var/cache/ccache", "/home/builder/.xdg"
	o.DistccHosts = "localhost/2 node21/4"
	p := plan(o)
	allowed := map[string]bool{"PATH": true, "HOME": true, "CCACHE_DIR": true, "XDG_CACHE_HOME": true, "LC_ALL": true, "TZ": true, "SOURCE_DATE_EPOCH": true,
		"KBUILD_BUILD_TIMESTAMP": true, "KBUILD_BUILD_USER": true, "KBUILD_BUILD_HOST": true, "KBUILD_BUILD_VERSION": true,
		"DISTCC_HOSTS": true, "DISTCC_LOG": true, "DISTCC_VERBOSE": true, "CCACHE_PREFIX": true, "CCACHE_DEPEND": true}
	got := map[string]string{}
	for _, e := range p.env() {
		k, v, _ := strings.Cut(e, "=")
		if _, dup := got[k]; dup {
			t.Errorf("%s given twice", k)
		}
		got[k] = v
		if !allowed[k] {
			t.Errorf("make gets %s from outside the settings", e)
		}
	}
	for k, want := range map[string]string{"PATH": o.Path, "HOME": o.Home, "CCACHE_DIR": o.CcacheDir, "XDG_CACHE_HOME": o.XDGCacheHome,
		"KBUILD_BUILD_USER": "diskless", "CCACHE_PREFIX": "distcc", "DISTCC_HOSTS": o.DistccHosts, "SOURCE_DATE_EPOCH": "1600000000"} {
		if got[k] != want {
			t.Errorf("%s=%q, want %q", k, got[k], want)
		}
	}
	for _, k := range []string{"KCFLAGS", "ARCH", "CROSS_COMPILE", "CC", "LD", "KBUILD_OUTPUT", "MAKEFLAGS", "LLVM"} {
		if v, ok := got[k]; ok {
			t.Errorf("the process's %s=%s reaches make", k, v)
		}
	}
	// distcc needs ccache to preprocess: no depend mode with it, depend
	// mode without (a cold cache builds faster)
	if v, ok := got["CCACHE_DEPEND"]; ok {
		t.Errorf("with distcc, CCACHE_DEPEND=%s", v)
	}
	local := NewOptions(t.TempDir(), t.TempDir(), x, Slave)
	if env := strings.Join(plan(local).env(), "\n"); !strings.Contains(env, "\nCCACHE_DEPEND=1\n") {
		t.Errorf("ccache without distcc is not in depend mode:\n%s", env)
	}
	// zero options: the default PATH, no HOME or cache variables
	bare := plan(NewOptions(t.TempDir(), t.TempDir(), x, Slave)).env()
	if bare[0] != "PATH="+DefaultPath {
		t.Errorf("default PATH: %s", bare[0])
	}
	for _, e := range bare {
		if k, _, _ := strings.Cut(e, "="); k == "HOME" || k == "CCACHE_DIR" || k == "XDG_CACHE_HOME" || strings.HasPrefix(k, "DISTCC") {
			t.Errorf("zero options give %s", e)
		}
	}
	// where tools and caches are found is not what is built: same key
	if a, b := plan(NewOptions(t.TempDir(), t.TempDir(), x, Slave)).computeKey(), p.computeKey(); a != b {
		t.Error("PATH, HOME or the cache locations change the cache key")
	}
}

// Tools are looked up in the build's PATH (the one make gets), not this
// process's: the compiler whose version is in the key is the one make runs.
func TestToolsAreFoundInTheBuildPath(t *testing.T) {
	bin := t.TempDir()
	os.WriteFile(filepath.Join(bin, "x86_64-test-gcc"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(bin, "notexec"), []byte(""), 0o644)
	os.Mkdir(filepath.Join(bin, "adir"), 0o755)
	t.Setenv("PATH", "/nonexistent")
	if p, err := lookPath("x86_64-test-gcc", "relative:"+bin); err != nil || p != filepath.Join(bin, "x86_64-test-gcc") {
		t.Errorf("lookPath: %s %v", p, err)
	}
	for _, n := range []string{"notexec", "adir", "sh"} {
		if p, err := lookPath(n, "relative::"+bin); err == nil || !strings.Contains(err.Error(), n+" not found in PATH=relative::"+bin) {
			t.Errorf("%s: %s %v", n, p, err)
		}
	}
	if p, err := lookPath("sh", DefaultPath); err != nil || !strings.HasSuffix(p, "/sh") {
		t.Errorf("sh in the default PATH: %s %v", p, err)
	}
}
