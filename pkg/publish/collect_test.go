package publish

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskless/diskless/pkg/arch"
)

// Collect takes the arches asked for, whatever else lies in artifacts/,
// and never the per-node files nodes:render leaves there.
func TestCollectOnlyTheArchesAsked(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"arm64", "riscv64"} {
		a, _ := arch.Lookup(name)
		os.MkdirAll(filepath.Join(dir, name), 0o755)
		data := []byte("kernel " + name)
		os.WriteFile(filepath.Join(dir, name, a.ArtifactName()), data, 0o644)
		meta, _ := json.Marshal(map[string]any{"artifacts": []map[string]string{{"name": a.ArtifactName(), "sha256": sum(data)}}})
		os.WriteFile(filepath.Join(dir, name, "build_"+name+".json"), meta, 0o644)
	}
	os.MkdirAll(filepath.Join(dir, "master", "pxelinux.cfg"), 0o755)
	os.WriteFile(filepath.Join(dir, "master", "pxelinux.cfg", "01-00-02-a5-04-3b-66"), []byte("DEFAULT stale\n"), 0o644)
	arm, _ := arch.Lookup("arm64")
	names := func(files []File) string {
		var n []string
		for _, f := range files {
			n = append(n, f.Name)
		}
		return strings.Join(n, " ")
	}
	files, err := Collect(dir, boot, arm)
	if err != nil || names(files) != "Image_arm64" {
		t.Errorf("arm64 only: %q %v", names(files), err)
	}
	files, err = Collect(dir, boot)
	if err != nil || names(files) != "Image_arm64 Image_riscv64" {
		t.Errorf("all: %q %v", names(files), err)
	}
	x, _ := arch.Lookup("x86_64")
	if _, err := Collect(dir, boot, x); err == nil || !strings.Contains(err.Error(), "nothing to publish for x86_64") {
		t.Errorf("x86_64 not built: %v", err)
	}
}

// A CPU-choosing default gets its COM32 modules even from a set that
// lacks them (a bundle made before they were published), from Debian's
// files, or a publish that cannot find them says which package to install.
func TestCPUModulesComeWithTheChoice(t *testing.T) {
	saved := append([]struct{ Name, Path, Package string }(nil), PXELinux...)
	defer func() { PXELinux = saved }()
	dir := t.TempDir()
	for i := range PXELinux {
		PXELinux[i].Path = filepath.Join(dir, PXELinux[i].Name)
		os.WriteFile(PXELinux[i].Path, []byte(PXELinux[i].Name), 0o644)
	}
	files := []File{{Name: "bzImage_x86_64", Arch: "x86_64", Kind: "kernel"}, {Name: "bzImage_i386", Arch: "i386", Kind: "kernel"}, {Name: "pxelinux.0", Kind: "bootloader"}}
	out, err := withDefaultConfig(files, boot)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range out {
		have[f.Name] = true
	}
	for _, m := range []string{"ifcpu64.c32", "libcom32.c32", "libutil.c32"} {
		if !have[m] {
			t.Errorf("%s not added", m)
		}
	}
	// one x86 arch: no choice, nothing added
	if out, _ := withDefaultConfig(files[:1], boot); len(out) != 1+3 { // + default, boot.ipxe, boot-x86_64.ipxe
		t.Errorf("x86_64 alone: %d files", len(out))
	}
	os.Remove(filepath.Join(dir, "libcom32.c32"))
	if _, err := withDefaultConfig(files, boot); err == nil || !strings.Contains(err.Error(), "install the Debian package syslinux-common") {
		t.Errorf("a missing module: %v", err)
	}
}

// An image whose built-in command line the node settings no longer say
// (nodes.toml's root or master changed since the build) is refused,
// naming the command that rebuilds it: its nodes would mount the old root.
func TestCollectRefusesAStaleBuiltInCommandLine(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "riscv64"), 0o755)
	a, _ := arch.Lookup("riscv64")
	data := []byte("efi kernel")
	os.WriteFile(filepath.Join(dir, "riscv64", "vmlinuz_riscv64"), data, 0o644)
	meta, _ := json.Marshal(map[string]any{"artifacts": []map[string]string{{"name": "vmlinuz_riscv64", "sha256": sum(data)}}})
	os.WriteFile(filepath.Join(dir, "riscv64", "build_riscv64.json"), meta, 0o644)
	os.WriteFile(filepath.Join(dir, "riscv64", "config_riscv64"), []byte("CONFIG_CMDLINE=\""+boot.Cmdline(a)+"\"\n"), 0o644)
	if _, err := Collect(dir, boot, a); err != nil {
		t.Fatal(err)
	}
	moved := boot
	moved.Root = "/srv/nodes/%s"
	if _, err := Collect(dir, moved, a); err == nil || !strings.Contains(err.Error(), "run build:slave arch=riscv64") || !strings.Contains(err.Error(), "nfsroot=/srv/nodes/%s") {
		t.Errorf("a stale CONFIG_CMDLINE: %v", err)
	}
}

func TestUnpinned(t *testing.T) {
	cfg := "DEFAULT n\nLABEL n\n  KERNEL .diskless/generations/000002/bzImage_x86_64\n  INITRD initramfs_x86_64.cpio.xz\n  APPEND ip=dhcp\n"
	if got := unpinned(cfg); len(got) != 1 || got[0] != "initramfs_x86_64.cpio.xz" {
		t.Errorf("pxelinux: %v", got)
	}
	script := "#!ipxe\nkernel /bzImage_arm64 ip=dhcp && initrd /.diskless/generations/000002/i && boot\n"
	if got := unpinned(script); len(got) != 1 || got[0] != "/bzImage_arm64" {
		t.Errorf("ipxe: %v", got)
	}
}
