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
