package nfstrace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strings"
	"sync"
)

// ONC RPC programs the recorder follows.
const (
	progPortmap = 100000
	progNFS     = 100003
	progMount   = 100005
)

// nfsProcs are NFS v3's procedures (RFC 1813) by number.
var nfsProcs = []string{"NULL", "GETATTR", "SETATTR", "LOOKUP", "ACCESS", "READLINK", "READ", "WRITE", "CREATE", "MKDIR",
	"SYMLINK", "MKNOD", "REMOVE", "RMDIR", "RENAME", "LINK", "READDIR", "READDIRPLUS", "FSSTAT", "FSINFO", "PATHCONF", "COMMIT"}

// Recorder builds a Trace from a node's Ethernet frames, in the order
// they crossed its link (both directions). Frames of other protocols are
// ignored; it is safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	streams map[flow]*stream
	pending map[callKey]*call
	handles map[string]object
	trace   Trace
	// Frames counts the frames seen, Errors what could not be decoded,
	// Truncated the frames a capture cut short (not followed).
	Frames, Errors, Truncated int
}

type flow struct {
	src, dst netip.AddrPort
	tcp      bool
}

// stream is one direction of a TCP connection: its bytes in order and
// the RPC records they carry.
type stream struct {
	next    uint32
	started bool
	ahead   map[uint32][]byte
	buf     []byte
	record  []byte
}

type callKey struct {
	client netip.AddrPort
	xid    uint32
}

type call struct {
	prog, proc uint32
	op         Op
	// dir and name of a call whose reply names a new object (LOOKUP,
	// CREATE, ...); the mount's dirpath for MNT
	dir  string
	name string
	exp  string
}

type object struct{ export, path string }

// NewRecorder returns an empty recorder; source says what it records.
func NewRecorder(source string) *Recorder {
	return &Recorder{streams: map[flow]*stream{}, pending: map[callKey]*call{}, handles: map[string]object{}, trace: Trace{Source: source}}
}

// Trace returns what was recorded so far.
func (r *Recorder) Trace() *Trace {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.trace
	t.Mounts = append([]string(nil), r.trace.Mounts...)
	t.Ops = append([]Op(nil), r.trace.Ops...)
	return &t
}

// Frame takes one Ethernet frame.
func (r *Recorder) Frame(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Frames++
	if len(b) < 14+20 || binary.BigEndian.Uint16(b[12:14]) != 0x0800 {
		return
	}
	ip := b[14:]
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if ihl < 20 || total > len(ip) || total < ihl || binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
		return // fragments are not followed (NFS over TCP has none)
	}
	src, _ := netip.AddrFromSlice(ip[12:16])
	dst, _ := netip.AddrFromSlice(ip[16:20])
	l4 := ip[ihl:total]
	switch ip[9] {
	case 6: // TCP
		if len(l4) < 20 {
			return
		}
		off := int(l4[12]>>4) * 4
		if off < 20 || off > len(l4) {
			return
		}
		f := flow{netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4[0:2])), netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:4])), true}
		r.tcp(f, binary.BigEndian.Uint32(l4[4:8]), l4[13], l4[off:])
	case 17: // UDP: one RPC message a datagram
		if len(l4) < 8 {
			return
		}
		f := flow{netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4[0:2])), netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:4])), false}
		if f.src.Port() == 67 || f.src.Port() == 68 || f.dst.Port() == 67 || f.dst.Port() == 68 {
			return
		}
		r.message(f, l4[8:])
	}
}

const (
	tcpSYN = 0x02
	tcpFIN = 0x01
	tcpRST = 0x04
)

// tcp puts a segment's payload in order on its stream and takes the RPC
// records it completes.
func (r *Recorder) tcp(f flow, seq uint32, flags byte, payload []byte) {
	s := r.streams[f]
	if flags&tcpSYN != 0 {
		s = &stream{next: seq + 1, started: true, ahead: map[uint32][]byte{}}
		r.streams[f] = s
		return
	}
	if s == nil {
		return // a connection that began before the recording
	}
	if flags&tcpRST != 0 {
		delete(r.streams, f)
		return
	}
	if len(payload) > 0 {
		switch d := int32(seq - s.next); {
		case d > 0:
			s.ahead[seq] = append([]byte(nil), payload...)
		case int(-d) < len(payload):
			s.buf = append(s.buf, payload[-d:]...)
			s.next += uint32(len(payload) + int(d))
		}
		for {
			p, ok := s.ahead[s.next]
			if !ok {
				break
			}
			delete(s.ahead, s.next)
			s.buf = append(s.buf, p...)
			s.next += uint32(len(p))
		}
		r.records(f, s)
	}
	if flags&tcpFIN != 0 {
		delete(r.streams, f)
	}
}

// records takes the RPC records (RFC 5531 record marking: a 4-byte header
// with the last-fragment bit and the fragment's length) off a stream.
func (r *Recorder) records(f flow, s *stream) {
	for len(s.buf) >= 4 {
		h := binary.BigEndian.Uint32(s.buf)
		n := int(h & 0x7fffffff)
		if len(s.buf) < 4+n {
			return
		}
		s.record = append(s.record, s.buf[4:4+n]...)
		s.buf = s.buf[4+n:]
		if h&0x80000000 != 0 {
			r.message(f, s.record)
			s.record = nil
		}
	}
}

// message decodes one RPC message: a call is kept until its reply comes.
func (r *Recorder) message(f flow, m []byte) {
	x := &xdr{b: m}
	xid, typ := x.u32(), x.u32()
	if x.err != nil {
		return
	}
	switch typ {
	case 0:
		c, err := r.decodeCall(x)
		if err != nil {
			if !f.tcp {
				return // a datagram that is not RPC (TFTP's)
			}
			r.Errors++
			return
		}
		if c != nil {
			c.op.Call = len(m)
			r.pending[callKey{f.src, xid}] = c
		}
	case 1:
		c := r.pending[callKey{f.dst, xid}]
		if c == nil {
			return
		}
		delete(r.pending, callKey{f.dst, xid})
		c.op.Reply = len(m)
		if err := r.decodeReply(x, c); err != nil {
			r.Errors++
		}
		r.trace.Ops = append(r.trace.Ops, c.op)
	}
}

func (r *Recorder) decodeCall(x *xdr) (*call, error) {
	rpcvers, prog, vers, proc := x.u32(), x.u32(), x.u32(), x.u32()
	x.skipAuth() // credential
	x.skipAuth() // verifier
	if x.err != nil || rpcvers != 2 {
		return nil, errors.New("not an RPC v2 call")
	}
	c := &call{prog: prog, proc: proc}
	switch {
	case prog == progPortmap:
		c.op.Proc = map[uint32]string{3: "GETPORT"}[proc]
		if c.op.Proc == "" {
			c.op.Proc = fmt.Sprintf("PORTMAP%d", proc)
		}
		return c, nil
	case prog == progMount && vers == 3:
		if proc != 1 {
			c.op.Proc = fmt.Sprintf("MOUNT%d", proc)
			return c, nil
		}
		c.op.Proc = "MNT"
		c.exp = x.str()
		c.op.Export, c.op.Path = c.exp, "/"
		return c, x.err
	case prog == progNFS && vers == 3 && int(proc) < len(nfsProcs):
		c.op.Proc = nfsProcs[proc]
	default:
		return nil, nil // NFS v4, NLM: not followed
	}
	if proc == 0 {
		return c, nil
	}
	fh := x.opaque()
	obj := r.handles[string(fh)]
	c.op.Export, c.op.Path = obj.export, obj.path
	switch c.op.Proc {
	case "LOOKUP", "CREATE", "MKDIR", "SYMLINK", "MKNOD", "REMOVE", "RMDIR", "RENAME":
		c.name = x.str()
		c.dir = obj.path
		c.op.Name = c.name
		switch c.op.Proc {
		case "RENAME":
			to := r.handles[string(x.opaque())]
			toName := x.str()
			if to.export == obj.export && to.export != "" {
				c.op.To = path.Join("/", to.path, toName)
			}
		case "SYMLINK":
			x.skipSattr()
			c.op.To = x.str()
		}
	case "LINK":
		x.opaque()
		c.name = x.str()
		c.op.Name = c.name
	case "READ", "COMMIT":
		c.op.Offset, c.op.Count = x.u64(), x.u32()
	case "ACCESS":
		c.op.Mask = x.u32()
	case "READDIR":
		c.op.Offset = x.u64() // the cookie: 0 starts a listing
		x.take(8)             // cookieverf
		c.op.Count = x.u32()
	case "READDIRPLUS":
		c.op.Offset = x.u64()
		x.take(8)
		c.op.Dircount, c.op.Count = x.u32(), x.u32()
	case "WRITE":
		c.op.Offset, c.op.Count, c.op.Stable = x.u64(), x.u32(), x.u32()
	}
	return c, x.err
}

func (r *Recorder) decodeReply(x *xdr, c *call) error {
	if stat := x.u32(); stat != 0 {
		c.op.Status = 1000 + stat // denied
		return x.err
	}
	x.skipAuth()
	if accept := x.u32(); accept != 0 {
		c.op.Status = 2000 + accept
		return x.err
	}
	if x.err != nil {
		return x.err
	}
	switch {
	case c.prog == progMount && c.op.Proc == "MNT":
		if c.op.Status = x.u32(); c.op.Status == 0 {
			r.handles[string(x.opaque())] = object{c.exp, "/"}
			r.trace.Mounts = append(r.trace.Mounts, c.exp)
		}
	case c.prog == progNFS && c.proc != 0:
		c.op.Status = x.u32()
		if c.op.Status != 0 {
			return x.err
		}
		switch c.op.Proc {
		case "LOOKUP":
			r.name(x.opaque(), c)
		case "CREATE", "MKDIR", "SYMLINK", "MKNOD":
			if x.u32() == 1 { // post_op_fh3 follows
				r.name(x.opaque(), c)
			}
		case "READ":
			x.skipPostOpAttr()
			c.op.Count = x.u32()
		case "READDIRPLUS":
			r.entries(x, c)
		case "RENAME":
			// the handles of the moved entry (and of what is under it)
			// now name its new path
			from := path.Join("/", c.dir, c.name)
			if c.op.To != "" {
				for fh, o := range r.handles {
					if o.export != c.op.Export {
						continue
					}
					if o.path == from {
						r.handles[fh] = object{o.export, c.op.To}
					} else if rest, ok := strings.CutPrefix(o.path, from+"/"); ok {
						r.handles[fh] = object{o.export, c.op.To + "/" + rest}
					}
				}
			}
		}
	}
	return x.err
}

// entries names the handles of a READDIRPLUS reply's entries (a
// client that lists a directory opens what it found without a LOOKUP).
func (r *Recorder) entries(x *xdr, c *call) {
	x.skipPostOpAttr()
	x.take(8) // cookieverf
	for x.err == nil && x.u32() == 1 {
		x.u64() // fileid
		name := x.str()
		x.u64() // cookie
		x.skipPostOpAttr()
		if x.u32() == 1 {
			fh := x.opaque()
			if c.op.Export != "" && x.err == nil && name != "." && name != ".." {
				r.handles[string(fh)] = object{c.op.Export, path.Join("/", c.op.Path, name)}
			}
		}
	}
}

// name records that fh is c's directory joined with c's name.
func (r *Recorder) name(fh []byte, c *call) {
	if c.op.Export == "" {
		return
	}
	r.handles[string(fh)] = object{c.op.Export, path.Join("/", c.dir, c.name)}
}

// enc writes XDR items.
type enc struct{ b []byte }

func (e *enc) u32(v uint32) *enc { e.b = binary.BigEndian.AppendUint32(e.b, v); return e }
func (e *enc) u64(v uint64) *enc { e.b = binary.BigEndian.AppendUint64(e.b, v); return e }
func (e *enc) opaque(v []byte) *enc {
	e.u32(uint32(len(v)))
	e.b = append(e.b, v...)
	for len(e.b)%4 != 0 {
		e.b = append(e.b, 0)
	}
	return e
}
func (e *enc) str(s string) *enc { return e.opaque([]byte(s)) }

// xdr reads XDR (RFC 4506) items; the first error sticks.
type xdr struct {
	b   []byte
	err error
}

func (x *xdr) take(n int) []byte {
	if x.err != nil {
		return nil
	}
	if n < 0 || n > len(x.b) {
		x.err = errors.New("truncated XDR")
		return nil
	}
	v := x.b[:n]
	x.b = x.b[n:]
	return v
}

func (x *xdr) u32() uint32 {
	if v := x.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (x *xdr) u64() uint64 {
	if v := x.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (x *xdr) opaque() []byte {
	n := int(x.u32())
	v := x.take(n)
	x.take((4 - n%4) % 4)
	return v
}

func (x *xdr) str() string { return string(x.opaque()) }

// skipAuth skips an opaque_auth (flavor, body).
func (x *xdr) skipAuth() {
	x.u32()
	x.opaque()
}

// skipSattr skips a sattr3: mode, uid, gid (a flag and a uint32 each),
// size (a flag and a uint64), atime and mtime (how, and a time when the
// client sets it).
func (x *xdr) skipSattr() {
	for i := 0; i < 3; i++ {
		if x.u32() == 1 {
			x.u32()
		}
	}
	if x.u32() == 1 {
		x.u64()
	}
	for i := 0; i < 2; i++ {
		if x.u32() == 2 {
			x.u64()
		}
	}
}

// skipPostOpAttr skips a post_op_attr: a flag, then a fattr3 (84 bytes).
func (x *xdr) skipPostOpAttr() {
	if x.u32() == 1 {
		x.take(84)
	}
}
