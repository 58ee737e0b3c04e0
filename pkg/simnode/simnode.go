// Package simnode is a simulated node on the wire: no QEMU, but the
// packets a real node sends, from its own MAC and address, to the master's
// real daemons. Each node runs on an OS thread of its own in a network
// namespace of its own, with a macvlan on the lab's network (so the
// master sees as many MACs and neighbours as nodes), and does what its
// boot method does: DHCP as its firmware, the first stage over TFTP
// (pxelinux.0 and PXELINUX's configuration lookups, or undionly.kpxe),
// the kernel and initramfs over TFTP or HTTP (an iPXE script's steps),
// every file checked against SHA256SUMS, DHCP as the kernel, and its NFS
// root: the mount and the calls of a recorded boot (pkg/nfstrace).
//
// A driver: it knows the wire and the published layout, not a scenario.
package simnode

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/nfstrace"
)

// Firmware is what starts a simulated node.
type Firmware string

const (
	// PXE is a NIC's PXE ROM: its DHCP says PXEClient and the client
	// architecture; a node booting by iPXE loads undionly.kpxe first and
	// asks DHCP again as iPXE.
	PXE Firmware = "pxe"
	// IPXE is an iPXE ROM (QEMU's NICs, as the lab's QEMU nodes boot): its
	// first DHCP already says iPXE.
	IPXE Firmware = "ipxe"
)

// Stage Up: the recorded NFS traffic played to its end.
const Up = "up"

// Net is the network simulated nodes live on: the parent of their
// macvlans, in the lab's network namespace.
type Net struct {
	parent int
	prefix int
	mu     sync.Mutex
	lab    *netlink.Handle
}

// NewNet opens the lab's namespace (its path, /run/netns/...) and finds
// the macvlans' parent link there; prefix is the nodes' subnet's length.
func NewNet(labNS, parent string, prefix int) (*Net, error) {
	ns, err := netns.GetFromPath(labNS)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", labNS, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, err
	}
	l, err := h.LinkByName(parent)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("the simulated nodes' parent link %s: %w", parent, err)
	}
	return &Net{parent: l.Attrs().Index, prefix: prefix, lab: h}, nil
}

// Close releases the lab's namespace.
func (n *Net) Close() { n.lab.Close() }

// Node is a simulated node: its inventory entry's identity.
type Node struct {
	Name, MAC, IP, Arch string
	// Boot is its boot method (pxelinux, ipxe; etherboot, uefi and http
	// as their first file says).
	Boot string
	// After is how long after Config.PowerOn the node starts (a ramp).
	After time.Duration
}

// Config is what every node of a run shares.
type Config struct {
	Net      *Net
	Master   string
	Firmware Firmware
	// Sums are the published files' SHA-256 by name (SHA256SUMS of the
	// live generation): every file a node fetches must match.
	Sums map[string]string
	// Trace is the NFS traffic a node plays once its root is mounted; its
	// first mount is the recorded node's root, mapped to this node's.
	Trace *nfstrace.Trace
	// RootOf is a node's root export (the nfsroot path with its address).
	RootOf func(Node) string
	// Timeout is a node's whole boot; TFTPTimeout a TFTP round trip.
	Timeout     time.Duration
	TFTPTimeout time.Duration
	// Progress, when set, gets each stage a node reaches.
	Progress func(node string, st boot.Reached)
	// PowerOn, when set, holds every node, its NIC made, until it is
	// closed, as power holds a room of machines: making a namespace and
	// a macvlan is the simulator's work, not the boot's, and takes
	// milliseconds each. Prepared is called once a node's NIC is up.
	PowerOn  <-chan struct{}
	Prepared func()
}

// Failure kinds.
const (
	NoOffer  = "no offer"
	TFTP     = "TFTP"
	HTTP     = "HTTP"
	NFS      = "NFS"
	Checksum = "checksum"
	Setup    = "setup"
)

// Failure is where and why a node stopped.
type Failure struct {
	Kind  string `json:"kind"`
	Stage string `json:"stage"`
	Err   string `json:"error"`
}

// Result is a node's boot.
type Result struct {
	Name    string         `json:"name"`
	IP      string         `json:"ip"`
	Boot    string         `json:"boot"`
	Up      bool           `json:"up"`
	UpAt    float64        `json:"up_seconds,omitempty"`
	Stages  []boot.Reached `json:"stages"`
	Failure *Failure       `json:"failure,omitempty"`
	// DHCP is how many messages it sent the DHCP server (DISCOVER and
	// REQUEST, retries included).
	DHCP int `json:"dhcp_requests"`
	// Files are what it fetched, by name, and their bytes.
	Files map[string]int64 `json:"files"`
	// Read is what its NFS traffic read; Retransmits its TCP segments sent
	// again.
	Read        int64 `json:"nfs_read_bytes"`
	Retransmits int64 `json:"tcp_retransmits"`
}

// node is one boot in progress.
type node struct {
	c     *Config
	nd    Node
	res   *Result
	start time.Time
	mac   net.HardwareAddr
	ip    net.IP
}

func (n *node) reach(name string) {
	st := boot.Reached{Name: name, At: time.Since(n.start).Seconds()}
	n.res.Stages = append(n.res.Stages, st)
	if n.c.Progress != nil {
		n.c.Progress(n.nd.Name, st)
	}
}

// stop records a failure at the next stage.
func (n *node) stop(kind, stage string, err error) Result {
	n.res.Failure = &Failure{Kind: kind, Stage: stage, Err: err.Error()}
	return *n.res
}

// Boot boots one node and returns how far it got. It runs on a thread it
// takes for good: the thread, its namespace and the node's macvlan end
// with the call.
func Boot(ctx context.Context, c *Config, nd Node) Result {
	runtime.LockOSThread() // never unlocked: Go ends the thread, and its namespace, with the goroutine
	n := &node{c: c, nd: nd, res: &Result{Name: nd.Name, IP: nd.IP, Boot: nd.Boot, Files: map[string]int64{}}, start: time.Now()}
	prepared := func() {}
	if c.Prepared != nil {
		prepared = sync.OnceFunc(c.Prepared)
		defer prepared()
	}
	var err error
	if n.mac, err = net.ParseMAC(nd.MAC); err != nil {
		return n.stop(Setup, boot.Lease, err)
	}
	if n.ip = net.ParseIP(nd.IP).To4(); n.ip == nil {
		return n.stop(Setup, boot.Lease, fmt.Errorf("%s: not an IPv4 address", nd.IP))
	}
	h, err := n.nic()
	prepared()
	if err != nil {
		return n.stop(Setup, boot.Lease, err)
	}
	if c.PowerOn != nil {
		select {
		case <-c.PowerOn:
		case <-ctx.Done():
			h.Close()
			return n.stop(Setup, boot.Lease, ctx.Err())
		}
		if nd.After > 0 {
			select {
			case <-time.After(nd.After):
			case <-ctx.Done():
				h.Close()
				return n.stop(Setup, boot.Lease, ctx.Err())
			}
		}
		n.start = time.Now()
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	r := n.run(ctx, h) // closes h
	r.Retransmits = retransmits()
	return r
}

// nic moves this thread into a new network namespace and gives it eth0, a
// macvlan with the node's MAC on the lab's network.
func (n *node) nic() (*netlink.Handle, error) {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("a network namespace for %s: %w", n.nd.Name, err)
	}
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	name := "dn" + strings.ReplaceAll(n.nd.MAC, ":", "")[4:]
	mv := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: n.c.Net.parent, HardwareAddr: n.mac, TxQLen: -1}, Mode: netlink.MACVLAN_MODE_PRIVATE}
	n.c.Net.mu.Lock()
	n.c.Net.lab.LinkDel(mv) // a crashed run's
	err = n.c.Net.lab.LinkAdd(mv)
	if err == nil {
		if err = n.c.Net.lab.LinkSetNsFd(mv, fd); err != nil {
			n.c.Net.lab.LinkDel(mv)
		}
	}
	n.c.Net.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("macvlan %s for %s: %w", name, n.nd.Name, err)
	}
	h, err := netlink.NewHandle() // this thread's namespace
	if err != nil {
		return nil, err
	}
	for _, l := range []string{"lo", name} {
		link, err := h.LinkByName(l)
		if err == nil {
			err = h.LinkSetUp(link)
		}
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("%s in %s's namespace: %w", l, n.nd.Name, err)
		}
	}
	return h, nil
}

// address gives eth0 the node's address, as the firmware's stack has it
// once DHCP is done.
func (n *node) address(h *netlink.Handle) error {
	links, err := h.LinkList()
	if err != nil {
		return err
	}
	for _, l := range links {
		if l.Type() == "macvlan" {
			return h.AddrReplace(l, &netlink.Addr{IPNet: &net.IPNet{IP: n.ip, Mask: net.CIDRMask(n.c.Net.prefix, 32)}})
		}
	}
	return errors.New("no macvlan in the node's namespace")
}

// run is the boot, stage by stage, as the node's boot method says.
func (n *node) run(ctx context.Context, h *netlink.Handle) Result {
	closeH := sync.OnceFunc(func() { h.Close() })
	defer closeH()
	ipxeROM := n.c.Firmware == IPXE
	lease, err := n.dhcp(ctx, n.firmwareAsk(ipxeROM))
	if err != nil {
		return n.stop(NoOffer, boot.Lease, err)
	}
	n.reach(boot.Lease)
	err = n.address(h)
	// the netlink socket's work is done: a descriptor fewer per node
	// for the rest of the boot (5,000 nodes ran the simulator out)
	closeH()
	if err != nil {
		return n.stop(Setup, boot.FirstFile, err)
	}
	file := bootFile(lease)
	var kernelArgs string
	switch {
	case strings.HasPrefix(file, "http://"):
		// iPXE got boot.ipxe: everything next over HTTP
		if kernelArgs, err = n.ipxe(ctx, file); err != nil {
			return n.fail(err)
		}
	case file == "pxelinux.0":
		if kernelArgs, err = n.pxelinux(ctx); err != nil {
			return n.fail(err)
		}
	case file == "undionly.kpxe" || file == "snponly.efi":
		if err := n.tftp(ctx, file); err != nil {
			return n.fail(err)
		}
		n.reach(boot.FirstFile)
		// iPXE starts and asks DHCP again
		lease2, err := n.dhcp(ctx, n.firmwareAsk(true))
		if err != nil {
			return n.stop(NoOffer, boot.Script, err)
		}
		if kernelArgs, err = n.ipxe(ctx, bootFile(lease2)); err != nil {
			return n.fail(err)
		}
	case strings.HasPrefix(file, "vmlinuz_"):
		if err := n.tftp(ctx, file); err != nil {
			return n.fail(err)
		}
		n.reach(boot.FirstFile)
		n.reach(boot.Fetched)
	default:
		return n.stop(TFTP, boot.FirstFile, fmt.Errorf("DHCP named %q as the first file: no boot method of a simulated node loads it", file))
	}
	// the kernel's own DHCP (ip=dhcp)
	if _, err := n.dhcp(ctx, kernelAsk()); err != nil {
		return n.stop(NoOffer, boot.IPConfig, err)
	}
	n.reach(boot.IPConfig)
	if err := n.nfs(ctx, kernelArgs); err != nil {
		return n.fail(err)
	}
	n.res.Up, n.res.UpAt = true, time.Since(n.start).Seconds()
	n.reach(Up)
	return *n.res
}

// stageError is a failure of a kind at a stage.
type stageError struct {
	kind, stage string
	err         error
}

func (e *stageError) Error() string { return e.err.Error() }

func (n *node) fail(err error) Result {
	var se *stageError
	if errors.As(err, &se) {
		return n.stop(se.kind, se.stage, se.err)
	}
	return n.stop(Setup, boot.Next(n.res.Stages), err)
}

// fetched counts a file and checks it against SHA256SUMS.
func (n *node) fetched(name string, size int64, sum []byte, stage, kind string) error {
	n.res.Files[name] += size
	// a name inside a generation is listed by its name in it
	listed := strings.TrimPrefix(name, "/")
	if m := generationPrefix.FindString(listed); m != "" {
		listed = listed[len(m):]
	}
	want, ok := n.c.Sums[listed]
	if !ok {
		return nil // not a published file (a node's iPXE script 404 is not fetched)
	}
	if got := hex.EncodeToString(sum); got != want {
		return &stageError{Checksum, stage, fmt.Errorf("%s: sha256 %s, SHA256SUMS says %s (%d bytes by %s)", name, got, want, size, kind)}
	}
	return nil
}

// generationPrefix is a published generation's directory in a path.
var generationPrefix = regexp.MustCompile(`^\.diskless/generations/[0-9]+/`)

// retransmits is TCP's RetransSegs in this thread's namespace.
func retransmits() int64 {
	data, err := os.ReadFile("/proc/thread-self/net/snmp")
	if err != nil {
		return 0
	}
	var head []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "Tcp:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i := range head {
			if head[i] == "RetransSegs" && i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				return v
			}
		}
	}
	return 0
}

// hashCount is a writer that hashes and counts.
type hashCount struct {
	h io.Writer
	n int64
	s interface{ Sum([]byte) []byte }
}

func newHashCount() *hashCount {
	h := sha256.New()
	return &hashCount{h: h, s: h}
}

func (w *hashCount) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return w.h.Write(p)
}
