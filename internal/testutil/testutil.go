// Package testutil holds helpers shared by the project's tests: the line
// between the unit suite and the integration stage, and tools that may be
// missing locally (skip, naming the Debian package) but must be there in CI
// (fail).
//
// The rule: `go test -short ./...` is the unit suite and needs no program
// beyond the Go toolchain, gcc and what every Debian system has (the
// Essential and required packages: coreutils, tar, gzip, dpkg, ...). A test
// that needs anything else (another program, a file from a Debian package,
// root-only daemons, QEMU, the network) is an integration test: NeedTool,
// NeedFile, Integration and Slow skip it under -short, before looking
// anything up. The integration stage runs everything (no -short), where a
// missing tool skips locally and fails under CI.
package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/diskless/diskless/internal/flagval"
)

// InCI reports whether the tests run under CI (CI set to anything but empty,
// 0 or false), where every tool is
// installed and nothing may skip.
func InCI() bool { return flagval.CI(os.Getenv("CI")) }

// env is what the helpers decide on: -short, CI, and how a program or a
// file is found. The exported helpers use the real ones; the package's
// tests pass their own.
type env struct {
	short, ci bool
	lookPath  func(string) (string, error)
	stat      func(string) (os.FileInfo, error)
}

func realEnv() env {
	return env{short: testing.Short(), ci: InCI(), lookPath: exec.LookPath, stat: os.Stat}
}

// NeedTool marks the test as an integration test that runs cmd: skipped
// with -short (before cmd is looked up), and otherwise skipped when cmd is
// not on PATH, naming the Debian package that provides it; under CI a
// missing cmd fails instead. It returns cmd's path.
//
// Programs the unit suite may assume (the Go toolchain, gcc, Debian's
// Essential packages) go through NeedBaseTool instead.
func NeedTool(t testing.TB, cmd, pkg string) string {
	t.Helper()
	return realEnv().needTool(t, cmd, pkg)
}

func (e env) needTool(t testing.TB, cmd, pkg string) string {
	t.Helper()
	if e.short {
		t.Skip(shortMessage(cmd, pkg))
	}
	return e.needBaseTool(t, cmd, pkg)
}

// shortMessage is why a test that needs what (a program or a file) from
// the Debian package pkg does not run with -short.
func shortMessage(what, pkg string) string {
	return fmt.Sprintf("needs %s (Debian package %s): an integration test, not run with -short", what, pkg)
}

// NeedBaseTool is NeedTool for a program the unit suite may assume: the Go
// toolchain, gcc, and the programs of Debian's Essential and required
// packages (coreutils' sha256sum, dpkg-query, tar). It does not skip with
// -short; a missing cmd (not a Debian machine) skips locally and fails
// under CI, naming the package.
func NeedBaseTool(t testing.TB, cmd, pkg string) string {
	t.Helper()
	return realEnv().needBaseTool(t, cmd, pkg)
}

func (e env) needBaseTool(t testing.TB, cmd, pkg string) string {
	t.Helper()
	p, err := e.lookPath(cmd)
	if err != nil {
		if e.ci {
			t.Fatalf("%s not found: CI must install the Debian package %s", cmd, pkg)
		}
		t.Skipf("%s not found: install the Debian package %s", cmd, pkg)
	}
	return p
}

// NeedFile is NeedTool for a file a package installs (firmware, loaders).
func NeedFile(t testing.TB, path, pkg string) string {
	t.Helper()
	return realEnv().needFile(t, path, pkg)
}

func (e env) needFile(t testing.TB, path, pkg string) string {
	t.Helper()
	if e.short {
		t.Skip(shortMessage(path, pkg))
	}
	if _, err := e.stat(path); err != nil {
		if e.ci {
			t.Fatalf("%s not found: CI must install the Debian package %s", path, pkg)
		}
		t.Skipf("%s not found: install the Debian package %s", path, pkg)
	}
	return path
}

// Integration marks the test as an integration test for a reason no
// single tool names (what it needs: "the network", "several Debian
// packages' programs"): skipped with -short.
func Integration(t testing.TB, needs string) {
	t.Helper()
	realEnv().integration(t, needs)
}

func (e env) integration(t testing.TB, needs string) {
	t.Helper()
	if e.short {
		t.Skipf("needs %s: an integration test, not run with -short", needs)
	}
}

// Slow skips a test that builds a kernel or boots QEMU when -short is given.
func Slow(t testing.TB) {
	t.Helper()
	realEnv().integration(t, "a kernel build or a QEMU boot")
}

// SkipOrFail skips with the reason locally and fails under CI, where
// everything a test needs is installed.
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	realEnv().skipOrFail(t, reason)
}

func (e env) skipOrFail(t testing.TB, reason string) {
	t.Helper()
	if e.ci {
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
