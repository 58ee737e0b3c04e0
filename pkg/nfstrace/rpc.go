package nfstrace

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"syscall"
	"time"
)

// rpcConn is an ONC RPC (RFC 5531) client on one TCP connection, one call
// at a time, as a node's NFS client talks to its server. It is written
// here, not taken from go-nfs-client, because a simulated node lives on
// one OS thread in a network namespace of its own: its sockets must be
// made on that thread, and go-nfs-client's client reconnects from a
// goroutine of its own, on any thread, that is in the host's namespace
// (a connection to the lab's master from there would leave the lab). This
// one dials, and dials again after a lost connection, on its caller's
// goroutine only.
type rpcConn struct {
	addr     string
	conn     net.Conn
	r        *bufio.Reader
	xid      uint32
	cred     []byte
	timeout  time.Duration
	deadline time.Time
	// Redials counts the connections made again after one was lost.
	Redials int
}

// RPC programs and the reply's accept states.
const (
	rpcCall      = 0
	rpcReply     = 1
	authNull     = 0
	authUnix     = 1
	msgAccepted  = 0
	acceptOK     = 0
	portmapVers  = 2
	pmapGetport  = 3
	ipprotoTCP   = 6
	mountVers    = 3
	nfsVers      = 3
	callTimeout  = 60 * time.Second // the kernel's timeo=600 over TCP
	reservedLow  = 600
	reservedHigh = 1023
)

// dialRPC connects from a reserved port (as the kernel does: servers may
// insist on one) to addr.
func dialRPC(addr, machine string, deadline time.Time) (*rpcConn, error) {
	c := &rpcConn{addr: addr, xid: rand.Uint32(), timeout: callTimeout, deadline: deadline}
	c.cred = (&enc{}).u32(uint32(time.Now().Unix())).str(machine).u32(0).u32(0).u32(0).b // stamp, machine, uid 0, gid 0, no groups
	return c, c.dial()
}

func (c *rpcConn) dial() error {
	var err error
	for i := 0; i < 20; i++ {
		port := reservedLow + rand.IntN(reservedHigh-reservedLow+1)
		d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{Port: port}}
		if !c.deadline.IsZero() {
			d.Deadline = c.deadline
		}
		var conn net.Conn
		if conn, err = d.Dial("tcp", c.addr); err == nil {
			c.conn, c.r = conn, bufio.NewReaderSize(conn, 1<<16)
			return nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return err
}

// Close ends the connection.
func (c *rpcConn) Close() {
	if c.conn != nil {
		c.conn.Close()
	}
}

// call sends one call and returns the reply's results (after the accept
// state). A connection lost or silent for the call's timeout is made
// again once and the call sent again, as a hard NFS mount does.
func (c *rpcConn) call(prog, vers, proc uint32, args []byte) ([]byte, error) {
	res, err := c.try(prog, vers, proc, args)
	var ne net.Error
	if err != nil && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.As(err, &ne)) {
		c.conn.Close()
		if derr := c.dial(); derr != nil {
			return nil, fmt.Errorf("%w; connecting again: %v", err, derr)
		}
		c.Redials++
		res, err = c.try(prog, vers, proc, args)
	}
	return res, err
}

func (c *rpcConn) try(prog, vers, proc uint32, args []byte) ([]byte, error) {
	c.xid++
	msg := (&enc{}).u32(c.xid).u32(rpcCall).u32(2).u32(prog).u32(vers).u32(proc).u32(authUnix).opaque(c.cred).u32(authNull).u32(0).b
	msg = append(msg, args...)
	rec := binary.BigEndian.AppendUint32(nil, 0x80000000|uint32(len(msg)))
	deadline := time.Now().Add(c.timeout)
	if !c.deadline.IsZero() && c.deadline.Before(deadline) {
		deadline = c.deadline
	}
	c.conn.SetDeadline(deadline)
	if _, err := c.conn.Write(append(rec, msg...)); err != nil {
		return nil, err
	}
	for {
		reply, err := c.record()
		if err != nil {
			return nil, err
		}
		x := &xdr{b: reply}
		if xid := x.u32(); xid != c.xid || x.u32() != rpcReply {
			continue // an answer to a call sent before a reconnect
		}
		if st := x.u32(); st != msgAccepted {
			return nil, fmt.Errorf("RPC call denied (%d)", st)
		}
		x.skipAuth()
		if st := x.u32(); st != acceptOK {
			return nil, fmt.Errorf("RPC program %d v%d proc %d not accepted (%d)", prog, vers, proc, st)
		}
		if x.err != nil {
			return nil, x.err
		}
		return x.b, nil
	}
}

// record reads one RPC record (its fragments joined).
func (c *rpcConn) record() ([]byte, error) {
	var out []byte
	for {
		var h [4]byte
		if _, err := io.ReadFull(c.r, h[:]); err != nil {
			return nil, err
		}
		n := binary.BigEndian.Uint32(h[:])
		size := int(n & 0x7fffffff)
		if size > 4<<20 {
			return nil, fmt.Errorf("an RPC fragment of %d bytes", size)
		}
		start := len(out)
		out = append(out, make([]byte, size)...)
		if _, err := io.ReadFull(c.r, out[start:]); err != nil {
			return nil, err
		}
		if n&0x80000000 != 0 {
			return out, nil
		}
	}
}

// getport asks the server's rpcbind (port 111, over TCP) for a program's
// TCP port.
func getport(server, machine string, prog, vers uint32, deadline time.Time) (int, error) {
	pm, err := dialRPC(net.JoinHostPort(server, "111"), machine, deadline)
	if err != nil {
		return 0, fmt.Errorf("rpcbind: %w", err)
	}
	defer pm.Close()
	res, err := pm.call(progPortmap, portmapVers, pmapGetport, (&enc{}).u32(prog).u32(vers).u32(ipprotoTCP).u32(0).b)
	if err != nil {
		return 0, fmt.Errorf("rpcbind: %w", err)
	}
	x := &xdr{b: res}
	port := x.u32()
	if x.err != nil || port == 0 {
		return 0, fmt.Errorf("rpcbind: program %d v%d is not registered", prog, vers)
	}
	return int(port), nil
}

// hostPort joins a server and a port.
func hostPort(server string, port int) string { return net.JoinHostPort(server, strconv.Itoa(port)) }
