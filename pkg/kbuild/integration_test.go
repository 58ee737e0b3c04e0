package kbuild

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/kconfig"
	"github.com/diskless/diskless/pkg/secureboot"
	"github.com/u-root/mkuimage/cpio"
)

// These tests build real kernels with the kernel's own make (into the shared
// cache, so re-runs are fast); booting them is the smoke suite's proof.
// Skipped with -short.

func needKernelTools(t *testing.T, a arch.Arch) {
	t.Helper()
	testutil.Slow(t)
	for _, tool := range [][2]string{{"make", "make"}, {"flex", "flex"}, {"bison", "bison"}, {"bc", "bc"}} {
		testutil.NeedTool(t, tool[0], tool[1])
	}
	cc, pkg := a.Compiler()
	testutil.NeedTool(t, cc, pkg)
	if os.Getenv("KERNEL_SRC") == "" {
		needDefaultSource(t)
	}
}

func realOptions(t *testing.T, a arch.Arch, role Role, configOnly bool) Options {
	t.Helper()
	o := testOptions("../..", a, role)
	o.ConfigOnly = configOnly
	o.OutDir = t.TempDir()
	o.Log = testLogger(t)
	return o
}

func buildSlave(t *testing.T, name string) (*Result, Options) {
	t.Helper()
	a := mustArch(t, name)
	needKernelTools(t, a)
	o := realOptions(t, a, Slave, false)
	res, err := Build(context.Background(), o)
	if err != nil {
		t.Fatalf("build:slave %s: %v", name, err)
	}
	return res, o
}

func checkArtifacts(t *testing.T, res *Result, o Options) {
	t.Helper()
	names := OutputNames(o.Arch, o.Role)
	for _, n := range []string{names.Image, names.Config, names.Meta, names.EFI} {
		if n == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(o.OutDir, n)); err != nil {
			t.Errorf("artifact missing: %v", err)
		}
	}
	m, err := ReadMeta(o.OutDir, o.Arch, o.Role)
	if err != nil {
		t.Fatal(err)
	}
	wantArtifacts := 2
	if names.EFI != "" {
		wantArtifacts = 3
	}
	if m.Key != res.Key || m.KernelVersion == "" || len(m.Fragments) < 2 || m.CompilerVer == "" || len(m.Artifacts) != wantArtifacts {
		t.Errorf("build metadata incomplete: %+v", m)
	}
	for _, art := range m.Artifacts {
		if !fileMatches(filepath.Join(o.OutDir, art.Name), art) {
			t.Errorf("%s does not match its recorded size/sha256", art.Name)
		}
	}
	// The published config is the verified one: every requested value holds.
	final, err := kconfig.ParseFile(filepath.Join(o.OutDir, names.Config))
	if err != nil {
		t.Fatal(err)
	}
	var frags []*kconfig.Config
	for _, f := range o.Fragments() {
		c, _ := kconfig.ParseFile(f)
		frags = append(frags, c)
	}
	req, _ := kconfig.Merge(frags...)
	if ms := kconfig.Verify(final, req); len(ms) != 0 {
		t.Errorf("final config misses requested values: %v", ms)
	}
	if err := kconfig.SlaveFinal(final, req); err != nil {
		t.Error(err)
	}
}

func TestIntegrationSlaveX86_64(t *testing.T) {
	res, o := buildSlave(t, "x86_64")
	checkArtifacts(t, res, o)
	img := filepath.Join(o.OutDir, o.Arch.ArtifactName())
	t.Logf("bzImage_x86_64: %d bytes, build %.1fs (make skipped: %v)", res.Artifacts[0].Size, res.Duration, res.MakeSkipped)

	// Nothing changed: make does not run.
	again, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !again.MakeSkipped || again.Key != res.Key {
		t.Errorf("unchanged rebuild ran make (skipped=%v)", again.MakeSkipped)
	}
	// A lost artifact is restored from the build tree without make.
	os.Remove(img)
	restored, err := Build(context.Background(), o)
	if err != nil || !restored.MakeSkipped {
		t.Fatalf("restore after deleting the artifact: skipped=%v err=%v", restored != nil && restored.MakeSkipped, err)
	}
	if _, err := os.Stat(img); err != nil {
		t.Fatal("artifact not restored")
	}

	// One changed fragment line rebuilds.
	t.Run("changed-line-rebuilds", func(t *testing.T) {
		extra := filepath.Join(t.TempDir(), "hostname.config")
		os.WriteFile(extra, []byte(fmt.Sprintf("CONFIG_DEFAULT_HOSTNAME=%q\n", "diskless-test")), 0o644)
		o2 := o
		o2.Extra = []string{extra}
		o2.OutDir = t.TempDir()
		r2, err := Build(context.Background(), o2)
		if err != nil {
			t.Fatal(err)
		}
		if r2.MakeSkipped || r2.Key == res.Key {
			t.Errorf("changed fragment did not rebuild (skipped=%v)", r2.MakeSkipped)
		}
		cfg, _ := os.ReadFile(filepath.Join(o2.OutDir, "config_x86_64"))
		if !strings.Contains(string(cfg), `CONFIG_DEFAULT_HOSTNAME="diskless-test"`) {
			t.Error("rebuilt config lacks the changed line")
		}
	})
}

// arm64's EFI kernel carries an initramfs built in (the fallback one, in
// the pipeline; here a small archive of the test's own).
func TestIntegrationSlaveArm64(t *testing.T) {
	a := mustArch(t, "arm64")
	needKernelTools(t, a)
	o := realOptions(t, a, Slave, false)
	o.Initramfs = filepath.Join(t.TempDir(), "test.cpio.gz")
	writeCpio(t, o.Initramfs, "init", "#!/bin/sh\n")
	res, err := Build(context.Background(), o)
	if err != nil {
		t.Fatalf("build:slave arm64: %v", err)
	}
	checkArtifacts(t, res, o)
	cfg, _ := os.ReadFile(filepath.Join(o.OutDir, "config_arm64"))
	for _, want := range []string{`CONFIG_CMDLINE="ip=dhcp root=/dev/nfs nfsroot=`, `CONFIG_INITRAMFS_SOURCE="diskless-initramfs.cpio.gz"`} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("config_arm64 lacks %s", want)
		}
	}
	if res.Initramfs == nil || res.Initramfs.Path != o.Initramfs {
		t.Errorf("the build's record names no initramfs: %+v", res.Initramfs)
	}
	// the archive is inside the kernel image, byte for byte (a compressed
	// one is copied, not compressed again); another archive makes another
	// kernel (its object is assembled without ccache, which would hand
	// back the first: the .incbin'd file is no dependency it sees)
	for i, content := range []string{"#!/bin/sh\n", "#!/bin/sh\necho another\n"} {
		if i > 0 {
			writeCpio(t, o.Initramfs, "init", content)
			if res, err = Build(context.Background(), o); err != nil {
				t.Fatal(err)
			}
		}
		img, _ := os.ReadFile(filepath.Join(o.OutDir, "Image_arm64"))
		want, _ := os.ReadFile(o.Initramfs)
		if !bytes.Contains(img, want) {
			t.Errorf("Image_arm64 does not contain initramfs %d", i+1)
		}
	}
	// Secure Boot: the payload is signed before it is compressed (the
	// zboot decompressor hands it to the firmware's LoadImage); the
	// certificate is in the key; a build without signing makes the Image
	// again, unsigned
	t.Run("signed-payload", func(t *testing.T) {
		testutil.NeedTool(t, secureboot.SignProgram, secureboot.Package)
		dir := t.TempDir()
		keyPath, crt, _, err := secureboot.WriteKeyPair(dir, "db", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		k, err := secureboot.Load(keyPath, crt, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		unsignedKey := res.Key
		so := o
		so.SignPayload = func(ctx context.Context, path string) (string, error) { return k.Signed(ctx, path, dir) }
		so.SignPayloadCert = k.Fingerprint()
		sres, err := Build(context.Background(), so)
		if err != nil {
			t.Fatal(err)
		}
		if sres.Key == unsignedKey || sres.MakeSkipped {
			t.Errorf("signing the payload kept the key %s (make skipped: %v)", sres.Key[:12], sres.MakeSkipped)
		}
		img := filepath.Join(o.OutDir, "Image_arm64")
		if err := secureboot.Verify(context.Background(), crt, img); err != nil {
			t.Errorf("Image_arm64: %v", err)
		}
		payload, err := ZbootPayload(filepath.Join(o.OutDir, "vmlinuz_arm64"))
		if want, _ := os.ReadFile(img); err != nil || !bytes.Equal(payload, want) {
			t.Errorf("vmlinuz_arm64's payload is not the signed Image_arm64 (%d bytes, %v)", len(payload), err)
		}
		if _, err := Build(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		if err := secureboot.Verify(context.Background(), crt, img); err == nil {
			t.Error("built without signing, Image_arm64 is still signed")
		}
	})
	// booting it is the smoke suite's and the lab's proof
}

func writeCpio(t *testing.T, path, name, content string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z := gzip.NewWriter(f)
	w := cpio.Newc.Writer(z)
	if err := cpio.WriteRecordsAndDirs(w, []cpio.Record{cpio.StaticFile(name, content, 0o755)}); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
}

// i386, riscv64 and the master are checked up to the verified config in the
// test suite (a full master build takes ~17 minutes here).
func TestIntegrationConfigOnly(t *testing.T) {
	for _, c := range []struct {
		arch string
		role Role
	}{{"i386", Slave}, {"riscv64", Slave}, {"x86_64", Master}, {"arm64", Master}} {
		t.Run(c.arch+"-"+string(c.role), func(t *testing.T) {
			a := mustArch(t, c.arch)
			needKernelTools(t, a)
			o := realOptions(t, a, c.role, true)
			res, err := Build(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			names := OutputNames(a, c.role)
			if _, err := os.Stat(filepath.Join(o.OutDir, names.Image)); err == nil {
				t.Error("CONFIG_ONLY produced a kernel image")
			}
			data, err := os.ReadFile(filepath.Join(o.OutDir, names.Meta))
			if err != nil {
				t.Fatal(err)
			}
			var m Meta
			if json.Unmarshal(data, &m) != nil || !m.ConfigOnly || m.Key != res.Key {
				t.Errorf("metadata %s", data)
			}
		})
	}
}

// The real Kconfig drops NFS options when FILE_LOCKING is off; the build
// stops before compiling and names each dropped value with its fragment
// line. A separate cache dir keeps the shared build trees untouched.
func TestIntegrationDroppedValueReported(t *testing.T) {
	a := mustArch(t, "x86_64")
	needKernelTools(t, a)
	src, err := ResolveSource(context.Background(), os.Getenv("KERNEL_SRC"), testCacheDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := project(t)
	os.WriteFile(filepath.Join(dir, "nolock.config"), []byte("# CONFIG_FILE_LOCKING is not set\n"), 0o644)
	o := testOptions(dir, a, Slave, "nolock.config")
	o.KernelSrc, o.CacheDir, o.Log = src.Dir, t.TempDir(), testLogger(t)
	_, err = Build(context.Background(), o)
	var ve *kconfig.VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("want a VerifyError, got %v", err)
	}
	msg := err.Error()
	for _, s := range []string{"kernels/slave.config:", "CONFIG_NFS_FS: asked for y, final .config has not set", "CONFIG_ROOT_NFS: asked for y"} {
		if !strings.Contains(msg, s) {
			t.Errorf("error lacks %q:\n%s", s, msg)
		}
	}
	if _, err := os.Stat(filepath.Join(o.OutDir, "bzImage_x86_64")); err == nil {
		t.Error("an image was produced despite the failed verification")
	}
	if _, err := os.Stat(filepath.Join(o.CacheDir, "build", "x86_64-slave", "diskless-make.log")); err == nil {
		t.Error("make ran a compile after a failed verification")
	}
}

// The shell's environment does not reach the kernel's make. With KCFLAGS,
// ARCH and CROSS_COMPILE set in this process (each would break or change
// an x86_64 build that inherited them), an up-to-date slave stays a no-op,
// and make run again in the warm tree (the stamp the no-op check reads
// removed, nothing in the key changed) gives bit-identical artifacts.
func TestIntegrationShellEnvironmentDoesNotReachMake(t *testing.T) {
	base, o := buildSlave(t, "x86_64")
	t.Logf("baseline: key %s, make skipped: %v", base.Key[:12], base.MakeSkipped)
	t.Setenv("KCFLAGS", "-O0")
	t.Setenv("ARCH", "arm")
	t.Setenv("CROSS_COMPILE", "nonexistent-")
	ctx := context.Background()
	start := time.Now()
	again, err := Build(ctx, o)
	if err != nil {
		t.Fatalf("no-op build with KCFLAGS, ARCH, CROSS_COMPILE set: %v", err)
	}
	if !again.MakeSkipped || again.Key != base.Key {
		t.Fatalf("the stray variables changed the build: make skipped %v, key %s (was %s)", again.MakeSkipped, again.Key[:12], base.Key[:12])
	}
	t.Logf("no-op with the stray variables: %s", time.Since(start).Round(time.Millisecond))

	// make's config steps run too, with the stray variables
	for _, f := range []string{stampName, configStamp} {
		if err := os.Remove(filepath.Join(again.BuildDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	o.OutDir = t.TempDir()
	start = time.Now()
	rerun, err := Build(ctx, o)
	if err != nil {
		t.Fatalf("make in the warm tree with KCFLAGS, ARCH, CROSS_COMPILE set: %v", err)
	}
	if rerun.MakeSkipped || rerun.Key != base.Key {
		t.Fatalf("make did not run, or the key changed: skipped %v, key %s (was %s)", rerun.MakeSkipped, rerun.Key[:12], base.Key[:12])
	}
	t.Logf("make in the warm tree: %s, %d compile steps", time.Since(start).Round(time.Second), rerun.CompileSteps)
	if len(rerun.Artifacts) != len(base.Artifacts) {
		t.Fatalf("artifacts %v, before %v", rerun.Artifacts, base.Artifacts)
	}
	for i, a := range base.Artifacts {
		if rerun.Artifacts[i] != a {
			t.Errorf("%s differs after make ran with the stray variables: %+v, before %+v", a.Name, rerun.Artifacts[i], a)
		}
		if !fileMatches(filepath.Join(o.OutDir, a.Name), a) {
			t.Errorf("installed %s is not the one before", a.Name)
		}
	}
}

// needDefaultSource checks Debian's kernel source is installed (skipped
// locally, failed in CI).
func needDefaultSource(t *testing.T) {
	t.Helper()
	if _, err := FindDefaultSource(DefaultSourceGlob); err != nil {
		testutil.SkipOrFail(t, "no kernel source: install the Debian package linux-source-6.1 ("+err.Error()+")")
	}
}

// make's config steps run once per set of config inputs: a build that
// changes only what make's targets see (here: the build record removed,
// as a new initramfs or a new target would) verifies the tree's .config
// and leaves it untouched; a .config edited by hand, or a new fragment,
// runs them again.
func TestIntegrationConfigStepsOncePerInputs(t *testing.T) {
	a := mustArch(t, "x86_64")
	needKernelTools(t, a)
	ctx := context.Background()
	o := realOptions(t, a, Master, true)
	build := func(o Options) (*Result, string) {
		t.Helper()
		p, err := Prepare(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(p.BuildDir(), stampName)) // make would have work
		res, err := p.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return res, filepath.Join(p.BuildDir(), ".config")
	}
	p, err := Prepare(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(p.BuildDir(), configStamp))
	first, cfg := build(o)
	if first.ConfigReused {
		t.Fatal("the first build after the config stamp was removed reused the .config")
	}
	st1, err := os.Stat(cfg)
	if err != nil {
		t.Fatal(err)
	}

	again, _ := build(o)
	st2, _ := os.Stat(cfg)
	if !again.ConfigReused || !st2.ModTime().Equal(st1.ModTime()) {
		t.Errorf("same config inputs: reused %v, .config rewritten %v", again.ConfigReused, !st2.ModTime().Equal(st1.ModTime()))
	}
	if again.Key != first.Key {
		t.Errorf("key changed: %s, was %s", again.Key[:12], first.Key[:12])
	}

	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "CONFIG_DISKLESS_EDITED_BY_HAND=y")
	f.Close()
	edited, _ := build(o)
	data, _ := os.ReadFile(cfg)
	if edited.ConfigReused || bytes.Contains(data, []byte("EDITED_BY_HAND")) {
		t.Errorf("a .config edited by hand was kept: reused %v", edited.ConfigReused)
	}

	extra := filepath.Join(t.TempDir(), "extra.config")
	if err := os.WriteFile(extra, []byte("CONFIG_LOCALVERSION=\"-configsteps\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o2 := o
	o2.Extra = append(append([]string(nil), o.Extra...), extra)
	o2.OutDir = t.TempDir()
	changed, _ := build(o2)
	data, _ = os.ReadFile(cfg)
	if changed.ConfigReused || !bytes.Contains(data, []byte(`CONFIG_LOCALVERSION="-configsteps"`)) {
		t.Errorf("a new fragment did not run the config steps: reused %v", changed.ConfigReused)
	}
	back, _ := build(o)
	if back.ConfigReused {
		t.Error("the .config of other inputs was reused")
	}
}
