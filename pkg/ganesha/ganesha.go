// Package ganesha drives a real NFS server, NFS-Ganesha from Debian, with
// the exports pkg/nodes renders. It runs rpcbind and ganesha.nfsd in a
// network and mount namespace of their own (made with unshare): the server
// listens on the default ports inside it and nowhere else, rpcbind's
// socket in /run is private to it, and everything is gone when the two
// processes end. Guests reach it by running in the same network namespace
// (QEMU's user network maps 10.0.2.2 to its loopback).
package ganesha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/diskless/diskless/internal/spawn"

	"github.com/diskless/diskless/internal/procnet"
	"github.com/diskless/diskless/internal/textutil"
)

// Programs are what Start runs, with their Debian packages.
var Programs = []struct{ Name, Package string }{
	{"ganesha.nfsd", "nfs-ganesha"},
	{"rpcbind", "rpcbind"},
	{"unshare", "util-linux"},
	{"nsenter", "util-linux"},
	{"ip", "iproute2"},
}

// Available says what is missing, naming the Debian package; the VFS
// backend is a package of its own.
func Available() error {
	var missing []string
	for _, p := range Programs {
		if _, err := exec.LookPath(p.Name); err != nil {
			missing = append(missing, p.Name+" ("+p.Package+")")
		}
	}
	if m, _ := filepath.Glob("/usr/lib/*/ganesha/libfsalvfs.so*"); len(m) == 0 {
		if m2, _ := filepath.Glob("/usr/lib/ganesha/libfsalvfs.so*"); len(m2) == 0 {
			missing = append(missing, "the VFS backend (nfs-ganesha-vfs)")
		}
	}
	if os.Geteuid() != 0 {
		missing = append(missing, "root (namespaces, exports owned by root)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("NFS-Ganesha cannot run here: missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// Options for Start.
type Options struct {
	// Exports are EXPORT blocks (nodes.Inventory.Ganesha).
	Exports string
	// Dir receives the configuration, log, pid file and NFSv4 recovery
	// state.
	Dir string
	Log *slog.Logger
	// Timeout for the server to come up (default 60 s).
	Timeout time.Duration
	// NetNS, when set, is an existing network namespace (/run/netns/<name>)
	// to serve in, with its loopback up; otherwise the server gets one of
	// its own. Either way rpcbind's /run is private to the server.
	NetNS string
	// Detach leaves the server running when this process exits (the lab);
	// it is then stopped by its PIDs.
	Detach bool
	// MaxConnections is RPC_Max_Connections (0: Ganesha's 1,024), a
	// connection per mounted client (nodes.Sizing).
	MaxConnections int
}

// Server is a running rpcbind + ganesha.nfsd.
type Server struct {
	rpcbind *exec.Cmd
	nfsd    *exec.Cmd
	logPath string
	// nfsdExited is closed when ganesha.nfsd has exited
	nfsdExited chan struct{}
	conf, dir  string
	detach     bool
	timeout    time.Duration
}

// Config is ganesha.conf: both protocols, no NLM (nodes mount with nolock
// or NFSv4), no grace period (a node must not wait 90 s for its first
// open), numeric owners, recovery state under dir, and the exports.
func Config(dir, exportsFile string, maxConnections int) string {
	if maxConnections == 0 {
		maxConnections = 1024
	}
	return fmt.Sprintf(`# written by diskless (pkg/ganesha)
NFS_CORE_PARAM {
	Protocols = 3, 4;
	Enable_NLM = false;
	Enable_RQUOTA = false;
	RPC_Max_Connections = %d;
}
NFSV4 {
	Graceless = true;
	RecoveryRoot = "%s";
	# owners as numbers, like the kernel's nfsd with AUTH_SYS: a node has
	# no idmapper at boot, and a setuid-root binary owned by "nobody" runs
	# as nobody (mount, su)
	Only_Numeric_Owners = true;
}
%%include "%s"
`, maxConnections, filepath.Join(dir, "recovery"), exportsFile)
}

// Start writes the configuration and starts rpcbind and ganesha.nfsd in
// their own namespaces; it returns once the server listens on port 2049.
func Start(ctx context.Context, o Options) (*Server, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	// ganesha.nfsd changes directory: every path it is given is absolute
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	o.Dir = dir
	if err := os.MkdirAll(filepath.Join(o.Dir, "recovery"), 0o755); err != nil {
		return nil, err
	}
	exports := filepath.Join(o.Dir, "exports.conf")
	conf := filepath.Join(o.Dir, "ganesha.conf")
	if err := os.WriteFile(exports, []byte(o.Exports), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(conf, []byte(Config(o.Dir, exports, o.MaxConnections)), 0o644); err != nil {
		return nil, err
	}
	s := &Server{logPath: filepath.Join(o.Dir, "ganesha.log")}
	// rpcbind first: ganesha registers with it, and exits without it
	const privateRun = "mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -p /run/rpcbind && exec rpcbind -f -w"
	if o.NetNS == "" {
		s.rpcbind = exec.Command("unshare", "--net", "--mount", "--propagation", "private", "--",
			"sh", "-c", "ip link set lo up && "+privateRun)
	} else {
		s.rpcbind = exec.Command("nsenter", "--net="+o.NetNS, "--", "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", privateRun)
	}
	s.rpcbind.SysProcAttr = procAttr(o.Detach)
	rpcOut, _ := os.Create(filepath.Join(o.Dir, "rpcbind.log"))
	s.rpcbind.Stdout, s.rpcbind.Stderr = rpcOut, rpcOut
	if err := spawn.Start(s.rpcbind); err != nil {
		return nil, fmt.Errorf("starting rpcbind: %w", err)
	}
	if err := s.waitListen(111, timeout, nil); err != nil {
		s.Stop()
		out, _ := os.ReadFile(filepath.Join(o.Dir, "rpcbind.log"))
		return nil, fmt.Errorf("rpcbind did not start: %w\n%s", err, out)
	}
	s.conf, s.dir, s.detach, s.timeout = conf, o.Dir, o.Detach, timeout
	start := time.Now()
	if err := s.startNFSD(); err != nil {
		s.Stop()
		return nil, err
	}
	log.Info("NFS-Ganesha up", "seconds", fmt.Sprintf("%.1f", time.Since(start).Seconds()), "dir", o.Dir)
	return s, nil
}

// startNFSD starts ganesha.nfsd with the server's configuration and waits
// until it listens on port 2049.
func (s *Server) startNFSD() error {
	s.nfsd = s.Command("ganesha.nfsd", "-F", "-f", s.conf, "-L", s.logPath, "-p", filepath.Join(s.dir, "ganesha.pid"), "-N", "NIV_EVENT")
	s.nfsd.SysProcAttr = procAttr(s.detach)
	nfsdOut, _ := os.OpenFile(filepath.Join(s.dir, "ganesha.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	s.nfsd.Stdout, s.nfsd.Stderr = nfsdOut, nfsdOut
	if err := spawn.Start(s.nfsd); err != nil {
		nfsdOut.Close()
		return fmt.Errorf("starting ganesha.nfsd: %w", err)
	}
	nfsdOut.Close()
	exited := make(chan struct{})
	s.nfsdExited = exited
	go func() { s.nfsd.Wait(); close(exited) }()
	if err := s.waitListen(2049, s.timeout, exited); err != nil {
		logText, _ := os.ReadFile(s.logPath)
		return fmt.Errorf("NFS-Ganesha did not start: %w\n%s", err, textutil.Tail(string(logText), 15))
	}
	return nil
}

// Kill ends ganesha.nfsd at once (SIGKILL: a crash, not a shutdown), and
// leaves rpcbind running, as a crashed NFS server leaves the portmapper.
func (s *Server) Kill() {
	if s.nfsd != nil && s.nfsd.Process != nil {
		syscall.Kill(-s.nfsd.Process.Pid, syscall.SIGKILL)
		<-s.nfsdExited
	}
}

// Restart starts ganesha.nfsd again after Kill, with the same
// configuration and state; it returns once it listens.
func (s *Server) Restart() error {
	select {
	case <-s.nfsdExited:
	default:
		return errors.New("ganesha.nfsd is still running")
	}
	return s.startNFSD()
}

// procAttr: a process group of its own, killed with this process unless
// detached (then a session of its own that outlives it).
func procAttr(detach bool) *syscall.SysProcAttr {
	if detach {
		return &syscall.SysProcAttr{Setsid: true}
	}
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// PIDs are the server's processes (rpcbind, ganesha.nfsd), for stopping a
// detached server from another process.
func (s *Server) PIDs() (rpcbind, nfsd int) { return s.rpcbind.Process.Pid, s.nfsd.Process.Pid }

// NetNS is the path of the server's network namespace, for guests and
// clients that must reach it (QEMU, ssh).
func (s *Server) NetNS() string { return fmt.Sprintf("/proc/%d/ns/net", s.rpcbind.Process.Pid) }

// Command runs a program in the server's network and mount namespaces.
func (s *Server) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"-t", fmt.Sprint(s.rpcbind.Process.Pid), "-n", "-m", "--", name}, args...)...)
}

// LogPath is ganesha's log file.
func (s *Server) LogPath() string { return s.logPath }

// waitListen polls the namespace's TCP table for a listening port.
func (s *Server) waitListen(port int, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("it exited")
		default:
		}
		if procnet.Listening(s.rpcbind.Process.Pid, "tcp", port) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on port %d after %s", port, timeout)
}

// Stop ends ganesha (SIGTERM, it takes a few seconds to exit) and rpcbind,
// and waits for both; their namespaces go with them.
func (s *Server) Stop() {
	if s.nfsd != nil && s.nfsd.Process != nil {
		syscall.Kill(-s.nfsd.Process.Pid, syscall.SIGTERM)
		select {
		case <-s.nfsdExited:
		case <-time.After(15 * time.Second):
			syscall.Kill(-s.nfsd.Process.Pid, syscall.SIGKILL)
			<-s.nfsdExited
		}
	}
	if s.rpcbind != nil && s.rpcbind.Process != nil {
		syscall.Kill(-s.rpcbind.Process.Pid, syscall.SIGKILL)
		s.rpcbind.Wait()
	}
}
