package simnode

import (
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// The simulated askers' DHCP messages have the sizes of the real ones in
// a trace of QEMU's iPXE ROM and Linux booting through the lab: iPXE's
// DISCOVER 400 bytes of BOOTP and its REQUEST 412 (server and address
// added), the kernel's both 548.
func TestDHCPAsksHaveTheRealSizes(t *testing.T) {
	mac, _ := net.ParseMAC("00:02:a5:04:3b:66")
	n := &node{nd: Node{Boot: "pxelinux"}, mac: mac}
	offer, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer), dhcpv4.WithYourIP(net.IPv4(192, 168, 1, 21)),
		dhcpv4.WithServerIP(net.IPv4(192, 168, 1, 1)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 168, 1, 1))))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name              string
		mods              []dhcpv4.Modifier
		discover, request int
	}{
		{"iPXE", n.firmwareAsk(true), 400, 412},
		{"kernel", kernelAsk(), 548, 548},
	} {
		d, err := dhcpv4.NewDiscovery(mac, c.mods...)
		if err != nil {
			t.Fatal(err)
		}
		r, err := dhcpv4.NewRequestFromOffer(offer, c.mods...)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(d.ToBytes()); got != c.discover {
			t.Errorf("%s DISCOVER: %d bytes, the real one %d", c.name, got, c.discover)
		}
		if got := len(r.ToBytes()); got != c.request {
			t.Errorf("%s REQUEST: %d bytes, the real one %d", c.name, got, c.request)
		}
		if got := d.ParameterRequestList(); c.name == "kernel" && len(got) != len(kernelParams) {
			t.Errorf("kernel DISCOVER asks for %v", got)
		}
	}
}

func TestBootFileFromOption67OrTheFileField(t *testing.T) {
	d, _ := dhcpv4.New(dhcpv4.WithOption(dhcpv4.OptBootFileName("undionly.kpxe")))
	if got := bootFile(d); got != "undionly.kpxe" {
		t.Errorf("option 67: %q", got)
	}
	d, _ = dhcpv4.New()
	d.BootFileName = "pxelinux.0"
	if got := bootFile(d); got != "pxelinux.0" {
		t.Errorf("file field: %q", got)
	}
}
