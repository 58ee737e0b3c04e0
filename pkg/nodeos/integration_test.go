package nodeos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/debpkg"
	"github.com/diskless/diskless/internal/testkernel"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/ganesha"
	"github.com/diskless/diskless/pkg/image"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/pipeline"
	"github.com/diskless/diskless/pkg/qemu"
	"github.com/diskless/diskless/pkg/settings"
)

// lab is what the node tests share: the slave kernel and initramfs, a
// master root with the published image, provisioned nodes and NFS-Ganesha
// serving them.
type lab struct {
	a        arch.Arch
	s        *settings.Settings
	root     string
	inv      *nodes.Inventory
	srv      *ganesha.Server
	key      string
	kernel   string
	initrd   string
	home     string
	tmp      string
	invPath  string
	invText  string
	logIndex int
}

func needNodeOS(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots Debian under QEMU: not with -short")
	}
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "needs root (debootstrap, namespaces)")
	}
	if err := ganesha.Available(); err != nil {
		testutil.SkipOrFail(t, err.Error())
	}
	testutil.NeedTool(t, "debootstrap", "debootstrap")
	testutil.NeedTool(t, "ssh", "openssh-client")
	testutil.NeedTool(t, "ssh-keygen", "openssh-client")
}

const invTemplate = `[network]
master = "10.0.2.2"
subnet = "10.0.2.0/24"
root = "%s"
nfs_opts = "vers=4,tcp"
image = "debian-12"
home = "%s"
shared_ro = ["%s:/opt"]
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

// newArtifacts checks the tools and builds the x86_64 slave kernel and
// fallback initramfs (cached) into a scratch artifacts directory.
func newArtifacts(t testing.TB) *lab {
	t.Helper()
	needNodeOS(t)
	l := &lab{a: testkernel.NeedTools(t, "x86_64"), tmp: t.TempDir()}
	var err error
	if l.s, err = settings.Load(testkernel.Lookup, "../.."); err != nil {
		t.Fatal(err)
	}
	l.s.Artifacts = filepath.Join(l.tmp, "artifacts")
	r, err := pipeline.BuildArch(context.Background(), pipeline.Options{Arch: l.a, Settings: l.s, Log: testkernel.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	l.kernel, l.initrd = filepath.Join(l.s.Artifacts, l.a.Name, l.a.ArtifactName()), r.Initramfs.Path
	return l
}

func newLab(t testing.TB) *lab {
	t.Helper()
	ctx := context.Background()
	l := newArtifacts(t)
	l.root = filepath.Join(l.tmp, "diskless")
	l.home = filepath.Join(l.tmp, "home")
	opt := filepath.Join(l.tmp, "opt")
	for _, d := range []string{l.root, l.home, opt} {
		os.MkdirAll(d, 0o755)
	}
	os.Chmod(l.home, 0o1777) // root on the nodes is squashed to nobody here
	os.WriteFile(filepath.Join(opt, "from-master"), []byte("opt\n"), 0o644)
	l.s.Root = l.root
	if _, _, err := pipeline.PublishImage(ctx, l.s, l.a, testkernel.Quiet()); err != nil {
		t.Fatal(err)
	}
	l.key = filepath.Join(l.tmp, "admin")
	if err := Keygen(l.key); err != nil {
		t.Fatal(err)
	}
	l.serve(t, fmt.Sprintf(invTemplate, l.root, l.home, opt))
	return l
}

// serve writes the inventory, provisions its nodes under the lab's root
// and starts NFS-Ganesha with the exports rendered from it (stopped when
// the test ends).
func (l *lab) serve(t testing.TB, inventory string) {
	t.Helper()
	l.invPath, l.invText = filepath.Join(l.tmp, "nodes.toml"), inventory
	os.WriteFile(l.invPath, []byte(inventory), 0o644)
	var err error
	if l.inv, err = nodes.Load(l.invPath); err != nil {
		t.Fatal(err)
	}
	if _, err := l.inv.Provision(l.root); err != nil {
		t.Fatal(err)
	}
	if l.srv, err = ganesha.Start(context.Background(), ganesha.Options{Exports: l.inv.Ganesha("127.0.0.1"), Dir: filepath.Join(l.tmp, "ganesha"), Log: testkernel.Quiet()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.srv.Stop)
}

func (l *lab) node(name string) nodes.Node {
	nd, ok := l.inv.Node(name)
	if !ok {
		panic(name)
	}
	return nd
}

func (l *lab) boot(t testing.TB, name string, port int) *Node {
	t.Helper()
	l.logIndex++
	logPath := filepath.Join(testutil.LogDir(t), fmt.Sprintf("%s-%d.log", name, l.logIndex))
	n, err := Boot(context.Background(), Options{
		Arch: l.a, Inventory: l.inv, Node: l.node(name), Kernel: l.kernel, Initrd: l.initrd,
		Server: l.srv, SSHPort: port, Key: l.key, LogPath: logPath, Accel: l.s.QEMUAccel, Log: testkernel.Quiet(),
	}, 5*time.Minute)
	if err != nil {
		t.Fatalf("%v (console: %s)", err, logPath)
	}
	t.Logf("%s: multi-user after %s, SSH after %s", name, n.MultiUser.Round(time.Second), n.SSH.Round(time.Second))
	return n
}

func run(t testing.TB, n *Node, cmd string) string {
	t.Helper()
	out, err := n.Run(cmd)
	if err != nil {
		t.Fatalf("%s: %v\n%s", n.acc.Name, err, out)
	}
	return strings.TrimSpace(out)
}

// TestIntegrationDebianNodes is the HOWTO's slaves with a real OS: two
// nodes boot the published Debian 12 image through the fallback initramfs
// from NFS-Ganesha to a running systemd, answer SSH with the provisioned
// key under their own names and identities, keep /var to themselves and
// across a reboot, cannot write /usr, and see a new image generation only
// at their next boot.
func TestIntegrationDebianNodes(t *testing.T) {
	l := newLab(t)
	var a, b *Node
	var wg sync.WaitGroup
	wg.Add(2)
	var errA, errB string
	go func() {
		defer wg.Done()
		defer func() {
			if r := recover(); r != nil {
				errA = fmt.Sprint(r)
			}
		}()
		a = l.boot(t, "node-a", 2221)
	}()
	go func() {
		defer wg.Done()
		defer func() {
			if r := recover(); r != nil {
				errB = fmt.Sprint(r)
			}
		}()
		b = l.boot(t, "node-b", 2222)
	}()
	wg.Wait()
	if a == nil || b == nil {
		if a != nil {
			a.Stop()
		}
		if b != nil {
			b.Stop()
		}
		t.Fatalf("boot failed %s %s", errA, errB)
	}
	defer func() { a.Stop(); b.Stop() }()

	for _, c := range []struct {
		n    *Node
		name string
		ip   string
	}{{a, "node-a", "10.0.2.21"}, {b, "node-b", "10.0.2.22"}} {
		state, _ := c.n.Run("systemctl is-system-running --wait")
		if strings.TrimSpace(state) != "running" {
			failed, _ := c.n.Run("systemctl --failed --no-legend; for u in $(systemctl --failed --no-legend --plain | cut -d' ' -f1); do journalctl -b -u $u --no-pager | tail -5; done")
			t.Errorf("%s: systemctl is-system-running: %q\n%s", c.name, strings.TrimSpace(state), failed)
		}
		if got := run(t, c.n, "hostname"); got != c.name {
			t.Errorf("hostname on %s: %q", c.name, got)
		}
		dir := filepath.Join(l.root, c.ip)
		mid, _ := os.ReadFile(filepath.Join(dir, "etc/machine-id"))
		if got := run(t, c.n, "cat /etc/machine-id"); got != strings.TrimSpace(string(mid)) || len(got) != 32 {
			t.Errorf("%s: machine-id %q, provisioned %q", c.name, got, mid)
		}
		pub, _ := os.ReadFile(filepath.Join(dir, "etc/ssh/ssh_host_ed25519_key.pub"))
		offered, err := c.n.HostKey("ed25519")
		if err != nil || !strings.HasPrefix(string(pub), offered) {
			t.Errorf("%s: sshd offers %q (%v), provisioned %q", c.name, offered, err, pub)
		}
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
		if data, _ := os.ReadFile(filepath.Join(l.home, "from-"+c.name)); strings.TrimSpace(string(data)) != c.name {
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
		t.Errorf("node-b sees node-a's /var: %q", out)
	}
	b.Stop()

	// a new image generation while node-a runs: node-a keeps its /usr
	gen2 := filepath.Join(l.tmp, "gen2")
	live, err := image.Live(l.root, "debian-12", "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", live, gen2).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	os.WriteFile(filepath.Join(gen2, "usr/share/diskless-gen2"), []byte("2\n"), 0o644)
	s2 := *l.s
	s2.ImageFrom = gen2
	s2.CacheDir = filepath.Join(l.tmp, "cache") // not the shared cache's debootstrapped debian-12
	if _, g, err := pipeline.PublishImage(context.Background(), &s2, l.a, testkernel.Quiet()); err != nil || g.N != 2 {
		t.Fatalf("publishing generation 2: %v %+v", err, g)
	}
	if out, err := a.Run("cat /usr/share/diskless-gen2"); err == nil {
		t.Errorf("running node-a sees the new generation: %q", out)
	}
	if got := run(t, a, "ls /usr/bin/systemctl"); got != "/usr/bin/systemctl" {
		t.Errorf("node-a lost its /usr after the switch: %q", got)
	}
	a.Stop()

	// node-a again: its /var survived, and it runs generation 2
	a = l.boot(t, "node-a", 2221)
	if got := run(t, a, "cat /var/lib/diskless-test/marker"); got != "a" {
		t.Errorf("node-a's /var after reboot: %q", got)
	}
	if got := run(t, a, "cat /usr/share/diskless-gen2"); got != "2" {
		t.Errorf("node-a after reboot runs the old image: %q", got)
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
	ctx := context.Background()
	l := newArtifacts(t)
	bb, err := debpkg.Extract("busybox-static", l.s.CacheDir)
	if err != nil {
		testutil.SkipOrFail(t, fmt.Sprintf("busybox-static: %v", err))
	}
	// the admin's root: merged /usr, busybox as init
	src := filepath.Join(l.tmp, "bbroot")
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
	l.root = filepath.Join(l.tmp, "diskless")
	os.MkdirAll(l.root, 0o755)
	l.s.Root, l.s.Image, l.s.ImageFrom = l.root, "busybox-demo", src
	res, g, err := pipeline.PublishImage(ctx, l.s, l.a, testkernel.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.PackageDB != "none" || g.N != 1 {
		t.Errorf("manifest %+v generation %+v", res.Manifest, g)
	}
	inv := fmt.Sprintf("[network]\nmaster = \"10.0.2.2\"\nsubnet = \"10.0.2.0/24\"\nroot = %q\nnfs_opts = \"vers=4,tcp\"\nimage = \"busybox-demo\"\n\n[[node]]\nname = \"node-c\"\nmac = \"52:54:00:00:00:23\"\nip = \"10.0.2.23\"\narch = \"x86_64\"\n", l.root)
	l.serve(t, inv)
	o := Options{Arch: l.a, Inventory: l.inv, Node: l.node("node-c"), Kernel: l.kernel, Initrd: l.initrd, Server: l.srv, SSHPort: 2223,
		LogPath: filepath.Join(testutil.LogDir(t), "node-c.log"), Accel: l.s.QEMUAccel}
	m, err := Machine(o)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := qemu.Start(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Stop()
	if _, err := sess.Expect([]string{"busybox-init pid1="}, failed, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(sess.Console(), "\n") {
		if strings.Contains(l, "busybox-init pid1=") {
			line = l
		}
	}
	if !strings.Contains(line, "pid1=init") || !strings.Contains(line, "host=node-c") || !strings.Contains(line, "usr=ro") {
		t.Errorf("busybox init: %q", line)
	}
	if _, err := sess.Expect([]string{"usr-read-only"}, failed, 30*time.Second); err != nil {
		t.Errorf("/usr writable under busybox: %v", err)
	}
}
