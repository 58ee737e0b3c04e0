// Package qemu is the VM driver: it starts a guest under QEMU (TCG, or KVM
// when asked) with a machine recipe for the firmware it boots (SeaBIOS with
// QEMU's iPXE ROM, OVMF, AAVMF, U-Boot: UseFirmware), on one of four
// network modes, and streams its serial console, which pkg/boot judges.
// Network modes: QEMU's user-mode (slirp) network, where the guest sees
// 10.0.2.2 as the host's loopback and reaches nothing else (optionally
// with slirp's TFTP server); a tap device on a bridge; a datagram socket
// (a relay on the other end: pkg/relay); and any of these inside a network
// namespace the project made (NetNS). Every QEMU it starts is killed by
// process group when its session stops, and with its parent; nothing is
// left running.
//
// It keeps no package state, knows no scenario (smoke, lab, storm) and
// builds nothing: it boots files it is given.
package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/diskless/diskless/internal/spawn"

	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/deps"
)

// The user-mode network as the guest sees it: the address slirp's DHCP
// server gives the first guest, and the host's loopback.
const (
	GuestIP = "10.0.2.15"
	HostIP  = "10.0.2.2"
)

// Machine is one guest to boot.
type Machine struct {
	Arch arch.Arch
	// Kernel, Initrd and Append map to -kernel, -initrd, -append.
	Kernel, Initrd, Append string
	// NetBoot boots from the NIC (-boot n) with slirp's TFTP server on
	// TFTPRoot offering BootFile. TFTPRoot alone serves TFTP to a loader
	// that is started otherwise (U-Boot).
	NetBoot  bool
	TFTPRoot string
	BootFile string
	// MAC of the NIC (default QEMU's 52:54:00:12:34:56).
	MAC string
	// NIC overrides the arch's default NIC model; NICOptions are appended
	// to its -device (e.g. "romfile=" to keep the NIC's option ROM out of a
	// UEFI boot).
	NIC        string
	NICOptions string
	// Machine overrides the arch's -M (e.g. "virt,acpi=off").
	Machine string
	// MemoryMB defaults to 256.
	MemoryMB int
	// Extra arguments appended to the command line.
	Extra []string
	// LogPath, when set, receives the full console output.
	LogPath string
	// Accel is "kvm" or "tcg" (default).
	Accel string
	// UserNet are more options of the user-mode network (-netdev user),
	// e.g. "dhcpstart=10.0.2.21,hostfwd=tcp:127.0.0.1:2222-:22".
	UserNet string
	// Tap, when set, puts the NIC on that tap device (in NetNS) instead of
	// the user-mode network: the guest is then on a real (namespaced)
	// Ethernet segment, with whatever DHCP and TFTP serve it there.
	Tap string
	// RebootTimeout, for a network boot, makes the BIOS try the boot again
	// this long after it failed, as a server's firmware retries PXE; the
	// guest then reboots instead of ending QEMU (no -no-reboot).
	RebootTimeout time.Duration
	// Socket, when set, puts the NIC on a datagram socket instead (QEMU's
	// -netdev dgram): Ethernet frames are sent to the Unix socket
	// SocketPeer and received on Socket, which QEMU binds.
	Socket, SocketPeer string
	// NetNS, when set, is a network namespace (/proc/<pid>/ns/net) QEMU
	// runs in: its user network then reaches that namespace's loopback.
	NetNS string
}

// Args returns QEMU's command line (without the binary).
func (m *Machine) Args() []string {
	mem := m.MemoryMB
	if mem == 0 {
		mem = 256
	}
	accel := m.Accel
	if accel == "" {
		accel = "tcg"
	}
	a := []string{"-accel", accel, "-m", fmt.Sprint(mem), "-display", "none", "-monitor", "none", "-serial", "stdio"}
	if m.RebootTimeout == 0 {
		// a guest that reboots ends the session (a panic, a failed boot)
		a = append(a, "-no-reboot")
	}
	if m.Machine != "" {
		a = append(a, "-M", m.Machine)
	} else if m.Arch.Machine != "" {
		a = append(a, "-M", m.Arch.Machine)
	}
	if m.Arch.CPU != "" {
		a = append(a, "-cpu", m.Arch.CPU)
	}
	if m.Arch.Name == "riscv64" && !hasArg(m.Extra, "-bios") {
		a = append(a, "-bios", "default")
	}
	netdev := "user,id=n0"
	if m.Socket != "" {
		netdev = "dgram,id=n0,local.type=unix,local.path=" + m.Socket + ",remote.type=unix,remote.path=" + m.SocketPeer
	} else if m.Tap != "" {
		netdev = "tap,id=n0,ifname=" + m.Tap + ",script=no,downscript=no"
	} else if m.TFTPRoot != "" {
		netdev += ",tftp=" + m.TFTPRoot
	}
	if m.UserNet != "" && m.Tap == "" && m.Socket == "" {
		netdev += "," + m.UserNet
	}
	if m.NetBoot {
		if m.Tap == "" && m.Socket == "" {
			netdev += ",bootfile=" + m.BootFile
		}
		boot := "n"
		if m.RebootTimeout > 0 {
			// SeaBIOS: after "No bootable device", try again this much later
			boot += fmt.Sprintf(",reboot-timeout=%d", m.RebootTimeout.Milliseconds())
		}
		a = append(a, "-boot", boot)
	}
	nic := m.NIC
	if nic == "" {
		nic = m.Arch.NIC
	}
	dev := nic + ",netdev=n0"
	if m.MAC != "" {
		dev += ",mac=" + m.MAC
	}
	if m.NICOptions != "" {
		dev += "," + m.NICOptions
	}
	a = append(a, "-netdev", netdev, "-device", dev)
	if m.Kernel != "" {
		a = append(a, "-kernel", m.Kernel)
	}
	if m.Initrd != "" {
		a = append(a, "-initrd", m.Initrd)
	}
	if m.Append != "" {
		a = append(a, "-append", m.Append)
	}
	return append(a, m.Extra...)
}

// Result of a boot.
type Result struct {
	// Matched is the success marker seen; Elapsed the time from QEMU's
	// start to it (or to the failure).
	Matched string
	Elapsed time.Duration
	// Console holds everything the guest printed.
	Console string
}

// BootError is a failed boot: the reason and the console's last lines.
type BootError struct {
	Reason string
	Last   []string
	Log    string
}

func (e *BootError) Error() string {
	s := e.Reason + "\nlast console lines:\n  " + strings.Join(e.Last, "\n  ")
	if e.Log != "" {
		s += "\nfull console log: " + e.Log
	}
	return s
}

// Available returns an error naming the Debian package when the arch's QEMU
// is missing.
func Available(a arch.Arch) error {
	_, err := deps.LookTool(a.QEMU, a.QEMUPackage)
	return err
}

// Boot starts the machine and waits until a line contains one of want
// (success), one of fail (failure; nil: DefaultFailures), QEMU exits, or
// timeout passes. QEMU is killed before Boot returns.
func Boot(ctx context.Context, m *Machine, want []string, fail []string, timeout time.Duration) (*Result, error) {
	s, err := Start(ctx, m)
	if err != nil {
		return nil, err
	}
	defer s.Stop()
	return s.Expect(want, fail, timeout)
}

// Session is a running guest.
type Session struct {
	m     *Machine
	cmd   *exec.Cmd
	stdin io.WriteCloser
	start time.Time

	mu       sync.Mutex
	consumed int
	lines    []string
	at       []time.Duration // when each line was complete, from the start
	partial  string
	// partialAt is when the unfinished last line last changed
	partialAt time.Duration
	notify    chan struct{}
	exited    chan struct{}
	waitErr   error
	logf      *os.File
}

// DefaultFailures are what Expect fails on when given no failures: every
// failure of the vocabulary but the initramfs's NFS mount, which it
// retries in the background (a boot of one guest).
func DefaultFailures() []string { return boot.Failures(boot.Initramfs) }

// command is QEMU's command for m, entering m.NetNS first when set.
func (m *Machine) command(ctx context.Context) *exec.Cmd {
	if m.NetNS != "" {
		return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + m.NetNS, "--", m.Arch.QEMU}, m.Args()...)...)
	}
	return exec.CommandContext(ctx, m.Arch.QEMU, m.Args()...)
}

// Console runs m with its serial console on this process's terminal
// (stdin, stdout) until QEMU exits (the guest powers off, or Ctrl-C).
func Console(ctx context.Context, m *Machine) error {
	if err := Available(m.Arch); err != nil {
		return err
	}
	cmd := m.command(ctx)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}

// Start launches QEMU for m.
func Start(ctx context.Context, m *Machine) (*Session, error) {
	if err := Available(m.Arch); err != nil {
		return nil, err
	}
	cmd := m.command(ctx)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	s := &Session{m: m, cmd: cmd, stdin: stdin, notify: make(chan struct{}, 1), exited: make(chan struct{})}
	if m.LogPath != "" {
		os.MkdirAll(filepath.Dir(m.LogPath), 0o755)
		if s.logf, err = os.Create(m.LogPath); err != nil {
			return nil, err
		}
		fmt.Fprintf(s.logf, "# %s %s\n", m.Arch.QEMU, shellJoin(m.Args()))
	}
	s.start = time.Now()
	if err := spawn.Start(cmd); err != nil {
		return nil, fmt.Errorf("starting %s: %w", m.Arch.QEMU, err)
	}
	go func() {
		s.waitErr = cmd.Wait()
		pw.Close()
	}()
	go s.read(pr)
	return s, nil
}

var ansiRe = regexp.MustCompile("\x1b\\[[0-9;?]*[A-Za-z]")

func (s *Session) read(r io.Reader) {
	br := bufio.NewReader(r)
	buf := make([]byte, 4096)
	for {
		n, err := br.Read(buf)
		if n > 0 {
			s.mu.Lock()
			if s.logf != nil {
				s.logf.Write(buf[:n])
			}
			text := s.partial + strings.ReplaceAll(string(buf[:n]), "\r", "")
			parts := strings.Split(text, "\n")
			now := time.Since(s.start)
			for _, l := range parts[:len(parts)-1] {
				// matched without terminal colours (systemd's status lines)
				s.lines = append(s.lines, ansiRe.ReplaceAllString(l, ""))
				s.at = append(s.at, now)
			}
			if last := parts[len(parts)-1]; last != s.partial {
				s.partial, s.partialAt = last, now
			}
			s.mu.Unlock()
			select {
			case s.notify <- struct{}{}:
			default:
			}
		}
		if err != nil {
			close(s.exited)
			return
		}
	}
}

// Send writes text to the guest's serial console.
func (s *Session) Send(text string) error {
	_, err := io.WriteString(s.stdin, text)
	return err
}

// Expect waits for a complete console line containing one of want, failing
// on any of fail (DefaultFailures when nil; a line that has both is
// wanted). Lines consumed by an earlier Expect are not looked at again. A
// line is only matched once its newline has arrived, so the whole line is
// in Result.Console.
func (s *Session) Expect(want, fail []string, timeout time.Duration) (*Result, error) {
	return s.expect(want, fail, timeout, nil, false)
}

// ExpectOrPrompt is Expect that also looks at the unfinished last line:
// one of want may be a prompt (a getty's "login:" has no newline after it).
func (s *Session) ExpectOrPrompt(want, fail []string, timeout time.Duration) (*Result, error) {
	return s.expect(want, fail, timeout, nil, true)
}

// TimelineWithPrompt is Timeline with the unfinished last line (a prompt),
// when there is one, at the time it last changed.
func (s *Session) TimelineWithPrompt() []boot.Line {
	tl := s.Timeline()
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := ansiRe.ReplaceAllString(s.partial, ""); strings.TrimSpace(p) != "" {
		tl = append(tl, boot.Line{Text: p, At: s.partialAt})
	}
	return tl
}

// ExpectPrompt waits for prompt on the unfinished last line (a shell or
// boot loader prompt has no newline after it).
func (s *Session) ExpectPrompt(prompt string, timeout time.Duration) (*Result, error) {
	return s.expect([]string{prompt}, nil, timeout, nil, true)
}

// ExpectWhile is Expect that also polls check (every 500 ms, when not nil)
// and fails with its error: a way to fail fast on what the host sees, such
// as the NFS server refusing the export the guest asked for.
func (s *Session) ExpectWhile(want, fail []string, timeout time.Duration, poll func() error) (*Result, error) {
	return s.expect(want, fail, timeout, poll, false)
}

func (s *Session) expect(want, fail []string, timeout time.Duration, poll func() error, prompt bool) (*Result, error) {
	var tick <-chan time.Time
	if poll != nil {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		tick = t.C
	}
	if fail == nil {
		fail = DefaultFailures()
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	s.mu.Lock()
	checked := s.consumed
	s.mu.Unlock()
	check := func(l string) (string, error) {
		for _, w := range want {
			if strings.Contains(l, w) {
				return w, nil
			}
		}
		for _, f := range fail {
			if strings.Contains(l, f) {
				return "", s.failure(fmt.Sprintf("%s: console shows %q", s.m.Arch.QEMU, f))
			}
		}
		return "", nil
	}
	for {
		s.mu.Lock()
		lines, partial := s.lines, s.partial
		s.mu.Unlock()
		for ; checked < len(lines); checked++ {
			w, err := check(lines[checked])
			if err != nil {
				return nil, err
			}
			if w != "" {
				return s.matched(w, checked+1), nil
			}
		}
		if prompt {
			if w, err := check(partial); err != nil {
				return nil, err
			} else if w != "" {
				return s.matched(w, checked), nil
			}
		}
		select {
		case <-tick:
			if err := poll(); err != nil {
				return nil, s.failure(err.Error())
			}
		case <-s.notify:
		case <-s.exited:
			s.mu.Lock()
			more := len(s.lines) > checked
			s.mu.Unlock()
			if more {
				continue
			}
			return nil, s.failure(fmt.Sprintf("%s exited (%v) before any of %q appeared", s.m.Arch.QEMU, s.waitErr, want))
		case <-deadline.C:
			return nil, s.failure(fmt.Sprintf("timeout after %s waiting for any of %q", timeout, want))
		}
	}
}

func (s *Session) matched(w string, consumed int) *Result {
	s.mu.Lock()
	s.consumed = consumed
	s.mu.Unlock()
	return &Result{Matched: w, Elapsed: time.Since(s.start), Console: s.Console()}
}

func (s *Session) failure(reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := s.lines
	if s.partial != "" {
		last = append(last[:len(last):len(last)], s.partial)
	}
	if len(last) > 30 {
		last = last[len(last)-30:]
	}
	e := &BootError{Reason: reason, Last: append([]string(nil), last...), Log: s.m.LogPath}
	return e
}

// Timeline returns the complete console lines with their arrival times
// after QEMU started, for pkg/boot.
func (s *Session) Timeline() []boot.Line {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]boot.Line, len(s.lines))
	for i := range s.lines {
		out[i] = boot.Line{Text: s.lines[i], At: s.at[i]}
	}
	return out
}

// Console returns everything printed so far.
func (s *Session) Console() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n") + "\n" + s.partial
}

// Stop kills QEMU (the whole process group) and waits for it.
func (s *Session) Stop() {
	if s.cmd.Process != nil {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	}
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
	}
	s.mu.Lock()
	if s.logf != nil {
		s.logf.Close()
		s.logf = nil
	}
	s.mu.Unlock()
}

// IsBootError reports whether err is a failed boot (as opposed to QEMU
// missing or failing to start).
func IsBootError(err error) bool {
	var be *BootError
	return errors.As(err, &be)
}

func hasArg(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \"'") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}
