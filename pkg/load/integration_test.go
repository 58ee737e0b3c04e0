package load

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/labtest"
	"github.com/diskless/diskless/internal/testenv"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/lab"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/relay"
	"github.com/diskless/diskless/pkg/simnode"
	"github.com/diskless/diskless/pkg/storm"
)

// the master of the tests: the HOWTO's network
const masterInv = `[network]
master = "192.168.1.1"
subnet = "192.168.1.0/24"
root = "{root}"
nfs_opts = "vers=3,tcp"
shared_ro = []
`

// slave21Inv is the fixture's inventory: the master and slave21, whose
// published artifacts lab:load boots.
const slave21Inv = masterInv + "\n[[node]]\nname = \"slave21\"\nmac = \"00:02:A5:04:3B:66\"\nip = \"192.168.1.21\"\narch = \"x86_64\"\n"

// TestIntegrationLoad is CI's lab:load: 200 simulated nodes at once by
// iPXE (TFTP for undionly.kpxe, then HTTP) with 1 % of the frames lost
// each way, playing the committed Debian 12 trace to multi-user against
// the real daemons rendered for 200 nodes. Every node must come up, every
// protocol must have carried its share, and the report must say so.
func TestIntegrationLoad(t *testing.T) {
	testutil.Slow(t)
	if lab.Running() {
		t.Fatalf("a lab is already up (namespace %s): not touching it", lab.NetNS)
	}
	f := labtest.New(t, labtest.Options{Inventory: slave21Inv, Arches: []string{"x86_64"}})
	a, err := ParseArgs("n=200 loss=1%")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(f.Tmp, "load")
	var lines int
	r, path, err := Command(context.Background(), CommandOptions{Settings: f.S, Args: a, Log: testenv.Quiet(), Dir: dir, Progress: func(string) { lines++ }})
	if r == nil {
		t.Fatal(err)
	}
	t.Logf("report %s\n%s", path, r.Summary())
	if err != nil {
		t.Error(err)
	}
	if r.UpCount != 200 || len(r.Failed) != 0 {
		t.Errorf("%d of 200 up", r.UpCount)
	}
	if r.Dropped == 0 {
		t.Error("no frame dropped: the loss was not applied")
	}
	for _, p := range []string{relay.ProtoDHCP, relay.ProtoTFTP, relay.ProtoHTTP, relay.ProtoNFS} {
		if r.Served[p] == 0 || r.Received[p] == 0 {
			t.Errorf("%s: served %d bytes, received %d", p, r.Served[p], r.Received[p])
		}
	}
	// each node's kernel and initramfs came by HTTP, checked: at least
	// their size each
	if min := int64(200 * 5e6); r.Served[relay.ProtoHTTP] < min {
		t.Errorf("HTTP served %d bytes, want over %d", r.Served[relay.ProtoHTTP], min)
	}
	// firmware, iPXE and kernel each asked: 6 messages without loss
	if r.DHCPRequestsPerNode < 6 {
		t.Errorf("%.1f DHCP requests per node, want 6 or more", r.DHCPRequestsPerNode)
	}
	if r.MasterCPU["ganesha"] <= 0 || r.MasterCPU["nginx"] <= 0 || r.PeakMemory["ganesha"] <= 0 {
		t.Errorf("the daemons were not measured: CPU %v, memory %v", r.MasterCPU, r.PeakMemory)
	}
	var stages []string
	for _, p := range r.Stages {
		stages = append(stages, p.Stage)
		if p.P50 > p.P95 || p.P95 > p.P99 || p.P99 > p.Max {
			t.Errorf("%s: percentiles out of order %+v", p.Stage, p)
		}
	}
	want := []string{boot.Lease, boot.FirstFile, boot.Script, boot.Fetched, boot.IPConfig, boot.Root, simnode.Up}
	if strings.Join(stages, ",") != strings.Join(want, ",") {
		t.Errorf("stages %v, want %v", stages, want)
	}
	for _, n := range r.Nodes[:3] {
		if n.Read == 0 || n.Files["/bzImage_x86_64"] == 0 && !hasPrefixKey(n.Files, "bzImage_x86_64") {
			t.Errorf("%s: read %d bytes by NFS, files %v", n.Name, n.Read, n.Files)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "load.json")); err != nil {
		t.Error(err)
	}
	if lines == 0 {
		t.Error("no progress line")
	}
	if lab.Running() {
		t.Errorf("lab:load left the lab up (namespace %s)", lab.NetNS)
	}
}

func hasPrefixKey(m map[string]int64, suffix string) bool {
	for k := range m {
		if strings.HasSuffix(k, suffix) {
			return true
		}
	}
	return false
}

// The simulation is held to reality: 8 nodes (4 by PXELINUX, 4 by iPXE,
// BIOS with QEMU's iPXE ROM) boot in QEMU through the lab (storm.Run) to
// the boot tests' init, then the same 8 simulated (an iPXE ROM, the trace
// recorded from one of them by lab:trace's Record) through a lab of the
// same inventory. Per node and protocol, what it and the master sent each
// other (nftables counters on the bridge, the same for both) is the same
// within 10 %, and it asked the DHCP server as many times.
func TestIntegrationLoadMatchesQEMU(t *testing.T) {
	testutil.Slow(t)
	if lab.Running() {
		t.Fatalf("a lab is already up (namespace %s): not touching it", lab.NetNS)
	}
	inv := masterInv
	for i := 1; i <= 8; i++ {
		method := nodes.BootPXELinux
		if i > 4 {
			method = nodes.BootIPXE
		}
		inv += fmt.Sprintf("\n[[node]]\nname = \"real%02d\"\nmac = \"52:54:00:12:34:%02x\"\nip = \"192.168.1.%d\"\narch = \"x86_64\"\nboot = %q\n", i, i, 100+i, method)
	}
	f := labtest.New(t, labtest.Options{Inventory: inv, Arches: []string{"x86_64"}})
	ctx := context.Background()
	up := []string{boot.TestInit}
	tr, _, err := Record(ctx, TraceOptions{Settings: f.S, Node: "real01", Out: filepath.Join(f.Tmp, "trace.json"), Up: up, Dir: filepath.Join(f.Tmp, "trace"), Log: testenv.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("trace: %s", tr.Stats())
	nds := f.Inv.Sorted()
	var macs []string
	for _, nd := range nds {
		macs = append(macs, nd.MAC)
	}
	counted := func(name string, run func(l *lab.Lab) error) map[string]*lab.NodeTraffic {
		l, err := lab.Up(ctx, lab.Options{Dir: filepath.Join(f.Tmp, name), Root: f.Root, Inventory: f.Inv, CacheDir: f.S.CacheDir, Log: testenv.Quiet()})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := l.Down(); err != nil {
				t.Error(err)
			}
		}()
		if err := l.CountNodes(macs); err != nil {
			t.Fatal(err)
		}
		if err := run(l); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c, err := l.NodeCounters()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	qemuNodes := counted("qemu", func(l *lab.Lab) error {
		r, err := storm.Run(ctx, storm.Options{Lab: l, Nodes: nds, Timeout: 6 * time.Minute, LogDir: filepath.Join(f.Tmp, "consoles"), Accel: f.S.QEMUAccel,
			UpFor: func(nodes.Node) []string { return up }})
		if err != nil {
			return err
		}
		return r.Err()
	})
	simNodes := counted("sim", func(l *lab.Lab) error {
		if err := l.SimPort(0); err != nil {
			return err
		}
		r, err := Run(ctx, Options{Lab: l, Inventory: f.Inv, Root: f.Root, Firmware: simnode.IPXE, Trace: tr, Timeout: 3 * time.Minute})
		if err != nil {
			return err
		}
		t.Logf("simulated: %s", r.Summary())
		return r.Err()
	})
	compare(t, nds, qemuNodes, simNodes)
}

// compare holds the simulated nodes' traffic to the QEMU nodes', per node
// and protocol (ARP and IPv6, "other", are not the boot's), within 10 %,
// and their DHCP messages to the server, exactly; it logs the table.
// DHCP is held to the QEMU node of the same boot method that asked least:
// a guest under TCG sometimes retransmits a DISCOVER when its 1-second
// timer fires before the offer gets through (reality's noise, which only
// adds), so a retransmitting node is compared as the others.
func compare(t *testing.T, nds []nodes.Node, real, sim map[string]*lab.NodeTraffic) {
	t.Helper()
	dhcpRef := map[string]*lab.NodeTraffic{}
	for _, nd := range nds {
		q := real[strings.ToLower(nd.MAC)]
		if q == nil {
			continue
		}
		if r := dhcpRef[nd.Boot]; r == nil || q.FramesFromNode[relay.ProtoDHCP] < r.FramesFromNode[relay.ProtoDHCP] {
			dhcpRef[nd.Boot] = q
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s %-9s %-5s %12s %12s %7s\n", "node", "boot", "proto", "QEMU bytes", "sim bytes", "diff")
	for _, nd := range nds {
		mac := strings.ToLower(nd.MAC)
		q, s := real[mac], sim[mac]
		if q == nil || s == nil {
			t.Errorf("%s: no traffic counted (QEMU %v, simulated %v)", nd.Name, q != nil, s != nil)
			continue
		}
		if n, ref := q.FramesFromNode[relay.ProtoDHCP], dhcpRef[nd.Boot].FramesFromNode[relay.ProtoDHCP]; n != ref {
			t.Logf("%s (%s): retransmitted %d DHCP messages in QEMU", nd.Name, nd.Boot, n-ref)
		}
		protos := []string{relay.ProtoDHCP, relay.ProtoTFTP, relay.ProtoHTTP, relay.ProtoNFS, relay.ProtoRPC}
		sort.Strings(protos)
		for _, p := range protos {
			qn := q
			if p == relay.ProtoDHCP {
				qn = dhcpRef[nd.Boot]
			}
			qb, sb := qn.ToNode[p]+qn.FromNode[p], s.ToNode[p]+s.FromNode[p]
			diff := 0.0
			if qb > 0 {
				diff = float64(sb-qb) / float64(qb)
			}
			fmt.Fprintf(&b, "%-8s %-9s %-5s %12d %12d %+6.1f%%\n", nd.Name, nd.Boot, p, qb, sb, 100*diff)
			if (qb == 0) != (sb == 0) || math.Abs(diff) > 0.10 {
				t.Errorf("%s (%s) %s: QEMU moved %d bytes, simulated %d", nd.Name, nd.Boot, p, qb, sb)
			}
		}
		if want, got := dhcpRef[nd.Boot].FramesFromNode[relay.ProtoDHCP], s.FramesFromNode[relay.ProtoDHCP]; want != got {
			t.Errorf("%s (%s): asked the DHCP server %d times in QEMU, %d simulated", nd.Name, nd.Boot, want, got)
		}
	}
	t.Logf("per node and protocol, both ways:\n%s", b.String())
}
