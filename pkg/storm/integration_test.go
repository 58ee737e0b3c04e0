package storm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/testkernel"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/ganesha"
	"github.com/diskless/diskless/pkg/lab"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/pipeline"
	"github.com/diskless/diskless/pkg/qemu/testroot"
	"github.com/diskless/diskless/pkg/settings"
)

// The HOWTO's network with one node of its own; Grow adds the rest.
const stormInv = `[network]
master = "192.168.1.1"
subnet = "192.168.1.0/24"
root = "%s"
nfs_opts = "vers=3,tcp"
home = "%s"
shared_ro = []

[[node]]
name = "slave21"
mac = "00:02:A5:04:3B:66"
ip = "192.168.1.21"
arch = "x86_64"
`

type fixture struct {
	s     *settings.Settings
	inv   *nodes.Inventory
	nodes []nodes.Node
	root  string
	tmp   string
	l     *lab.Lab
	// timeout for each node of a storm
	timeout time.Duration
}

// newFixture builds and publishes the x86-64 slave, provisions n nodes
// (slave21 and storm01...: PXELINUX and iPXE in turn) with the boot tests'
// root (a static init that says it runs, then powers off) and brings the
// lab up with them.
func newFixture(t testing.TB, n int, image string) *fixture {
	testutil.Slow(t)
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "the lab needs root")
	}
	if err := ganesha.Available(); err != nil {
		testutil.SkipOrFail(t, err.Error())
	}
	testutil.NeedFile(t, "/usr/lib/PXELINUX/pxelinux.0", "pxelinux")
	testutil.NeedFile(t, "/usr/lib/ipxe/undionly.kpxe", "ipxe")
	a := testkernel.NeedTools(t, "x86_64")
	if lab.Running() {
		t.Fatalf("a lab is already up (namespace %s): not touching it", lab.NetNS)
	}
	f := &fixture{tmp: t.TempDir(), timeout: 6 * time.Minute}
	os.Chmod(f.tmp, 0o755)
	os.Chmod(filepath.Dir(f.tmp), 0o755)
	f.root = filepath.Join(f.tmp, "diskless")
	home := filepath.Join(f.tmp, "home")
	os.MkdirAll(f.root, 0o755)
	os.MkdirAll(home, 0o1777)
	invPath := filepath.Join(f.tmp, "nodes.toml")
	inv := fmt.Sprintf(stormInv, f.root, home)
	if image != "" {
		// every node runs the image (the [network] default)
		inv = strings.Replace(inv, "shared_ro = []\n", "shared_ro = []\nimage = \""+image+"\"\n", 1)
		testutil.NeedTool(t, "debootstrap", "debootstrap")
	}
	os.WriteFile(invPath, []byte(inv), 0o644)
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
	f.s.Artifacts = filepath.Join(f.tmp, "artifacts")
	if f.inv, f.nodes, err = Grow(f.s.Inventory, n); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := pipeline.BuildArch(ctx, pipeline.Options{Arch: a, Settings: f.s, Log: testkernel.Quiet()}); err != nil {
		t.Fatal(err)
	}
	f.staleRender(t)
	if err := f.publish(); err != nil {
		t.Fatal(err)
	}
	if image != "" {
		if _, _, err := pipeline.PublishImage(ctx, f.s, a, testkernel.Quiet()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.inv.Provision(f.root); err != nil {
		t.Fatal(err)
	}
	for _, nd := range f.nodes {
		if image != "" {
			break
		}
		if err := testroot.Build(ctx, filepath.Join(f.root, nd.IP), "amd64"); err != nil {
			t.Fatal(err)
		}
	}
	f.l, err = lab.Up(ctx, lab.Options{Dir: filepath.Join(f.tmp, "lab"), Root: f.root, Inventory: f.inv, CacheDir: f.s.CacheDir, Log: testkernel.Quiet()})
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
	return f
}

// publish publishes the artifacts with the grown inventory's per-node
// files (rendered by publish from it, whatever lies in artifacts/master).
func (f *fixture) publish() error {
	grown := *f.s
	grown.Inventory = f.inv
	_, err := pipeline.Publish(context.Background(), &grown, testkernel.Quiet())
	return err
}

// staleRender leaves in artifacts/master what nodes:render wrote for
// another inventory: slave21 with another root. Publishing must not serve
// it (before, slave21 asked for that root and was refused).
func (f *fixture) staleRender(t testing.TB) {
	t.Helper()
	other, err := nodes.Parse([]byte(fmt.Sprintf(stormInv, filepath.Join(f.tmp, "another-root"), filepath.Join(f.tmp, "home"))), "other.toml")
	if err != nil {
		t.Fatal(err)
	}
	files, err := other.Render()
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes.WriteFiles(filepath.Join(f.s.Artifacts, "master"), files); err != nil {
		t.Fatal(err)
	}
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

// storm runs the scenario and fails the test naming every node that did
// not come up; the report is written and logged.
func (f *fixture) storm(t testing.TB, nds []nodes.Node, link lab.Impairment, events ...Event) *Report {
	t.Helper()
	return f.stormUp(t, nds, link, []string{testroot.Marker}, events...)
}

// stormUp is storm with the console lines that mean up.
func (f *fixture) stormUp(t testing.TB, nds []nodes.Node, link lab.Impairment, up []string, events ...Event) *Report {
	t.Helper()
	r, err := Run(context.Background(), Options{Lab: f.l, Nodes: nds, Link: link, Up: up, Timeout: f.timeout,
		Events: events, LogDir: testutil.LogDir(t), Accel: f.s.QEMUAccel})
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Write(filepath.Join(testutil.LogDir(t), "report"))
	if err != nil {
		t.Error(err)
	}
	t.Logf("%s(report: %s)", r.Summary(), p)
	if err := r.Err(); err != nil {
		t.Error(err)
	}
	if r.UpCount != len(nds) || len(r.Nodes) != len(nds) {
		t.Errorf("%d of %d up", r.UpCount, len(nds))
	}
	for _, n := range r.Nodes {
		if n.Up && !hasStage(n, "root mounted (NFS)") && !hasStage(n, "/usr mounted (image)") {
			t.Errorf("%s: up without its NFS root on the console: %v", n.Name, n.Stages)
		}
	}
	return r
}

func hasStage(n NodeResult, name string) bool {
	for _, s := range n.Stages {
		if s.Name == name {
			return true
		}
	}
	return false
}

// TestIntegrationStorm boots 8 nodes at once, half by PXELINUX (all over
// TFTP), half by iPXE (HTTP after undionly.kpxe), to their NFS roots
// through the fallback initramfs, while their links drop 5 % of frames
// each way; then the faults, each a storm of its own: 2 % loss with 50 ms
// delay, the NFS server killed while nodes boot and while one writes,
// HTTP down for 20 s, a publish in the middle. Every node must come up.
func TestIntegrationStorm(t *testing.T) {
	f := newFixture(t, 8, "")
	var mu sync.Mutex

	t.Run("8 nodes, 5 % loss", func(t *testing.T) {
		r := f.storm(t, f.nodes, lab.Impairment{Loss: 0.05, Seed: 1})
		if r.Dropped == 0 {
			t.Error("no frame was dropped: the loss was not applied")
		}
		for _, p := range []string{lab.ProtoDHCP, lab.ProtoTFTP, lab.ProtoHTTP, lab.ProtoNFS} {
			if r.Served[p] == 0 {
				t.Errorf("nothing served by %s: %v", p, r.Served)
			}
		}
		// a PXELINUX node's 5.8 MB came by TFTP, an iPXE node's by HTTP
		for _, n := range r.Nodes {
			proto := map[string]string{nodes.BootIPXE: lab.ProtoHTTP}[n.Boot]
			if proto == "" {
				proto = lab.ProtoTFTP
			}
			if n.Link.ToNode[proto] < 5e6 {
				t.Errorf("%s (boot = %s): %d bytes by %s", n.Name, n.Boot, n.Link.ToNode[proto], proto)
			}
		}
		if r.MasterCPU["ganesha"] <= 0 || r.MasterCPU["tftpd"] <= 0 {
			t.Errorf("master CPU not measured: %v", r.MasterCPU)
		}
	})

	t.Run("2 % loss, 50 ms delay", func(t *testing.T) {
		// iPXE nodes: over TFTP's one block per round trip, PXELINUX's
		// 5.8 MB take minutes at 50 ms (the README's numbers)
		r := f.storm(t, f.pick(nodes.BootIPXE, 4), lab.Impairment{Loss: 0.02, Delay: 50 * time.Millisecond, Seed: 2})
		if p := stage(r, "kernel and initramfs fetched"); p.Nodes == 0 {
			t.Error("no stage timings")
		}
	})

	t.Run("NFS server killed while nodes boot and while one writes", func(t *testing.T) {
		nds := f.pick("", 4)
		writer := nds[0]
		conf := filepath.Join(f.root, writer.IP, testroot.WriteConf)
		if err := os.WriteFile(conf, []byte("24\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(conf)
		r := f.storm(t, nds, lab.Impairment{},
			Event{Name: "NFS killed while nodes boot, back after 10 s", After: "IP-Config (kernel DHCP)", Do: Outage(f.l, lab.NFS, 10*time.Second, &mu)},
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
		data, err := os.ReadFile(filepath.Join(f.root, writer.IP, testroot.WritePath))
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
		f.storm(t, f.pick(nodes.BootIPXE, 4), lab.Impairment{},
			Event{Name: "nginx killed, back after 20 s", After: "first file loaded", Do: Outage(f.l, lab.HTTP, 20*time.Second, &mu)})
	})

	t.Run("TFTP down for 20 s", func(t *testing.T) {
		f.storm(t, f.pick(nodes.BootPXELinux, 4), lab.Impairment{},
			Event{Name: "tftpd killed, back after 20 s", At: 2 * time.Second, Do: Outage(f.l, lab.TFTP, 20*time.Second, &mu)})
	})

	t.Run("publish during the storm", func(t *testing.T) {
		r := f.storm(t, f.nodes, lab.Impairment{},
			Event{Name: "publish", After: "first file loaded", Do: func(context.Context) error { return f.publish() }})
		on := map[string]int{}
		for _, n := range r.Nodes {
			if len(n.Generations) != 1 {
				t.Errorf("%s fetched from generations %v", n.Name, n.Generations)
			}
			on[strings.Join(n.Generations, ",")]++
		}
		t.Logf("nodes by the generation they booted: %v", on)
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
