package nfstrace

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// wire builds the frames of one TCP connection between a node and a
// server, as the relay sees them.
type wire struct {
	t          *testing.T
	node, srv  [4]byte
	nport      uint16
	sport      uint16
	nseq, sseq uint32
	frames     [][]byte
}

func (w *wire) frame(toServer bool, seq uint32, flags byte, payload []byte) []byte {
	src, dst, sp, dp := w.node, w.srv, w.nport, w.sport
	if !toServer {
		src, dst, sp, dp = w.srv, w.node, w.sport, w.nport
	}
	b := make([]byte, 14+20+20+len(payload))
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+20+len(payload)))
	ip[9] = 6
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], sp)
	binary.BigEndian.PutUint16(tcp[2:], dp)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12] = 5 << 4
	tcp[13] = flags
	copy(tcp[20:], payload)
	return b
}

func (w *wire) open() {
	w.frames = append(w.frames, w.frame(true, w.nseq, tcpSYN, nil), w.frame(false, w.sseq, tcpSYN|0x10, nil))
	w.nseq++
	w.sseq++
}

// send puts a record-marked RPC message on the wire, in segments of at
// most seg bytes.
func (w *wire) send(toServer bool, msg []byte, seg int) {
	rec := binary.BigEndian.AppendUint32(nil, 0x80000000|uint32(len(msg)))
	rec = append(rec, msg...)
	seq := &w.sseq
	if toServer {
		seq = &w.nseq
	}
	for len(rec) > 0 {
		n := min(seg, len(rec))
		w.frames = append(w.frames, w.frame(toServer, *seq, 0x18, rec[:n]))
		*seq += uint32(n)
		rec = rec[n:]
	}
}

func callMsg(xid, prog, proc uint32) *enc {
	e := (&enc{}).u32(xid).u32(0).u32(2).u32(prog).u32(3).u32(proc)
	return e.u32(1).opaque([]byte("unixcred")).u32(0).opaque(nil) // AUTH_UNIX, AUTH_NULL
}

func replyMsg(xid uint32) *enc {
	return (&enc{}).u32(xid).u32(1).u32(0).u32(0).opaque(nil).u32(0) // accepted, success
}

// A node's mount and reads, as frames: paths resolve through MNT and
// LOOKUP replies; a record split over segments, a segment out of order
// and a retransmitted one are reassembled; other traffic is ignored.
// sample is a node's mount, lookups, a READ in 6 segments, a failed
// LOOKUP and a READDIRPLUS; data is what the READ returns.
func sample(t *testing.T) (w *wire, data []byte) {
	w = &wire{t: t, node: [4]byte{192, 168, 1, 21}, srv: [4]byte{192, 168, 1, 1}, nport: 700, sport: 2049, nseq: 1000, sseq: 5000}
	w.open()
	w.send(true, callMsg(1, progMount, 1).opaque([]byte("/diskless/192.168.1.21")).b, 1500)
	w.send(false, replyMsg(1).u32(0).opaque([]byte("ROOT")).u32(1).u32(1).b, 1500)
	w.send(true, callMsg(2, progNFS, 3).opaque([]byte("ROOT")).opaque([]byte("etc")).b, 1500)
	w.send(false, replyMsg(2).u32(0).opaque([]byte("ETC")).u32(0).u32(0).b, 1500)
	w.send(true, callMsg(3, progNFS, 3).opaque([]byte("ETC")).opaque([]byte("hostname")).b, 1500)
	w.send(false, replyMsg(3).u32(0).opaque([]byte("HOST")).u32(0).u32(0).b, 1500)
	w.send(true, callMsg(4, progNFS, 6).opaque([]byte("HOST")).u64(0).u32(4096).b, 1500)
	attr := make([]byte, 84)
	data = []byte(strings.Repeat("slave21\n", 400))
	w.send(false, append(replyMsg(4).u32(0).u32(1).b, (&enc{b: attr}).u32(uint32(len(data))).u32(1).opaque(data).b...), 600) // in 6 segments
	w.send(true, callMsg(5, progNFS, 3).opaque([]byte("ROOT")).opaque([]byte("nosuch")).b, 1500)
	w.send(false, replyMsg(5).u32(2).u32(0).u32(0).b, 1500) // NFS3ERR_NOENT
	w.send(true, callMsg(6, progNFS, 17).opaque([]byte("ETC")).u64(0).u64(0).u32(4096).u32(32768).b, 1500)
	// the listing names passwd with its handle: the READ after it has no
	// LOOKUP, as the kernel's after a READDIRPLUS
	w.send(false, replyMsg(6).u32(0).u32(0).u64(0x1234).u32(1).u64(77).opaque([]byte("passwd")).u64(1).u32(0).u32(1).opaque([]byte("PASSWD")).
		u32(1).u64(78).opaque([]byte("..")).u64(2).u32(0).u32(1).opaque([]byte("ROOT")).u32(0).u32(1).b, 1500)
	w.send(true, callMsg(7, progNFS, 6).opaque([]byte("PASSWD")).u64(0).u32(4096).b, 1500)
	w.send(false, append(replyMsg(7).u32(0).u32(0).b, (&enc{}).u32(5).u32(1).opaque([]byte("root\n")).b...), 1500)

	return w, data
}

func TestRecorderFollowsMountLookupRead(t *testing.T) {
	w, data := sample(t)
	// the reply of the READ reordered: its third segment before its second,
	// and its first sent twice
	frames := w.frames
	read := -1
	for i, f := range frames {
		if len(f) > 54+600-1 && read < 0 && i > 8 {
			read = i
		}
	}
	if read < 0 {
		t.Fatal("no READ reply segments")
	}
	frames = append(frames[:read+1:read+1], append([][]byte{frames[read], frames[read+2], frames[read+1]}, frames[read+3:]...)...)
	r := NewRecorder("test")
	r.Frame([]byte{1, 2, 3})                           // not IPv4
	r.Frame(w.frame(true, 1, 0, []byte("GET / HTTP"))) // a stream that began before
	r.Frame(udpFrame(w.srv, w.node, 49152, 2070, []byte("\x00\x03\x00\x01\x00\x00\x00\x00 a TFTP block of zeros, not RPC")))
	for _, f := range frames {
		r.Frame(f)
	}
	tr := r.Trace()
	if r.Errors != 0 {
		t.Errorf("%d decoding errors", r.Errors)
	}
	if len(tr.Mounts) != 1 || tr.Mounts[0] != "/diskless/192.168.1.21" {
		t.Errorf("mounts %v", tr.Mounts)
	}
	var got []string
	for _, op := range tr.Ops {
		got = append(got, strings.TrimSpace(strings.Join([]string{op.Proc, op.Path, op.Name}, " ")))
	}
	want := "MNT /|LOOKUP / etc|LOOKUP /etc hostname|READ /etc/hostname|LOOKUP / nosuch|READDIRPLUS /etc|READ /etc/passwd"
	if strings.Join(got, "|") != want {
		t.Fatalf("ops %q\nwant %q", strings.Join(got, "|"), want)
	}
	if rd := tr.Ops[3]; rd.Count != uint32(len(data)) || rd.Offset != 0 || rd.Reply < len(data) {
		t.Errorf("READ %+v: want %d bytes read", rd, len(data))
	}
	if tr.Ops[4].Status != 2 {
		t.Errorf("a failed LOOKUP's status: %d", tr.Ops[4].Status)
	}
	st := tr.Stats()
	if st.Read != int64(len(data))+5 || st.Calls["LOOKUP"] != 3 {
		t.Errorf("stats %+v", st)
	}
}

// A pcap file (as QEMU's filter-dump writes it) gives the recorder what
// the frames do; a frame the capture cut short is counted, not followed.
func TestReadPcap(t *testing.T) {
	w, _ := sample(t)
	direct := NewRecorder("direct")
	for _, f := range w.frames {
		direct.Frame(f)
	}
	for _, order := range []binary.AppendByteOrder{binary.LittleEndian, binary.BigEndian} {
		var b []byte
		b = order.AppendUint32(b, 0xa1b2c3d4)
		b = order.AppendUint16(b, 2)
		b = order.AppendUint16(b, 4)
		b = append(b, make([]byte, 8)...)
		b = order.AppendUint32(b, 65535)
		b = order.AppendUint32(b, 1)
		for _, f := range w.frames {
			b = append(b, make([]byte, 8)...)
			b = order.AppendUint32(b, uint32(len(f)))
			b = order.AppendUint32(b, uint32(len(f)))
			b = append(b, f...)
		}
		// a frame cut to 60 of its 1,000 bytes, then one cut by the end
		b = append(b, make([]byte, 8)...)
		b = order.AppendUint32(b, 60)
		b = order.AppendUint32(b, 1000)
		b = append(b, make([]byte, 60)...)
		b = append(b, make([]byte, 8)...)
		b = order.AppendUint32(b, 100)
		b = order.AppendUint32(b, 100)
		b = append(b, 1, 2, 3)
		path := filepath.Join(t.TempDir(), "dump.pcap")
		os.WriteFile(path, b, 0o644)
		r := NewRecorder("pcap")
		if err := r.ReadPcap(path); err != nil {
			t.Fatal(err)
		}
		got, want := r.Trace(), direct.Trace()
		if r.Truncated != 1 || len(got.Ops) != len(want.Ops) || len(got.Ops) == 0 {
			t.Fatalf("%v: %d ops (want %d), %d truncated", order, len(got.Ops), len(want.Ops), r.Truncated)
		}
		for i := range got.Ops {
			if got.Ops[i] != want.Ops[i] {
				t.Errorf("%v: op %d %+v, want %+v", order, i, got.Ops[i], want.Ops[i])
			}
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.pcap")
	os.WriteFile(bad, []byte("this is no capture at all"), 0o644)
	if err := NewRecorder("x").ReadPcap(bad); err == nil || !strings.Contains(err.Error(), "not a pcap file") {
		t.Errorf("a text file: %v", err)
	}
}

// udpFrame is an Ethernet frame of a UDP datagram.
func udpFrame(src, dst [4]byte, sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 14+20+8+len(payload))
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip[9] = 17
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	binary.BigEndian.PutUint16(ip[20:], sport)
	binary.BigEndian.PutUint16(ip[22:], dport)
	binary.BigEndian.PutUint16(ip[24:], uint16(8+len(payload)))
	copy(ip[28:], payload)
	return b
}

// A file created, then renamed, is read by its handle under its new name;
// a symlink's text is kept.
func TestRecorderFollowsRenamesAndSymlinks(t *testing.T) {
	w := &wire{t: t, node: [4]byte{192, 168, 1, 21}, srv: [4]byte{192, 168, 1, 1}, nport: 701, sport: 2049, nseq: 1, sseq: 9}
	w.open()
	w.send(true, callMsg(1, progMount, 1).opaque([]byte("/diskless/n")).b, 1500)
	w.send(false, replyMsg(1).u32(0).opaque([]byte("ROOT")).u32(1).u32(1).b, 1500)
	w.send(true, callMsg(2, progNFS, 3).opaque([]byte("ROOT")).opaque([]byte("var")).b, 1500)
	w.send(false, replyMsg(2).u32(0).opaque([]byte("VAR")).u32(0).u32(0).b, 1500)
	// CREATE (unchecked, no attributes set): the reply's handle follows
	w.send(true, callMsg(3, progNFS, 8).opaque([]byte("VAR")).opaque([]byte(".tmp")).u32(0).u32(0).u32(0).u32(0).u32(0).u32(0).u32(0).b, 1500)
	w.send(false, replyMsg(3).u32(0).u32(1).opaque([]byte("TMP")).u32(0).b, 1500)
	w.send(true, callMsg(4, progNFS, 14).opaque([]byte("VAR")).opaque([]byte(".tmp")).opaque([]byte("VAR")).opaque([]byte("final")).b, 1500)
	w.send(false, replyMsg(4).u32(0).b, 1500)
	w.send(true, callMsg(5, progNFS, 6).opaque([]byte("TMP")).u64(0).u32(10).b, 1500)
	w.send(false, append(replyMsg(5).u32(0).u32(0).b, (&enc{}).u32(2).u32(1).opaque([]byte("ok")).b...), 1500)
	// SYMLINK with a mode and the client's mtime set
	w.send(true, callMsg(6, progNFS, 10).opaque([]byte("VAR")).opaque([]byte("latest")).u32(1).u32(0o777).u32(0).u32(0).u32(0).u32(0).u32(2).u64(5).opaque([]byte("final")).b, 1500)
	w.send(false, replyMsg(6).u32(0).u32(0).b, 1500)
	r := NewRecorder("test")
	for _, f := range w.frames {
		r.Frame(f)
	}
	tr := r.Trace()
	var got []string
	for _, op := range tr.Ops {
		got = append(got, strings.TrimSpace(strings.Join([]string{op.Proc, op.Path, op.Name, op.To}, " ")))
	}
	want := "MNT /|LOOKUP / var|CREATE /var .tmp|RENAME /var .tmp /var/final|READ /var/final|SYMLINK /var latest final"
	if strings.Join(got, "|") != want || r.Errors != 0 {
		t.Errorf("ops %q (%d errors)\nwant %q", strings.Join(got, "|"), r.Errors, want)
	}
}
