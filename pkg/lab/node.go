package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/qemu"
	"github.com/diskless/diskless/pkg/relay"
)

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

// UseLinks puts the nodes Machine starts from now on behind a relay
// (pkg/relay) with this impairment (relay.Impairment{} for none: still
// counted), nil for their taps directly. Each node's counters stay in
// LinkStats.
func (l *Lab) UseLinks(imp *relay.Impairment) error {
	if imp != nil {
		if err := imp.Validate(); err != nil {
			return err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.impair = imp
	if l.links == nil {
		l.links = map[string]*relay.Link{}
	}
	return nil
}

// LinkStats are the counters of every node's link since UseLinks, by tap
// device (TapName of the node's MAC); ResetLinks forgets them.
func (l *Lab) LinkStats() map[string]relay.Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]relay.Stats{}
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
		if lk.Closed() {
			delete(l.links, tap)
		}
	}
}

// TapName is the tap device of a node's MAC.
func TapName(mac string) string { return tapName(mac) }

// FirmwareOf is the firmware a node of the inventory boots with, as its
// boot method says: BIOS x86 nodes (pxelinux, etherboot, ipxe) SeaBIOS with
// QEMU's iPXE ROM, which takes pxelinux.0, vmlinuz_<arch> or boot.ipxe
// from DHCP as a PXE ROM would; x86-64 uefi and http nodes OVMF, its own
// PXE or HTTP boot without an iPXE ROM, as a server's firmware (with
// secureBoot, its Secure Boot build enforcing with the snakeoil test key
// enrolled: the lab's secure_boot nodes); arm64 nodes AAVMF (with
// secureBoot, from flash with the same key enrolled).
func FirmwareOf(nd nodes.Node, a arch.Arch, secureBoot bool) (qemu.Firmware, qemu.FirmwareOptions, error) {
	efi := nd.Boot == nodes.BootUEFI || nd.Boot == nodes.BootHTTP || nd.Boot == nodes.BootShim
	switch {
	case a.SrcArch == "x86" && !efi:
		// a failed network boot (no lease, a server down) is tried again
		// after 5 s, as servers' firmware retries PXE
		return qemu.SeaBIOS, qemu.FirmwareOptions{Retry: 5 * time.Second}, nil
	case a.SrcArch == "x86":
		return qemu.OVMF, qemu.FirmwareOptions{HTTP: nd.Boot == nodes.BootHTTP, SecureBoot: secureBoot}, nil
	case a.Name == "arm64":
		return qemu.AAVMF, qemu.FirmwareOptions{SecureBoot: secureBoot}, nil
	}
	return "", qemu.FirmwareOptions{}, fmt.Errorf("node %s: the lab boots x86_64, i386 and arm64 nodes; %s (U-Boot) is booted by smoke, which types its commands at the prompt", nd.Name, a.Name)
}

// Machine is a node on the lab's bridge (a tap device; behind a relay when
// UseLinks set one), booting from the network with the firmware its boot
// method needs (FirmwareOf). mac may differ from the node's (a stranger).
// The returned function removes the tap, the relay and the machine's
// files.
func (l *Lab) Machine(nd nodes.Node, mac string, logPath string) (*qemu.Machine, func(), error) {
	return l.MachineWithVars(nd, mac, logPath, "")
}

// MachineWithVars is Machine whose UEFI firmware starts with a copy of
// the variable store vars ("": the firmware's default; with Secure Boot
// the snakeoil key's): qemu.OVMFMicrosoftVars makes a Secure Boot node
// whose db has only Microsoft's keys.
func (l *Lab) MachineWithVars(nd nodes.Node, mac, logPath, vars string) (*qemu.Machine, func(), error) {
	a, err := arch.Lookup(nd.Arch)
	if err != nil {
		return nil, nil, err
	}
	fw, fo, err := FirmwareOf(nd, a, l.o.Inventory != nil && l.o.Inventory.SecureBootOf(nd))
	if err != nil {
		return nil, nil, err
	}
	fo.Vars = vars
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
		lk, sock, peer, err := relay.New(NetNSPath(), tap, dir, *imp)
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
	undo, err := m.UseFirmware(fw, fo)
	if err != nil {
		remove()
		return nil, nil, err
	}
	untap := remove
	return m, func() { untap(); undo() }, nil
}
