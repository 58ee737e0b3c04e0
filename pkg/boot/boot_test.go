package boot

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func lines(text ...string) []Line {
	var out []Line
	for i, t := range text {
		out = append(out, Line{t, time.Duration(i+1) * time.Second})
	}
	return out
}

// A PXELINUX boot of a Debian node, as its console shows it (SeaBIOS's
// iPXE ROM, PXELINUX, the kernel, the fallback initramfs, systemd).
var pxelinuxDebian = lines(
	"iPXE (http://ipxe.org) 00:03.0 CA00 PCI2.10 PnP PMM+1FF8B4A0+1FECB4A0 CA00",
	"Configuring (net0 00:02:a5:04:3b:66)...... ok",
	"tftp://192.168.1.1/pxelinux.0... ok",
	"PXELINUX 6.04 PXE 20200816 Copyright (C) 1994-2015 H. Peter Anvin et al",
	"Loading .diskless/generations/000001/bzImage_x86_64... ok",
	"Loading .diskless/generations/000001/initramfs_x86_64.cpio.zst...ok",
	"[    0.000000] Linux version 6.1.172 (diskless@diskless)",
	"[    3.100000] IP-Config: Complete:",
	"diskless-fallback: NFS root 192.168.1.1:/diskless/192.168.1.21 mounted: switching to /sbin/init",
	"diskless-fallback: /usr: 192.168.1.1:/diskless/images/debian-12-x86_64/gen-0001/usr (read-only)",
	"[  OK  ] Reached target multi-user.target - Multi-User System.",
	"slave21 login: ",
)

func TestStagesOfARealBoot(t *testing.T) {
	got := Stages(pxelinuxDebian)
	var names []string
	for _, r := range got {
		names = append(names, r.Name)
	}
	want := []string{Lease, FirstFile, Fetched, Kernel, IPConfig, Root, Usr, MultiUser, Login}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("stages %v\nwant %v", names, want)
	}
	if got[0].At != 2 || got[len(got)-1].At != 12 {
		t.Errorf("times %v", got)
	}
}

// OVMF's PXE loads snponly.efi, iPXE takes boot.ipxe and the rest over
// HTTP: each stage at its own line, in the firmware's and iPXE's words.
func TestStagesUEFI(t *testing.T) {
	var have []string
	for _, s := range Stages(lines(
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
	)) {
		have = append(have, fmt.Sprintf("%s@%.0f", s.Name, s.At))
	}
	want := "DHCP lease (firmware)@2,first file loaded@4,iPXE script loaded@7,kernel and initramfs fetched@10,kernel started@11"
	if strings.Join(have, ",") != want {
		t.Errorf("stages %v, want %s", have, want)
	}
}

func TestNextAndIndex(t *testing.T) {
	if n := Next(nil); n != Lease {
		t.Errorf("nothing reached: next %q", n)
	}
	if n := Next([]Reached{{Lease, 1}, {FirstFile, 2}}); n != Fetched {
		t.Errorf("after the first file (past the optional iPXE script): %q", n)
	}
	if n := Next([]Reached{{Login, 9}}); n != "up" {
		t.Errorf("after the last stage: %q", n)
	}
	if Index(Lease) != 0 || Index("no such stage") != len(Names()) {
		t.Error("Index")
	}
	for i, n := range Names() {
		if Index(n) != i {
			t.Errorf("Index(%q) = %d, want %d", n, Index(n), i)
		}
	}
}

func TestMarkers(t *testing.T) {
	m := Markers(MultiUser, Login)
	if len(m) != 4 || m[3] != " login:" {
		t.Errorf("markers %q", m)
	}
	for _, n := range Names() {
		if Waitable(n) && len(Markers(n)) == 0 {
			t.Errorf("%s is waitable but has no markers", n)
		}
	}
	if Waitable(Lease) || Waitable("no such stage") || !Waitable(MultiUser) {
		t.Error("Waitable")
	}
	defer func() {
		if recover() == nil {
			t.Error("a stage told by its shape gave markers")
		}
	}()
	Markers(Lease)
}

// A failure a retrier tries again is not one for a boot that has that
// retrier; nothing tolerates a kernel panic.
func TestFailures(t *testing.T) {
	all := strings.Join(Failures(), "|")
	for _, m := range []string{"Kernel panic", "PXE-E", "diskless-fallback: mount failed", "No such file or directory (http://ipxe.org"} {
		if !strings.Contains(all, m) {
			t.Errorf("strict failures lack %q", m)
		}
	}
	storm := strings.Join(Failures(Firmware, IPXEScript, Initramfs), "|")
	for _, m := range []string{"PXE-E", "No bootable device", "diskless-fallback: mount failed"} {
		if strings.Contains(storm, m) {
			t.Errorf("%q fails a boot whose firmware and initramfs retry", m)
		}
	}
	if !strings.Contains(storm, "Kernel panic") || strings.Contains(storm, "diskless: gave up after") {
		t.Errorf("storm failures %q", storm)
	}
	// an iPXE script that gave up exits: final unless the firmware boots
	// from the network again (a node whose master was lost gets another)
	if noFirmware := strings.Join(Failures(IPXEScript, Initramfs), "|"); !strings.Contains(noFirmware, "diskless: gave up after") {
		t.Errorf("without the firmware's retry, a script that gave up is not a failure: %q", noFirmware)
	}
}

func TestJudge(t *testing.T) {
	v := Judge(pxelinuxDebian, []string{MultiUser, Login})
	if !v.Up || v.UpAt != 11 || v.Failure != "" {
		t.Errorf("a Debian boot: %+v", v)
	}
	// a mount that fails and is retried: up when the initramfs retries,
	// failed when nothing may
	retried := lines("[    3.1] IP-Config: Complete:", "diskless-fallback: mount failed: server=192.168.1.1 export=/diskless/192.168.1.21: connection refused", "diskless-fallback: NFS root 192.168.1.1:/diskless/192.168.1.21 mounted: switching to /sbin/init", "diskless-testinit: DISKLESS-ROOT-OK")
	if v := Judge(retried, []string{TestInit}, Initramfs); !v.Up || v.UpAt != 4 {
		t.Errorf("retried mount: %+v", v)
	}
	v = Judge(retried, []string{TestInit})
	if v.Up || !strings.Contains(v.Failure, "mount failed") || v.StoppedAt != Root {
		t.Errorf("strict: %+v", v)
	}
	// a root nobody populated is up at its root, though its init is missing
	skeleton := lines("[    3.1] IP-Config: Complete:", "diskless-fallback: init failed: the root is mounted but has no init: is the slave root populated?")
	if v := Judge(skeleton, []string{Root}); !v.Up {
		t.Errorf("skeleton: %+v", v)
	}
	if v := Judge(skeleton, []string{MultiUser}); v.Up || v.Failure == "" {
		t.Errorf("an image node with no init: %+v", v)
	}
	// never up, never failed: stopped where the console ends
	if v := Judge(lines("Configuring (net0 00:02:a5:04:3b:66)...... ok"), []string{MultiUser}); v.Up || v.Failure != "" || v.StoppedAt != FirstFile {
		t.Errorf("stalled: %+v", v)
	}
}

func TestStageTimesAndNearestRank(t *testing.T) {
	order, at := StageTimes([][]Reached{
		{{Name: Fetched, At: 3}, {Name: Lease, At: 1}},
		{{Name: Lease, At: 2}},
	})
	if len(order) != 2 || order[0] != Lease || order[1] != Fetched {
		t.Errorf("order %v", order)
	}
	if len(at[Lease]) != 2 || at[Lease][0] != 1 || at[Lease][1] != 2 {
		t.Errorf("times %v", at)
	}
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for p, want := range map[float64]float64{0.5: 5, 0.95: 10, 0.1: 1, 0.11: 2} {
		if got := NearestRank(s, p); got != want {
			t.Errorf("p%.2f = %v, want %v", p, got, want)
		}
	}
}
