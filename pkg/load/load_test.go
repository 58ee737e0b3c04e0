package load

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/nfstrace"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/simnode"
)

func TestParseArgs(t *testing.T) {
	a, err := ParseArgs("n=5000 ramp=200/s dhcp=dnsmasq boot=pxelinux loss=1% firmware=ipxe timeout=3m trace=x.json")
	if err != nil {
		t.Fatal(err)
	}
	want := Args{N: 5000, Ramp: 200, DHCP: "dnsmasq", Boot: nodes.BootPXELinux, Firmware: simnode.IPXE, Loss: 0.01, Trace: "x.json", Timeout: 3 * time.Minute}
	if a != want {
		t.Errorf("got %+v\nwant %+v", a, want)
	}
	// the defaults: all at once, iPXE, a PXE ROM, no loss
	if a, err := ParseArgs("n=1000"); err != nil || a.Boot != nodes.BootIPXE || a.Firmware != simnode.PXE || a.Ramp != 0 || a.Loss != 0 || a.DHCP != "" {
		t.Errorf("n=1000: %+v %v", a, err)
	}
	for args, want := range map[string]string{
		"":                 "say how many nodes: n=1000",
		"n=0":              "n=0: want a number of nodes from 1 to 60,000",
		"n=70000":          "n=70000",
		"n=10 ramp=fast":   "ramp=fast: want nodes per second, like 200/s",
		"n=10 dhcp=kea":    "dhcp=kea: want dhcpd (ISC) or dnsmasq",
		"n=10 boot=uefi":   "boot=uefi: want ipxe",
		"n=10 loss=150%":   "loss",
		"n=10 colour=blue": "unknown colour=",
		"n=10 fast":        `"fast": want key=value`,
		"n=10 timeout=-1s": "timeout=-1s",
		"n=10 firmware=x":  "firmware=x: want pxe",
	} {
		if _, err := ParseArgs(args); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", args, err, want)
		}
	}
}

// The generated inventory parses and validates (unique names, MACs and
// addresses in the subnet) at the scales lab:load runs, every node with
// the boot method and image asked.
func TestInventory(t *testing.T) {
	for _, n := range []int{1, 250, 251, 5000} {
		inv, err := Inventory(n, nodes.BootIPXE, Layout{Root: "/srv/load", Image: "debian-12", Home: "/srv/home", Shared: []string{"/srv/opt:/opt"}})
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if err := inv.Validate(); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if inv.Network.Home != "/srv/home" || len(inv.Network.SharedRO) != 1 || inv.Network.SharedRO[0] != "/srv/opt:/opt" {
			t.Errorf("n=%d: home %q, shared %v", n, inv.Network.Home, inv.Network.SharedRO)
		}
		if len(inv.Nodes) != n || inv.Network.Master != Master || inv.ImageOf(inv.Nodes[n-1]) != "debian-12" || inv.Nodes[n-1].Boot != nodes.BootIPXE {
			t.Errorf("n=%d: %d nodes, master %s, last %+v", n, len(inv.Nodes), inv.Network.Master, inv.Nodes[n-1])
		}
	}
	inv, _ := Inventory(251, nodes.BootPXELinux, Layout{Root: "/srv/load"})
	if last := inv.Nodes[250]; last.IP != "10.77.2.1" || last.MAC != "52:54:01:00:00:fb" || last.Name != "load00251" {
		t.Errorf("node 251: %+v", last)
	}
	if inv.Network.Home != "/home" || len(inv.Network.SharedRO) != 0 {
		t.Errorf("no home or shared trees asked, yet %q %v (want the default /home)", inv.Network.Home, inv.Network.SharedRO)
	}
	if _, err := Inventory(0, nodes.BootIPXE, Layout{Root: "/srv"}); err == nil {
		t.Error("0 nodes accepted")
	}
}

// Percentiles by rank over the nodes that reached each stage, in boot
// order; the failures by kind, named with their stage.
func TestReport(t *testing.T) {
	var results []simnode.Result
	for i := 1; i <= 100; i++ {
		r := simnode.Result{Name: "n", Up: true, UpAt: float64(i), Stages: []boot.Reached{{Name: boot.Lease, At: float64(i) / 10}, {Name: simnode.Up, At: float64(i)}}}
		results = append(results, r)
	}
	results = append(results, simnode.Result{Name: "bad", IP: "10.77.1.9", Stages: []boot.Reached{{Name: boot.Lease, At: 0.5}},
		Failure: &simnode.Failure{Kind: simnode.TFTP, Stage: boot.FirstFile, Err: "TFTP pxelinux.0: timeout"}})
	st := percentiles(results)
	if len(st) != 2 || st[0].Stage != boot.Lease || st[1].Stage != simnode.Up {
		t.Fatalf("stages %+v", st)
	}
	if up := st[1]; up.Nodes != 100 || up.P50 != 50 || up.P95 != 95 || up.P99 != 99 || up.Max != 100 {
		t.Errorf("up: %+v", up)
	}
	if st[0].Nodes != 101 {
		t.Errorf("lease reached by %d", st[0].Nodes)
	}
	r := &Report{N: 101}
	r.Nodes = results
	r.FailureKinds = map[string]int{}
	for _, n := range results {
		if !n.Up {
			r.Failed = append(r.Failed, n.Name)
			r.Failures = append(r.Failures, NodeFailure{Node: n.Name, IP: n.IP, Kind: n.Failure.Kind, Stage: n.Failure.Stage, Err: n.Failure.Err})
			r.FailureKinds[n.Failure.Kind]++
		}
	}
	err := r.Err()
	if err == nil || !strings.Contains(err.Error(), `1 of 101 simulated nodes did not come up:`) || !strings.Contains(err.Error(), `bad (10.77.1.9): TFTP before "`+boot.FirstFile+`": TFTP pxelinux.0: timeout`) {
		t.Errorf("%v", err)
	}
	if (&Report{N: 3}).Err() != nil {
		t.Error("no failure, yet an error")
	}
}

// The load's master is laid out as the recorded one's: its image, /home
// and shared trees, each recorded mount mapped to the load's; a mount the
// trace cannot place is refused, naming lab:trace.
func TestLayoutFor(t *testing.T) {
	dir := t.TempDir()
	tr := &nfstrace.Trace{Source: "rec", Mounts: []string{"/d/192.168.1.21", "/d/images/debian-12-x86_64", "/srv/home", "/srv/opt"},
		Kinds: map[string]string{"/d/192.168.1.21": nfstrace.KindRoot, "/d/images/debian-12-x86_64": nfstrace.KindImage, "/srv/home": nfstrace.KindHome, "/srv/opt": "shared /opt"}}
	l, exports, err := layoutFor(tr, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := Layout{Root: filepath.Join(dir, "root"), Image: "debian-12", Home: filepath.Join(dir, "home"), Shared: []string{filepath.Join(dir, "shared", "opt") + ":/opt"}}
	if l.Root != want.Root || l.Image != want.Image || l.Home != want.Home || len(l.Shared) != 1 || l.Shared[0] != want.Shared[0] {
		t.Errorf("layout %+v\nwant %+v", l, want)
	}
	if exports["/d/images/debian-12-x86_64"] != filepath.Join(dir, "root", "images", "debian-12-x86_64") || exports["/srv/opt"] != filepath.Join(dir, "shared", "opt") {
		t.Errorf("exports %v", exports)
	}
	if _, ok := exports["/d/192.168.1.21"]; ok {
		t.Error("the root is mapped: each node mounts its own")
	}
	tr.Kinds["/srv/opt"] = ""
	if _, _, err := layoutFor(tr, dir); err == nil || !strings.Contains(err.Error(), "/srv/opt") || !strings.Contains(err.Error(), "lab:trace") {
		t.Errorf("an unknown mount: %v", err)
	}
}

// The recorded image's generation directory becomes the load's live one,
// in paths and in the lookup of it; other exports are left alone.
func TestMoveTrace(t *testing.T) {
	image := filepath.Join(t.TempDir(), "images", "debian-12-x86_64")
	os.MkdirAll(filepath.Join(image, "gen-0003"), 0o755)
	os.Symlink("gen-0003", filepath.Join(image, "current"))
	rec := "/d/images/debian-12-x86_64"
	tr := &nfstrace.Trace{Mounts: []string{"/d/1.2.3.4", rec}, Kinds: map[string]string{"/d/1.2.3.4": nfstrace.KindRoot, rec: nfstrace.KindImage}, Ops: []nfstrace.Op{
		{Proc: "READLINK", Export: rec, Path: "/current"},
		{Proc: "LOOKUP", Export: rec, Path: "/", Name: "gen-0001"},
		{Proc: "READ", Export: rec, Path: "/gen-0001/usr/lib/libc.so.6", Count: 10},
		{Proc: "READ", Export: "/d/1.2.3.4", Path: "/gen-0001", Count: 10},
	}}
	got, err := moveTrace(tr, map[string]string{rec: image})
	if err != nil {
		t.Fatal(err)
	}
	if got.Mounts[1] != image || got.Ops[1].Name != "gen-0003" || got.Ops[2].Path != "/gen-0003/usr/lib/libc.so.6" || got.Ops[2].Export != image {
		t.Errorf("moved: %+v", got.Ops)
	}
	if got.Ops[3].Path != "/gen-0001" || got.Ops[0].Path != "/current" {
		t.Errorf("not the image's generation, yet changed: %+v", got.Ops)
	}
	if got.Kinds[image] != nfstrace.KindImage {
		t.Errorf("kinds %v", got.Kinds)
	}
}
