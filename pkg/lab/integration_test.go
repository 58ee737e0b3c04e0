package lab_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/labtest"
	"github.com/diskless/diskless/internal/testenv"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/internal/textutil"
	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/lab"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/qemu"
)

// The HOWTO's network: master 192.168.1.1, slave21 by PXELINUX, slave22
// by etherboot (iPXE loads vmlinuz_x86_64), an arm64 node by UEFI, three
// x86-64 nodes by iPXE over HTTP, each with the boot tests' static init on
// its root; in the lab's namespace only. (Their real OS through the lab is
// the node-OS test's: pkg/nodeos.)
const labInv = `[network]
master = "192.168.1.1"
subnet = "192.168.1.0/24"
root = "{root}"
nfs_opts = "vers=3,tcp"
home = "{home}"
shared_ro = []

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

[[node]]
name = "slave23"
mac = "00:02:A5:04:3B:68"
ip = "192.168.1.23"
arch = "arm64"
boot = "uefi"

[[node]]
name = "slave24"
mac = "00:02:A5:04:3B:69"
ip = "192.168.1.24"
arch = "x86_64"
boot = "uefi"

[[node]]
name = "slave25"
mac = "00:02:A5:04:3B:6A"
ip = "192.168.1.25"
arch = "x86_64"
boot = "http"

[[node]]
name = "slave26"
mac = "00:02:A5:04:3B:6B"
ip = "192.168.1.26"
arch = "x86_64"
boot = "ipxe"
`

type labFixture struct {
	*labtest.Fixture
}

func newFixture(t testing.TB) *labFixture {
	t.Helper()
	testutil.Slow(t)
	testutil.NeedTool(t, "dnsmasq", "dnsmasq-base")
	testutil.NeedTool(t, "curl", "curl")
	testutil.NeedTool(t, "apt-get", "apt")
	testutil.NeedFile(t, qemu.AAVMFCode, "qemu-efi-aarch64")
	testutil.NeedFile(t, qemu.OVMFCode, "ovmf")
	return &labFixture{labtest.New(t, labtest.Options{Inventory: labInv, Arches: []string{"x86_64", "arm64"}})}
}

// bootToRoot boots a node until its static init runs from its NFS root,
// and returns the console.
func (f *labFixture) bootToRoot(t *testing.T, l *lab.Lab, name, logs string) (string, bool) {
	nd := f.Node(name)
	m, remove, err := l.Machine(nd, nd.MAC, filepath.Join(logs, name+".log"))
	if err != nil {
		t.Error(err)
		return "", false
	}
	defer remove()
	m.Accel = f.S.QEMUAccel
	sess, err := qemu.Start(context.Background(), m)
	if err != nil {
		t.Error(err)
		return "", false
	}
	defer sess.Stop()
	if _, err := sess.Expect(boot.Markers(boot.TestInit), nil, 5*time.Minute); err != nil {
		t.Errorf("%s (%s, boot = %s): %v", name, nd.Arch, nd.Boot, err)
		return sess.Console(), false
	}
	want := "diskless-testinit: root=192.168.1.1:" + filepath.Join(f.Root, nd.IP) + " / nfs"
	if !strings.Contains(sess.Console(), want) {
		t.Errorf("%s: no %q on the console", name, want)
	}
	for _, st := range boot.Stages(sess.Timeline()) {
		t.Logf("  %s: %-40s %6.1f s", name, st.Name, st.At)
	}
	return sess.Console(), true
}

func (f *labFixture) up(t testing.TB, dhcp string) *lab.Lab {
	t.Helper()
	if lab.Running() {
		t.Fatalf("a lab is already up (namespace %s): not touching it", lab.NetNS)
	}
	l, err := lab.Up(context.Background(), lab.Options{Dir: filepath.Join(f.Tmp, "lab-"+dhcp), Root: f.Root, Inventory: f.Inv, DHCP: dhcp, CacheDir: f.S.CacheDir, Log: testenv.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Error(err)
		}
		if lab.Running() {
			t.Errorf("namespace %s still there after Down", lab.NetNS)
		}
	})
	t.Logf("lab up with %s in %.1f s", dhcp, l.State.Ready)
	if _, err := lab.Up(context.Background(), lab.Options{Dir: t.TempDir(), Root: f.Root, Inventory: f.Inv, DHCP: dhcp}); err == nil || !strings.Contains(err.Error(), "already up") {
		t.Errorf("a second Up: %v", err)
	}
	if !lab.Running() {
		t.Fatal("a refused second Up took the lab down")
	}
	return l
}

// TestIntegrationLab is the master, for real: ISC dhcpd, tftpd-hpa,
// NFS-Ganesha, radvd and nginx in the lab's namespace with the rendered
// configurations boot slave21 by PXELINUX, slave22 by etherboot, arm64 by
// UEFI PXE and three x86-64 nodes by iPXE over HTTP to their NFS roots;
// then the same with dnsmasq; radvd answers a router solicitation, a
// stranger's MAC gets nothing, and the DHCP server answers every firmware
// as the table says.
func TestIntegrationLab(t *testing.T) {
	f := newFixture(t)
	for _, dhcp := range []string{"dhcpd", "dnsmasq"} {
		t.Run(dhcp, func(t *testing.T) {
			l := f.up(t, dhcp)
			logs := testutil.LogDir(t)
			// HTTP serves the boot files, and not the nodes' roots
			for path, want := range map[string]string{"/bzImage_x86_64": "200", "/pxelinux.cfg/01-00-02-a5-04-3b-66": "200", "/192.168.1.21/etc/hostname": "403"} {
				out, _ := exec.Command("ip", "netns", "exec", lab.NetNS, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://192.168.1.1"+path).Output()
				if string(out) != want {
					t.Errorf("GET %s from nginx: %s, want %s", path, out, want)
				}
			}
			// BIOS PXELINUX and etherboot, and UEFI PXE (vmlinuz_arm64 by
			// option 93 and TFTP), at once
			names := []string{"slave21", "slave22", "slave23"}
			consoles := make([]string, len(names))
			var wg sync.WaitGroup
			for i, name := range names {
				wg.Add(1)
				go func() {
					defer wg.Done()
					consoles[i], _ = f.bootToRoot(t, l, name, logs)
				}()
			}
			wg.Wait()
			checkConsole(t, "slave21", consoles[0], pxelinuxLines)
			checkConsole(t, "slave22", consoles[1], []string{"Filename: vmlinuz_x86_64", "vmlinuz_x86_64 : ", "[Multiboot]"})
			routerAdvertises(t, l)
			strangerGetsNothing(t, f, l, dhcp, logs)
			dhcpTable(t, f, l)
			bootByHTTP(t, f, l, dhcp, logs)
		})
	}
}

// pxelinuxLines are on the console of a node booted by PXELINUX with its
// per-node file pinned to the first generation.
var pxelinuxLines = []string{"Filename: pxelinux.0", "PXELINUX 6", "BOOT_IMAGE=.diskless/generations/000001/bzImage_x86_64", "initrd=.diskless/generations/000001/initramfs_x86_64"}

// checkConsole says which of want a node's console lacks: it did not boot
// the way nodes.toml says.
func checkConsole(t *testing.T, name, console string, want []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(console, w) {
			t.Errorf("%s: no %q on the console: not booted the way nodes.toml says", name, w)
		}
	}
}

// routerAdvertises asks for a router advertisement (ICMPv6 type 134), as
// iPXE does: radvd's answer ends iPXE's IPv6 wait. (Listening alone is
// not a test: with no node's port on the bridge it has no carrier and
// radvd stops advertising until one comes.)
func routerAdvertises(t *testing.T, l *lab.Lab) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	from, err := l.SolicitRouter(ctx, "52:54:00:de:ad:02")
	if err != nil {
		t.Errorf("%v\n%s", err, textutil.Tail(l.LogOf("radvd"), 10))
		return
	}
	t.Logf("router advertisement from %s", from)
}

// dhcpTable asks the running DHCP server, as each kind of firmware would,
// which file comes first: every client architecture gets its own, iPXE
// gets boot.ipxe over HTTP, and a node's boot method pins its file.
func dhcpTable(t *testing.T, f *labFixture, l *lab.Lab) {
	const url = "http://192.168.1.1/"
	uefi, pxelinux, etherboot, ipxe := f.Node("slave24"), f.Node("slave21"), f.Node("slave22"), f.Node("slave26")
	for _, c := range []struct {
		nd   nodes.Node
		ask  lab.Ask
		file string
	}{
		{uefi, lab.Ask{ClientArch: 0, VendorClass: "PXEClient:Arch:00000:UNDI:002001"}, "pxelinux.0"},
		{uefi, lab.Ask{ClientArch: 7, VendorClass: "PXEClient:Arch:00007:UNDI:003000"}, "snponly.efi"},
		{uefi, lab.Ask{ClientArch: 9, VendorClass: "PXEClient:Arch:00009:UNDI:003000"}, "snponly.efi"},
		{uefi, lab.Ask{ClientArch: 16, VendorClass: "HTTPClient:Arch:00016:UNDI:003000"}, url + "snponly.efi"},
		{uefi, lab.Ask{ClientArch: 11, VendorClass: "PXEClient:Arch:00011:UNDI:003000"}, "vmlinuz_arm64"},
		{uefi, lab.Ask{ClientArch: 19, VendorClass: "HTTPClient:Arch:00019:UNDI:003000"}, url + "vmlinuz_arm64"},
		{uefi, lab.Ask{ClientArch: 27, VendorClass: "PXEClient:Arch:00027:UNDI:003000"}, "vmlinuz_riscv64"},
		{uefi, lab.Ask{ClientArch: 28, VendorClass: "HTTPClient:Arch:00028:UNDI:003000"}, url + "vmlinuz_riscv64"},
		{uefi, lab.Ask{ClientArch: 7, VendorClass: "PXEClient:Arch:00007:UNDI:003010", IPXE: true}, url + "boot.ipxe"},
		{pxelinux, lab.Ask{ClientArch: 0, VendorClass: "PXEClient:Arch:00000:UNDI:002001"}, "pxelinux.0"},
		{pxelinux, lab.Ask{ClientArch: 0, VendorClass: "PXEClient:Arch:00000:UNDI:002001", IPXE: true}, "pxelinux.0"},
		{etherboot, lab.Ask{ClientArch: 0, VendorClass: "PXEClient:Arch:00000:UNDI:002001", IPXE: true}, "vmlinuz_x86_64"},
		{ipxe, lab.Ask{ClientArch: 0, VendorClass: "PXEClient:Arch:00000:UNDI:002001"}, "undionly.kpxe"},
		{ipxe, lab.Ask{ClientArch: 0, VendorClass: "PXEClient:Arch:00000:UNDI:002001", IPXE: true}, url + "boot.ipxe"},
	} {
		c.ask.MAC = c.nd.MAC
		what := fmt.Sprintf("%s (boot = %s) asking as client arch %d, iPXE %v", c.nd.Name, c.nd.Boot, c.ask.ClientArch, c.ask.IPXE)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		o, err := l.Probe(ctx, c.ask)
		cancel()
		if err != nil {
			t.Errorf("%s: %v", what, err)
			continue
		}
		if o.File != c.file || o.IP != c.nd.IP {
			t.Errorf("%s: offered %s with %q, want %s with %q", what, o.IP, o.File, c.nd.IP, c.file)
		}
		// UEFI HTTP boot takes only offers that say HTTPClient; UEFI PXE
		// takes one that says PXEClient for a PXE server's, which it checks
		// on port 4011 (nobody answers there)
		want := ""
		if strings.HasPrefix(c.ask.VendorClass, "HTTPClient") {
			want = "HTTPClient"
		}
		if o.VendorClass != want {
			t.Errorf("%s: vendor class %q in the offer, want %q", what, o.VendorClass, want)
		}
		if want := "192.168.1.1:" + filepath.Join(f.Root, c.nd.IP); o.RootPath != want {
			t.Errorf("%s: root-path %q, want %q", what, o.RootPath, want)
		}
	}
}

// bootByHTTP boots the x86-64 nodes that take everything after their
// first file over HTTP: OVMF's PXE loads snponly.efi by TFTP (slave24),
// OVMF's HTTP boot loads it from nginx (slave25), a BIOS node's iPXE ROM
// asks for boot.ipxe (slave26); iPXE then fetches boot.ipxe, the node's
// script, the EFI-stub kernel and the initramfs from nginx, and the kernel
// mounts the node's NFS root. The daemons' logs say who served what.
func bootByHTTP(t *testing.T, f *labFixture, l *lab.Lab, dhcp, logs string) {
	names := []string{"slave24", "slave25", "slave26"}
	consoles := make([]string, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			consoles[i], _ = f.bootToRoot(t, l, name, logs)
		}()
	}
	wg.Wait()
	for i, want := range [][]string{
		{"Start PXE over IPv4", "http://192.168.1.1/boot.ipxe", "bzImage_x86_64", "EFI stub"},
		{"Start HTTP Boot over IPv4", "http://192.168.1.1/boot.ipxe", "bzImage_x86_64", "EFI stub"},
		{"http://192.168.1.1/boot.ipxe", "bzImage_x86_64"},
	} {
		for _, w := range want {
			if !strings.Contains(consoles[i], w) {
				t.Errorf("%s: no %q on the console", names[i], w)
			}
		}
	}
	// tftpd-hpa logs to syslog only, which the lab does not run: what came
	// over TFTP is told by what did not come over HTTP
	access := l.LogOf("nginx-access")
	for _, c := range []struct {
		ip, firstFile string
		firstByHTTP   bool
	}{
		{"192.168.1.24", "/snponly.efi", false},
		{"192.168.1.25", "/snponly.efi", true},
		{"192.168.1.26", "/undionly.kpxe", false},
	} {
		if got := logHas(access, c.ip, "GET "+c.firstFile); got != c.firstByHTTP {
			t.Errorf("%s: GET %s in nginx's access log: %v, want %v", c.ip, c.firstFile, got, c.firstByHTTP)
		}
		mac := map[string]string{"192.168.1.24": "69", "192.168.1.25": "6a", "192.168.1.26": "6b"}[c.ip]
		// boot.ipxe by its top-level name (DHCP's), the rest inside the
		// generation boot.ipxe came from
		for _, p := range []string{"GET /boot.ipxe", "GET /.diskless/generations/000001/ipxe/00-02-a5-04-3b-" + mac + ".ipxe", "GET /.diskless/generations/000001/bzImage_x86_64", "GET /.diskless/generations/000001/initramfs_x86_64"} {
			if !logHas(access, c.ip, p) {
				t.Errorf("%s: nginx's access log has no %s from it", c.ip, p)
			}
		}
	}
}

// logHas says whether a line of log names ip and has s.
func logHas(log, ip, s string) bool {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, ip) && strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// strangerGetsNothing boots a MAC the inventory does not know: the DHCP
// server logs it and offers no lease, so no boot file is loaded.
func strangerGetsNothing(t *testing.T, f *labFixture, l *lab.Lab, dhcp, logs string) {
	const mac = "52:54:00:de:ad:01"
	m, remove, err := l.Machine(f.Node("slave21"), mac, filepath.Join(logs, "stranger.log"))
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
	// without an IPv4 lease iPXE ends with "No configuration methods
	// succeeded", or, when radvd's advertisements configured IPv6 (link-local
	// only: no prefix), with "Nothing to boot"
	if _, err := sess.Expect([]string{"No configuration methods", "Nothing to boot"}, []string{"Filename:", "Linux version"}, 60*time.Second); err != nil {
		t.Errorf("iPXE did not give up: %v", err)
	}
	if c := sess.Console(); strings.Contains(c, "Filename:") || strings.Contains(c, "Linux version") || strings.Contains(c, "net0: 192.168.") {
		t.Errorf("the stranger got an address or loaded a boot file:\n%s", c)
	}
}
