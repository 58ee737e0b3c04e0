package relay

import "testing"

func ipFrame(proto byte, src, dst uint16) []byte {
	b := make([]byte, 14+20+8)
	b[12], b[13] = 0x08, 0x00
	b[14] = 0x45
	b[14+9] = proto
	b[34], b[35] = byte(src>>8), byte(src)
	b[36], b[37] = byte(dst>>8), byte(dst)
	return b
}

// Bytes are counted by the master's port: the source of frames to the
// node, the destination of frames from it; tftpd's transfers (ephemeral
// ports) are TFTP.
func TestClassify(t *testing.T) {
	const udp, tcp = 17, 6
	for _, c := range []struct {
		b      []byte
		toNode bool
		want   string
	}{
		{ipFrame(udp, 67, 68), true, ProtoDHCP},
		{ipFrame(udp, 68, 67), false, ProtoDHCP},
		{ipFrame(udp, 69, 2070), true, ProtoTFTP},
		{ipFrame(udp, 51234, 2070), true, ProtoTFTP},
		{ipFrame(udp, 2070, 51234), false, ProtoTFTP},
		{ipFrame(tcp, 80, 40000), true, ProtoHTTP},
		{ipFrame(tcp, 40000, 80), false, ProtoHTTP},
		{ipFrame(tcp, 2049, 700), true, ProtoNFS},
		{ipFrame(tcp, 111, 700), true, ProtoRPC},
		{ipFrame(tcp, 20048, 700), true, ProtoRPC},
		{[]byte{1, 2, 3}, true, ProtoOther},
		{append(ipFrame(udp, 67, 68)[:12], 0x86, 0xdd), true, ProtoOther},
	} {
		if got := classify(c.b, c.toNode); got != c.want {
			t.Errorf("%v (to node %v): %s, want %s", c.b[:min(len(c.b), 38)], c.toNode, got, c.want)
		}
	}
}

func TestImpairmentValidate(t *testing.T) {
	for _, bad := range []Impairment{{Loss: 1}, {Loss: -0.1}, {Delay: -1}, {Delay: 11e9}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if err := (Impairment{Loss: 0.05, Delay: 50e6}).Validate(); err != nil {
		t.Error(err)
	}
}

// Bytes to a node are also counted by the address that sent them (which
// of several masters served it).
func TestPassCountsBySource(t *testing.T) {
	l := &Link{stats: Stats{ToNode: map[string]int64{}, FromNode: map[string]int64{}}}
	out := make(chan frame, 8)
	from := func(a, b, c, d byte) []byte {
		f := ipFrame(6, 80, 40000)
		copy(f[14+12:], []byte{a, b, c, d})
		return f
	}
	l.pass(from(192, 168, 1, 1), true, out)
	l.pass(from(192, 168, 1, 2), true, out)
	l.pass(from(192, 168, 1, 2), true, out)
	l.pass(from(192, 168, 1, 2), false, out) // from the node: not served
	l.pass([]byte{1, 2, 3}, true, out)       // not IPv4: by protocol only
	offer := ipFrame(17, 67, 68)             // every server offers: not serving
	copy(offer[14+12:], []byte{192, 168, 1, 3})
	l.pass(offer, true, out)
	s := l.Stats()
	n := int64(len(from(0, 0, 0, 0)))
	if s.ToNodeFrom["192.168.1.1"] != n || s.ToNodeFrom["192.168.1.2"] != 2*n || len(s.ToNodeFrom) != 2 {
		t.Errorf("by source: %v, want %d and %d", s.ToNodeFrom, n, 2*n)
	}
	s.ToNodeFrom["192.168.1.1"] = 0
	if l.Stats().ToNodeFrom["192.168.1.1"] != n {
		t.Error("Stats shares its map with the link")
	}
}
