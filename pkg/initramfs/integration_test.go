package initramfs

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/testkernel"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/qemu"
)

func quietLog() *slog.Logger { return testkernel.Quiet() }

// kernelAndInitramfs builds (or finds cached) the project's slave kernel
// and this initramfs for name.
func kernelAndInitramfs(t *testing.T, name string) (arch.Arch, string, string) {
	t.Helper()
	a, dir, kernel := testkernel.Slave(t, name, "../..")
	res, err := Build(context.Background(), Options{Arch: a, ProjectDir: "../..", OutDir: dir, CacheDir: testkernel.CacheDir(), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	return a, kernel, res.Path
}

func machine(t *testing.T, a arch.Arch, kernel, initrd, args string) *qemu.Machine {
	return &qemu.Machine{Arch: a, Kernel: kernel, Initrd: initrd, Append: "console=" + a.Console + " " + args,
		LogPath: filepath.Join(t.TempDir(), "console.log")}
}

func fallbackBoots(t *testing.T, name string) {
	a, kernel, initrd := kernelAndInitramfs(t, name)
	ctx := context.Background()
	rootDir := t.TempDir()
	fail := []string{"Kernel panic"}

	t.Run("nfs-up", func(t *testing.T) {
		srv, err := qemu.ServeTestRoot(ctx, a, rootDir)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		res, err := qemu.Boot(ctx, machine(t, a, kernel, initrd, srv.NFSRootArgs()), qemu.RootMarkers, fail, 120*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.CheckNFSRoot(res.Console); err != nil {
			t.Error(err)
		}
		if !strings.Contains(res.Console, "diskless-fallback: NFS root 10.0.2.2:"+qemu.TestExport+" mounted") {
			t.Error("the initramfs did not report the mount")
		}
		t.Logf("%s: initramfs to the NFS root in %s", a.Name, res.Elapsed.Round(10*time.Millisecond))
	})

	t.Run("nfs-down-shell-then-back", func(t *testing.T) {
		srv, err := qemu.ServeTestRoot(ctx, a, rootDir)
		if err != nil {
			t.Fatal(err)
		}
		args, port, dir := srv.NFSRootArgs(), srv.Port, srv.Dir
		srv.Close() // nothing listens on the port now
		s, err := qemu.Start(ctx, machine(t, a, kernel, initrd, args))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Stop()
		res, err := s.Expect([]string{"starting a rescue shell"}, fail, 120*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		line := lineWith(res.Console, "diskless-fallback: mount failed")
		if !strings.Contains(line, "server=10.0.2.2") || !strings.Contains(line, "export="+qemu.TestExport) || !strings.Contains(line, "connection refused") {
			t.Errorf("diagnosis %q does not name the server, export and error", line)
		}
		t.Logf("%s: %s", a.Name, line)
		// The server comes back: the background retry mounts it and boots.
		srv2, err := qemu.StartNFSOnPort(dir, qemu.TestExport, port)
		if err != nil {
			t.Fatal(err)
		}
		defer srv2.Close()
		res, err = s.Expect(qemu.RootMarkers, fail, 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv2.CheckNFSRoot(res.Console); err != nil {
			t.Error(err)
		}
	})

	t.Run("nfs-down-shell-works", func(t *testing.T) {
		srv, err := qemu.ServeTestRoot(ctx, a, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		args := srv.NFSRootArgs()
		srv.Close()
		s, err := qemu.Start(ctx, machine(t, a, kernel, initrd, args))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Stop()
		if _, err := s.Expect([]string{"starting a rescue shell"}, fail, 120*time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // let gosh print its prompt
		// gosh computes 6*7: the answer is not the echo of what we typed.
		if err := s.Send("echo ok-$((6*7))\r"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Expect([]string{"ok-42"}, fail, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		// the retry loop notices the typing at its next wake-up (it may have
		// printed that before the shell's answer)
		if !strings.Contains(s.Console(), "background retries stopped") {
			if _, err := s.Expect([]string{"background retries stopped"}, fail, 40*time.Second); err != nil {
				t.Errorf("typing did not stop the background retries: %v", err)
			}
		}
		if strings.Contains(s.Console(), "Kernel panic") {
			t.Error("kernel panic on the console")
		}
	})
}

func lineWith(console, s string) string {
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, s) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

func TestIntegrationFallbackX86_64(t *testing.T) { fallbackBoots(t, "x86_64") }
func TestIntegrationFallbackArm64(t *testing.T)  { fallbackBoots(t, "arm64") }
