// Package testutil holds helpers shared by the project's tests: tools that
// may be missing locally (skip, naming the Debian package) but must be there
// in CI (fail), and the switch for slow tests.
package testutil

import (
	"os"
	"os/exec"
	"testing"

	"github.com/diskless/diskless/internal/flagval"
)

// InCI reports whether the tests run under CI (CI set to anything but empty,
// 0 or false), where every tool is
// installed and nothing may skip.
func InCI() bool { return flagval.CI(os.Getenv("CI")) }

// NeedTool skips the test when cmd is not on PATH, naming the Debian package
// that provides it; under CI it fails instead.
func NeedTool(t testing.TB, cmd, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(cmd)
	if err != nil {
		if InCI() {
			t.Fatalf("%s not found: CI must install the Debian package %s", cmd, pkg)
		}
		t.Skipf("%s not found: install the Debian package %s", cmd, pkg)
	}
	return p
}

// NeedFile is NeedTool for a file a package installs (firmware, loaders).
func NeedFile(t testing.TB, path, pkg string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if InCI() {
			t.Fatalf("%s not found: CI must install the Debian package %s", path, pkg)
		}
		t.Skipf("%s not found: install the Debian package %s", path, pkg)
	}
	return path
}

// Slow skips a test that builds a kernel or boots QEMU when -short is given.
func Slow(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow test (kernel build or QEMU boot); run without -short")
	}
}

// SkipOrFail skips with the reason locally and fails under CI, where
// everything a test needs is installed.
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatal(reason)
	}
	t.Skip(reason)
}

// LogDir is a directory for console logs that outlives a failed test (its
// path is in the failure message) and is removed when the test passes.
func LogDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "diskless-logs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("console logs kept in %s", dir)
		}
	})
	return dir
}
