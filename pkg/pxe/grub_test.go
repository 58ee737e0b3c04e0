package pxe

import (
	"strings"
	"testing"
)

func TestGRUBConfigs(t *testing.T) {
	name, err := GRUBNodeConfigName("00:02:A5:04:3B:66")
	if err != nil || name != "grub/00:02:a5:04:3b:66.cfg" {
		t.Errorf("name %q, %v", name, err)
	}
	if _, err := GRUBNodeConfigName("00:02"); err == nil {
		t.Error("a short MAC is taken")
	}
	cfg, err := GRUBNodeConfig("node n1", Label{Name: "n1", Kernel: "bzImage_x86_64", Initrd: "initramfs_x86_64.cpio.zst", Append: "ip=dhcp root=/dev/nfs"})
	if err != nil {
		t.Fatal(err)
	}
	want := "# node n1\necho \"diskless: loading /bzImage_x86_64\"\nlinux /bzImage_x86_64 ip=dhcp root=/dev/nfs\ninitrd /initramfs_x86_64.cpio.zst\nboot\n"
	if cfg != want {
		t.Errorf("got\n%s\nwant\n%s", cfg, want)
	}
	// GRUB would expand $ and split at ; in a command line
	for _, bad := range []string{"a=$x", "a;reboot", "a\nb", `a"b`} {
		if _, err := GRUBNodeConfig("", Label{Name: "n1", Kernel: "k", Append: bad}); err == nil {
			t.Errorf("%q taken", bad)
		}
	}
	if !strings.Contains(GRUBConfig("x"), "source ${prefix}/${net_default_mac}.cfg\n") {
		t.Error("grub.cfg does not source the node's file")
	}
}

// A node's GRUB configuration is pinned to its generation like PXELINUX's
// and iPXE's: the kernel and the initramfs (and a stateless node's image)
// inside it; the rest as it was.
func TestPinGRUB(t *testing.T) {
	cfg, err := GRUBNodeConfig("node n1", Label{Name: "n1", Kernel: "bzImage_x86_64", Initrd: "initramfs_x86_64.cpio.zst", Append: "ip=dhcp diskless.image=/squashfs/x.squashfs"})
	if err != nil {
		t.Fatal(err)
	}
	got := Pin(cfg, ".diskless/generations/000007", func(string) bool { return true })
	for _, want := range []string{
		"linux /.diskless/generations/000007/bzImage_x86_64 ip=dhcp diskless.image=/.diskless/generations/000007/squashfs/x.squashfs\n",
		"initrd /.diskless/generations/000007/initramfs_x86_64.cpio.zst\n",
		"echo \"diskless: loading /bzImage_x86_64\"\n",
		"boot\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("pinned config lacks %q:\n%s", want, got)
		}
	}
	if again := Pin(got, ".diskless/generations/000008", func(string) bool { return true }); !strings.Contains(again, "linux /.diskless/generations/000008/bzImage_x86_64") {
		t.Errorf("pinned again to the next generation:\n%s", again)
	}
}
