// Package boot judges a network boot from its console: it owns the
// console vocabulary (every stage a node passes from its firmware's DHCP
// lease to multi-user, every line that means the boot failed) and turns a
// timed console into the stages reached and a verdict. The VM driver
// (pkg/qemu), the smoke suite, the lab, the storm and the node-OS tests all
// judge boots through it: adding a stage or a failure marker is one line
// of a table here.
//
// It reads text; it starts nothing.
package boot

import (
	"fmt"
	"strings"
	"time"
)

// Line is a complete console line and when it arrived after power-on.
type Line struct {
	Text string
	At   time.Duration
}

// Stage names, in boot order.
const (
	Lease     = "DHCP lease (firmware)"
	FirstFile = "first file loaded"
	Script    = "iPXE script loaded"
	Fetched   = "kernel and initramfs fetched"
	EFIStub   = "EFI stub started"
	Kernel    = "kernel started"
	Cmdline   = "kernel command line"
	IPConfig  = "IP-Config (kernel DHCP)"
	RootAsked = "root asked for (NFS)"
	Rescue    = "rescue shell"
	Image     = "image in RAM (stateless)"
	Root      = "root mounted (NFS)"
	Usr       = "/usr mounted (image)"
	TestInit  = "test init ran"
	MultiUser = "multi-user"
	Login     = "login prompt"
)

// TestInitMarker is what the boot tests' static init (pkg/testroot) prints
// once it runs from the NFS root.
const TestInitMarker = "diskless-testinit: DISKLESS-ROOT-OK"

// stage is one row of the vocabulary: a line that has any of markers, or
// that match says is the stage (for lines a substring cannot tell).
type stage struct {
	name    string
	markers []string
	match   func(line string) bool
}

// optional are the stages a boot may pass by: a PXELINUX node has no
// iPXE script, a BIOS node no EFI stub, a node whose root answers at once
// neither a failed try nor a rescue shell. Next does not name them as
// where a boot stopped.
var optional = map[string]bool{Script: true, EFIStub: true, RootAsked: true, Rescue: true, Image: true}

// stages are the console lines of each stage (SeaBIOS's iPXE ROM, OVMF,
// PXELINUX, iPXE, the kernel, the fallback initramfs, the test init,
// systemd, a getty), in boot order.
var stages = []stage{
	{Lease, nil, func(l string) bool {
		// iPXE: "Configuring (net0 ...)...... ok"; OVMF: "Station IP address is"
		return strings.HasPrefix(l, "Configuring (net0") && strings.HasSuffix(l, "ok") || strings.HasPrefix(l, "Station IP address is")
	}},
	{FirstFile, []string{"NBP file downloaded successfully", "Downloading...100%"}, func(l string) bool {
		// iPXE: "tftp://.../pxelinux.0... ok", "http://.../boot.ipxe... ok"
		return strings.Contains(l, "://") && strings.HasSuffix(l, "... ok")
	}},
	{Script, nil, func(l string) bool { return strings.Contains(l, "/boot.ipxe") && strings.HasSuffix(l, "... ok") }},
	{Fetched, nil, func(l string) bool {
		// iPXE: "http://.../initramfs_x86_64.cpio.zst... ok"; PXELINUX:
		// "Loading initramfs_x86_64.cpio.zst...ok"; vmlinuz_ carries both
		return (strings.Contains(l, "initramfs_") || strings.Contains(l, "vmlinuz_")) && strings.HasSuffix(l, "ok")
	}},
	{EFIStub, []string{"EFI stub: Booting Linux Kernel"}, nil},
	{Kernel, []string{"Linux version"}, nil},
	{Cmdline, []string{"Kernel command line:"}, nil},
	{IPConfig, []string{"IP-Config: Complete"}, nil},
	// the kernel's own NFS root failing, or the initramfs's first try:
	// the node asked its server, with or without success
	{RootAsked, []string{"VFS: Unable to mount root fs via NFS", "Root-NFS: ", "diskless-fallback: mount failed"}, nil},
	// the fallback initramfs, its root out of reach, gives a shell (and
	// retries in the background)
	{Rescue, []string{"starting a rescue shell"}, nil},
	// the fallback initramfs's line, the kernel's own NFS root, or a root
	// that has no init (a skeleton nobody populated: mounted all the same)
	// a stateless node's image fetched, checked and mounted from RAM
	{Image, []string{"in RAM: squashfs on"}, nil},
	{Root, []string{"diskless-fallback: NFS root", "VFS: Mounted root (nfs", "the root is mounted but has no init"}, nil},
	{Usr, []string{"diskless-fallback: /usr:"}, nil},
	{TestInit, []string{TestInitMarker}, nil},
	// systemd colours the unit's name ("Reached target
	// \x1b[0;1;39mmulti-user.target\x1b[0m - Multi-User System"); consoles
	// are read without colours
	{MultiUser, []string{"Reached target multi-user.target", "Reached target Multi-User System", "- Multi-User System"}, nil},
	{Login, []string{" login:"}, nil},
}

func (s stage) is(line string) bool {
	if s.match != nil && s.match(line) {
		return true
	}
	for _, m := range s.markers {
		if strings.Contains(line, m) {
			return true
		}
	}
	return false
}

// Names lists the stages in boot order.
func Names() []string {
	out := make([]string, len(stages))
	for i, s := range stages {
		out[i] = s.name
	}
	return out
}

// Waitable says whether a boot can be waited for until a stage: it is one
// told by fixed console lines (Markers), not only by their shape.
func Waitable(name string) bool {
	i := Index(name)
	return i < len(stages) && len(stages[i].markers) > 0 && stages[i].match == nil
}

// Markers returns the console lines that mean a stage was reached, for a
// wait on the console (Session.Expect); it panics on a stage that is not
// Waitable (those the firmware's words tell, known only by their shape).
func Markers(names ...string) []string {
	var out []string
	for _, n := range names {
		if !Waitable(n) {
			panic(fmt.Sprintf("boot: stage %q has no markers to wait for", n))
		}
		out = append(out, stages[Index(n)].markers...)
	}
	return out
}

// Reached is a stage a boot reached, and when.
type Reached struct {
	Name string  `json:"stage"`
	At   float64 `json:"seconds"` // after power-on
}

// Stages reads a boot's stages from its timed console: the first line of
// each stage, in order (a stage a boot method skips, an iPXE script for
// PXELINUX, is left out).
func Stages(lines []Line) []Reached {
	var out []Reached
	i := 0
	for _, s := range stages {
		for j := i; j < len(lines); j++ {
			if s.is(strings.TrimSpace(lines[j].Text)) {
				out = append(out, Reached{s.name, lines[j].At.Seconds()})
				i = j
				break
			}
		}
	}
	return out
}

// Index is a stage's place in a boot (len(Names()) for an unknown name, so
// it sorts last).
func Index(name string) int {
	for i, s := range stages {
		if s.name == name {
			return i
		}
	}
	return len(stages)
}

// Next names the first stage after the last one a boot reached (Lease when
// it reached none), passing over the optional ones: where a failed node
// stopped. "up" when it reached the last.
func Next(reached []Reached) string {
	i := 0
	if len(reached) > 0 {
		i = Index(reached[len(reached)-1].Name) + 1
	}
	for ; i < len(stages); i++ {
		if !optional[stages[i].name] {
			return stages[i].name
		}
	}
	return "up"
}

// A Retrier is what tries a step again after it failed.
type Retrier string

// Retriers.
const (
	// Firmware: a BIOS with a reboot timeout (the lab's nodes, servers'
	// firmware) tries the network boot again.
	Firmware Retrier = "firmware"
	// IPXEScript: the published iPXE scripts fetch each file again.
	IPXEScript Retrier = "iPXE script"
	// Initramfs: the fallback initramfs retries the NFS root in the
	// background.
	Initramfs Retrier = "initramfs"
)

// failure is one row of the failure vocabulary: a console line that means
// the boot failed, and what retries it ("" when nothing does).
type failure struct {
	marker string
	by     Retrier
}

// failures are the console lines of a failed boot.
var failures = []failure{
	{"Kernel panic", ""},
	{"VFS: Unable to mount root", ""},
	{"UEFI Interactive Shell", ""},                // UEFI found nothing to boot
	{"Freezing execution", ""},                    // systemd as PID 1 gave up
	{"diskless: gave up after", Firmware},         // the published iPXE script's last attempt failed: the script exits, a BIOS with a reboot timeout boots from the network again
	{"Could not find kernel image", ""},           // PXELINUX
	{"diskless-fallback: init failed", Initramfs}, // the root has no init, or switch_root failed: tried again in the background
	{"No bootable device", Firmware},
	{"PXE-E", Firmware},
	{"Could not open", Firmware},                               // QEMU or the firmware could not open a file it was given
	{"No such file or directory (http://ipxe.org", IPXEScript}, // iPXE: a file it fetched is missing
	{refusedByFirmware, ""},                                    // Secure Boot: the first file's signature refused, for good
	{"diskless: no grub/", ""},                                 // a shim node GRUB has no configuration for
	{refusedToIPXE, IPXEScript},                                // Secure Boot: the kernel's signature refused
	{refusedByShim, ""},                                        // Secure Boot: shim refused the kernel GRUB loaded
	{"diskless-fallback: mount failed", Initramfs},
	// a stateless node: the image or overlay not fetched, not what the
	// signed SHA256SUMS says, or not mountable (the initramfs tries again)
	{"diskless-fallback: fetch failed", Initramfs},
	{"diskless-fallback: verify failed", Initramfs},
	{"diskless-fallback: image failed", Initramfs},
}

// SecureBootRefusals are the console lines of a firmware that enforces
// Secure Boot refusing an EFI binary whose signature is not in its db
// (unsigned, signed by another key, or changed after signing): OVMF's
// boot manager refusing the first file it loaded ("BdsDxe: failed to
// load Boot0002 ...: Access Denied"), iPXE's `kernel` when the firmware's
// LoadImage refused the image (iPXE says no more than that it cannot run
// it; without Secure Boot the same image loads), and GRUB's when shim
// refused the kernel.
var SecureBootRefusals = []string{refusedByFirmware, refusedToIPXE, refusedByShim}

const (
	refusedByFirmware = ": Access Denied"
	refusedToIPXE     = "Could not select: Exec format error"
	// GRUB's linux command after shim refused the kernel (signed by a key
	// neither in db nor in the MOK list)
	refusedByShim = "bad shim signature"
)

// Failures lists the console lines that end a boot as failed, leaving out
// those that one of retried tries again (a storm's nodes retry through
// their firmware, the iPXE scripts and the initramfs; a lone boot on a
// healthy network has nothing to wait for).
func Failures(retried ...Retrier) []string {
	skip := map[Retrier]bool{}
	for _, r := range retried {
		skip[r] = true
	}
	var out []string
	for _, f := range failures {
		if f.by == "" || !skip[f.by] {
			out = append(out, f.marker)
		}
	}
	return out
}

// Verdict is a boot judged from its console.
type Verdict struct {
	Up bool
	// UpAt is when the first line of an up stage arrived (seconds).
	UpAt   float64
	Stages []Reached
	// Failure is the first failure line, when one came before any up
	// stage; StoppedAt the first stage a boot that is not up did not
	// reach.
	Failure   string
	StoppedAt string
}

// Judge reads a console: up when a line of any of the up stages arrived
// before a failure line (failures that retried tries again are ignored).
func Judge(lines []Line, up []string, retried ...Retrier) Verdict {
	fail := Failures(retried...)
	var want []stage
	for _, n := range up {
		if i := Index(n); i < len(stages) {
			want = append(want, stages[i])
		}
	}
	v := Verdict{Stages: Stages(lines)}
	for i, l := range lines {
		t := strings.TrimSpace(l.Text)
		for _, s := range want {
			if s.is(t) {
				v.Up, v.UpAt = true, l.At.Seconds()
				return v
			}
		}
		for _, f := range fail {
			if strings.Contains(t, f) {
				v.Failure = t
				v.StoppedAt = Next(Stages(lines[:i+1]))
				return v
			}
		}
	}
	v.StoppedAt = Next(v.Stages)
	return v
}
