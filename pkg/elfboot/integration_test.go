package elfboot

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/debkernel"
	"github.com/diskless/diskless/internal/testkernel"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/initramfs"
	"github.com/diskless/diskless/pkg/qemu"
)

func slaveKernel(t *testing.T, name string) (arch.Arch, string) {
	a, dir, _ := testkernel.Slave(t, name, "../..")
	return a, dir
}

// bootVmlinuz boots vmlinuz_<arch> (x86) to the test NFS root, either with
// QEMU -kernel or through QEMU's iPXE ROM over slirp TFTP. The NFS
// arguments are embedded in the image, so the iPXE path gets no command
// line from the loader at all.
func bootVmlinuz(t *testing.T, name string, viaIPXE bool) {
	a, dir := slaveKernel(t, name)
	ctx := context.Background()
	srv, err := qemu.ServeTestRoot(ctx, a, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tftp := t.TempDir()
	img := filepath.Join(tftp, "vmlinuz_"+a.Name)
	size, err := WriteFile(filepath.Join(dir, a.ArtifactName()), "", img, "console="+a.Console+" "+srv.NFSRootArgs()+" panic=-1")
	if err != nil {
		t.Fatal(err)
	}
	m := &qemu.Machine{Arch: a, LogPath: filepath.Join(t.TempDir(), "console.log")}
	if viaIPXE {
		m.NetBoot, m.TFTPRoot, m.BootFile = true, tftp, filepath.Base(img)
	} else {
		m.Kernel, m.Append = img, "diskless.loader=qemu"
	}
	s, err := qemu.Start(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if _, err := s.Expect([]string{"IP-Config: Complete"}, nil, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	res, err := s.Expect(qemu.RootMarkers, nil, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.CheckNFSRoot(res.Console); err != nil {
		t.Error(err)
	}
	if !viaIPXE && !strings.Contains(res.Console, "diskless.loader=qemu") {
		t.Error("the loader's command line was not appended")
	}
	t.Logf("vmlinuz_%s (%d bytes) to the NFS root in %s", a.Name, size, res.Elapsed.Round(10*time.Millisecond))
}

func TestIntegrationVmlinuzX86_64Direct(t *testing.T) { bootVmlinuz(t, "x86_64", false) }
func TestIntegrationVmlinuzX86_64IPXE(t *testing.T)   { bootVmlinuz(t, "x86_64", true) }
func TestIntegrationVmlinuzI386Direct(t *testing.T)   { bootVmlinuz(t, "i386", false) }
func TestIntegrationVmlinuzI386IPXE(t *testing.T)     { bootVmlinuz(t, "i386", true) }

// vmlinuz_arm64 is the EFI zboot kernel: under real UEFI firmware it boots
// with its built-in command line (CONFIG_CMDLINE from the settings) when the
// loader passes none, and with the loader's options (QEMU -append, as a boot
// manager would) to the test NFS root.
func TestIntegrationVmlinuzArm64UEFI(t *testing.T) {
	a, dir := slaveKernel(t, "arm64")
	fw := testutil.NeedFile(t, qemu.AAVMF, "qemu-efi-aarch64")
	ctx := context.Background()
	img, err := Artifact(a, dir, "", "")
	if err != nil {
		t.Fatal(err)
	}
	uefi := func(appendArgs string) *qemu.Machine {
		return &qemu.Machine{
			Arch: a, Kernel: img, Append: appendArgs,
			// acpi=off: AAVMF then offers the device tree the kernel needs
			Extra:   []string{"-bios", fw},
			Machine: "virt,acpi=off", NICOptions: "romfile=",
			LogPath: filepath.Join(t.TempDir(), "console.log"),
		}
	}
	t.Run("built-in-cmdline", func(t *testing.T) {
		res, err := qemu.Boot(ctx, uefi(""), []string{"IP-Config: Complete"}, nil, 120*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"EFI stub: Booting Linux Kernel", "Kernel command line: ip=dhcp root=/dev/nfs nfsroot=/diskless/%s,vers=3,tcp rw console=ttyAMA0"} {
			if !strings.Contains(res.Console, s) {
				t.Errorf("console lacks %q", s)
			}
		}
	})
	t.Run("nfs-root", func(t *testing.T) {
		srv, err := qemu.ServeTestRoot(ctx, a, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		res, err := qemu.Boot(ctx, uefi("console=ttyAMA0 "+srv.NFSRootArgs()+" panic=-1"), qemu.RootMarkers, nil, 120*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.CheckNFSRoot(res.Console); err != nil {
			t.Error(err)
		}
		t.Logf("vmlinuz_arm64 under AAVMF to the NFS root in %s", res.Elapsed.Round(10*time.Millisecond))
	})
}

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
	vmlinuz, err := debkernel.CloudAMD64(testkernel.CacheDir())
	if err != nil {
		if testutil.InCI() {
			t.Fatal(err)
		}
		t.Skipf("cannot fetch Debian's %s (offline?): %v", debkernel.Meta, err)
	}
	ir, err := initramfs.Build(context.Background(), initramfs.Options{Arch: a, ProjectDir: "../..", OutDir: t.TempDir(), CacheDir: testkernel.CacheDir(),
		Log: testkernel.Quiet()})
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
