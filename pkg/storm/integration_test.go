package storm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/labtest"
	"github.com/diskless/diskless/internal/testenv"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/lab"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/relay"
	"github.com/diskless/diskless/pkg/testroot"
)

// The HOWTO's network with one node of its own; Grow adds the rest.
const stormInv = `[network]
master = "192.168.1.1"
subnet = "192.168.1.0/24"
root = "{root}"
nfs_opts = "vers=3,tcp"
home = "{home}"
shared_ro = []
`

type fixture struct {
	*labtest.Fixture
	// inv is the grown inventory, nodes the storm's nodes
	inv   *nodes.Inventory
	nodes []nodes.Node
	// other is another inventory (slave21 with another root)
	other *nodes.Inventory
	l     *lab.Lab
	// timeout for each node of a storm
	timeout time.Duration
}

// newFixture builds and publishes the x86-64 slave with the per-node files
// of the inventory grown to n nodes (slave21 and storm01...: PXELINUX and
// iPXE in turn), whatever an earlier render for another inventory left in
// artifacts/master, and provisions them: with the boot tests' root (a
// static init that says it runs, then powers off), or running image.
func newFixture(t testing.TB, n int, image string) *fixture {
	return newFixtureMode(t, n, image, "")
}

// newFixtureMode is newFixture with every node in mode (nodes.toml's
// [network] mode; a stateless one is signed).
func newFixtureMode(t testing.TB, n int, image, mode string) *fixture {
	t.Helper()
	return newFixtureWith(t, n, image, mode, func(s string) string { return s })
}

// twoMasters makes the storm's inventory name two masters, m1 (the
// HOWTO's master, the primary) and m2 at .2.
func twoMasters(inv string) string {
	return "[[master]]\nname = \"m1\"\naddress = \"192.168.1.1\"\n\n[[master]]\nname = \"m2\"\naddress = \"192.168.1.2\"\n\n" +
		strings.Replace(inv, "master = \"192.168.1.1\"\n", "", 1)
}

// newFixtureWith is newFixtureMode with the inventory's text changed by
// edit.
func newFixtureWith(t testing.TB, n int, image, mode string, edit func(string) string) *fixture {
	t.Helper()
	testutil.Slow(t)
	if lab.Running() {
		t.Fatalf("a lab is already up (namespace %s): not touching it", lab.NetNS)
	}
	inv := stormInv
	if image != "" {
		// every node runs the image (the [network] default)
		inv = strings.Replace(inv, "shared_ro = []\n", "shared_ro = []\nimage = \""+image+"\"\n", 1)
	}
	if mode != "" {
		inv = strings.Replace(inv, "shared_ro = []\n", "shared_ro = []\nmode = \""+mode+"\"\n", 1)
	}
	inv += "\n[[node]]\nname = \"slave21\"\nmac = \"00:02:A5:04:3B:66\"\nip = \"192.168.1.21\"\narch = \"x86_64\"\n"
	inv = edit(inv)
	f := &fixture{Fixture: labtest.New(t, labtest.Options{Inventory: inv, Arches: []string{"x86_64"}, Image: image != "", Sign: mode == nodes.ModeStateless}), timeout: 6 * time.Minute}
	var err error
	if f.inv, f.nodes, err = Grow(f.Inv, n); err != nil {
		t.Fatal(err)
	}
	f.other = f.staleRender(t)
	if err := f.Publish(f.inv); err != nil {
		t.Fatal(err)
	}
	f.Provision(t, f.inv)
	return f
}

// up brings the lab up with the grown inventory (down when the test ends).
func (f *fixture) up(t testing.TB) {
	t.Helper()
	var err error
	f.l, err = lab.Up(context.Background(), lab.Options{Dir: filepath.Join(f.Tmp, "lab"), Root: f.Root, Inventory: f.inv, CacheDir: f.S.CacheDir, Log: testenv.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.l.Down(); err != nil {
			t.Error(err)
		}
		if lab.Running() {
			t.Errorf("namespace %s still there after Down", lab.NetNS)
		}
	})
}

// publish publishes the artifacts with the grown inventory's per-node
// files (rendered by publish from it, whatever lies in artifacts/master).
func (f *fixture) publish() error { return f.Publish(f.inv) }

// staleRender leaves in artifacts/master what nodes:render wrote for
// another inventory: slave21 with another root. Publishing must not serve
// it (before, slave21 asked for that root and was refused). It returns
// that inventory.
func (f *fixture) staleRender(t testing.TB) *nodes.Inventory {
	t.Helper()
	text := strings.NewReplacer("{root}", filepath.Join(f.Tmp, "another-root"), "{home}", f.Home).Replace(stormInv) +
		"\n[[node]]\nname = \"slave21\"\nmac = \"00:02:A5:04:3B:66\"\nip = \"192.168.1.21\"\narch = \"x86_64\"\n"
	other, err := nodes.Parse([]byte(text), "other.toml")
	if err != nil {
		t.Fatal(err)
	}
	files, err := other.Render()
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes.WriteFiles(filepath.Join(f.S.Artifacts, "master"), files); err != nil {
		t.Fatal(err)
	}
	return other
}

func (f *fixture) pick(boot string, n int) []nodes.Node {
	var out []nodes.Node
	for _, nd := range f.nodes {
		if (boot == "" || nd.Boot == boot || boot == nodes.BootPXELinux && nd.Boot == "") && len(out) < n {
			out = append(out, nd)
		}
	}
	return out
}

// storm runs the scenario (the lab must be up) and fails the test naming
// every node that did not come up; the report is written and logged.
func (f *fixture) storm(t testing.TB, nds []nodes.Node, link relay.Impairment, events ...Event) *Report {
	t.Helper()
	return f.stormUp(t, nds, link, []string{boot.TestInit}, events...)
}

// stormUp is storm with the stages that mean up.
func (f *fixture) stormUp(t testing.TB, nds []nodes.Node, link relay.Impairment, up []string, events ...Event) *Report {
	t.Helper()
	r, err := Run(context.Background(), Options{Lab: f.l, Nodes: nds, Link: link, Up: up, Timeout: f.timeout,
		Events: events, LogDir: testutil.LogDir(t), Accel: f.S.QEMUAccel})
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Write(filepath.Join(testutil.LogDir(t), "report"))
	if err != nil {
		t.Error(err)
	}
	t.Logf("%s(report: %s)", r.Summary(), p)
	checkReport(t, r, len(nds))
	return r
}

// checkReport fails the test naming every node that did not come up, or
// came up without its NFS root on the console.
func checkReport(t testing.TB, r *Report, n int) {
	t.Helper()
	if err := r.Err(); err != nil {
		t.Error(err)
	}
	if r.UpCount != n || len(r.Nodes) != n {
		t.Errorf("%d of %d up", r.UpCount, n)
	}
	for _, nd := range r.Nodes {
		if nd.Up && !hasStage(nd, boot.Root) && !hasStage(nd, boot.Usr) && !hasStage(nd, boot.Image) {
			t.Errorf("%s: up without its NFS root (or a stateless node's image) on the console: %v", nd.Name, nd.Stages)
		}
	}
}

func hasStage(n NodeResult, name string) bool {
	for _, s := range n.Stages {
		if s.Name == name {
			return true
		}
	}
	return false
}

// command runs lab:storm's target logic (Command) with args, in a lab of
// its own, on the fixture's master, and checks every node came up.
func (f *fixture) command(t testing.TB, args string) *Report {
	t.Helper()
	a, err := ParseArgs(args)
	if err != nil {
		t.Fatal(err)
	}
	a.Timeout = f.timeout
	var lines atomic.Int32
	r, path, err := Command(context.Background(), CommandOptions{Settings: f.S, Args: a, Log: testenv.Quiet(), Dir: filepath.Join(f.Tmp, "lab-"+strings.NewReplacer(" ", "-", "=", "", "%", "").Replace(args)),
		Progress: func(string) { lines.Add(1) }})
	if r == nil {
		t.Fatal(err)
	}
	t.Logf("lab:storm %q: %s(report: %s)", args, r.Summary(), path)
	if err != nil {
		t.Error(err)
	}
	checkReport(t, r, a.N)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("no report written: %v", err)
	}
	if lines.Load() == 0 {
		t.Error("no progress line")
	}
	if lab.Running() {
		t.Errorf("lab:storm left the lab up (namespace %s)", lab.NetNS)
	}
	return r
}

// TestIntegrationStorm is lab:storm, twice as an admin runs it (its target
// logic, with a render for another inventory left in artifacts/master):
// 8 nodes at once, half by PXELINUX (all over TFTP), half by iPXE (HTTP
// after undionly.kpxe), to their NFS roots through the fallback initramfs,
// while their links drop 5 % of frames each way; the same 8 with a publish
// in the middle (fault=publish). Then the faults, each a storm of its own
// in one lab: 2 % loss with 50 ms delay, the NFS server killed while nodes
// boot and while one writes, HTTP down for 20 s, TFTP down for 20 s. Every
// node must come up.
func TestIntegrationStorm(t *testing.T) {
	f := newFixture(t, 8, "")
	var mu sync.Mutex

	t.Run("lab:storm n=8 loss=5%", func(t *testing.T) {
		// the live generation serves the other inventory's per-node
		// files: lab:storm publishes its own before the nodes boot
		if err := f.Publish(f.other); err != nil {
			t.Fatal(err)
		}
		slave21 := filepath.Join(f.Root, "pxelinux.cfg", "01-00-02-a5-04-3b-66")
		if data, _ := os.ReadFile(slave21); !strings.Contains(string(data), "another-root") {
			t.Fatalf("the other inventory is not served:\n%s", data)
		}
		r := f.command(t, "n=8 loss=5%")
		if data, _ := os.ReadFile(slave21); !strings.Contains(string(data), "nfsroot=192.168.1.1:"+f.Root+"/192.168.1.21") {
			t.Errorf("after lab:storm, slave21's file is not the storm inventory's:\n%s", data)
		}
		if r.Dropped == 0 {
			t.Error("no frame was dropped: the loss was not applied")
		}
		for _, p := range []string{relay.ProtoDHCP, relay.ProtoTFTP, relay.ProtoHTTP, relay.ProtoNFS} {
			if r.Served[p] == 0 {
				t.Errorf("nothing served by %s: %v", p, r.Served)
			}
		}
		// a PXELINUX node's 5.8 MB came by TFTP, an iPXE node's by HTTP
		for _, n := range r.Nodes {
			proto := map[string]string{nodes.BootIPXE: relay.ProtoHTTP}[n.Boot]
			if proto == "" {
				proto = relay.ProtoTFTP
			}
			if n.Link.ToNode[proto] < 5e6 {
				t.Errorf("%s (boot = %s): %d bytes by %s", n.Name, n.Boot, n.Link.ToNode[proto], proto)
			}
		}
		if r.MasterCPU["ganesha"] <= 0 || r.MasterCPU["tftpd"] <= 0 {
			t.Errorf("master CPU not measured: %v", r.MasterCPU)
		}
	})

	t.Run("lab:storm n=8 fault=publish", func(t *testing.T) {
		r := f.command(t, "n=8 fault=publish")
		on := map[string]int{}
		for _, n := range r.Nodes {
			if len(n.Generations) != 1 {
				t.Errorf("%s fetched from generations %v", n.Name, n.Generations)
			}
			on[strings.Join(n.Generations, ",")]++
		}
		if len(r.Events) != 1 || r.Events[0].Name != Faults["publish"] || r.Events[0].Started == 0 {
			t.Errorf("events %+v", r.Events)
		}
		t.Logf("nodes by the generation they booted: %v", on)
	})

	f.up(t)
	t.Run("2 % loss, 50 ms delay", func(t *testing.T) {
		// iPXE nodes: over TFTP's one block per round trip, PXELINUX's
		// 5.8 MB take minutes at 50 ms (the README's numbers)
		r := f.storm(t, f.pick(nodes.BootIPXE, 4), relay.Impairment{Loss: 0.02, Delay: 50 * time.Millisecond, Seed: 2})
		if p := stage(r, boot.Fetched); p.Nodes == 0 {
			t.Error("no stage timings")
		}
	})

	t.Run("NFS server killed while nodes boot and while one writes", func(t *testing.T) {
		nds := f.pick("", 4)
		writer := nds[0]
		conf := filepath.Join(f.Root, writer.IP, testroot.WriteConf)
		if err := os.WriteFile(conf, []byte("24\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(conf)
		r := f.storm(t, nds, relay.Impairment{},
			Event{Name: "NFS killed while nodes boot, back after 10 s", After: boot.IPConfig, Do: Outage(f.l, lab.NFS, 10*time.Second, &mu)},
			Event{Name: "NFS killed while " + writer.Name + " writes, back after 10 s", Line: "diskless-testinit: wrote 3 MB", Do: Outage(f.l, lab.NFS, 10*time.Second, &mu)})
		var printed string
		for _, n := range r.Nodes {
			if n.Name == writer.Name {
				data, _ := os.ReadFile(n.Console)
				for _, line := range strings.Split(string(data), "\n") {
					if _, after, ok := strings.Cut(line, testroot.WriteSumPrefix); ok {
						printed, _, _ = strings.Cut(strings.TrimSpace(after), " ")
					}
				}
			}
		}
		data, err := os.ReadFile(filepath.Join(f.Root, writer.IP, testroot.WritePath))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if printed == "" || hex.EncodeToString(sum[:]) != printed || len(data) != 24<<20 {
			t.Errorf("%s wrote sha256 %s, the master has %x (%d bytes)", writer.Name, printed, sum, len(data))
		}
		for _, e := range r.Events {
			if e.Started == 0 {
				t.Errorf("event %q did not run", e.Name)
			}
		}
	})

	t.Run("HTTP down for 20 s", func(t *testing.T) {
		f.storm(t, f.pick(nodes.BootIPXE, 4), relay.Impairment{},
			Event{Name: "nginx killed, back after 20 s", After: boot.FirstFile, Do: Outage(f.l, lab.HTTP, 20*time.Second, &mu)})
	})

	t.Run("TFTP down for 20 s", func(t *testing.T) {
		f.storm(t, f.pick(nodes.BootPXELinux, 4), relay.Impairment{},
			Event{Name: "tftpd killed, back after 20 s", At: 2 * time.Second, Do: Outage(f.l, lab.TFTP, 20*time.Second, &mu)})
	})
}

func stage(r *Report, name string) Percentiles {
	for _, p := range r.Stages {
		if p.Stage == name {
			return p
		}
	}
	return Percentiles{}
}

// TestIntegrationStormStateless: lab:storm with stateless nodes (the
// Debian image from RAM): every node up to multi-user, each fetched the
// image over HTTP, and none read a root over NFS.
func TestIntegrationStormStateless(t *testing.T) {
	f := newFixtureMode(t, 4, "debian-12", nodes.ModeStateless)
	r := f.command(t, "n=4")
	for _, n := range r.Nodes {
		if n.Link.ToNode[relay.ProtoHTTP] < 50e6 {
			t.Errorf("%s (boot = %s): %d bytes by HTTP: not the image", n.Name, n.Boot, n.Link.ToNode[relay.ProtoHTTP])
		}
		// /home's mount and nothing else: an NFS node reads ~30 MB
		if got := n.Link.ToNode[relay.ProtoNFS]; got > 1e6 {
			t.Errorf("%s: %d bytes by NFS", n.Name, got)
		}
	}
}

// TestIntegrationStormTwoMasters: lab:storm with two masters, the
// secondary (m2, a namespace of its own on the bridge) filled by
// publish:pull from the primary, and stateless nodes. "n=4 fault=master":
// every daemon of the master that gave the first kernel its address
// killed then; every node comes up all the same, its image from the other
// (the report says so, node by node), a node whose kernel's lease came
// from the lost one by its initramfs going on to the other. "n=2 fault=publish": a publish on the primary,
// pulled by m2, while the nodes boot: each boots one generation's files,
// from either master.
func TestIntegrationStormTwoMasters(t *testing.T) {
	f := newFixtureWith(t, 4, "debian-12", nodes.ModeStateless, twoMasters)
	r := f.command(t, "n=4 fault=master")
	if len(r.Events) != 1 || r.Events[0].Error != "" {
		t.Fatalf("the master fault: %+v", r.Events)
	}
	// the master that gave the first kernel its address was killed
	lost, kept, keptAddr := "m1", "m2", "192.168.1.2"
	if strings.Contains(r.Events[0].Detail, "killed master m2 ") {
		lost, kept, keptAddr = "m2", "m1", "192.168.1.1"
	} else if !strings.Contains(r.Events[0].Detail, "killed master m1 ") {
		t.Fatalf("the master fault killed %q", r.Events[0].Detail)
	}
	lostAddr := map[string]string{"m1": "192.168.1.1", "m2": "192.168.1.2"}[lost]
	fellBack := 0
	for _, n := range r.Nodes {
		// the image (64 MB) is fetched after the kernel has its
		// address: from the master left only
		if n.ServedBy[kept] < 50e6 || n.ServedBy[lost] > 20e6 {
			t.Errorf("%s: served by %v: want its image from %s (%s down since %.1f s)", n.Name, n.ServedBy, kept, lost, r.Events[0].Started)
		}
		// a kernel whose lease came from the lost master: its
		// initramfs went on to the other
		console, err := os.ReadFile(n.Console)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(console), "bootserver="+lostAddr+",") {
			fellBack++
			if !strings.Contains(string(console), "diskless-fallback: fetching from master "+keptAddr+" instead") {
				t.Errorf("%s: its kernel's lease from %s, lost; no fetch from %s on its console (%s)", n.Name, lost, kept, n.Console)
			}
		}
		if n.Boot != nodes.BootIPXE {
			t.Errorf("%s boots by %s, want iPXE", n.Name, n.Boot)
		}
	}
	// at least the node whose line triggered the fault
	if fellBack == 0 {
		t.Errorf("no node's kernel had its address from %s, which the fault says it killed", lost)
	}
	t.Logf("%d of 4 nodes had their kernel's lease from the lost master (%s) and fetched their image from %s", fellBack, lost, kept)
	if r.CPUByMaster[kept] <= 0 || r.NodesByMaster[kept] != 4 {
		t.Errorf("%s: CPU %.2f s, served %d nodes", kept, r.CPUByMaster[kept], r.NodesByMaster[kept])
	}
	r = f.command(t, "n=2 fault=publish")
	if len(r.Events) != 1 || r.Events[0].Error != "" {
		t.Errorf("the publish fault (and the pull after it): %+v", r.Events)
	}
	var fromMasters int64
	for m, b := range r.ServedByMaster {
		if m != "m1" && m != "m2" {
			t.Errorf("bytes from %q", m)
		}
		fromMasters += b
	}
	var files int64
	for p, b := range r.Served {
		if p != relay.ProtoDHCP {
			files += b
		}
	}
	// every byte a node got (but DHCP's) is from one of the masters
	if fromMasters < files*99/100 {
		t.Errorf("%d bytes by master of %d served", fromMasters, files)
	}
	for _, n := range r.Nodes {
		if len(n.Generations) != 1 {
			t.Errorf("%s: generations %v", n.Name, n.Generations)
		}
	}
}
