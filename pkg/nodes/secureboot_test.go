package nodes

import (
	"slices"
	"strings"
	"testing"
)

const secureBootInv = `[network]
master = "192.168.1.1"
subnet = "192.168.1.0/24"

[[node]]
name = "slave21"
mac = "00:02:A5:04:3B:66"
ip = "192.168.1.21"
arch = "x86_64"
boot = "uefi"
secure_boot = true

[[node]]
name = "slave22"
mac = "00:02:A5:04:3B:67"
ip = "192.168.1.22"
arch = "x86_64"
boot = "ipxe"
`

// A secure_boot node's boot must keep the chain: BIOS boots are refused,
// naming the node; [network]'s secure_boot is every node's default, a
// node's own overrides it.
func TestSecureBootNeedsUEFIBoot(t *testing.T) {
	inv, err := Parse([]byte(secureBootInv), "nodes.toml")
	if err != nil {
		t.Fatal(err)
	}
	if got := inv.SecureBootNodes(); !slices.Equal(got, []string{"node 1 (slave21, line 5)"}) {
		t.Errorf("secure boot nodes %q", got)
	}
	for _, boot := range []string{"pxelinux", "etherboot", "ipxe"} {
		text := strings.Replace(secureBootInv, `boot = "uefi"`, `boot = "`+boot+`"`, 1)
		_, err := Parse([]byte(text), "nodes.toml")
		if err == nil || !strings.Contains(err.Error(), "nodes.toml: node 1 (slave21, line 5)") || !strings.Contains(err.Error(), `secure_boot = true with boot = "`+boot+`"`) {
			t.Errorf("boot = %s: %v", boot, err)
		}
	}
	for _, boot := range []string{"uefi", "http"} {
		text := strings.Replace(secureBootInv, `boot = "uefi"`, `boot = "`+boot+`"`, 1)
		if _, err := Parse([]byte(text), "nodes.toml"); err != nil {
			t.Errorf("boot = %s: %v", boot, err)
		}
	}
	all := strings.Replace(secureBootInv, "[network]\n", "[network]\nsecure_boot = true\n", 1)
	if _, err := Parse([]byte(all), "nodes.toml"); err == nil || !strings.Contains(err.Error(), "slave22") {
		t.Errorf("[network] secure_boot = true does not reach slave22 (ipxe): %v", err)
	}
	off := strings.Replace(all, `boot = "ipxe"`, "boot = \"ipxe\"\nsecure_boot = false", 1)
	inv, err = Parse([]byte(off), "nodes.toml")
	if err != nil {
		t.Fatalf("a node's secure_boot = false does not override [network]'s: %v", err)
	}
	if got := inv.SecureBootNodes(); len(got) != 1 {
		t.Errorf("secure boot nodes %q", got)
	}
}

// boot = "shim": x86_64 only; DHCP pins shimx64.efi for the node in both
// servers' files; the node's grub/<mac>.cfg loads its kernel and
// initramfs with its command line.
func TestShimNodes(t *testing.T) {
	text := strings.Replace(secureBootInv, `boot = "uefi"`, `boot = "shim"`, 1)
	inv, err := Parse([]byte(text), "nodes.toml")
	if err != nil {
		t.Fatal(err)
	}
	inv.Initrd = map[string]string{"x86_64": "initramfs_x86_64.cpio.zst"}
	if !inv.UsesShim() {
		t.Error("UsesShim is false")
	}
	if d := inv.DHCPD(); !strings.Contains(d, "host slave21 {\n  hardware ethernet 00:02:a5:04:3b:66;\n  fixed-address 192.168.1.21;\n  # boot = shim\n  filename \"shimx64.efi\";") {
		t.Errorf("dhcpd.conf does not pin shimx64.efi for slave21:\n%s", d)
	}
	if d := inv.Dnsmasq(); !strings.Contains(d, "shimx64.efi") {
		t.Errorf("dnsmasq's file does not pin shimx64.efi:\n%s", d)
	}
	files, err := inv.BootFiles()
	if err != nil {
		t.Fatal(err)
	}
	cfg := files["grub/00:02:a5:04:3b:66.cfg"]
	for _, want := range []string{"linux /bzImage_x86_64 ip=dhcp root=/dev/nfs nfsroot=192.168.1.1:/diskless/192.168.1.21", "initrd /initramfs_x86_64.cpio.zst\nboot\n"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("grub/00:02:a5:04:3b:66.cfg lacks %q:\n%s", want, cfg)
		}
	}
	if _, ok := files["ipxe/00-02-a5-04-3b-66.ipxe"]; ok {
		t.Error("a shim node got an iPXE script")
	}
	for _, a := range []string{"arm64", "i386"} {
		bad := strings.Replace(text, `arch = "x86_64"`, `arch = "`+a+`"`, 1)
		if _, err := Parse([]byte(bad), "nodes.toml"); err == nil || !strings.Contains(err.Error(), `boot = "shim" is for x86_64 nodes`) {
			t.Errorf("a shim node of %s: %v", a, err)
		}
	}
}

// A shim node's kernel_args go into GRUB's configuration: what GRUB reads
// as syntax is refused, naming the node and the option.
func TestShimKernelArgs(t *testing.T) {
	text := strings.Replace(secureBootInv, `boot = "uefi"`, "boot = \"shim\"\nkernel_args = \"quiet; reboot\"", 1)
	if _, err := Parse([]byte(text), "nodes.toml"); err == nil || !strings.Contains(err.Error(), "node 1 (slave21, line 5)") || !strings.Contains(err.Error(), `kernel_args = "quiet; reboot"`) {
		t.Errorf("%v", err)
	}
	ok := strings.Replace(secureBootInv, `boot = "uefi"`, "boot = \"shim\"\nkernel_args = \"quiet loglevel=3\"", 1)
	if _, err := Parse([]byte(ok), "nodes.toml"); err != nil {
		t.Error(err)
	}
}
