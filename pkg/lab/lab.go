// Package lab runs the master's real daemons (ISC dhcpd or dnsmasq,
// tftpd-hpa, NFS-Ganesha with rpcbind, radvd, nginx) in a network namespace the
// project creates, on a bridge carrying the inventory's subnet and master
// address, each with the configuration pkg/nodes renders, so QEMU nodes on
// tap devices boot exactly as they would from the real master. Nothing
// leaves the namespace: the bridge has no uplink. Up leaves the daemons
// running (lab:up); Down, or a failed Up, stops every process and removes
// the namespace.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/diskless/diskless/internal/spawn"

	"github.com/diskless/diskless/internal/debpkg"
	"github.com/diskless/diskless/internal/procnet"
	"github.com/diskless/diskless/internal/textutil"
	"github.com/diskless/diskless/pkg/ganesha"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/qemu"
	"github.com/diskless/diskless/pkg/relay"
)

// NetNS is the lab's network namespace; its bridge is Bridge.
const (
	NetNS  = "diskless-lab"
	Bridge = "br0"
)

// NetNSPath is where ip-netns(8) keeps the namespace.
func NetNSPath() string { return "/run/netns/" + NetNS }

// Options for Up.
type Options struct {
	// Dir receives the rendered configurations, the daemons' logs and the
	// lab's state (artifacts/lab).
	Dir string
	// Root is DISKLESS_ROOT: what tftpd, the NFS server and nginx serve.
	Root      string
	Inventory *nodes.Inventory
	// DHCP is "dhcpd" (ISC, default) or "dnsmasq".
	DHCP string
	// CacheDir holds the daemons unpacked from their Debian packages
	// (their packages would start system services if installed).
	CacheDir string
	Log      *slog.Logger
	// Detach leaves the daemons running after this process (lab:up).
	Detach bool
	// Fill fills a secondary master's DISKLESS_ROOT before its daemons
	// start (publish:pull from the primary, in the lab): needed when the
	// inventory names more than one [[master]].
	Fill func(ctx context.Context, r Replica) error
}

// State is what a running lab records in Dir/state.json.
type State struct {
	NetNS   string         `json:"netns"`
	DHCP    string         `json:"dhcp"`
	PIDs    map[string]int `json:"pids"`
	Started time.Time      `json:"started"`
	Ready   float64        `json:"ready_seconds"`
	// DaemonReady is each daemon's time from its start until it served
	// (its socket listening, its first advertisement).
	DaemonReady map[string]float64 `json:"daemon_ready_seconds,omitempty"`
	Root        string             `json:"root"`
	Master      string             `json:"master"`
	// Name is the master's [[master]] name ("" for a single master).
	Name string `json:"name,omitempty"`
	// a secondary's directory and its daemons' cgroups' prefix
	Dir          string `json:"dir,omitempty"`
	CgroupPrefix string `json:"cgroup_prefix,omitempty"`
	// Secondaries are the other masters' state ([[master]] after the
	// first): each in a namespace of its own on the bridge.
	Secondaries []State `json:"secondaries,omitempty"`
}

// Lab is a running lab.
type Lab struct {
	o     Options
	State State
	log   *slog.Logger
	// set by Up in this process (not by Attach): what Restart needs
	files nodes.Files
	nfs   *ganesha.Server
	// links: nodes started while an impairment is set (UseLinks)
	mu     sync.Mutex
	impair *relay.Impairment
	links  map[string]*relay.Link
	// secondaries: the other masters, when this is the primary
	secondaries []*Lab
}

// namespace is the master's network namespace (the primary's is NetNS,
// which holds the bridge).
func (l *Lab) namespace() string {
	if l.State.NetNS == "" {
		return NetNS
	}
	return l.State.NetNS
}

// nsPath is the master's namespace as ip-netns(8) keeps it.
func (l *Lab) nsPath() string { return "/run/netns/" + l.namespace() }

// ifaceName is the interface the master's daemons serve on: the bridge
// in the primary's namespace, a veth port of it in a secondary's.
func (l *Lab) ifaceName() string {
	if l.namespace() == NetNS {
		return Bridge
	}
	return secondaryIface
}

// Programs are the daemons with their Debian packages; the ones marked
// unpack are taken from the package without installing it.
var Programs = []struct {
	Name, Package, Path string
	Unpack              bool
}{
	{"dhcpd", "isc-dhcp-server", "usr/sbin/dhcpd", true},
	{"in.tftpd", "tftpd-hpa", "usr/sbin/in.tftpd", true},
	{"nginx", "nginx", "usr/sbin/nginx", true},
	{"radvd", "radvd", "usr/sbin/radvd", true},
	{"dnsmasq", "dnsmasq-base", "/usr/sbin/dnsmasq", false},
	{"ip", "iproute2", "/usr/sbin/ip", false},
}

func (l *Lab) program(name string) (string, error) {
	for _, p := range Programs {
		if p.Name != name {
			continue
		}
		if !p.Unpack {
			if path, err := exec.LookPath(name); err == nil {
				return path, nil
			}
			return "", fmt.Errorf("%s not found: apt-get install %s", name, p.Package)
		}
		root, err := debpkg.Extract(p.Package, l.o.CacheDir)
		if err != nil {
			return "", fmt.Errorf("%s from Debian's %s: %w", name, p.Package, err)
		}
		return filepath.Join(root, p.Path), nil
	}
	return "", fmt.Errorf("unknown program %s", name)
}

// Running reports whether the lab's namespace exists.
func Running() bool {
	_, err := os.Stat(NetNSPath())
	return err == nil
}

// Preflight is what Up refuses before it does anything, so a caller can
// ask before its own work (a publish): what the input says first (an
// inventory, LAB_DHCP, DISKLESS_ROOT a directory), then what this process
// and the machine allow (root, no lab already up).
func Preflight(o Options) error {
	if o.Inventory == nil {
		return errors.New("the lab needs a node inventory (nodes.toml): nodes:add first")
	}
	if o.DHCP != "" && o.DHCP != "dhcpd" && o.DHCP != "dnsmasq" {
		return fmt.Errorf("LAB_DHCP=%s: want dhcpd or dnsmasq", o.DHCP)
	}
	if len(o.Inventory.Masters) > 1 && o.Fill == nil {
		return fmt.Errorf("%d masters ([[master]]) in the inventory: the lab needs a way to fill the secondaries' roots (publish:pull)", len(o.Inventory.Masters))
	}
	if st, err := os.Stat(o.Root); err != nil || !st.IsDir() {
		return fmt.Errorf("DISKLESS_ROOT=%s: not a directory (publish and nodes:provision first)", o.Root)
	}
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (network namespaces, bridges, tap devices, daemons on privileged ports)")
	}
	if Running() {
		return fmt.Errorf("the lab is already up (namespace %s): lab:down first", NetNS)
	}
	return nil
}

// Up creates the namespace and the bridge, renders every configuration
// into Dir and starts the daemons; it returns when each one answers. On
// any failure everything started is stopped and the namespace removed.
func Up(ctx context.Context, o Options) (l *Lab, err error) {
	if err := Preflight(o); err != nil {
		return nil, err
	}
	if o.DHCP == "" {
		o.DHCP = "dhcpd"
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// the daemons change directory: every path they get is absolute
	if o.Dir, err = filepath.Abs(o.Dir); err != nil {
		return nil, err
	}
	if o.Root, err = filepath.Abs(o.Root); err != nil {
		return nil, err
	}
	l = &Lab{o: o, log: log, State: State{NetNS: NetNS, DHCP: o.DHCP, PIDs: map[string]int{}, Started: time.Now(), Root: o.Root, Master: o.Inventory.Network.Master}}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			l.Down()
			l = nil
		}
	}()
	removeLogs(o.Dir)
	if err := l.checkAccess(); err != nil {
		return l, err
	}
	// a crashed lab's secondary masters (its primary is gone: Preflight)
	if err := l.downSecondaries(); err != nil {
		return l, err
	}
	if err := l.network(); err != nil {
		return l, err
	}
	files, err := o.Inventory.Render()
	if err != nil {
		return l, err
	}
	l.files = files
	l.State.Name = o.Inventory.Self()
	if err := l.startDaemons(ctx, files); err != nil {
		return l, err
	}
	if err := l.upSecondaries(ctx); err != nil {
		return l, err
	}
	l.State.Ready = time.Since(l.State.Started).Seconds()
	if err := l.save(); err != nil {
		return l, err
	}
	log.Info("lab up", "netns", NetNS, "master", l.State.Master, "dhcp", o.DHCP, "seconds", fmt.Sprintf("%.1f", l.State.Ready))
	return l, nil
}

// startDaemons starts the master's daemons with its rendered files, each
// answering before the next starts.
func (l *Lab) startDaemons(ctx context.Context, files nodes.Files) error {
	for _, step := range []func(context.Context, nodes.Files) error{l.startNFS, l.startTFTP, l.startHTTP, l.startRA, l.startDHCP} {
		if err := step(ctx, files); err != nil {
			return err
		}
	}
	return nil
}

// network makes the namespace, its loopback and the bridge with the
// master's address.
func (l *Lab) network() error {
	n := l.o.Inventory.Network
	_, subnet, err := net.ParseCIDR(n.Subnet)
	if err != nil {
		return err
	}
	ones, _ := subnet.Mask.Size()
	return ipAll([][]string{
		{"netns", "add", NetNS},
		{"-n", NetNS, "link", "set", "lo", "up"},
		{"-n", NetNS, "link", "add", Bridge, "type", "bridge"},
		{"-n", NetNS, "addr", "add", fmt.Sprintf("%s/%d", n.Master, ones), "dev", Bridge},
		{"-n", NetNS, "link", "set", Bridge, "up"},
	})
}

// ipAll runs ip(8) with each argument list in turn, stopping at the
// first that fails (quoted).
func ipAll(cmds [][]string) error {
	for _, args := range cmds {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// removeLogs removes an earlier lab's daemon logs from dir.
func removeLogs(dir string) {
	for _, name := range []string{"dhcpd", "dnsmasq", "radvd", "nginx", "tftpd", "nginx-access", "nginx-error"} {
		os.Remove(filepath.Join(dir, name+".log"))
	}
}

// start runs a daemon in the namespace with its log file; it is recorded
// in the state under name.
func (l *Lab) start(name string, args ...string) (*exec.Cmd, error) {
	// appended to: a restarted daemon (Restart) keeps what it said before;
	// Up removes the logs of an earlier lab
	logf, err := os.OpenFile(filepath.Join(l.o.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	argv := append([]string{"ip", "netns", "exec", l.namespace()}, args...)
	cpu, mem, cgErr := cgroupProcs(l.State.CgroupPrefix + name)
	if cgErr == nil {
		argv = inCgroup(cpu, mem, argv)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if l.o.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	if err := spawn.Start(cmd); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	logf.Close()
	l.State.PIDs[name] = cmd.Process.Pid
	go cmd.Wait()
	if cgErr != nil {
		l.log.Warn("the daemon's CPU will not be measured", "daemon", name, "err", cgErr)
	}
	return cmd, nil
}

// LogOf returns a daemon's log.
func (l *Lab) LogOf(name string) string {
	data, _ := os.ReadFile(filepath.Join(l.o.Dir, name+".log"))
	return string(data)
}

// waitFor polls until ok says the daemon answers, or its process is gone
// (then its own message is quoted).
func (l *Lab) waitFor(name, what string, timeout time.Duration, ok func() bool) error {
	start := time.Now()
	deadline := start.Add(timeout)
	for time.Now().Before(deadline) {
		if ok() {
			if l.State.DaemonReady == nil {
				l.State.DaemonReady = map[string]float64{}
			}
			l.State.DaemonReady[name] = time.Since(start).Seconds()
			return nil
		}
		if pid := l.State.PIDs[name]; pid != 0 && !alive(pid) {
			return fmt.Errorf("%s exited: %s", name, textutil.Tail(l.LogOf(name), 12))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s: no %s after %s: %s", name, what, timeout, textutil.Tail(l.LogOf(name), 12))
}

// listening reads the namespace's socket tables (any process of it).
func (l *Lab) listening(proto string, port int) bool {
	pid := 0
	for _, p := range l.State.PIDs {
		if p != 0 && alive(p) {
			pid = p
			break
		}
	}
	return pid != 0 && procnet.Listening(pid, proto, port)
}

func (l *Lab) write(name, content string) (string, error) {
	p := filepath.Join(l.o.Dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	return p, os.WriteFile(p, []byte(content), 0o644)
}

// checkConfig runs a daemon's own configuration check (dhcpd -t,
// nginx -t, radvd --configtest) and quotes its last lines when it refuses.
func checkConfig(daemon, conf string, check *exec.Cmd) error {
	if out, err := check.CombinedOutput(); err != nil {
		return fmt.Errorf("%s rejects %s: %v: %s", daemon, conf, err, textutil.Tail(strings.TrimSpace(string(out)), 8))
	}
	return nil
}

func (l *Lab) startNFS(ctx context.Context, files nodes.Files) error {
	if _, err := l.write("ganesha.conf", files["ganesha.conf"]); err != nil {
		return err
	}
	start := time.Now()
	srv, err := ganesha.Start(ctx, ganesha.Options{Exports: files["ganesha.conf"], Dir: filepath.Join(l.o.Dir, "ganesha"), NetNS: l.nsPath(), Detach: l.o.Detach, Log: l.log,
		MaxConnections: l.o.Inventory.Sizing().GaneshaConnections,
		// Ganesha reads its exports slower than linearly: one per node,
		// 1,000 in 0.6 s, 5,000 in 20 s, 10,000 in over a minute
		Timeout: 60*time.Second + time.Duration(len(l.o.Inventory.Nodes))*30*time.Millisecond})
	if err != nil {
		return fmt.Errorf("NFS server (%s): %w", filepath.Join(l.o.Dir, "ganesha.conf"), err)
	}
	l.nfs = srv
	if l.State.DaemonReady == nil {
		l.State.DaemonReady = map[string]float64{}
	}
	l.State.DaemonReady["ganesha"] = time.Since(start).Seconds()
	l.State.PIDs["rpcbind"], l.State.PIDs["ganesha"] = srv.PIDs()
	for _, name := range []string{"rpcbind", "ganesha"} {
		l.account(l.State.CgroupPrefix+name, l.State.PIDs[name])
	}
	return nil
}

func (l *Lab) startTFTP(ctx context.Context, files nodes.Files) error {
	tftpd, err := l.program("in.tftpd")
	if err != nil {
		return err
	}
	// -L foreground, -v log each request (to syslog: tftpd-hpa has no
	// other log, and the lab runs no syslog), -s chroot to the root so
	// PXELINUX's relative names resolve
	// the rendered default/tftpd-hpa's options (retransmit, blocksize)
	args := append([]string{tftpd, "-L", "-v", "-v", "-a", l.State.Master + ":69", "-s"}, nodes.TFTPOptions...)
	if _, err := l.start("tftpd", append(args, l.o.Root)...); err != nil {
		return err
	}
	return l.waitFor("tftpd", "socket on port 69", 10*time.Second, func() bool { return l.listening("udp", 69) })
}

// NginxConf is the main configuration that runs the rendered site in the
// lab: no daemon, files and temp paths under dir, the rendered
// main-context settings (nodes.Inventory.NginxMain: connections and
// descriptors for the nodes) included.
func NginxConf(dir, site, main string) string {
	return fmt.Sprintf(`# written by diskless (pkg/lab)
daemon off;
# as on a Debian master: a stateless node's overlay is readable by
# www-data's group only (tftpd-hpa never serves it)
user %[4]s;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log info;
include %[3]s;
http {
	access_log %[1]s/nginx-access.log;
	client_body_temp_path %[1]s/nginx-tmp/body;
	proxy_temp_path %[1]s/nginx-tmp/proxy;
	fastcgi_temp_path %[1]s/nginx-tmp/fastcgi;
	uwsgi_temp_path %[1]s/nginx-tmp/uwsgi;
	scgi_temp_path %[1]s/nginx-tmp/scgi;
	default_type application/octet-stream;
	include %[2]s;
}
`, dir, site, main, NginxUser)
}

// NginxUser is the user the lab's nginx workers run as (Debian's).
const NginxUser = "www-data"

// startRA runs radvd with the rendered radvd.conf for the bridge: router
// advertisements without a default route or prefix, which end iPXE's wait
// for IPv6 autoconfiguration (measured: a BIOS node's lease at 3.3 s
// instead of 18.5 s).
func (l *Lab) startRA(ctx context.Context, files nodes.Files) error {
	radvd, err := l.program("radvd")
	if err != nil {
		return err
	}
	// rendered for the bridge, not the inventory's interface (write's
	// 0644 matters: radvd refuses a configuration others may write)
	conf, err := l.write("radvd.conf", l.o.Inventory.Radvd(l.ifaceName()))
	if err != nil {
		return err
	}
	if err := checkConfig("radvd", conf, exec.Command(radvd, "--configtest", "-C", conf)); err != nil {
		return err
	}
	if _, err := l.start("radvd", radvd, "-n", "-C", conf, "-p", filepath.Join(l.o.Dir, "radvd.pid"), "-m", "stderr", "-d", "1"); err != nil {
		return err
	}
	return l.waitFor("radvd", "its advertising loop", 10*time.Second, func() bool { return strings.Contains(l.LogOf("radvd"), "next iface is "+l.ifaceName()) })
}

func (l *Lab) startHTTP(ctx context.Context, files nodes.Files) error {
	nginx, err := l.program("nginx")
	if err != nil {
		return err
	}
	site, err := l.write("nginx/diskless.conf", files["nginx/diskless.conf"])
	if err != nil {
		return err
	}
	main, err := l.write("nginx/diskless-main.conf", files["nginx/diskless-main.conf"])
	if err != nil {
		return err
	}
	os.MkdirAll(filepath.Join(l.o.Dir, "nginx-tmp"), 0o755)
	conf, err := l.write("nginx.conf", NginxConf(l.o.Dir, site, main))
	if err != nil {
		return err
	}
	if err := checkConfig("nginx", conf, exec.Command("ip", "netns", "exec", l.namespace(), nginx, "-t", "-q", "-c", conf, "-e", filepath.Join(l.o.Dir, "nginx-error.log"))); err != nil {
		return err
	}
	if _, err := l.start("nginx", nginx, "-c", conf, "-e", filepath.Join(l.o.Dir, "nginx-error.log")); err != nil {
		return err
	}
	return l.waitFor("nginx", "socket on port 80", 10*time.Second, func() bool { return l.listening("tcp", 80) })
}

func (l *Lab) startDHCP(ctx context.Context, files nodes.Files) error {
	if l.o.DHCP == "dnsmasq" {
		dnsmasq, err := l.program("dnsmasq")
		if err != nil {
			return err
		}
		conf, err := l.write("dnsmasq.conf", files["dnsmasq.d/diskless.conf"])
		if err != nil {
			return err
		}
		// a new master's leases: an earlier lab's for more nodes than
		// dhcp-lease-max makes dnsmasq exit ("too many stored leases")
		os.WriteFile(filepath.Join(l.o.Dir, "dnsmasq.leases"), nil, 0o644)
		// DHCP only (port=0: no DNS), on the bridge, every exchange logged
		if _, err := l.start("dnsmasq", dnsmasq, "--keep-in-foreground", "--log-dhcp", "--log-facility=-", "--port=0",
			"--interface="+l.ifaceName(), "--bind-interfaces", "--dhcp-leasefile="+filepath.Join(l.o.Dir, "dnsmasq.leases"),
			"--pid-file="+filepath.Join(l.o.Dir, "dnsmasq.pid"), "--conf-file="+conf); err != nil {
			return err
		}
		return l.waitFor("dnsmasq", "socket on port 67", 10*time.Second, func() bool { return l.listening("udp", 67) })
	}
	dhcpd, err := l.program("dhcpd")
	if err != nil {
		return err
	}
	conf, err := l.write("dhcpd.conf", files["dhcpd.conf"])
	if err != nil {
		return err
	}
	leases := filepath.Join(l.o.Dir, "dhcpd.leases")
	os.WriteFile(leases, nil, 0o644)
	if err := checkConfig("dhcpd", conf, exec.Command(dhcpd, "-t", "-4", "-cf", conf)); err != nil {
		return err
	}
	if _, err := l.start("dhcpd", dhcpd, "-f", "-d", "-4", "-cf", conf, "-lf", leases, "-pf", filepath.Join(l.o.Dir, "dhcpd.pid"), l.ifaceName()); err != nil {
		return err
	}
	return l.waitFor("dhcpd", "socket on port 67", 10*time.Second, func() bool { return l.listening("udp", 67) })
}

func (l *Lab) save() error {
	l.State.Secondaries = nil
	for _, s := range l.secondaries {
		l.State.Secondaries = append(l.State.Secondaries, s.State)
	}
	data, _ := json.MarshalIndent(l.State, "", "  ")
	return os.WriteFile(filepath.Join(l.o.Dir, "state.json"), append(data, '\n'), 0o644)
}

// Attach reads a running lab's state (lab:boot, lab:down in a new process).
func Attach(o Options) (*Lab, error) {
	data, err := os.ReadFile(filepath.Join(o.Dir, "state.json"))
	if err != nil || !Running() {
		return nil, errors.New("the lab is not up: lab:up first")
	}
	l := &Lab{o: o, log: o.Log}
	if l.log == nil {
		l.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := json.Unmarshal(data, &l.State); err != nil {
		return nil, err
	}
	for _, s := range l.State.Secondaries {
		so := o
		so.Dir, so.Root = s.Dir, s.Root
		l.secondaries = append(l.secondaries, &Lab{o: so, log: l.log, State: s})
	}
	return l, nil
}

// Detached is a lab whose state was lost: Down still removes its namespace
// and every process in it.
func Detached(o Options) *Lab {
	return &Lab{o: o, log: o.Log, State: State{PIDs: map[string]int{}}}
}

// Down stops every daemon the lab started (TERM, then KILL), removes its
// tap devices with the namespace, and forgets the state. It is safe to run
// on a half-started or already stopped lab.
func (l *Lab) Down() error {
	secErr := l.downSecondaries()
	for _, name := range []string{"dhcpd", "dnsmasq", "radvd", "nginx", "tftpd", "ganesha", "rpcbind"} {
		if pid := l.State.PIDs[name]; pid > 0 {
			stop(pid)
		}
	}
	// anything else still in the namespace (QEMU nodes)
	killIn(NetNS)
	removeCgroups()
	var err error
	if Running() {
		if out, e := exec.Command("ip", "netns", "delete", NetNS).CombinedOutput(); e != nil {
			err = fmt.Errorf("ip netns delete %s: %v: %s", NetNS, e, out)
		}
	}
	os.Remove(filepath.Join(l.o.Dir, "state.json"))
	return errors.Join(secErr, err)
}

// killIn kills every process in a namespace of the lab's.
func killIn(ns string) {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		var pid int
		fmt.Sscan(f, &pid)
		// never the caller: a process that entered the namespace (a
		// thread left there) is listed too
		if pid > 1 && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// stop sends TERM to a daemon's process group, waits up to 15 s (Ganesha
// takes a few), then KILLs it.
func stop(pid int) {
	syscall.Kill(-pid, syscall.SIGTERM)
	syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 150; i++ {
		if !alive(pid) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	syscall.Kill(pid, syscall.SIGKILL)
}

// alive: the process exists and is not a zombie (a detached daemon's
// parent may never reap it).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndex(s, ")")
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// Console boots a node of the running lab's inventory (lab:boot) in QEMU
// on the bridge, with the firmware its boot method needs, its serial
// console on this process's terminal until QEMU exits.
func Console(ctx context.Context, o Options, name string) error {
	l, err := Attach(o)
	if err != nil {
		return err
	}
	nd, ok := o.Inventory.Node(name)
	if !ok {
		return fmt.Errorf("node %q is not in the inventory", name)
	}
	m, remove, err := l.Machine(nd, nd.MAC, "")
	if err != nil {
		return err
	}
	defer remove()
	return qemu.Console(ctx, m)
}

// DownAny takes down the lab whose state is in o.Dir, or, when its state
// is lost, whatever runs in its namespace (lab:down: no inventory needed,
// a lab outlives a deleted or broken nodes.toml).
func DownAny(o Options) error {
	l, err := Attach(o)
	if err != nil {
		if !Running() {
			return err
		}
		l = Detached(o)
	}
	return l.Down()
}
