package lab

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

	"github.com/diskless/diskless/internal/testkernel"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/ganesha"
	"github.com/diskless/diskless/pkg/nodeos"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/pipeline"
	"github.com/diskless/diskless/pkg/qemu"
	"github.com/diskless/diskless/pkg/qemu/testroot"
	"github.com/diskless/diskless/pkg/settings"
)

// The HOWTO's network: master 192.168.1.1, slave21 by PXELINUX, and a
// second node by etherboot (iPXE loads vmlinuz_x86_64), both running the
// Debian image; in the lab's namespace only.
const labInv = `[network]
master = "192.168.1.1"
subnet = "192.168.1.0/24"
root = "%s"
nfs_opts = "vers=3,tcp"
home = "%s"
shared_ro = []
authorized_keys = "admin.pub"

[[node]]
name = "slave21"
mac = "00:02:A5:04:3B:66"
ip = "192.168.1.21"
arch = "x86_64"
image = "debian-12"

[[node]]
name = "slave22"
mac = "00:02:A5:04:3B:67"
ip = "192.168.1.22"
arch = "x86_64"
boot = "etherboot"
image = "debian-12"

[[node]]
name = "slave23"
mac = "00:02:A5:04:3B:68"
ip = "192.168.1.23"
arch = "arm64"
boot = "uefi"
`

type labFixture struct {
	s    *settings.Settings
	inv  *nodes.Inventory
	root string
	key  string
	tmp  string
}

func newFixture(t *testing.T) *labFixture {
	t.Helper()
	testutil.Slow(t)
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "the lab needs root")
	}
	if err := ganesha.Available(); err != nil {
		testutil.SkipOrFail(t, err.Error())
	}
	testutil.NeedTool(t, "debootstrap", "debootstrap")
	testutil.NeedTool(t, "ssh", "openssh-client")
	testutil.NeedTool(t, "dnsmasq", "dnsmasq-base")
	testutil.NeedTool(t, "curl", "curl")
	testutil.NeedTool(t, "apt-get", "apt")
	testutil.NeedFile(t, "/usr/lib/PXELINUX/pxelinux.0", "pxelinux")
	a := testkernel.NeedTools(t, "x86_64")
	arm := testkernel.NeedTools(t, "arm64")
	testutil.NeedFile(t, AAVMF, "qemu-efi-aarch64")
	f := &labFixture{tmp: t.TempDir()}
	// the daemons that drop root (nginx's workers) must reach the root
	os.Chmod(f.tmp, 0o755)
	os.Chmod(filepath.Dir(f.tmp), 0o755)
	f.root = filepath.Join(f.tmp, "diskless")
	home := filepath.Join(f.tmp, "home")
	os.MkdirAll(f.root, 0o755)
	os.MkdirAll(home, 0o1777)
	f.key = filepath.Join(f.tmp, "admin")
	if err := nodeos.Keygen(f.key); err != nil {
		t.Fatal(err)
	}
	invPath := filepath.Join(f.tmp, "nodes.toml")
	os.WriteFile(invPath, []byte(fmt.Sprintf(labInv, f.root, home)), 0o644)
	lookup := func(k string) (string, bool) {
		if k == "NODES_FILE" {
			return invPath, true
		}
		return testkernel.Lookup(k)
	}
	var err error
	if f.s, err = settings.Load(lookup, "../.."); err != nil {
		t.Fatal(err)
	}
	f.inv = f.s.Inventory
	f.s.Artifacts = filepath.Join(f.tmp, "artifacts")
	ctx := context.Background()
	// the arm64 EFI image carries the lab's command line built in (UEFI
	// PXE passes none): an incremental rebuild of the cached kernel
	for _, x := range []arch.Arch{a, arm} {
		if _, err := pipeline.BuildArch(ctx, pipeline.Options{Arch: x, Settings: f.s, Log: testkernel.Quiet()}); err != nil {
			t.Fatal(err)
		}
	}
	files, err := f.inv.Render()
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes.WriteFiles(filepath.Join(f.s.Artifacts, "master"), files); err != nil {
		t.Fatal(err)
	}
	if _, err := pipeline.Publish(ctx, f.s, testkernel.Quiet()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pipeline.PublishImage(ctx, f.s, a, testkernel.Quiet()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.inv.Provision(f.root); err != nil {
		t.Fatal(err)
	}
	// the arm64 node runs no image: the HOWTO's skeleton with the boot
	// tests' static init
	if err := testroot.Build(ctx, filepath.Join(f.root, "192.168.1.23"), "arm64"); err != nil {
		t.Fatal(err)
	}
	return f
}

// bootUEFI boots the arm64 node under AAVMF: UEFI PXE gets vmlinuz_arm64
// by DHCP option 93 and TFTP, and the kernel mounts its NFS root.
func (f *labFixture) bootUEFI(t *testing.T, l *Lab, logs string) {
	nd := f.node("slave23")
	m, remove, err := l.Machine(nd, nd.MAC, filepath.Join(logs, "slave23.log"))
	if err != nil {
		t.Error(err)
		return
	}
	defer remove()
	m.Accel = f.s.QEMUAccel
	sess, err := qemu.Start(context.Background(), m)
	if err != nil {
		t.Error(err)
		return
	}
	defer sess.Stop()
	if _, err := sess.Expect([]string{testroot.Marker}, nil, 5*time.Minute); err != nil {
		t.Errorf("slave23 (arm64, UEFI): %v", err)
		return
	}
	want := "diskless-testinit: root=192.168.1.1:" + filepath.Join(f.root, "192.168.1.23") + " / nfs"
	if !strings.Contains(sess.Console(), want) {
		t.Errorf("slave23: no %q on the console", want)
	}
	for _, st := range Stages(sess.Timeline()) {
		t.Logf("  slave23: %-40s %6.1f s", st.Name, st.At)
	}
}

func (f *labFixture) up(t *testing.T, dhcp string) *Lab {
	t.Helper()
	if Running() {
		t.Fatalf("a lab is already up (namespace %s): not touching it", NetNS)
	}
	l, err := Up(context.Background(), Options{Dir: filepath.Join(f.tmp, "lab-"+dhcp), Root: f.root, Inventory: f.inv, DHCP: dhcp, CacheDir: f.s.CacheDir, Log: testkernel.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Error(err)
		}
		if Running() {
			t.Errorf("namespace %s still there after Down", NetNS)
		}
	})
	t.Logf("lab up with %s in %.1f s", dhcp, l.State.Ready)
	if _, err := Up(context.Background(), Options{Dir: t.TempDir(), Root: f.root, Inventory: f.inv, DHCP: dhcp}); err == nil || !strings.Contains(err.Error(), "already up") {
		t.Errorf("a second Up: %v", err)
	}
	if !Running() {
		t.Fatal("a refused second Up took the lab down")
	}
	return l
}

func (f *labFixture) node(name string) nodes.Node {
	nd, ok := f.inv.Node(name)
	if !ok {
		panic(name)
	}
	return nd
}

// boot boots a node of the inventory on the lab's bridge to multi-user and
// SSH from the master's namespace.
func (f *labFixture) boot(t *testing.T, l *Lab, name string, logDir string) *nodeos.Node {
	t.Helper()
	nd := f.node(name)
	m, remove, err := l.Machine(nd, nd.MAC, filepath.Join(logDir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(remove)
	m.Accel = f.s.QEMUAccel
	acc := nodeos.Access{Name: name, Host: nd.IP, Port: 22, Key: f.key, Command: func(n string, args ...string) *exec.Cmd {
		return exec.Command("nsenter", append([]string{"--net=" + NetNSPath(), "--", n}, args...)...)
	}}
	n, err := nodeos.BootMachine(context.Background(), m, acc, 5*time.Minute, nil)
	if err != nil {
		t.Fatalf("%v (console: %s)", err, m.LogPath)
	}
	t.Cleanup(n.Stop)
	t.Logf("%s: multi-user after %s, SSH after %s", name, n.MultiUser.Round(time.Second), n.SSH.Round(time.Second))
	for _, st := range Stages(n.Session().Timeline()) {
		t.Logf("  %s: %-40s %6.1f s", name, st.Name, st.At)
	}
	return n
}

func checkNode(t *testing.T, n *nodeos.Node, name string) {
	t.Helper()
	if got, err := n.Run("hostname"); err != nil || strings.TrimSpace(got) != name {
		t.Errorf("hostname over SSH from the master: %q %v", got, err)
	}
	if got, _ := n.Run("systemctl is-system-running --wait"); strings.TrimSpace(got) != "running" {
		failed, _ := n.Run("systemctl --failed --no-legend")
		t.Errorf("%s: %q\n%s", name, strings.TrimSpace(got), failed)
	}
}

// TestIntegrationLab is the master, for real: ISC dhcpd, tftpd-hpa,
// NFS-Ganesha and nginx in the lab's namespace with the rendered
// configurations boot slave21 by PXELINUX and slave22 by etherboot into
// the Debian image; the same with dnsmasq; a stranger's MAC gets nothing.
func TestIntegrationLab(t *testing.T) {
	f := newFixture(t)
	for _, dhcp := range []string{"dhcpd", "dnsmasq"} {
		t.Run(dhcp, func(t *testing.T) {
			l := f.up(t, dhcp)
			logs := testutil.LogDir(t)
			// HTTP serves the boot files, and not the nodes' roots
			for path, want := range map[string]string{"/bzImage_x86_64": "200", "/pxelinux.cfg/01-00-02-a5-04-3b-66": "200", "/192.168.1.21/etc/shadow": "403"} {
				out, _ := exec.Command("ip", "netns", "exec", NetNS, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://192.168.1.1"+path).Output()
				if string(out) != want {
					t.Errorf("GET %s from nginx: %s, want %s", path, out, want)
				}
			}
			names := []string{"slave21"}
			if dhcp == "dhcpd" {
				names = append(names, "slave22")
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.bootUEFI(t, l, logs)
			}()
			booted := make([]*nodeos.Node, len(names))
			for i, name := range names {
				wg.Add(1)
				go func() {
					defer wg.Done()
					booted[i] = f.boot(t, l, name, logs)
				}()
			}
			wg.Wait()
			for i, n := range booted {
				if n == nil {
					t.FailNow()
				}
				checkNode(t, n, names[i])
			}
			for i, want := range [][]string{{"Filename: pxelinux.0", "PXELINUX 6", "BOOT_IMAGE=bzImage_x86_64", "initrd=initramfs_x86_64"}, {"Filename: vmlinuz_x86_64", "vmlinuz_x86_64 : ", "[Multiboot]"}}[:len(booted)] {
				for _, w := range want {
					if !strings.Contains(booted[i].Console(), w) {
						t.Errorf("%s: no %q on the console: not booted the way nodes.toml says", names[i], w)
					}
				}
			}
			strangerGetsNothing(t, f, l, dhcp, logs)
		})
	}
}

// strangerGetsNothing boots a MAC the inventory does not know: the DHCP
// server logs it and offers no lease, so no boot file is loaded.
func strangerGetsNothing(t *testing.T, f *labFixture, l *Lab, dhcp, logs string) {
	const mac = "52:54:00:de:ad:01"
	m, remove, err := l.Machine(f.node("slave21"), mac, filepath.Join(logs, "stranger.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	sess, err := qemu.Start(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Stop()
	want := map[string]string{"dhcpd": "DHCPDISCOVER from " + mac + " via br0: network 192.168.1.0/24: no free leases", "dnsmasq": "DHCPDISCOVER(br0) " + mac + " no address available"}[dhcp]
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(l.LogOf(dhcp), want) && time.Now().Before(deadline) {
		time.Sleep(time.Second)
	}
	if !strings.Contains(l.LogOf(dhcp), want) {
		t.Errorf("%s log has no %q:\n%s", dhcp, want, l.LogOf(dhcp))
	}
	if _, err := sess.Expect([]string{"No configuration methods"}, nil, 60*time.Second); err != nil {
		t.Errorf("iPXE did not give up on DHCP: %v", err)
	}
	if c := sess.Console(); strings.Contains(c, "Filename:") || strings.Contains(c, "Linux version") {
		t.Errorf("the stranger loaded a boot file:\n%s", c)
	}
}
