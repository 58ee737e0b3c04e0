// Package testroot builds the tiny slave root the boot tests serve over NFS:
// the HOWTO's top-level directories and a static /sbin/init (testinit) for
// the guest's arch. A host binary would not run on another arch ("couldn't
// execute it (error -8)"), so init is cross-compiled with GOARCH.
package testroot

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Marker is what testinit prints once it runs from the root.
const Marker = "diskless-testinit: DISKLESS-ROOT-OK"

// RootLine prefixes testinit's copy of the root's /proc/mounts line.
const RootLine = "diskless-testinit: root="

// Build writes a root for goarch into dir (created if missing).
func Build(ctx context.Context, dir, goarch string) error {
	for _, d := range []string{"sbin", "proc", "sys", "dev", "tmp", "etc", "root", "var"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	os.Chmod(filepath.Join(dir, "tmp"), 0o1777)
	_, self, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(self), "testinit")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "sbin", "init"), ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the test root's init for %s: %w\n%s", goarch, err, out)
	}
	return nil
}
