// Package testroot builds the tiny slave root the boot tests serve over NFS:
// the HOWTO's top-level directories and a static /sbin/init (testinit) for
// the guest's arch. A host binary would not run on another arch ("couldn't
// execute it (error -8)"), so init is cross-compiled with GOARCH.
//
// testinit's source is embedded and built in a scratch module, so Build
// works from any binary: built with -trimpath, or from the module cache.
package testroot

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/diskless/diskless/pkg/boot"
)

// Marker is what testinit prints once it runs from the root: the
// vocabulary's test-init stage (pkg/boot).
const Marker = boot.TestInitMarker

// WriteConf and WritePath: a root with WriteConf (a number of MiB) makes
// testinit write that much to WritePath, fsyncing each MiB and saying so
// ("diskless-testinit: wrote N MB"), then print the SHA-256 of what it
// meant to write (WriteSumPrefix<hex> bytes=<n>).
const (
	WriteConf      = "/etc/diskless-testinit.write"
	WritePath      = "/var/tmp/diskless-write"
	WriteSumPrefix = "diskless-testinit: write sha256="
)

// RootLine prefixes testinit's copy of the root's /proc/mounts line.
const RootLine = "diskless-testinit: root="

//go:embed testinit/main.go
var initSource []byte

// Build writes a root for goarch into dir (created if missing).
func Build(ctx context.Context, dir, goarch string) error {
	for _, d := range []string{"sbin", "proc", "sys", "dev", "tmp", "etc", "root", "var/tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), os.ModeSticky|0o777); err != nil {
		return err
	}
	src, err := os.MkdirTemp("", "diskless-testinit-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module diskless.test/testinit\n\ngo 1.22\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), initSource, 0o644); err != nil {
		return err
	}
	out, err := filepath.Abs(filepath.Join(dir, "sbin", "init"))
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the test root's init for %s: %w\n%s", goarch, err, out)
	}
	return nil
}
