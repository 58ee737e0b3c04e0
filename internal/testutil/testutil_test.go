package testutil

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// fake records what a helper did to its test: a skip or a failure ends
// the helper (as SkipNow and FailNow do) through a panic run recovers.
type fake struct {
	testing.TB
	skipped, failed string
}

type stopped struct{}

func (f *fake) Helper() {}
func (f *fake) Skip(args ...any) {
	f.skipped = fmt.Sprint(args...)
	panic(stopped{})
}
func (f *fake) Skipf(format string, args ...any) {
	f.skipped = fmt.Sprintf(format, args...)
	panic(stopped{})
}
func (f *fake) Fatal(args ...any) {
	f.failed = fmt.Sprint(args...)
	panic(stopped{})
}
func (f *fake) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	panic(stopped{})
}

// run calls fn with a fake test and returns what happened to it.
func run(fn func(t testing.TB)) (f *fake) {
	f = &fake{}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stopped); !ok {
				panic(r)
			}
		}
	}()
	fn(f)
	return f
}

// lookups counts the look-ups of programs and files, to show -short skips
// before any.
type lookups struct{ n int }

func (l *lookups) env(short, ci, found bool) env {
	return env{short: short, ci: ci,
		lookPath: func(cmd string) (string, error) {
			l.n++
			if found {
				return "/usr/bin/" + cmd, nil
			}
			return "", errors.New("not found")
		},
		stat: func(path string) (os.FileInfo, error) {
			l.n++
			if found {
				return os.Stat(".")
			}
			return nil, os.ErrNotExist
		},
	}
}

func TestNeedToolAndNeedFile(t *testing.T) {
	type helper func(e env, t testing.TB) string
	tool := func(e env, t testing.TB) string { return e.needTool(t, "cpio", "cpio") }
	file := func(e env, t testing.TB) string { return e.needFile(t, "/usr/lib/PXELINUX/pxelinux.0", "pxelinux") }
	for name, c := range map[string]struct {
		h                helper
		short, ci, found bool
		skip, fail, path string
		lookedUp         bool
	}{
		// -short: an integration test, whatever is installed, under CI too
		"tool -short":     {h: tool, short: true, found: true, skip: "needs cpio (Debian package cpio): an integration test, not run with -short"},
		"tool -short CI":  {h: tool, short: true, ci: true, skip: "needs cpio (Debian package cpio): an integration test, not run with -short"},
		"tool found":      {h: tool, found: true, path: "/usr/bin/cpio", lookedUp: true},
		"tool missing":    {h: tool, skip: "cpio not found: install the Debian package cpio", lookedUp: true},
		"tool missing CI": {h: tool, ci: true, fail: "cpio not found: CI must install the Debian package cpio", lookedUp: true},
		"file -short CI":  {h: file, short: true, ci: true, skip: "needs /usr/lib/PXELINUX/pxelinux.0 (Debian package pxelinux): an integration test, not run with -short"},
		"file found":      {h: file, found: true, path: "/usr/lib/PXELINUX/pxelinux.0", lookedUp: true},
		"file missing":    {h: file, skip: "/usr/lib/PXELINUX/pxelinux.0 not found: install the Debian package pxelinux", lookedUp: true},
		"file missing CI": {h: file, ci: true, fail: "/usr/lib/PXELINUX/pxelinux.0 not found: CI must install the Debian package pxelinux", lookedUp: true},
	} {
		var l lookups
		var path string
		f := run(func(t testing.TB) { path = c.h(l.env(c.short, c.ci, c.found), t) })
		if f.skipped != c.skip || f.failed != c.fail || path != c.path {
			t.Errorf("%s: skipped %q, failed %q, path %q; want %q, %q, %q", name, f.skipped, f.failed, path, c.skip, c.fail, c.path)
		}
		if (l.n > 0) != c.lookedUp {
			t.Errorf("%s: %d look-ups", name, l.n)
		}
	}
}

// A base tool (Go, gcc, Debian's Essential packages) is a unit-suite
// tool: -short does not skip it.
func TestNeedBaseTool(t *testing.T) {
	var l lookups
	var path string
	f := run(func(t testing.TB) { path = l.env(true, false, true).needBaseTool(t, "sha256sum", "coreutils") })
	if f.skipped != "" || f.failed != "" || path != "/usr/bin/sha256sum" {
		t.Errorf("found with -short: skipped %q, failed %q, path %q", f.skipped, f.failed, path)
	}
	f = run(func(t testing.TB) { l.env(true, false, false).needBaseTool(t, "dpkg-query", "dpkg") })
	if f.skipped != "dpkg-query not found: install the Debian package dpkg" {
		t.Errorf("missing locally: skipped %q, failed %q", f.skipped, f.failed)
	}
	f = run(func(t testing.TB) { l.env(true, true, false).needBaseTool(t, "dpkg-query", "dpkg") })
	if f.failed != "dpkg-query not found: CI must install the Debian package dpkg" {
		t.Errorf("missing under CI: skipped %q, failed %q", f.skipped, f.failed)
	}
}

func TestIntegrationAndSkipOrFail(t *testing.T) {
	for _, c := range []struct {
		short, ci  bool
		skip, fail string
	}{
		{short: true, skip: "needs the network: an integration test, not run with -short"},
		{short: true, ci: true, skip: "needs the network: an integration test, not run with -short"},
		{},
		{ci: true},
	} {
		f := run(func(t testing.TB) { env{short: c.short, ci: c.ci}.integration(t, "the network") })
		if f.skipped != c.skip || f.failed != c.fail {
			t.Errorf("Integration short=%v ci=%v: skipped %q, failed %q", c.short, c.ci, f.skipped, f.failed)
		}
	}
	if f := run(func(t testing.TB) { env{}.skipOrFail(t, "needs root") }); f.skipped != "needs root" || f.failed != "" {
		t.Errorf("SkipOrFail locally: skipped %q, failed %q", f.skipped, f.failed)
	}
	if f := run(func(t testing.TB) { env{ci: true}.skipOrFail(t, "needs root") }); f.failed != "needs root" || f.skipped != "" {
		t.Errorf("SkipOrFail under CI: skipped %q, failed %q", f.skipped, f.failed)
	}
}

// The exported helpers read the real -short and CI: this run's.
func TestRealEnv(t *testing.T) {
	e := realEnv()
	if e.short != testing.Short() || e.ci != InCI() {
		t.Errorf("env %+v, -short %v, CI %v", e, testing.Short(), InCI())
	}
	if testing.Short() {
		// no look-up at all: a tool no machine has is skipped, even in CI
		f := run(func(t testing.TB) { NeedTool(t, "no-such-tool-diskless", "no-such-package") })
		if !strings.Contains(f.skipped, "an integration test, not run with -short") || f.failed != "" {
			t.Errorf("NeedTool with -short: skipped %q, failed %q", f.skipped, f.failed)
		}
	}
	dir := LogDir(t)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Errorf("LogDir %s: %v", dir, err)
	}
}
