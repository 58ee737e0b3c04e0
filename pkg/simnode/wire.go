package simnode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/pin/tftp/v3"

	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/nfstrace"
)

// The DHCP requests of each asker, as they are on the wire (from a trace
// of QEMU's iPXE ROM, undionly.kpxe and Linux 6.x booting through the
// lab, and the PXE 2.1 specification for a PXE ROM): what a server sends
// back depends on the parameters asked, and the bytes are what the
// simulation is held to.
var (
	// pxeParams: a PXE 2.1 ROM's parameter request list.
	pxeParams = []byte{1, 2, 3, 4, 5, 6, 11, 12, 13, 15, 16, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58, 59, 60, 66, 67, 128, 129, 130, 131, 132, 133, 134, 135}
	// ipxeParams and ipxeFeatures (option 175, iPXE's encapsulated
	// options: its version and the features it was built with) are
	// iPXE 1.21's.
	ipxeParams   = []byte{1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 119, 128, 129, 130, 131, 132, 133, 134, 135, 175, 203}
	ipxeFeatures = []byte{0xb1, 0x05, 0x01, 0x80, 0x86, 0x10, 0x0e, 0xeb, 0x03, 0x01, 0x00, 0x00, 0x17, 0x01, 0x01, 0x22, 0x01, 0x01, 0x13, 0x01, 0x01, 0x11, 0x01, 0x01, 0x27, 0x01, 0x01, 0x19, 0x01, 0x01, 0x29, 0x01, 0x01, 0x10, 0x01, 0x02, 0x21, 0x01, 0x01, 0x15, 0x01, 0x01, 0x18, 0x01, 0x01, 0x12, 0x01, 0x01}
	// kernelParams: Linux's IP-Config (net/ipv4/ipconfig.c).
	kernelParams = []byte{1, 3, 6, 12, 15, 17, 26, 40, 42}
)

// kernelBOOTPLen is the size of IP-Config's BOOTP message: its struct
// bootp_pkt has a 312-byte vendor area, so every request is 548 bytes
// where the DHCP library pads only to BOOTP's 300.
const kernelBOOTPLen = 548

// opt is a raw option: the bytes exactly as the asker sends them.
func opt(code uint8, data []byte) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(code), data))
}

// firmwareAsk is the firmware's DHCP request: PXEClient with the client
// architecture of the node's boot method (options 93, 94 and 97, which
// PXE requires, and the maximum message size), and iPXE's user class,
// parameters and features when iPXE asks.
func (n *node) firmwareAsk(ipxe bool) []dhcpv4.Modifier {
	arch, class := iana.INTEL_X86PC, "PXEClient:Arch:00000:UNDI:002001"
	if n.nd.Boot == "uefi" {
		arch, class = iana.EFI_X86_64, "PXEClient:Arch:00007:UNDI:003000"
	}
	params, size := pxeParams, []byte{0x04, 0xec} // 1260
	if ipxe {
		params, size = ipxeParams, []byte{0x05, 0xc0} // 1472
	}
	mods := []dhcpv4.Modifier{
		opt(57, size),
		dhcpv4.WithOption(dhcpv4.OptClientArch(arch)),
		opt(94, []byte{1, 2, 1}),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(class)),
		opt(55, params),
		opt(97, make([]byte, 17)),
	}
	if ipxe {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")), opt(175, ipxeFeatures), opt(61, append([]byte{1}, n.mac...)))
	}
	return mods
}

// kernelAsk is the Linux kernel's IP-Config request; the padding to its
// 548 bytes is private-use options (224, 225) of zeros, which servers
// ignore.
func kernelAsk() []dhcpv4.Modifier {
	return []dhcpv4.Modifier{opt(55, kernelParams), func(d *dhcpv4.DHCPv4) {
		n := 240 + 1 // the fixed part with the magic cookie, and the end option
		for code, data := range d.Options {
			if code < 224 {
				n += 2 + len(data)
			}
		}
		// an option holds 255 bytes at most: 224 and, past it, 225
		for code := uint8(224); code <= 225 && kernelBOOTPLen-n >= 2; code++ {
			size := min(kernelBOOTPLen-n-2, 255)
			d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(code), make([]byte, size)))
			n += 2 + size
		}
	}}
}

// counter counts the messages a DHCP client sends.
type counter struct{ sent *atomic.Int64 }

func (c counter) PrintMessage(prefix string, _ *dhcpv4.DHCPv4) {
	if strings.HasPrefix(prefix, "sent") {
		c.sent.Add(1)
	}
}
func (counter) Printf(string, ...interface{}) {}

// dhcp runs one DISCOVER/OFFER/REQUEST/ACK exchange on the node's NIC and
// returns the ACK; the server answers unicast (no broadcast flag), as to
// iPXE and the kernel.
func (n *node) dhcp(ctx context.Context, mods []dhcpv4.Modifier) (*dhcpv4.DHCPv4, error) {
	var sent atomic.Int64
	defer func() { n.res.DHCP += int(sent.Load()) }()
	c, err := nclient4.New(n.ifname(), nclient4.WithHWAddr(n.mac), nclient4.WithTimeout(4*time.Second), nclient4.WithRetry(4), nclient4.WithLogger(counter{&sent}))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	lease, err := c.Request(ctx, append(mods, dhcpv4.WithBroadcast(false))...)
	if err != nil {
		return nil, err
	}
	if got := lease.ACK.YourIPAddr.String(); got != n.nd.IP {
		return nil, fmt.Errorf("offered %s, the inventory says %s", got, n.nd.IP)
	}
	return lease.ACK, nil
}

// ifname is the node's macvlan.
func (n *node) ifname() string { return "dn" + strings.ReplaceAll(n.nd.MAC, ":", "")[4:] }

// tftp fetches a file as a PXE stack does (blksize and tsize asked) and
// checks it.
func (n *node) tftp(ctx context.Context, name string) error {
	stage := boot.Next(n.res.Stages)
	c, err := tftp.NewClient(net.JoinHostPort(n.c.Master, "69"))
	if err != nil {
		return &stageError{TFTP, stage, err}
	}
	to := n.c.TFTPTimeout
	if to == 0 {
		to = 2 * time.Second
	}
	c.SetTimeout(to)
	c.SetRetries(8)
	c.SetBlockSize(1432)
	c.RequestTSize(true)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return &stageError{TFTP, stage, fmt.Errorf("TFTP %s: %w", name, err)}
	}
	w := newHashCount()
	if _, err := wt.WriteTo(w); err != nil {
		return &stageError{TFTP, stage, fmt.Errorf("TFTP %s: %w", name, err)}
	}
	return n.fetched(name, w.n, w.s.Sum(nil), stage, "TFTP")
}

// errNotFound is a file a server says it does not have (TFTP error 1,
// HTTP 404): a lookup that moves on.
var errNotFound = errors.New("not found")

// tftpMaybe is tftp for a file that may be missing (a PXELINUX
// configuration lookup).
func (n *node) tftpMaybe(ctx context.Context, name string) ([]byte, error) {
	c, err := tftp.NewClient(net.JoinHostPort(n.c.Master, "69"))
	if err != nil {
		return nil, err
	}
	c.SetTimeout(2 * time.Second)
	c.SetRetries(8)
	c.SetBlockSize(1432)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		if strings.Contains(err.Error(), "code: 1") || strings.Contains(strings.ToLower(err.Error()), "not found") {
			return nil, errNotFound
		}
		return nil, fmt.Errorf("TFTP %s: %w", name, err)
	}
	var b strings.Builder
	if _, err := wt.WriteTo(&b); err != nil {
		return nil, fmt.Errorf("TFTP %s: %w", name, err)
	}
	data := []byte(b.String())
	sum := newHashCount()
	sum.Write(data)
	return data, n.fetched(name, int64(len(data)), sum.s.Sum(nil), boot.Next(n.res.Stages), "TFTP")
}

// httpGet fetches a URL on a connection of its own (as iPXE does) and
// returns its body when keep is set, else checks it and drops it; a 404 is
// errNotFound.
func (n *node) httpGet(ctx context.Context, url string, keep bool) ([]byte, error) {
	stage := boot.Next(n.res.Stages)
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, &stageError{HTTP, stage, err}
	}
	req.Header.Set("User-Agent", "iPXE/1.0.0 (diskless simulated node)")
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", req.URL.Host+":80")
	if err != nil {
		return nil, &stageError{HTTP, stage, fmt.Errorf("GET %s: %w", url, err)}
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	req.Close = true
	if err := req.Write(conn); err != nil {
		return nil, &stageError{HTTP, stage, fmt.Errorf("GET %s: %w", url, err)}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return nil, &stageError{HTTP, stage, fmt.Errorf("GET %s: %w", url, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		io.Copy(io.Discard, resp.Body)
		return nil, errNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &stageError{HTTP, stage, fmt.Errorf("GET %s: HTTP %s", url, resp.Status)}
	}
	w := newHashCount()
	var body strings.Builder
	var dst io.Writer = w
	if keep {
		dst = io.MultiWriter(w, &body)
	}
	if _, err := io.Copy(dst, resp.Body); err != nil {
		return nil, &stageError{HTTP, stage, fmt.Errorf("GET %s: %w", url, err)}
	}
	if resp.ContentLength >= 0 && w.n != resp.ContentLength {
		return nil, &stageError{HTTP, stage, fmt.Errorf("GET %s: %d of %d bytes", url, w.n, resp.ContentLength)}
	}
	return []byte(body.String()), n.fetched(req.URL.Path, w.n, w.s.Sum(nil), stage, "HTTP")
}

// nfs mounts the node's root as its kernel command line says and plays
// the recorded traffic on it.
func (n *node) nfs(ctx context.Context, args string) error {
	server, export := n.c.Master, ""
	for _, f := range strings.Fields(args) {
		if v, ok := strings.CutPrefix(f, "nfsroot="); ok {
			v, _, _ = strings.Cut(v, ",")
			if s, p, ok := strings.Cut(v, ":"); ok {
				server, v = s, p
			}
			export = strings.ReplaceAll(v, "%s", n.nd.IP)
		}
	}
	if export == "" && n.c.RootOf != nil {
		export = n.c.RootOf(n.nd)
	}
	if export == "" {
		return &stageError{NFS, boot.Root, fmt.Errorf("no nfsroot= on the kernel command line %q", args)}
	}
	if n.c.Trace == nil || len(n.c.Trace.Mounts) == 0 {
		return &stageError{NFS, boot.Root, errors.New("no NFS trace to play")}
	}
	res, err := nfstrace.Replay(ctx, n.c.Trace, nfstrace.ReplayOptions{
		Server: server, Exports: map[string]string{n.c.Trace.Mounts[0]: export}, Scratch: "/tmp/diskless-load-writes",
		Machine: n.nd.Name, OnMount: func() { n.reach(boot.Root) }})
	if res != nil {
		n.res.Read = res.Read
	}
	if err != nil {
		return &stageError{NFS, boot.Next(n.res.Stages), err}
	}
	return nil
}

// bootFile is the file an offer names: option 67 when the server sent it
// (dnsmasq does when the client asked for it, as PXE ROMs and iPXE do,
// and leaves the BOOTP file field empty), else the file field; firmware
// reads both.
func bootFile(d *dhcpv4.DHCPv4) string {
	if f := d.GetOneOption(dhcpv4.OptionBootfileName); len(f) > 0 {
		return strings.TrimRight(string(f), "\x00")
	}
	return d.BootFileName
}
