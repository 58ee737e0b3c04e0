// Package nodeos is the scenario "a node runs its real operating system":
// a provisioned node (its root and the published image under the master's
// root) boots under QEMU through the fallback initramfs, from a real NFS
// server (pkg/ganesha) or the lab's daemons (pkg/lab), to its init
// system's multi-user state (judged by pkg/boot), and answers SSH with the
// key provision installed. The VM driver and NFS-Ganesha's know nothing of
// an operating system; this package joins them.
package nodeos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"time"

	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/ganesha"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/qemu"
)

// Guest is QEMU's user network as the master sees it: the nodes' gateway
// and NFS server is 10.0.2.2, the host side of slirp, which runs in the
// NFS server's own network namespace.
const (
	GuestMaster = "10.0.2.2"
	GuestSubnet = "10.0.2.0/24"
)

// Options for Boot.
type Options struct {
	Arch      arch.Arch
	Inventory *nodes.Inventory
	Node      nodes.Node
	// Kernel and Initrd: the slave kernel and the fallback initramfs.
	Kernel, Initrd string
	Server         *ganesha.Server
	// SSHPort is forwarded from the server namespace's 127.0.0.1 to the
	// node's port 22.
	SSHPort int
	// Key is the private key whose public half provision installed.
	Key     string
	LogPath string
	Accel   string
	Log     *slog.Logger
}

// Access is how the tests reach a node's SSH server: a command runner in
// the right network namespace, the address, the admin's key.
type Access struct {
	Name    string // the node, for messages
	Command func(name string, args ...string) *exec.Cmd
	Host    string
	Port    int
	Key     string
}

// Node is a booted node.
type Node struct {
	acc  Access
	log  *slog.Logger
	sess *qemu.Session
	// MultiUser and SSH are the times from QEMU's start to the init
	// system's multi-user state and to the first SSH command answered.
	MultiUser, SSH time.Duration
	start          time.Time
}

// Machine is the QEMU guest for a node: its MAC, its address from slirp's
// DHCP (dhcpstart = the node's IP), the kernel's command line from the
// inventory (as PXELINUX would give it).
func Machine(o Options) (*qemu.Machine, error) {
	st := o.Inventory.Settings(o.Node)
	return &qemu.Machine{
		Arch: o.Arch, Kernel: o.Kernel, Initrd: o.Initrd,
		Append:   st.Cmdline(o.Arch),
		MAC:      o.Node.MAC,
		MemoryMB: 512,
		UserNet:  fmt.Sprintf("net=%s,dhcpstart=%s,hostfwd=tcp:127.0.0.1:%d-:22", GuestSubnet, o.Node.IP, o.SSHPort),
		NetNS:    o.Server.NetNS(),
		LogPath:  o.LogPath,
		Accel:    o.Accel,
	}, nil
}

// Up are the stages of a system that reached multi-user: systemd's
// target, or a getty's login prompt from any init.
var Up = []string{boot.MultiUser, boot.Login}

// Boot starts the node on QEMU's user network and waits for multi-user
// and SSH.
func Boot(ctx context.Context, o Options, timeout time.Duration) (*Node, error) {
	m, err := Machine(o)
	if err != nil {
		return nil, err
	}
	return BootMachine(ctx, m, Access{Name: o.Node.Name, Command: o.Server.Command, Host: "127.0.0.1", Port: o.SSHPort, Key: o.Key}, timeout, o.Log)
}

// BootMachine starts any node's machine (the lab's, on a tap) and waits
// for multi-user and for SSH through acc.
func BootMachine(ctx context.Context, m *qemu.Machine, acc Access, timeout time.Duration, log *slog.Logger) (*Node, error) {
	n := &Node{acc: acc, log: log, start: time.Now()}
	var err error
	if n.sess, err = qemu.Start(ctx, m); err != nil {
		return nil, err
	}
	// every failure counts: on a healthy master nothing needs a retry
	if _, err := n.sess.Expect(boot.Markers(Up...), boot.Failures(), timeout); err != nil {
		n.Stop()
		return nil, fmt.Errorf("node %s did not reach multi-user: %w", acc.Name, err)
	}
	n.MultiUser = time.Since(n.start)
	deadline := time.Now().Add(timeout - n.MultiUser)
	for {
		if _, err := n.Run("true"); err == nil {
			break
		} else if time.Now().After(deadline) {
			n.Stop()
			return nil, fmt.Errorf("node %s: no SSH answer at %s:%d: %w", acc.Name, acc.Host, acc.Port, err)
		}
		time.Sleep(time.Second)
	}
	n.SSH = time.Since(n.start)
	if log != nil {
		log.Info("node up", "node", acc.Name, "multi_user", n.MultiUser.Round(time.Second), "ssh", n.SSH.Round(time.Second))
	}
	return n, nil
}

// Run runs a shell command on the node over SSH (OpenSSH's client, in the
// server's namespace) and returns its output.
func (n *Node) Run(command string) (string, error) {
	cmd := n.acc.Command("ssh", "-F", "none", "-i", n.acc.Key, "-p", fmt.Sprint(n.acc.Port),
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@"+n.acc.Host, command)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return out.String(), fmt.Errorf("ssh %q: %v: %s", command, err, strings.TrimSpace(errb.String()))
		}
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		return out.String(), errors.New("ssh: no answer in 60 s")
	}
	return out.String(), nil
}

// HostKey returns the node's SSH host key as the node's sshd offers it
// (ssh-keyscan), to compare with the one provision made.
func (n *Node) HostKey(kind string) (string, error) {
	out, err := n.acc.Command("ssh-keyscan", "-p", fmt.Sprint(n.acc.Port), "-t", kind, n.acc.Host).Output()
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 3 && !strings.HasPrefix(l, "#") {
			return f[1] + " " + f[2], nil
		}
	}
	return "", fmt.Errorf("ssh-keyscan: no %s key", kind)
}

// Session is the node's QEMU session (console, expect).
func (n *Node) Session() *qemu.Session { return n.sess }

// Console is what the node printed.
func (n *Node) Console() string { return n.sess.Console() }

// Stop powers the node off the hard way (QEMU killed): what the node
// wrote with sync before is on the server.
func (n *Node) Stop() { n.sess.Stop() }
