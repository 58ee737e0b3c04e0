package nodeos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/debpkg"
	"github.com/diskless/diskless/internal/labtest"
	"github.com/diskless/diskless/internal/testenv"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/ganesha"
	"github.com/diskless/diskless/pkg/image"
	"github.com/diskless/diskless/pkg/lab"
	"github.com/diskless/diskless/pkg/pipeline"
	"github.com/diskless/diskless/pkg/qemu"
)

// master is the shared lab fixture's master (the slave kernel and
// initramfs, the root with the published image, provisioned nodes) served
// by NFS-Ganesha alone on loopback, which a node started with its kernel
// (QEMU -kernel, no firmware, no DHCP server but slirp's) reaches through
// QEMU's user network: an admin's own root (IMAGE_FROM) and the boot
// benchmark.
type master struct {
	*labtest.Fixture
	a   arch.Arch
	srv *ganesha.Server
	// logs numbers the console logs of the boots (two boot at once)
	logs atomic.Int32
}

const invTemplate = `[network]
master = "10.0.2.2"
subnet = "10.0.2.0/24"
root = "{root}"
nfs_opts = "vers=4,tcp"
image = "%s"
home = "{home}"
shared_ro = ["{opt}:/opt"]
authorized_keys = "admin.pub"

[[node]]
name = "node-a"
mac = "52:54:00:00:00:21"
ip = "10.0.2.21"
arch = "x86_64"

[[node]]
name = "node-b"
mac = "52:54:00:00:00:22"
ip = "10.0.2.22"
arch = "x86_64"
`

// newMaster lays out the master with image and starts NFS-Ganesha with the
// exports rendered from its inventory (stopped when the test ends).
func newMaster(t testing.TB, image, imageFrom string) *master {
	t.Helper()
	testutil.NeedTool(t, "ssh", "openssh-client")
	m := &master{Fixture: labtest.New(t, labtest.Options{Inventory: fmt.Sprintf(invTemplate, image), Arches: []string{"x86_64"}, Image: true, ImageFrom: imageFrom})}
	m.a, _ = arch.Lookup("x86_64")
	var err error
	if m.srv, err = ganesha.Start(context.Background(), ganesha.Options{Exports: m.Inv.Ganesha("127.0.0.1"), Dir: filepath.Join(m.Tmp, "ganesha"), Log: testenv.Quiet()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.srv.Stop)
	return m
}

func (m *master) options(name string, port int, logPath string) Options {
	return Options{
		Arch: m.a, Inventory: m.Inv, Node: m.Node(name), Kernel: m.Kernel["x86_64"], Initrd: m.Initrd["x86_64"],
		Server: m.srv, SSHPort: port, Key: m.Key, LogPath: logPath, Accel: m.S.QEMUAccel, Log: testenv.Quiet(),
	}
}

// boot boots a node to multi-user and SSH; it may run in a goroutine (it
// never calls t.Fatal): the error names the console log.
func (m *master) boot(t testing.TB, name string, port int) (*Node, error) {
	logPath := filepath.Join(testutil.LogDir(t), fmt.Sprintf("%s-%d.log", name, m.logs.Add(1)))
	n, err := Boot(context.Background(), m.options(name, port, logPath), 5*time.Minute)
	if err != nil {
		return nil, fmt.Errorf("%v (console: %s)", err, logPath)
	}
	t.Logf("%s: multi-user after %s, SSH after %s", name, n.MultiUser.Round(time.Second), n.SSH.Round(time.Second))
	return n, nil
}

// The HOWTO's slaves running the Debian image through the lab's real
// daemons: slave21 by PXELINUX, slave22 by etherboot.
const labTemplate = `[network]
master = "192.168.1.1"
subnet = "192.168.1.0/24"
root = "{root}"
nfs_opts = "vers=3,tcp"
image = "debian-12"
home = "{home}"
shared_ro = ["{opt}:/opt"]
authorized_keys = "admin.pub"

[[node]]
name = "slave21"
mac = "00:02:A5:04:3B:66"
ip = "192.168.1.21"
arch = "x86_64"

[[node]]
name = "slave22"
mac = "00:02:A5:04:3B:67"
ip = "192.168.1.22"
arch = "x86_64"
boot = "etherboot"
`

// labMaster is the shared fixture's master with the lab's daemons up
// (ISC dhcpd, tftpd-hpa, NFS-Ganesha, radvd, nginx), taken down when the
// test ends.
type labMaster struct {
	*labtest.Fixture
	l    *lab.Lab
	logs string
}

func newLabMaster(t *testing.T, inventory string, sign bool, arches ...string) *labMaster {
	t.Helper()
	testutil.NeedTool(t, "ssh", "openssh-client")
	testutil.NeedTool(t, "apt-get", "apt")
	if len(arches) == 0 {
		arches = []string{"x86_64"}
	}
	m := &labMaster{Fixture: labtest.New(t, labtest.Options{Inventory: inventory, Arches: arches, Image: true, Sign: sign}), logs: testutil.LogDir(t)}
	if lab.Running() {
		t.Fatalf("a lab is already up (namespace %s): not touching it", lab.NetNS)
	}
	var err error
	if m.l, err = lab.Up(context.Background(), lab.Options{Dir: filepath.Join(m.Tmp, "lab"), Root: m.Root, Inventory: m.Inv, CacheDir: m.S.CacheDir, Log: testenv.Quiet()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.l.Down(); err != nil {
			t.Error(err)
		}
	})
	return m
}

// boot boots a node on the lab's bridge, the way its boot method says, to
// multi-user and SSH from the master's namespace; it may run in a
// goroutine (it never calls t.Fatal).
func (m *labMaster) boot(t *testing.T, name string, n int) (*Node, error) {
	nd := m.Node(name)
	mc, remove, err := m.l.Machine(nd, nd.MAC, filepath.Join(m.logs, fmt.Sprintf("%s-%d.log", name, n)))
	if err != nil {
		return nil, err
	}
	t.Cleanup(remove)
	mc.Accel = m.S.QEMUAccel
	acc := Access{Name: name, Host: nd.IP, Port: 22, Key: m.Key, Command: func(c string, args ...string) *exec.Cmd {
		return exec.Command("nsenter", append([]string{"--net=" + lab.NetNSPath(), "--", c}, args...)...)
	}}
	node, err := BootMachine(context.Background(), mc, acc, 5*time.Minute, nil)
	if err != nil {
		return nil, fmt.Errorf("%v (console: %s)", err, mc.LogPath)
	}
	t.Logf("%s: multi-user after %s, SSH after %s", name, node.MultiUser.Round(time.Second), node.SSH.Round(time.Second))
	for _, st := range boot.Stages(node.Session().Timeline()) {
		t.Logf("  %s: %-40s %6.1f s", name, st.Name, st.At)
	}
	return node, nil
}

// bootTwo boots two nodes at once (stopped when the test ends) and fails
// the test unless both are up.
func (m *labMaster) bootTwo(t *testing.T, name1, name2 string) (*Node, *Node) {
	t.Helper()
	n := m.bootAll(t, name1, name2)
	return n[0], n[1]
}

// bootAll boots nodes at once (stopped when the test ends) and fails the
// test unless all are up.
func (m *labMaster) bootAll(t *testing.T, names ...string) []*Node {
	t.Helper()
	out := make([]*Node, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() { defer wg.Done(); out[i], errs[i] = m.boot(t, name, 1) }()
	}
	wg.Wait()
	for _, n := range out {
		if n != nil {
			t.Cleanup(n.Stop)
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkIdentity checks that a node is running, under its name, with the
// machine-id and SSH host key provisioned under its address, and logs its
// RAM after boot.
func (m *labMaster) checkIdentity(t *testing.T, n *Node, name, ip string) {
	t.Helper()
	state, _ := n.Run("systemctl is-system-running --wait")
	if strings.TrimSpace(state) != "running" {
		failed, _ := n.Run("systemctl --failed --no-legend; for u in $(systemctl --failed --no-legend --plain | cut -d' ' -f1); do journalctl -b -u $u --no-pager | tail -5; done")
		t.Errorf("%s: systemctl is-system-running: %q\n%s", name, strings.TrimSpace(state), failed)
	}
	if got := run(t, n, "hostname"); got != name {
		t.Errorf("hostname on %s: %q", name, got)
	}
	t.Logf("%s: RAM after boot: %s", name, run(t, n, "free -m | sed -n 2p"))
	dir := filepath.Join(m.Root, ip)
	mid, _ := os.ReadFile(filepath.Join(dir, "etc/machine-id"))
	if got := run(t, n, "cat /etc/machine-id"); got != strings.TrimSpace(string(mid)) || len(got) != 32 {
		t.Errorf("%s: machine-id %q, provisioned %q", name, got, mid)
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "etc/ssh/ssh_host_ed25519_key.pub"))
	offered, err := n.HostKey("ed25519")
	if err != nil || !strings.HasPrefix(string(pub), offered) {
		t.Errorf("%s: sshd offers %q (%v), provisioned %q", name, offered, err, pub)
	}
}

// publishImageGen2 publishes the live image again as generation 2, with
// /usr/share/diskless-gen2 added.
func (m *labMaster) publishImageGen2(t *testing.T) {
	t.Helper()
	gen2 := filepath.Join(m.Tmp, "gen2")
	live, err := image.Live(m.Root, "debian-12", "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", live, gen2).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	os.WriteFile(filepath.Join(gen2, "usr/share/diskless-gen2"), []byte("2\n"), 0o644)
	s2 := *m.S
	s2.ImageFrom = gen2
	s2.CacheDir = filepath.Join(m.Tmp, "cache") // not the shared cache's debootstrapped debian-12
	x86, _ := arch.Lookup("x86_64")
	if _, g, err := pipeline.PublishImage(context.Background(), &s2, x86, testenv.Quiet()); err != nil || g.N != 2 {
		t.Fatalf("publishing image generation 2: %v %+v", err, g)
	}
}

func run(t testing.TB, n *Node, cmd string) string {
	t.Helper()
	out, err := n.Run(cmd)
	if err != nil {
		t.Fatalf("%s: %v\n%s", n.acc.Name, err, out)
	}
	return strings.TrimSpace(out)
}

// TestIntegrationDebianNodes is the HOWTO's slaves with a real OS, booted
// the way the inventory says through the master's real daemons (the lab):
// slave21 by PXELINUX and slave22 by etherboot boot the published Debian
// 12 image through the fallback initramfs from NFS-Ganesha to a running
// systemd, answer SSH from the master with the provisioned key under
// their own names and identities, keep /var to themselves and across a
// reboot, cannot write /usr, get /opt and /home from the master, and see
// a new image generation only at their next boot.
func TestIntegrationDebianNodes(t *testing.T) {
	l := newLabMaster(t, labTemplate, false)
	a, b := l.bootTwo(t, "slave21", "slave22")
	for n, want := range map[*Node][]string{a: {"Filename: pxelinux.0", "PXELINUX 6", "BOOT_IMAGE=.diskless/generations/000001/bzImage_x86_64"}, b: {"Filename: vmlinuz_x86_64", "[Multiboot]"}} {
		for _, w := range want {
			if !strings.Contains(n.Console(), w) {
				t.Errorf("%s: no %q on the console: not booted the way nodes.toml says", n.acc.Name, w)
			}
		}
	}

	for _, c := range []struct {
		n    *Node
		name string
		ip   string
	}{{a, "slave21", "192.168.1.21"}, {b, "slave22", "192.168.1.22"}} {
		l.checkIdentity(t, c.n, c.name, c.ip)
		// /usr is the image's, read-only
		if out, err := c.n.Run("touch /usr/bin/diskless-test"); err == nil || !strings.Contains(out+err.Error(), "Read-only file system") {
			t.Errorf("%s: writing /usr: %v %s", c.name, err, out)
		}
		if got := run(t, c.n, "findmnt -n -o OPTIONS /usr"); !strings.HasPrefix(got, "ro,") {
			t.Errorf("%s: /usr options %q", c.name, got)
		}
		// the HOWTO's shared trees
		if got := run(t, c.n, "cat /opt/from-master"); got != "opt" {
			t.Errorf("%s: /opt: %q", c.name, got)
		}
		if out, err := c.n.Run("touch /opt/x"); err == nil {
			t.Errorf("%s: /opt is writable: %s", c.name, out)
		}
		run(t, c.n, "echo "+c.name+" > /home/from-"+c.name)
		if data, _ := os.ReadFile(filepath.Join(l.Home, "from-"+c.name)); strings.TrimSpace(string(data)) != c.name {
			t.Errorf("%s: /home write not on the master: %q", c.name, data)
		}
		// the node's own network setup leaves the root's interface alone
		run(t, c.n, "systemctl start systemd-networkd && sleep 3")
		if got := run(t, c.n, "hostname"); got != c.name {
			t.Errorf("%s after networkd: %q", c.name, got)
		}
	}
	if ma, mb := run(t, a, "cat /etc/machine-id"), run(t, b, "cat /etc/machine-id"); ma == mb {
		t.Errorf("both nodes have machine-id %s", ma)
	}
	// per-node /var
	run(t, a, "mkdir -p /var/lib/diskless-test && echo a > /var/lib/diskless-test/marker && sync")
	if out, err := b.Run("cat /var/lib/diskless-test/marker"); err == nil {
		t.Errorf("slave22 sees slave21's /var: %q", out)
	}
	b.Stop()

	// a new image generation while slave21 runs: it keeps its /usr
	l.publishImageGen2(t)
	if out, err := a.Run("cat /usr/share/diskless-gen2"); err == nil {
		t.Errorf("running slave21 sees the new generation: %q", out)
	}
	if got := run(t, a, "ls /usr/bin/systemctl"); got != "/usr/bin/systemctl" {
		t.Errorf("slave21 lost its /usr after the switch: %q", got)
	}
	a.Stop()

	// slave21 again: its /var survived, and it runs generation 2
	a, err := l.boot(t, "slave21", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	if got := run(t, a, "cat /var/lib/diskless-test/marker"); got != "a" {
		t.Errorf("slave21's /var after reboot: %q", got)
	}
	if got := run(t, a, "cat /usr/share/diskless-gen2"); got != "2" {
		t.Errorf("slave21 after reboot runs the old image: %q", got)
	}
	if !strings.Contains(a.Console(), "gen-0002/usr") {
		t.Errorf("console does not name gen-0002")
	}
}

// TestIntegrationBusyboxImage: an admin's own root (IMAGE_FROM, a
// directory with a static busybox and its init) goes through the same
// pipeline, image build, publish, provision, boot through the fallback
// initramfs with /usr from the image, and its init runs as PID 1.
func TestIntegrationBusyboxImage(t *testing.T) {
	testutil.Slow(t)
	cache := testenv.Settings(t, nil).CacheDir
	bb, err := debpkg.Extract("busybox-static", cache)
	if err != nil {
		testutil.SkipOrFail(t, fmt.Sprintf("busybox-static: %v", err))
	}
	// the admin's root: merged /usr, busybox as init
	src := filepath.Join(t.TempDir(), "bbroot")
	for _, d := range []string{"usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "run", "tmp", "var"} {
		os.MkdirAll(filepath.Join(src, d), 0o755)
	}
	data, err := os.ReadFile(filepath.Join(bb, "bin/busybox"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "usr/bin/busybox"), data, 0o755)
	for _, ln := range [][2]string{{"usr/bin", "bin"}, {"usr/sbin", "sbin"}, {"../bin/busybox", "usr/sbin/init"}, {"busybox", "usr/bin/sh"}} {
		os.Symlink(ln[0], filepath.Join(src, ln[1]))
	}
	os.WriteFile(filepath.Join(src, "etc/inittab"), []byte("::sysinit:/bin/busybox mount -t proc proc /proc\n"+
		"::once:/bin/busybox sh -c 'echo busybox-init pid1=$(busybox cat /proc/1/comm) host=$(busybox cat /etc/hostname) usr=$(busybox grep \" /usr \" /proc/mounts | busybox cut -d\" \" -f4 | busybox cut -d, -f1); busybox touch /usr/x 2>/dev/null || echo usr-read-only; echo o > /proc/sysrq-trigger'\n"), 0o644)
	l := newMaster(t, "busybox-demo", src)
	m, err := Machine(l.options("node-a", 2223, filepath.Join(testutil.LogDir(t), "node-a.log")))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := qemu.Start(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Stop()
	if _, err := sess.Expect([]string{"busybox-init pid1="}, boot.Failures(), 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(sess.Console(), "\n") {
		if strings.Contains(l, "busybox-init pid1=") {
			line = l
		}
	}
	if !strings.Contains(line, "pid1=init") || !strings.Contains(line, "host=node-a") || !strings.Contains(line, "usr=ro") {
		t.Errorf("busybox init: %q", line)
	}
	if _, err := sess.Expect([]string{"usr-read-only"}, boot.Failures(), 30*time.Second); err != nil {
		t.Errorf("/usr writable under busybox: %v", err)
	}
}
