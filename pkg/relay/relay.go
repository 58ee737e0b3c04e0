// Package relay moves a QEMU guest's Ethernet frames between QEMU's
// datagram socket (-netdev dgram) and a tap device on a bridge, dropping
// a fraction of them and holding them back as a lossy, slow link would,
// and counting the bytes of each protocol the master serves. It stands
// where tc-netem would: this machine's kernel, and CI's, has no sch_netem
// (nor NFT_QUEUE), so the impairment is done in user space. Hand-written:
// no library relays tap <-> datagram socket with impairment.
//
// It relays frames; it starts no guest and knows no scenario.
package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/diskless/diskless/internal/netns"
)

// Impairment is what a node's link does to its frames, in each direction
// independently: drop a fraction (Loss, 0.05 for 5 %) and hold every frame
// Delay longer. It stands where tc-netem would (this machine's kernel, and
// the CI machine's, has no sch_netem): between the node's NIC and its tap
// on the bridge, so DHCP, TFTP, HTTP and NFS all cross it.
type Impairment struct {
	Loss  float64       `json:"loss"`
	Delay time.Duration `json:"delay_ns"`
	// Seed makes the drops of a run repeatable (each node's link draws
	// from Seed and its tap's name).
	Seed uint64 `json:"seed"`
}

func (i Impairment) String() string {
	return fmt.Sprintf("loss %.1f %%, delay %s", i.Loss*100, i.Delay)
}

// Validate refuses impossible values.
func (i Impairment) Validate() error {
	if i.Loss < 0 || i.Loss >= 1 {
		return fmt.Errorf("loss %.3f: want a fraction from 0 to below 1 (0.05 is 5 %%)", i.Loss)
	}
	if i.Delay < 0 || i.Delay > 10*time.Second {
		return fmt.Errorf("delay %s: want 0 to 10 s", i.Delay)
	}
	return nil
}

// Protocols a link counts bytes for (the master's side of each: DHCP
// from port 67, TFTP from tftpd's ports, HTTP from 80, NFS from 2049, RPC
// for rpcbind and mountd, the rest as other).
const (
	ProtoDHCP  = "dhcp"
	ProtoTFTP  = "tftp"
	ProtoHTTP  = "http"
	ProtoNFS   = "nfs"
	ProtoRPC   = "rpc"
	ProtoOther = "other"
)

// Stats is what crossed a node's link.
type Stats struct {
	// ToNode and FromNode are Ethernet bytes by protocol.
	ToNode   map[string]int64 `json:"to_node_bytes"`
	FromNode map[string]int64 `json:"from_node_bytes"`
	// ToNodeFrom are the Ethernet bytes to the node by the IPv4 address
	// that sent them, DHCP's left out (every server offers, and offers
	// may be broadcast): which master served its files, with several.
	ToNodeFrom map[string]int64 `json:"to_node_bytes_by_source,omitempty"`
	// Dropped frames, to the node and from it.
	DroppedToNode   int64 `json:"dropped_to_node"`
	DroppedFromNode int64 `json:"dropped_from_node"`
	Frames          int64 `json:"frames"`
}

// Link relays one node's frames between its tap and QEMU's datagram
// socket.
type Link struct {
	tap      *os.File
	sock     *net.UnixConn
	qemuAddr *net.UnixAddr
	imp      Impairment
	mu       sync.Mutex
	rnd      *rand.Rand
	stats    Stats
	frames   atomic.Int64
	done     chan struct{}
	wg       sync.WaitGroup
	closed   atomic.Bool
}

// openTap attaches to an existing tap device of the network namespace at
// nsPath.
func openTap(nsPath, name string) (*os.File, error) {
	return netns.Do(nsPath, func() (*os.File, error) {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("/dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return nil, err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("attaching to tap %s: %w", name, err)
		}
		return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
	})
}

// New relays between tap (a tap device in the network namespace at nsPath)
// and a pair of Unix datagram sockets in dir: QEMU binds <tap>.qemu and
// sends to <tap>.link, which the link binds. It returns the link and the
// two socket paths, QEMU's (Machine.Socket) first, the link's
// (Machine.SocketPeer) second.
func New(nsPath, tap, dir string, imp Impairment) (*Link, string, string, error) {
	if err := imp.Validate(); err != nil {
		return nil, "", "", err
	}
	mine, theirs := filepath.Join(dir, tap+".link"), filepath.Join(dir, tap+".qemu")
	os.Remove(mine)
	os.Remove(theirs)
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: mine, Net: "unixgram"})
	if err != nil {
		return nil, "", "", err
	}
	f, err := openTap(nsPath, tap)
	if err != nil {
		sock.Close()
		return nil, "", "", err
	}
	var seed [8]byte
	copy(seed[:], tap)
	l := &Link{tap: f, sock: sock, qemuAddr: &net.UnixAddr{Name: theirs, Net: "unixgram"}, imp: imp,
		rnd:  rand.New(rand.NewPCG(imp.Seed, binary.LittleEndian.Uint64(seed[:]))),
		done: make(chan struct{}), stats: Stats{ToNode: map[string]int64{}, FromNode: map[string]int64{}}}
	toNode := l.pipe(func(b []byte) error { _, err := l.sock.WriteToUnix(b, l.qemuAddr); return err })
	fromNode := l.pipe(func(b []byte) error { _, err := l.tap.Write(b); return err })
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, err := l.tap.Read(buf)
			if err != nil {
				return
			}
			l.pass(buf[:n], true, toNode)
		}
	}()
	go func() {
		defer l.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, _, err := l.sock.ReadFromUnix(buf)
			if err != nil {
				return
			}
			l.pass(buf[:n], false, fromNode)
		}
	}()
	return l, theirs, mine, nil
}

type frame struct {
	data []byte
	due  time.Time
}

// pipe returns where frames of one direction go: straight to send, or
// through a queue that holds each one until it is due (a constant delay
// keeps their order).
func (l *Link) pipe(send func([]byte) error) chan<- frame {
	ch := make(chan frame, 8192)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			select {
			case <-l.done:
				return
			case f := <-ch:
				if d := time.Until(f.due); d > 0 {
					select {
					case <-time.After(d):
					case <-l.done:
						return
					}
				}
				send(f.data) // QEMU not started yet, or gone: the frame is lost
			}
		}
	}()
	return ch
}

// pass counts a frame, drops it with the link's loss, and queues it.
func (l *Link) pass(b []byte, toNode bool, out chan<- frame) {
	l.frames.Add(1)
	proto := classify(b, toNode)
	l.mu.Lock()
	drop := l.imp.Loss > 0 && l.rnd.Float64() < l.imp.Loss
	switch {
	case drop && toNode:
		l.stats.DroppedToNode++
	case drop:
		l.stats.DroppedFromNode++
	case toNode:
		l.stats.ToNode[proto] += int64(len(b))
		if src := sourceIPv4(b); src != "" && proto != ProtoDHCP {
			if l.stats.ToNodeFrom == nil {
				l.stats.ToNodeFrom = map[string]int64{}
			}
			l.stats.ToNodeFrom[src] += int64(len(b))
		}
	default:
		l.stats.FromNode[proto] += int64(len(b))
	}
	l.mu.Unlock()
	if drop {
		return
	}
	f := frame{data: append([]byte(nil), b...), due: time.Now().Add(l.imp.Delay)}
	select {
	case out <- f:
	default: // queue full: lost, as a full device queue loses it
	}
}

// classify names a frame's protocol by the master's port: the source port
// of frames to the node, the destination port of frames from it.
func classify(b []byte, toNode bool) string {
	if len(b) < 14+20 || binary.BigEndian.Uint16(b[12:14]) != 0x0800 {
		return ProtoOther
	}
	ip := b[14:]
	ihl := int(ip[0]&0x0f) * 4
	if len(ip) < ihl+4 {
		return ProtoOther
	}
	proto := ip[9]
	if proto != unix.IPPROTO_UDP && proto != unix.IPPROTO_TCP {
		return ProtoOther
	}
	port := binary.BigEndian.Uint16(ip[ihl : ihl+2])
	if !toNode {
		port = binary.BigEndian.Uint16(ip[ihl+2 : ihl+4])
	}
	switch {
	case proto == unix.IPPROTO_UDP && (port == 67 || port == 68):
		return ProtoDHCP
	case port == 2049:
		return ProtoNFS
	case port == 80 && proto == unix.IPPROTO_TCP:
		return ProtoHTTP
	case port == 111 || port == 20048 || port == 875 || proto == unix.IPPROTO_TCP:
		// rpcbind, Ganesha's mountd and rquotad
		return ProtoRPC
	}
	// tftpd-hpa: port 69 and the ports of its transfers
	return ProtoTFTP
}

// sourceIPv4 is an IPv4 frame's source address, "" for any other frame.
func sourceIPv4(b []byte) string {
	if len(b) < 14+20 || binary.BigEndian.Uint16(b[12:14]) != 0x0800 {
		return ""
	}
	return netip.AddrFrom4([4]byte(b[14+12 : 14+16])).String()
}

// Stats copies the link's counters.
func (l *Link) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.ToNode, s.FromNode = map[string]int64{}, map[string]int64{}
	for k, v := range l.stats.ToNode {
		s.ToNode[k] = v
	}
	if l.stats.ToNodeFrom != nil {
		s.ToNodeFrom = maps.Clone(l.stats.ToNodeFrom)
	}
	for k, v := range l.stats.FromNode {
		s.FromNode[k] = v
	}
	s.Frames = l.frames.Load()
	return s
}

// Close stops relaying and removes the sockets.
func (l *Link) Close() error {
	if !l.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(l.done)
	errs := []error{l.tap.Close(), l.sock.Close()}
	l.wg.Wait()
	os.Remove(l.qemuAddr.Name)
	os.Remove(l.sock.LocalAddr().String())
	return errors.Join(errs...)
}

// Closed says whether Close was called.
func (l *Link) Closed() bool { return l.closed.Load() }
