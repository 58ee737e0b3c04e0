package smoke_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/debkernel"
	"github.com/diskless/diskless/internal/testenv"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/internal/textutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/pipeline"
	"github.com/diskless/diskless/pkg/publish"
	"github.com/diskless/diskless/pkg/qemu"
	"github.com/diskless/diskless/pkg/smoke"
	"github.com/diskless/diskless/pkg/testnfs"
)

// buildAndPublish runs the pipeline for name (what build:all does) into a
// temp artifacts dir and publishes it into a temp root.
func buildAndPublish(t testing.TB, name string) (arch.Arch, string) {
	t.Helper()
	a := testenv.Arch(t, name)
	if a.SrcArch == "x86" {
		for _, p := range publish.PXELinux {
			testutil.NeedFile(t, p.Path, p.Package)
		}
	}
	ctx := context.Background()
	s := testenv.Settings(t, nil)
	artifacts := s.Artifacts
	if _, err := pipeline.BuildArch(ctx, pipeline.Options{Arch: a, Settings: s, Log: testenv.Quiet()}); err != nil {
		t.Fatal(err)
	}
	st := s.Boot
	files, err := publish.Collect(artifacts, st)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if _, err := publish.Publish(ctx, files, publish.Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	return a, root
}

// With x86_64 and i386 in one generation, the published
// pxelinux.cfg/default boots each CPU the kernel it can run: a 64-bit QEMU
// gets bzImage_x86_64, a 32-bit one (qemu-system-i386) bzImage_i386.
func TestIntegrationPXELinuxDefaultBothX86(t *testing.T) {
	ctx := context.Background()
	s := testenv.Settings(t, nil)
	var archs []arch.Arch
	for _, name := range []string{"x86_64", "i386"} {
		a := testenv.Arch(t, name)
		if _, err := pipeline.BuildArch(ctx, pipeline.Options{Arch: a, Settings: s, Log: testenv.Quiet()}); err != nil {
			t.Fatal(err)
		}
		archs = append(archs, a)
	}
	for _, p := range publish.PXELinux {
		testutil.NeedFile(t, p.Path, p.Package)
	}
	files, err := publish.Collect(s.Artifacts, s.Boot)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if _, err := publish.Publish(ctx, files, publish.Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	accel := testAccel()
	for _, a := range archs {
		rep, err := smoke.Run(ctx, smoke.Options{Accel: accel, Arch: a, Root: root, LogDir: t.TempDir(), Work: t.TempDir(), Only: []string{"pxelinux-default"}})
		var results []smoke.PathResult
		if rep != nil {
			results = rep.Paths
			accel = rep.Accel // probed once
		}
		for _, r := range results {
			t.Logf("%s %s", a.QEMU, r.Line())
		}
		if err != nil || len(results) != 1 {
			t.Errorf("%s: %v", a.QEMU, err)
			for _, r := range results {
				t.Log(r.Err)
			}
		}
	}
}

// Every boot path of every arch, on the artifacts CI builds, is run by
// the CI artifact jobs' test (pkg/pipeline, TestIntegrationCIArtifacts):
// a job is the smoke suite on a scratch publish.

// Broken artifacts fail the right path with a message that helps.
func TestIntegrationBrokenArtifacts(t *testing.T) {
	a, root := buildAndPublish(t, "x86_64")
	ctx := context.Background()

	t.Run("truncated-vmlinuz", func(t *testing.T) {
		bad := t.TempDir()
		entries, _ := os.ReadDir(root)
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") {
				os.Symlink(filepath.Join(root, e.Name()), filepath.Join(bad, e.Name()))
			}
		}
		data, _ := os.ReadFile(filepath.Join(root, "vmlinuz_x86_64"))
		os.Remove(filepath.Join(bad, "vmlinuz_x86_64"))
		os.WriteFile(filepath.Join(bad, "vmlinuz_x86_64"), data[:len(data)/2], 0o644)
		rep, err := smoke.Run(ctx, smoke.Options{Accel: testAccel(), Arch: a, Root: bad, LogDir: t.TempDir(), Work: t.TempDir(), Only: []string{"direct-vmlinuz", "etherboot-elf"}, Timeout: 20 * time.Second})
		if err == nil {
			t.Fatal("a truncated vmlinuz booted")
		}
		res := rep.Paths
		for _, r := range res {
			if r.Err == nil {
				t.Errorf("%s passed with a truncated vmlinuz", r.Path)
				continue
			}
			t.Logf("%s: %s", r.Path, textutil.FirstLine(r.Err.Error()))
		}
		for _, r := range res {
			if r.Path == "direct-vmlinuz" && (r.Err == nil || !strings.Contains(r.Err.Error(), "exited") || !strings.Contains(strings.ToLower(r.Err.Error()), "elf")) {
				t.Errorf("direct path: the message does not say QEMU refused the ELF image: %v", r.Err)
			}
		}
	})

	t.Run("wrong-nfsroot-export", func(t *testing.T) {
		srv, err := testnfs.ServeTestRoot(ctx, a, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		args := strings.Replace(srv.NFSRootArgs(), testnfs.TestExport, "/diskless/10.0.2.99", 1)
		s, err := qemu.Start(ctx, &qemu.Machine{Arch: a, Kernel: filepath.Join(root, a.ArtifactName()), Append: "console=ttyS0 " + args})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Stop()
		_, err = s.ExpectWhile(boot.Markers(boot.TestInit), nil, 90*time.Second, srv.CheckRefused)
		if err == nil || !qemu.IsBootError(err) || !strings.Contains(err.Error(), "asked the NFS server for /diskless/10.0.2.99, which is not exported") || !strings.Contains(err.Error(), "last console lines") {
			t.Errorf("wrong export: %v", err)
		} else {
			t.Log(textutil.FirstLine(err.Error()))
		}
		if m := srv.Mounts(); len(m) == 0 || m[0] != "/diskless/10.0.2.99" {
			t.Errorf("the server saw mounts %v", m)
		}
	})

	t.Run("kernel-without-root-nfs", func(t *testing.T) {
		// Debian's cloud kernel builds NFS as a module: no ROOT_NFS.
		vmlinuz, err := debkernel.CloudAMD64(testenv.Settings(t, nil).CacheDir)
		if err != nil {
			testutil.SkipOrFail(t, fmt.Sprintf("cannot fetch %s (offline?): %v", debkernel.Meta, err))
		}
		srv, err := testnfs.ServeTestRoot(ctx, a, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		_, err = qemu.Boot(ctx, &qemu.Machine{Arch: a, Kernel: vmlinuz, MemoryMB: 512, Append: "console=ttyS0 " + srv.NFSRootArgs()}, boot.Markers(boot.TestInit), nil, 90*time.Second)
		if err == nil || !strings.Contains(err.Error(), "Kernel panic") {
			t.Errorf("kernel without ROOT_NFS: %v", err)
		} else {
			t.Log(textutil.FirstLine(err.Error()))
		}
	})
}

// BenchmarkBootPaths reports QEMU start to marker for every boot path of
// the x86_64 and arm64 published trees (TCG), and the whole suite's time.
func BenchmarkBootPaths(b *testing.B) {
	for _, name := range []string{"x86_64", "arm64"} {
		b.Run(name, func(b *testing.B) {
			a, root := buildAndPublish(b, name)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				rep, err := smoke.Run(context.Background(), smoke.Options{Accel: testAccel(), Arch: a, Root: root, LogDir: b.TempDir(), Work: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range rep.Paths {
					b.ReportMetric(r.Boot.Seconds(), r.Path+"-boot-s")
				}
				b.ReportMetric(time.Since(start).Seconds(), "suite-s")
			}
		})
	}
}

// testAccel is QEMU_ACCEL as the tests' settings give it.
func testAccel() string {
	v, _ := testenv.Lookup("QEMU_ACCEL")
	return v
}
