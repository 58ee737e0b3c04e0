package lab

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/pkg/qemu"
)

func TestStages(t *testing.T) {
	var lines []qemu.Timed
	for i, l := range []string{
		"iPXE initialising devices...ok",
		"Configuring (net0 00:02:a5:04:3b:66)...... ok",
		"Filename: pxelinux.0",
		"tftp://192.168.1.1/pxelinux.0... ok",
		"PXELINUX 6.04 PXE 20200816 Copyright (C) 1994-2015 H. Peter Anvin et al",
		"Linux version 6.1.172 (diskless@diskless)",
		"IP-Config: Complete:",
		"diskless-fallback: NFS root 192.168.1.1:/diskless/192.168.1.21 mounted: switching to /sbin/init",
		"[  OK  ] Reached target multi-user.target - Multi-User System.",
	} {
		lines = append(lines, qemu.Timed{Line: l, At: time.Duration(i) * time.Second})
	}
	got := Stages(lines)
	want := []string{"DHCP lease (firmware)@1", "first file loaded@3", "kernel started@5", "IP-Config (kernel DHCP)@6", "root mounted (NFS)@7", "multi-user@8"}
	var have []string
	for _, s := range got {
		have = append(have, s.Name+"@"+strings.TrimSuffix(strings.TrimSuffix(time.Duration(s.At*float64(time.Second)).String(), "s"), ".0"))
	}
	if strings.Join(have, ",") != strings.Join(want, ",") {
		t.Errorf("stages %v, want %v", have, want)
	}
}

// OVMF's PXE loads snponly.efi, iPXE takes boot.ipxe and the rest over
// HTTP: each stage at its own line.
func TestStagesUEFI(t *testing.T) {
	var lines []qemu.Timed
	for i, l := range []string{
		">>Start PXE over IPv4.",
		"  Station IP address is 192.168.1.24",
		"  NBP filename is snponly.efi",
		"  NBP file downloaded successfully.",
		"iPXE initialising devices...ok",
		"Configuring (net0 00:02:a5:04:3b:69)... ok",
		"http://192.168.1.1/boot.ipxe... ok",
		"/ipxe/00-02-a5-04-3b-69.ipxe... ok",
		"/bzImage_x86_64... ok",
		"/initramfs_x86_64.cpio.zst... ok",
		"Linux version 6.1.172 (diskless@diskless)",
	} {
		lines = append(lines, qemu.Timed{Line: l, At: time.Duration(i) * time.Second})
	}
	var have []string
	for _, s := range Stages(lines) {
		have = append(have, fmt.Sprintf("%s@%.0f", s.Name, s.At))
	}
	want := "DHCP lease (firmware)@1,first file loaded@3,iPXE script loaded@6,kernel and initramfs fetched@9,kernel started@10"
	if strings.Join(have, ",") != want {
		t.Errorf("stages %v, want %s", have, want)
	}
}

func TestTapNames(t *testing.T) {
	if n := tapName("00:02:a5:04:3b:66"); n != "dl043b66" || len(n) > 15 {
		t.Errorf("tap %q", n)
	}
}

func TestUpRefusesBadInput(t *testing.T) {
	if _, err := Up(context.Background(), Options{Dir: t.TempDir(), Root: t.TempDir()}); err == nil {
		t.Error("Up without an inventory")
	}
}

func TestNginxConf(t *testing.T) {
	c := NginxConf("/a/lab", "/a/lab/nginx/diskless.conf")
	for _, w := range []string{"daemon off;", "pid /a/lab/nginx.pid;", "include /a/lab/nginx/diskless.conf;", "client_body_temp_path /a/lab/nginx-tmp/body;"} {
		if !strings.Contains(c, w) {
			t.Errorf("no %q in\n%s", w, c)
		}
	}
}

// ipFrame builds an Ethernet frame with an IPv4 header and the ports.
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
	if err := (Impairment{Loss: 1}).Validate(); err == nil {
		t.Error("loss 100 % accepted")
	}
}
