// Package testenv gives the integration tests their settings the way the
// magefile gets its own: pkg/settings.Load over the tests' environment,
// so a test that needs a kernel builds it with settings.Kernel (cached:
// a no-op when up to date) like build:slave does, and nothing is derived
// twice. Tests of packages that pkg/settings itself imports use it from
// an external test package (package x_test).
package testenv

import (
	"log/slog"
	"os"
	"testing"

	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/settings"
)

// ProjectDir is the repository root, from a test's package directory
// (pkg/<name>, internal/<name>, ci).
const ProjectDir = "../.."

// Quiet is a logger for tests: warnings and errors only.
func Quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// Lookup is the environment the tests load their settings from: the
// defaults, except what says where things are on this machine (the
// kernel source, the cache shared with builds outside the tests, PATH,
// HOME, ccache's directory), CI and QEMU_ACCEL; no node inventory.
func Lookup(k string) (string, bool) {
	switch k {
	case "KERNEL_SRC", "XDG_CACHE_HOME", "HOME", "PATH", "CCACHE_DIR", "CI", "QEMU_ACCEL":
		return os.LookupEnv(k)
	case "NODES_FILE":
		return "/nonexistent/diskless-tests/nodes.toml", true
	}
	return "", false
}

// Settings loads the tests' settings, with env on top of Lookup, and an
// artifacts directory of the test's own.
func Settings(t testing.TB, env map[string]string) *settings.Settings {
	t.Helper()
	s, err := settings.Load(func(k string) (string, bool) {
		if v, ok := env[k]; ok {
			return v, true
		}
		return Lookup(k)
	}, ProjectDir)
	if err != nil {
		t.Fatal(err)
	}
	s.Artifacts = t.TempDir()
	return s
}

// Arch returns the arch for name after checking (skip locally, fail in
// CI) that a slow test can build its kernel and boot it: make, the arch's
// compiler, its QEMU. Under -short it skips.
func Arch(t testing.TB, name string) arch.Arch {
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
