// Command dlinit is the diskless fallback initramfs's /init (PID 1, so the
// init it starts on the node's root is PID 1 too: systemd insists). It
// mounts the kernel's filesystems, brings the network up (or uses what the kernel's ip=dhcp
// configured), mounts the NFS root named by nfsroot= (or DHCP's root-path),
// and switch_roots into its /sbin/init. When a step fails it does not
// panic: it prints one "diskless-fallback:" line naming the step, the
// server and the error, starts a rescue shell on the console, and retries
// the mount in the background with backoff until it works (then boots the
// root) or the admin types in the shell (then leaves the node to them).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/u-root/u-root/pkg/mount"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/diskless/diskless/initramfs/fallback"
)

const newRoot = "/newroot"

var console io.Writer = os.Stdout

func say(format string, args ...any) {
	fmt.Fprintf(console, format+"\n", args...)
}

func main() {
	if os.Getpid() == 1 {
		early()
	}
	if c, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		console = c
	}
	settings, err := fallback.LoadSettings(fallback.SettingsPath)
	if err != nil {
		say("%s settings: %v (using defaults)", fallback.Prefix, err)
	}
	raw, _ := os.ReadFile("/proc/cmdline")
	cmd := fallback.ParseCmdline(string(raw))
	switch _, stateless, _ := fallback.ParseStateless(cmd); {
	case stateless:
		say("%s dlinit: fetching the image (stateless node)", fallback.Prefix)
	case settings.NodeLookup:
		say("%s dlinit: looking for this node's own command line (a stateless node), else the NFS root", fallback.Prefix)
	default:
		say("%s dlinit: looking for the NFS root", fallback.Prefix)
	}

	r, err := attempt(cmd, settings, true)
	if err == nil {
		boot(r)
		// boot only returns on failure
		err = &fallback.Failure{Step: fallback.StepInit, Server: r.Server, Export: r.Path, Err: errors.New("switch_root failed")}
	}
	say("%s", failureLine(err))
	rescue(cmd, settings)
}

// early does what an initramfs's init does before anything else: the
// kernel's filesystems (switch_root moves them to the node's root, where
// its init finds them), the loopback, a PATH. Nothing more: cgroups and
// the rest are the node's init's to set up.
func early() {
	for _, m := range []struct {
		src, dir, fstype string
		flags            uintptr
		data             string
	}{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	} {
		os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.src, m.dir, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			fmt.Fprintf(os.Stderr, "%s mount %s: %v\n", fallback.Prefix, m.dir, err)
		}
	}
	os.Setenv("PATH", "/bbin:/bin:/usr/bin:/sbin:/usr/sbin")
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
}

func failureLine(err error) string {
	var f *fallback.Failure
	if errors.As(err, &f) {
		return f.Line()
	}
	return fmt.Sprintf("%s %v", fallback.Prefix, err)
}

// root is a root ready at newRoot, and the command line it was readied
// by: the kernel's, or a stateless node's own (lookupNode).
type root struct {
	fallback.Target
	cmd fallback.Cmdline
}

// attempt readies the node's root at newRoot, with an init: its image in
// RAM for a stateless node (diskless.image=, on the kernel's command line
// or, with Settings.NodeLookup, the node's own), else its NFS root.
func attempt(cmd fallback.Cmdline, st fallback.Settings, first bool) (root, error) {
	sl, stateless, err := fallback.ParseStateless(cmd)
	if err != nil {
		return root{}, &fallback.Failure{Step: fallback.StepConfig, Err: err}
	}
	if !stateless && st.NodeLookup {
		own, err := lookupNode(cmd, st, first)
		if err != nil {
			return root{}, err
		}
		if own != nil {
			cmd = own
			if sl, stateless, err = fallback.ParseStateless(cmd); err != nil {
				return root{}, &fallback.Failure{Step: fallback.StepConfig, Err: err}
			}
		}
	}
	var t fallback.Target
	if stateless {
		t, err = attemptStateless(cmd, st, sl, first)
	} else {
		t, err = attemptNFS(cmd, st, first)
	}
	return root{t, cmd}, err
}

// attemptNFS runs network, config and mount; on success the root is mounted
// at newRoot and has an init.
func attemptNFS(cmd fallback.Cmdline, st fallback.Settings, first bool) (fallback.Target, error) {
	clientIP, bootServer, rootPath, err := network(cmd, first)
	if err != nil {
		return fallback.Target{}, err
	}
	spec := cmd["nfsroot"]
	if spec == "" {
		spec = rootPath
	}
	t, err := fallback.ParseNFSRoot(spec, clientIP, bootServer, st.DefaultOpts)
	if err != nil {
		return t, &fallback.Failure{Step: fallback.StepConfig, Server: bootServer, Err: err}
	}
	os.MkdirAll(newRoot, 0o755)
	if !mounter.Busy() {
		unix.Unmount(newRoot, unix.MNT_DETACH) // what a failed attempt left
	}
	flags := uintptr(0)
	if _, ro := cmd["ro"]; ro {
		flags |= unix.MS_RDONLY
	}
	if err := mountWithDeadline(t, flags); err != nil {
		return t, &fallback.Failure{Step: fallback.StepMount, Server: t.Server, Export: t.Path, Err: err}
	}
	if err := mountUsr(t); err != nil {
		unix.Unmount(newRoot, unix.MNT_DETACH)
		return t, err
	}
	init := initPath(cmd)
	if err := existsInRoot(newRoot, init); err != nil {
		unix.Unmount(newRoot+"/usr", unix.MNT_DETACH)
		unix.Unmount(newRoot, unix.MNT_DETACH)
		return t, &fallback.Failure{Step: fallback.StepInit, Server: t.Server, Export: t.Path, Err: fmt.Errorf("no %s on the root", init)}
	}
	return t, nil
}

// existsInRoot checks a path inside the new root, following its symlinks
// inside it (Debian's /sbin/init -> /lib/systemd/systemd is absolute).
func existsInRoot(root, p string) error {
	dfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat2(dfd, strings.TrimPrefix(p, "/"), &unix.OpenHow{Flags: unix.O_PATH, Resolve: unix.RESOLVE_IN_ROOT})
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

const imageMount = "/image"

// mountUsr gives a root made from an image its /usr: when the root has
// /etc/diskless/node.conf, the image directory it names is mounted
// read-only from the root's server, its "current" generation is resolved
// once (a running node keeps the generation it booted) and that
// generation's usr is bound read-only on the root's /usr.
func mountUsr(t fallback.Target) error {
	data, err := os.ReadFile(newRoot + fallback.NodeConfPath)
	if os.IsNotExist(err) {
		return nil
	}
	fail := func(export string, err error) error {
		return &fallback.Failure{Step: fallback.StepMount, Server: t.Server, Export: export, Err: fmt.Errorf("/usr: %w", err)}
	}
	if err != nil {
		return fail(t.Path, err)
	}
	conf, err := fallback.ParseNodeConf(string(data))
	if err != nil || conf.Image == "" {
		if err == nil {
			err = fmt.Errorf("%s names no image", fallback.NodeConfPath)
		}
		return fail(t.Path, err)
	}
	it := t.ImageTarget(conf.Image)
	os.MkdirAll(imageMount, 0o755)
	if !mounter.Busy() {
		unix.Unmount(imageMount, unix.MNT_DETACH) // what a failed attempt left
	}
	if err := describeErrno(mounter.Mount(it.Source(), func() error {
		return unix.Mount(it.Source(), imageMount, "nfs", unix.MS_RDONLY, it.MountData())
	}, func() { unix.Unmount(imageMount, unix.MNT_DETACH) })); err != nil {
		return fail(it.Path, err)
	}
	defer unix.Unmount(imageMount, unix.MNT_DETACH)
	gen, err := os.Readlink(imageMount + "/current")
	if err != nil {
		return fail(it.Path, fmt.Errorf("no current generation: %w (is the image published?)", err))
	}
	usr := imageMount + "/" + gen + "/usr"
	os.MkdirAll(newRoot+"/usr", 0o755)
	if err := unix.Mount(usr, newRoot+"/usr", "", unix.MS_BIND, ""); err != nil {
		return fail(it.Path, fmt.Errorf("bind %s/usr: %w", gen, err))
	}
	if err := unix.Mount("", newRoot+"/usr", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		return fail(it.Path, fmt.Errorf("read-only /usr: %w", err))
	}
	say("%s /usr: %s:%s/%s/usr (read-only)", fallback.Prefix, it.Server, it.Path, gen)
	return nil
}

// mounter bounds how long a mount may keep the node silent (an NFSv3
// mount of an unreachable server, or one without rpcbind, retries in the
// kernel for minutes) and serialises the background retries with the main
// loop.
var mounter = &fallback.Mounter{Timeout: 20 * time.Second}

func mountWithDeadline(t fallback.Target, flags uintptr) error {
	return describeErrno(mounter.Mount(t.Source(), func() error {
		return unix.Mount(t.Source(), newRoot, "nfs", flags, t.MountData())
	}, func() { unix.Unmount(newRoot, unix.MNT_DETACH) }))
}

func describeErrno(err error) error {
	var en syscall.Errno
	if errors.As(err, &en) {
		return fmt.Errorf("%s", strings.ToLower(en.Error()))
	}
	return err
}

func initPath(cmd fallback.Cmdline) string {
	if i := cmd["init"]; strings.HasPrefix(i, "/") {
		return i
	}
	return "/sbin/init"
}

// network returns the node's IPv4 address and the boot server, using the
// kernel's ip=dhcp configuration when there is one and DHCP otherwise.
func network(cmd fallback.Cmdline, first bool) (clientIP, bootServer, rootPath string, err error) {
	if ip := configuredIPv4(); ip != "" {
		leaseMu.Lock()
		l := lease
		leaseMu.Unlock()
		if l.ip == ip {
			// this init's own DHCP configured it: what that lease said
			return l.ip, l.server, l.rootPath, nil
		}
		pnp, _ := os.ReadFile("/proc/net/pnp")
		return ip, fallback.BootServer(string(pnp)), "", nil
	}
	if v, ok := cmd["ip"]; ok && (v == "off" || v == "none") {
		return "", "", "", &fallback.Failure{Step: fallback.StepDHCP, Err: errors.New("ip=off on the command line and no address configured")}
	}
	links, _ := netlink.LinkList()
	var ifs []netlink.Link
	for _, l := range links {
		if l.Attrs().Flags&net.FlagLoopback == 0 && l.Type() == "device" {
			ifs = append(ifs, l)
		}
	}
	if len(ifs) == 0 {
		return "", "", "", &fallback.Failure{Step: fallback.StepLink, Err: errors.New("no network interface (is the NIC driver built into the kernel?)")}
	}
	if first {
		say("%s no address from the kernel's ip=dhcp: running DHCP on %d interface(s)", fallback.Prefix, len(ifs))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var lastErr error
	linked := false
	for r := range dhclient.SendRequests(ctx, ifs, true, false, dhclient.Config{Timeout: 5 * time.Second, Retries: 2}, 10*time.Second) {
		linked = true
		if r.Err != nil {
			lastErr = r.Err
			continue
		}
		if err := r.Lease.Configure(); err != nil {
			lastErr = err
			continue
		}
		p4, ok := r.Lease.(*dhclient.Packet4)
		if !ok {
			continue
		}
		msg, _ := p4.Message()
		ip := p4.Lease().IP.String()
		server := msg.ServerIPAddr
		if server == nil || server.IsUnspecified() {
			server = msg.ServerIdentifier()
		}
		rp := msg.Options.Get(dhcpv4.OptionRootPath)
		srv := ""
		if server != nil {
			srv = server.String()
		}
		leaseMu.Lock()
		lease = leased{ip, srv, string(rp)}
		leaseMu.Unlock()
		return ip, srv, string(rp), nil
	}
	if !linked {
		return "", "", "", &fallback.Failure{Step: fallback.StepLink, Err: errors.New("no interface came up with a carrier")}
	}
	if lastErr == nil {
		lastErr = errors.New("no answer")
	}
	return "", "", "", &fallback.Failure{Step: fallback.StepDHCP, Err: lastErr}
}

// lease is what this init's own DHCP got (when the kernel's ip=dhcp did
// not configure the node): a later attempt finds the address configured
// and takes the boot server and root-path from here, not from
// /proc/net/pnp (the kernel's, empty then).
var (
	leaseMu sync.Mutex
	lease   leased
)

type leased struct{ ip, server, rootPath string }

func configuredIPv4() string {
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 || i.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				return n.IP.String()
			}
		}
	}
	return ""
}

// boot switches to the mounted root; it returns only on failure.
func boot(r root) {
	init := initPath(r.cmd)
	if _, stateless, _ := fallback.ParseStateless(r.cmd); stateless {
		say("%s image %s from %s ready: switching to %s", fallback.Prefix, r.Path, r.Server, init)
	} else {
		say("%s NFS root %s mounted: switching to %s", fallback.Prefix, r.Source(), init)
	}
	if err := mount.SwitchRoot(newRoot, init); err != nil {
		say("%s switch_root: %v", fallback.Prefix, err)
	}
}

// rescue runs the shell on the console through a pty (so the first byte
// the admin types is seen here) and retries the mount in the background.
func rescue(cmd fallback.Cmdline, st fallback.Settings) {
	retried := "the NFS mount is retried"
	if _, stateless, _ := fallback.ParseStateless(cmd); stateless {
		retried = "fetching the image is retried"
	} else if st.NodeLookup {
		retried = "the node's own command line, then the NFS mount, is retried"
	}
	con, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		say("%s cannot open /dev/console: %v", fallback.Prefix, err)
		select {}
	}
	// one reader of the console for every shell: a key typed while one
	// shell ends and the next starts goes to the next one
	relay := &fallback.Relay{}
	go relay.Run(con)
	mounted := make(chan root, 1)
	go func() {
		for n := 1; ; n++ {
			time.Sleep(fallback.Jitter(fallback.Backoff(n, time.Duration(st.RetryMax)), rand.Float64()))
			if relay.Typed() {
				say("\r\n%s the admin is at the shell: background retries stopped", fallback.Prefix)
				return
			}
			r, err := attempt(cmd, st, false)
			if err == nil {
				mounted <- r
				return
			}
			if n <= 3 || n%10 == 0 {
				say("\r\n%s retry %d: %s", fallback.Prefix, n, strings.TrimPrefix(failureLine(err), fallback.Prefix+" "))
			}
		}
	}()
	for {
		say("%s starting a rescue shell (%s); %s in the background until you type", fallback.Prefix, st.Shell, retried)
		shellDone := make(chan error, 1)
		kill, err := shell(st.Shell, con, relay, shellDone)
		if err != nil {
			say("%s cannot start %s: %v", fallback.Prefix, st.Shell, err)
			select {}
		}
		select {
		case r := <-mounted:
			kill()
			<-shellDone
			what := "the NFS root"
			if _, stateless, _ := fallback.ParseStateless(r.cmd); stateless {
				what = "the image"
			}
			say("\r\n%s %s came back", fallback.Prefix, what)
			boot(r)
		case <-shellDone:
			// the admin left the shell: try once more, then start another
			if r, err := attempt(cmd, st, false); err == nil {
				boot(r)
			} else {
				say("%s", failureLine(err))
			}
		}
	}
}

// shell starts sh on a pty whose other side is relayed to the console (in
// raw mode) and attached to relay. It returns a function that kills the
// shell.
func shell(sh string, con *os.File, relay *fallback.Relay, done chan<- error) (func(), error) {
	if _, err := os.Stat(sh); err != nil {
		if p, err2 := exec.LookPath("gosh"); err2 == nil {
			sh = p
		} else {
			return nil, err
		}
	}
	os.MkdirAll("/dev/pts", 0o755)
	unix.Mount("devpts", "/dev/pts", "devpts", 0, "ptmxmode=0666") // may already be mounted
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	var unlock int32
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, ptm.Fd(), unix.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		return nil, e
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		return nil, err
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	old, err := unix.IoctlGetTermios(int(con.Fd()), unix.TCGETS)
	if err == nil {
		raw := *old
		raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		raw.Oflag &^= unix.OPOST
		raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
		unix.IoctlSetTermios(int(con.Fd()), unix.TCSETS, &raw)
	}
	c := exec.Command(sh)
	c.Stdin, c.Stdout, c.Stderr = pts, pts, pts
	c.Env = append(os.Environ(), "TERM=linux", "PATH=/bbin:/bin:/usr/bin:/sbin:/usr/sbin")
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := c.Start(); err != nil {
		return nil, err
	}
	pts.Close()
	go io.Copy(con, ptm)
	relay.Attach(ptm)
	go func() {
		err := c.Wait()
		relay.Detach()
		if old != nil {
			unix.IoctlSetTermios(int(con.Fd()), unix.TCSETS, old)
		}
		ptm.Close()
		done <- err
	}()
	return func() { c.Process.Kill() }, nil
}
