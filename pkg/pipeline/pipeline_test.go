package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/testkernel"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/publish"
)

func env(k string) string {
	if k == "KERNEL_SRC" {
		return os.Getenv(k)
	}
	return ""
}

func TestBadSettingsNameTheStep(t *testing.T) {
	a, _ := arch.Lookup("x86_64")
	_, err := BuildArch(context.Background(), Options{Arch: a, ProjectDir: "../..", Artifacts: t.TempDir(), Getenv: func(k string) string {
		if k == "NFS_OPTS" {
			return "vers=9"
		}
		return ""
	}})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "settings" || !strings.Contains(err.Error(), "vers=9") {
		t.Errorf("bad NFS_OPTS: %v", err)
	}
}

func ciArtifacts(t *testing.T, name string) {
	a := testkernel.NeedTools(t, name)
	tarBin := testutil.NeedTool(t, "tar", "tar")
	testutil.NeedTool(t, "zstd", "zstd")
	artifacts := t.TempDir()
	res, err := CIArtifacts(context.Background(), Options{Arch: a, ProjectDir: "../..", Artifacts: artifacts, Getenv: env,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if res != nil {
		for _, r := range res.Smoke {
			t.Log(r.Line())
			if r.Err != nil {
				t.Logf("%s: %v", r.Path, r.Err)
			}
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(res.Bundle), "diskless_"+a.Name+"_6.") {
		t.Errorf("bundle name %s", res.Bundle)
	}
	// unpacked with the standard tools, the bundle checks with sha256sum -c
	dir := t.TempDir()
	if out, err := exec.Command(tarBin, "--zstd", "-xf", res.Bundle, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	c := exec.Command("sha256sum", "-c", publish.SumsName)
	c.Dir = dir
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "vmlinuz_"+a.Name)); err != nil {
		t.Error("bundle lacks the netboot image")
	}
	// what CI built is what goes to /diskless: PUBLISH_FROM
	files, err := publish.ReadBundle(res.Bundle, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if _, err := publish.Publish(context.Background(), files, publish.Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	if _, err := publish.Verify(root); err != nil {
		t.Fatal(err)
	}
}

func TestIntegrationCIArtifactsX86_64(t *testing.T) { ciArtifacts(t, "x86_64") }
func TestIntegrationCIArtifactsArm64(t *testing.T)  { ciArtifacts(t, "arm64") }
