package elfboot

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/debkernel"
	"github.com/diskless/diskless/internal/testenv"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/initramfs"
	"github.com/diskless/diskless/pkg/qemu"
)

// vmlinuz_<arch> through every loader (QEMU -kernel, iPXE over TFTP,
// PXELINUX, AAVMF, U-Boot) to the NFS root is the smoke suite's proof
// (pkg/smoke, run by the CI artifact jobs' tests); what is left here is
// what it does not boot.

// The writer also boots a kernel this project did not build: Debian's
// cloud kernel, wrapped with the project's fallback initramfs, reaches the
// initramfs's init under QEMU -kernel.
func TestIntegrationDebianCloudKernel(t *testing.T) {
	testutil.Slow(t)
	testutil.NeedTool(t, "apt-get", "apt")
	testutil.NeedTool(t, "dpkg-deb", "dpkg")
	a, err := arch.Lookup("x86_64")
	if err != nil {
		t.Fatal(err)
	}
	testutil.NeedTool(t, a.QEMU, a.QEMUPackage)
	cache := testenv.Settings(t, nil).CacheDir
	vmlinuz, err := debkernel.CloudAMD64(cache)
	if err != nil {
		testutil.SkipOrFail(t, fmt.Sprintf("cannot fetch Debian's %s (offline?): %v", debkernel.Meta, err))
	}
	ir, err := initramfs.Build(context.Background(), initramfs.Options{Arch: a, ProjectDir: testenv.ProjectDir, OutDir: t.TempDir(), CacheDir: cache,
		Log: testenv.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "vmlinuz_cloud")
	size, err := WriteFile(vmlinuz, ir.Path, img, "console=ttyS0 panic=-1")
	if err != nil {
		t.Fatal(err)
	}
	res, err := qemu.Boot(context.Background(), &qemu.Machine{Arch: a, Kernel: img, MemoryMB: 512, LogPath: filepath.Join(t.TempDir(), "console.log")},
		[]string{"diskless-fallback: dlinit: looking for the NFS root"}, nil, 120*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Console, "Linux version 6.1") || !strings.Contains(res.Console, "cloud") {
		t.Errorf("not the Debian cloud kernel booting:\n%s", lineWithPrefix(res.Console, "Linux version"))
	}
	t.Logf("%s wrapped with the initramfs (%d bytes) reached the initramfs init in %s", filepath.Base(vmlinuz), size, res.Elapsed.Round(10*time.Millisecond))
}

func lineWithPrefix(console, p string) string {
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, p) {
			return l
		}
	}
	return ""
}
