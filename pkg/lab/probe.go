package lab

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"time"

	"github.com/diskless/diskless/internal/netns"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// Ask is what a probe says about itself in its DHCPDISCOVER, as a node's
// firmware would: its client architecture (option 93), its vendor class
// (option 60: PXEClient:Arch:..., HTTPClient:Arch:...) and, for iPXE, its
// user class.
type Ask struct {
	MAC         string
	ClientArch  int
	VendorClass string
	IPXE        bool
}

// Offer is what the lab's DHCP server offered a probe.
type Offer struct {
	IP          string
	File        string
	VendorClass string
	RootPath    string
}

// Probe sends one DHCPDISCOVER into the lab's bridge from a veth of its
// own (with ask.MAC as its address, so the server's host entries match) and
// returns the offer. It is how the rendered DHCP configurations are checked
// against the real daemon for every client architecture without booting
// a machine for each.
func (l *Lab) Probe(ctx context.Context, ask Ask) (*Offer, error) {
	veth, remove, err := l.veth("dlprobe", ask.MAC)
	if err != nil {
		return nil, err
	}
	defer remove()
	hw, err := net.ParseMAC(ask.MAC)
	if err != nil {
		return nil, err
	}
	client, err := netns.Do(NetNSPath(), func() (*nclient4.Client, error) {
		return nclient4.New(veth, nclient4.WithHWAddr(hw), nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(5))
	})
	if err != nil {
		return nil, fmt.Errorf("DHCP probe on %s: %w", veth, err)
	}
	defer client.Close()
	mods := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(ask.ClientArch))),
		// what PXE firmware asks for (dhcpd sends root-path only when asked)
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionRootPath, dhcpv4.OptionClassIdentifier, dhcpv4.OptionBootfileName, dhcpv4.OptionTFTPServerName),
	}
	if ask.VendorClass != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(ask.VendorClass)))
	}
	if ask.IPXE {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")))
	}
	offer, err := client.DiscoverOffer(ctx, mods...)
	if err != nil {
		return nil, fmt.Errorf("no offer for %s (client architecture %d): %w", ask.MAC, ask.ClientArch, err)
	}
	o := &Offer{IP: offer.YourIPAddr.String(), File: offer.BootFileName, VendorClass: offer.ClassIdentifier(), RootPath: offer.RootPath()}
	if o.File == "" {
		// dnsmasq may put a long name in option 67 instead of the field
		o.File = offer.BootFileNameOption()
	}
	return o, nil
}

// veth puts a veth pair on the lab's bridge, its outer end (returned,
// named veth) with mac as its address, as a node's NIC would be; the
// function removes it.
func (l *Lab) veth(veth, mac string) (string, func(), error) {
	peer := veth + "-br"
	ip := func(args ...string) error {
		if out, err := exec.Command("ip", append([]string{"-n", NetNS}, args...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	ip("link", "del", veth) // a crashed probe's
	for _, args := range [][]string{
		{"link", "add", veth, "address", mac, "type", "veth", "peer", "name", peer},
		{"link", "set", peer, "master", Bridge},
		{"link", "set", peer, "up"},
		{"link", "set", veth, "up"},
	} {
		if err := ip(args...); err != nil {
			ip("link", "del", veth)
			return "", nil, err
		}
	}
	return veth, func() { ip("link", "del", veth) }, nil
}

// SolicitRouter asks, from a veth on the bridge with mac, as iPXE does
// when it configures IPv6 (an ICMPv6 router solicitation to all routers,
// hop limit 255), and returns who answered with a router advertisement
// before ctx ends: the lab's radvd, which ends iPXE's wait for IPv6
// autoconfiguration.
func (l *Lab) SolicitRouter(ctx context.Context, mac string) (string, error) {
	veth, remove, err := l.veth("dlrs", mac)
	if err != nil {
		return "", err
	}
	defer remove()
	conn, err := netns.Do(NetNSPath(), func() (*icmp.PacketConn, error) { return icmp.ListenPacket("ip6:ipv6-icmp", "::") })
	if err != nil {
		return "", fmt.Errorf("ICMPv6 socket: %w", err)
	}
	defer conn.Close()
	p := conn.IPv6PacketConn()
	p.SetMulticastHopLimit(255)
	p.SetHopLimit(255)
	ifi, err := netns.Do(NetNSPath(), func() (*net.Interface, error) { return net.InterfaceByName(veth) })
	if err != nil {
		return "", err
	}
	if err := p.SetMulticastInterface(ifi); err != nil {
		return "", err
	}
	// only an answer on the veth counts (the socket hears the bridge too)
	if err := p.SetControlMessage(ipv6.FlagInterface, true); err != nil {
		return "", err
	}
	rs, _ := (&icmp.Message{Type: ipv6.ICMPTypeRouterSolicitation, Body: &icmp.RawBody{Data: make([]byte, 4)}}).Marshal(nil)
	allRouters := &net.IPAddr{IP: net.ParseIP("ff02::2"), Zone: veth}
	buf := make([]byte, 1500)
	for ctx.Err() == nil {
		// the veth's link-local address may still be tentative: ask again
		conn.WriteTo(rs, allRouters)
		conn.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, cm, from, err := p.ReadFrom(buf)
			if err != nil {
				break
			}
			if cm == nil || cm.IfIndex != ifi.Index {
				continue
			}
			if m, err := icmp.ParseMessage(58, buf[:n]); err == nil && m.Type == ipv6.ICMPTypeRouterAdvertisement {
				return from.String(), nil
			}
		}
	}
	return "", fmt.Errorf("no router advertisement on %s: %w", Bridge, ctx.Err())
}
