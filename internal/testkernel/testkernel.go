// Package testkernel gives integration tests the project's slave kernel
// for an arch: built by pkg/kbuild into the shared cache (so it is a no-op
// when up to date) and installed in a test's temp dir. Tests of packages
// below pkg/pipeline use it; they cannot import the pipeline itself.
package testkernel

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/kbuild"
	"github.com/diskless/diskless/pkg/pxe"
)

// Quiet is a logger for tests: warnings and errors only.
func Quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// Lookup is the environment the tests load their settings from (with
// pkg/settings, where the package allows): the defaults, except the kernel
// source, the cache location (shared with builds outside the tests), CI and
// QEMU_ACCEL; no node inventory.
func Lookup(k string) (string, bool) {
	switch k {
	case "KERNEL_SRC", "XDG_CACHE_HOME", "HOME", "CI", "QEMU_ACCEL":
		return os.LookupEnv(k)
	case "NODES_FILE":
		return "/nonexistent/diskless-tests/nodes.toml", true
	}
	return "", false
}

// CacheDir is the project cache the tests build in, as Lookup gives it.
func CacheDir() string {
	xdg, _ := Lookup("XDG_CACHE_HOME")
	home, _ := Lookup("HOME")
	return kbuild.CacheDir(xdg, home)
}

// SlaveOptions are the kbuild options of the slave kernel for a with the
// default node settings, as pkg/settings makes them from Lookup (packages
// below pkg/settings cannot import it in their tests).
func SlaveOptions(projectDir string, a arch.Arch) kbuild.Options {
	o := kbuild.NewOptions(projectDir, CacheDir(), a, kbuild.Slave)
	o.KernelSrc, _ = Lookup("KERNEL_SRC")
	st := pxe.Settings{}.WithDefaults()
	o.Cmdline = st.Cmdline(a)
	o.Checks = append(o.Checks, st.CheckKernel)
	return o
}

// NeedTools returns the arch for name after checking (skip locally, fail
// in CI) that a slow test can build its kernel and boot it: make, the
// arch's compiler, its QEMU.
func NeedTools(t testing.TB, name string) arch.Arch {
	t.Helper()
	testutil.Slow(t)
	a, err := arch.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	cc, pkg := a.Compiler()
	testutil.NeedTool(t, "make", "make")
	testutil.NeedTool(t, cc, pkg)
	testutil.NeedTool(t, a.QEMU, a.QEMUPackage)
	return a
}

// Slave returns the arch, the directory holding its slave kernel artifacts,
// and the kernel image's path. It skips (or fails in CI) when the tools are
// missing, and also needs the arch's QEMU. projectDir is the repository root
// relative to the test.
func Slave(t testing.TB, name, projectDir string) (arch.Arch, string, string) {
	t.Helper()
	a := NeedTools(t, name)
	o := SlaveOptions(projectDir, a)
	o.OutDir, o.Log = t.TempDir(), Quiet()
	if _, err := kbuild.Build(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return a, o.OutDir, filepath.Join(o.OutDir, a.ArtifactName())
}
