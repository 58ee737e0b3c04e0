package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/qemu"
)

// AAVMF is Debian's UEFI firmware for arm64 QEMU (qemu-efi-aarch64).
const AAVMF = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"

// tapName is a node's tap device: short (IFNAMSIZ) and stable.
func tapName(mac string) string {
	return "dl" + strings.ReplaceAll(mac, ":", "")[6:]
}

// Tap creates the node's tap device on the bridge; the returned function
// removes it.
func (l *Lab) Tap(mac string) (string, func(), error) {
	name := tapName(mac)
	exec.Command("ip", "-n", NetNS, "link", "del", name).Run() // a crashed boot's
	for _, args := range [][]string{
		{"-n", NetNS, "tuntap", "add", "dev", name, "mode", "tap"},
		{"-n", NetNS, "link", "set", name, "master", Bridge},
		{"-n", NetNS, "link", "set", name, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			exec.Command("ip", "-n", NetNS, "link", "del", name).Run()
			return "", nil, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return name, func() { exec.Command("ip", "-n", NetNS, "link", "del", name).Run() }, nil
}

// UseLinks puts the nodes Machine starts from now on behind a relay with
// this impairment (Impairment{} for none: still counted), nil for their
// taps directly. Each node's counters stay in LinkStats.
func (l *Lab) UseLinks(imp *Impairment) error {
	if imp != nil {
		if err := imp.Validate(); err != nil {
			return err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.impair = imp
	if l.links == nil {
		l.links = map[string]*link{}
	}
	return nil
}

// LinkStats are the counters of every node's link since UseLinks, by tap
// device (tapName of the node's MAC); ResetLinks forgets them.
func (l *Lab) LinkStats() map[string]LinkStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]LinkStats{}
	for tap, lk := range l.links {
		out[tap] = lk.Stats()
	}
	return out
}

// ResetLinks forgets the counters of links already closed.
func (l *Lab) ResetLinks() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for tap, lk := range l.links {
		if lk.closed.Load() {
			delete(l.links, tap)
		}
	}
}

// TapName is the tap device of a node's MAC.
func TapName(mac string) string { return tapName(mac) }

// Machine is a node on the lab's bridge, booting from the network as its
// inventory entry says: BIOS with QEMU's iPXE NIC ROM (which takes
// pxelinux.0, vmlinuz_<arch> or boot.ipxe from DHCP, as a PXE ROM would);
// UEFI on x86-64 with OVMF on q35, its own virtio-net driver and its own
// PXE (uefi) or HTTP boot (http), no iPXE ROM, as a server's firmware; UEFI
// (AAVMF) on arm64. mac may differ from the node's (a stranger). The
// returned function removes the tap and the machine's files.
func (l *Lab) Machine(nd nodes.Node, mac string, logPath string) (*qemu.Machine, func(), error) {
	a, err := arch.Lookup(nd.Arch)
	if err != nil {
		return nil, nil, err
	}
	tap, remove, err := l.Tap(mac)
	if err != nil {
		return nil, nil, err
	}
	m := &qemu.Machine{Arch: a, Tap: tap, NetNS: NetNSPath(), MAC: mac, MemoryMB: 512, NetBoot: true, LogPath: logPath}
	l.mu.Lock()
	imp := l.impair
	l.mu.Unlock()
	if imp != nil {
		dir := filepath.Join(l.o.Dir, "links")
		os.MkdirAll(dir, 0o755)
		lk, sock, peer, err := newLink(tap, dir, *imp)
		if err != nil {
			remove()
			return nil, nil, err
		}
		l.mu.Lock()
		l.links[tap] = lk
		l.mu.Unlock()
		m.Tap, m.Socket, m.SocketPeer = "", sock, peer
		untap := remove
		remove = func() { lk.Close(); untap() }
	}
	efi := nd.Boot == nodes.BootUEFI || nd.Boot == nodes.BootHTTP
	if a.SrcArch == "x86" && !efi {
		// graphics=off: SeaBIOS puts its, iPXE's and PXELINUX's text on
		// the serial console (DHCP, file names, errors)
		m.Machine = "pc,graphics=off"
		// a failed network boot (no lease, a server down) is tried again
		// after 5 s, as servers' firmware retries PXE
		m.RebootTimeout = 5 * time.Second
	}
	if a.SrcArch == "x86" && efi {
		dir, err := os.MkdirTemp("", "diskless-ovmf-")
		if err != nil {
			remove()
			return nil, nil, err
		}
		fw, err := qemu.OVMF(dir, qemu.OVMFOptions{PXE: nd.Boot == nodes.BootUEFI})
		if err != nil {
			os.RemoveAll(dir)
			remove()
			return nil, nil, err
		}
		m.Extra = fw
		m.Machine = "q35"
		m.NIC, m.NICOptions = "virtio-net-pci", "romfile="
		untap := remove
		remove = func() { untap(); os.RemoveAll(dir) }
		return m, remove, nil
	}
	if efi {
		if _, err := os.Stat(AAVMF); err != nil {
			remove()
			return nil, nil, fmt.Errorf("%s not found: apt-get install qemu-efi-aarch64", AAVMF)
		}
		m.Extra = []string{"-bios", AAVMF}
		m.Machine = "virt,acpi=off"
		m.NICOptions = "romfile="
	}
	return m, remove, nil
}

// Console runs a node's machine with its serial console on this process's
// terminal (stdin, stdout) until QEMU exits (the guest powers off, or
// Ctrl-C).
func Console(ctx context.Context, m *qemu.Machine) error {
	args := append([]string{"--net=" + m.NetNS, "--", m.Arch.QEMU}, m.Args()...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}
