package initramfs

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
)

// coldGoCaches points the go command at new, empty module and build caches
// for the rest of the test (the proxy stays as configured), as on a fresh
// machine, and removes them afterwards (the module cache is read-only).
func coldGoCaches(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	mod, build := filepath.Join(dir, "mod"), filepath.Join(dir, "build")
	t.Setenv("GOMODCACHE", mod)
	t.Setenv("GOCACHE", build)
	t.Cleanup(func() {
		c := exec.Command("go", "clean", "-modcache")
		c.Env = append(os.Environ(), "GOMODCACHE="+mod, "GOCACHE="+build)
		if out, err := c.CombinedOutput(); err != nil {
			t.Logf("go clean -modcache: %v\n%s", err, out)
		}
	})
}

// A fresh machine: with empty module and build caches the go command prints
// "go: downloading ..." progress on stderr while it answers. The command
// check and the whole initramfs build must pass the first time, and leave
// go.mod and go.sum as they were.
func TestIntegrationColdModuleCache(t *testing.T) {
	testutil.Integration(t, "the network (empty Go caches: every module is downloaded, then the whole initramfs built)")
	testutil.NeedBaseTool(t, "go", "golang-go")
	coldGoCaches(t)
	before := readModFiles(t)
	cmds, err := ReadCommands("../../initramfs/commands.txt", "github.com/diskless/diskless")
	if err != nil {
		t.Fatal(err)
	}
	if err := checkPackages(context.Background(), "../..", cmds); err != nil {
		t.Fatalf("command check with a cold module cache: %v", err)
	}
	if entries, _ := os.ReadDir(os.Getenv("GOMODCACHE")); len(entries) == 0 {
		t.Fatal("the module cache is still empty: the check did not run against a cold cache")
	}
	a, _ := arch.Lookup("x86_64")
	out := t.TempDir()
	res, err := Build(context.Background(), Options{Arch: a, ProjectDir: "../..", OutDir: out, CacheDir: t.TempDir(), Log: quietLog()})
	if err != nil {
		t.Fatalf("initramfs build with cold Go caches: %v", err)
	}
	if res.Skipped || res.Files < 10 {
		t.Errorf("build result: skipped=%v files=%d", res.Skipped, res.Files)
	}
	if after := readModFiles(t); !bytes.Equal(before, after) {
		t.Error("go.mod/go.sum changed during the build")
	}
}

func readModFiles(t *testing.T) []byte {
	var all []byte
	for _, f := range []string{"../../go.mod", "../../go.sum"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, data...)
	}
	return all
}

// A package that is not in the module is named with its line, from go
// list's JSON answer alone.
func TestCheckPackagesNamesUnknownCommand(t *testing.T) {
	testutil.NeedBaseTool(t, "go", "golang-go")
	list := filepath.Join(t.TempDir(), "commands.txt")
	os.WriteFile(list, []byte("ls\n# comment\nexample.com/not/a/module/cmd\n"), 0o644)
	cmds, err := ReadCommands(list, "github.com/diskless/diskless")
	if err != nil {
		t.Fatal(err)
	}
	err = checkPackages(context.Background(), "../..", cmds)
	if err == nil {
		t.Fatal("an unknown package passed the check")
	}
	msg := err.Error()
	if !strings.Contains(msg, list+":3: example.com/not/a/module/cmd") || strings.Contains(msg, "cmds/core/ls") {
		t.Errorf("error does not name exactly the bad line:\n%s", msg)
	}
	// a library package is not a command
	cmds = []Command{{Pkg: "github.com/diskless/diskless/pkg/arch", File: "x", Line: 1}}
	if err := checkPackages(context.Background(), "../..", cmds); err == nil || !strings.Contains(err.Error(), "not a command (package arch)") {
		t.Errorf("library package: %v", err)
	}
}
