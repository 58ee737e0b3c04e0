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

// The DHCP requests of each asker: the parameters they ask for are those
// the real ones list (what a server sends back depends on them).
var (
	pxeParams    = []dhcpv4.OptionCode{dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer, dhcpv4.OptionHostName, dhcpv4.OptionDomainName, dhcpv4.OptionRootPath, dhcpv4.OptionVendorSpecificInformation, dhcpv4.OptionClassIdentifier, dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName}
	kernelParams = []dhcpv4.OptionCode{dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer, dhcpv4.OptionHostName, dhcpv4.OptionDomainName, dhcpv4.OptionRootPath, dhcpv4.OptionInterfaceMTU, dhcpv4.OptionBroadcastAddress, dhcpv4.OptionNTPServers}
)

// firmwareAsk is the firmware's DHCP request: PXEClient with the client
// architecture of the node's boot method, and iPXE's user class when
// iPXE asks.
func (n *node) firmwareAsk(ipxe bool) []dhcpv4.Modifier {
	arch, class := iana.INTEL_X86PC, "PXEClient:Arch:00000:UNDI:002001"
	if n.nd.Boot == "uefi" {
		arch, class = iana.EFI_X86_64, "PXEClient:Arch:00007:UNDI:003000"
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(class)),
		dhcpv4.WithOption(dhcpv4.OptClientArch(arch)),
		dhcpv4.WithRequestedOptions(pxeParams...),
	}
	if ipxe {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")))
	}
	return mods
}

// kernelAsk is the Linux kernel's IP-Config request.
func kernelAsk() []dhcpv4.Modifier {
	return []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("Linux ipconfig")), dhcpv4.WithRequestedOptions(kernelParams...)}
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
