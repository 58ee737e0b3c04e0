package storm

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/lab"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/relay"
	"github.com/diskless/diskless/pkg/settings"
)

const inv = `[network]
master = "192.168.1.1"
subnet = "192.168.1.0/24"
root = "/diskless"

[[node]]
name = "slave21"
mac = "00:02:A5:04:3B:66"
ip = "192.168.1.21"
arch = "x86_64"

[[node]]
name = "arm"
mac = "00:02:A5:04:3B:67"
ip = "192.168.1.100"
arch = "arm64"
boot = "uefi"
`

// Grow keeps the inventory's BIOS x86-64 nodes, adds valid new ones on
// free addresses, PXELINUX and iPXE in turn, and refuses what cannot fit.
func TestGrow(t *testing.T) {
	base, err := nodes.Parse([]byte(inv), "nodes.toml")
	if err != nil {
		t.Fatal(err)
	}
	grown, picked, err := Grow(base, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(picked) != 4 || picked[0].Name != "slave21" || len(grown.Nodes) != 5 || len(base.Nodes) != 2 {
		t.Fatalf("picked %v, grown to %d nodes (base %d)", picked, len(grown.Nodes), len(base.Nodes))
	}
	for i, want := range []struct{ name, ip, boot string }{{"storm01", "192.168.1.101", nodes.BootPXELinux}, {"storm02", "192.168.1.102", nodes.BootIPXE}, {"storm03", "192.168.1.103", nodes.BootPXELinux}} {
		nd := picked[i+1]
		if nd.Name != want.name || nd.IP != want.ip || nd.Boot != want.boot || nd.Arch != "x86_64" {
			t.Errorf("node %d: %+v, want %+v", i+1, nd, want)
		}
	}
	if err := grown.Validate(); err != nil {
		t.Error(err)
	}
	if _, _, err := Grow(base, 200); err == nil || !strings.Contains(err.Error(), "no room") {
		t.Errorf("200 nodes in a /24 from .100: %v", err)
	}
	if _, _, err := Grow(base, 0); err == nil {
		t.Error("n=0 accepted")
	}
	// with boot methods: only the inventory's nodes of those, the new ones
	// by them; no node on a master's address
	two, err := nodes.Parse([]byte(strings.Replace(inv, "[network]\n", "[[master]]\nname = \"m1\"\naddress = \"192.168.1.1\"\n\n[[master]]\nname = \"m2\"\naddress = \"192.168.1.101\"\n\n[network]\n", 1)), "nodes.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, picked, err = Grow(two, 2, nodes.BootIPXE)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"192.168.1.102", "192.168.1.103"} {
		if picked[i].IP != want || picked[i].Boot != nodes.BootIPXE {
			t.Errorf("iPXE node %d: %+v, want %s by iPXE (slave21 boots by PXELINUX, .101 is m2's)", i, picked[i], want)
		}
	}
}

// Nearest-rank percentiles; the stages in boot order; a failed node's
// stop named; Err names it.
func TestReport(t *testing.T) {
	var results []NodeResult
	for i := 1; i <= 20; i++ {
		results = append(results, NodeResult{Name: "n", Up: true, UpAt: float64(i), Stages: []boot.Reached{{Name: "kernel started", At: float64(i)}, {Name: "DHCP lease (firmware)", At: 1}}})
	}
	p := percentiles(results)
	if len(p) != 3 || p[0].Stage != "DHCP lease (firmware)" || p[1].P50 != 10 || p[1].P95 != 19 || p[1].Max != 20 || p[2].Stage != "up" {
		t.Errorf("percentiles %+v", p)
	}
	stopped := boot.Next([]boot.Reached{{Name: "DHCP lease (firmware)"}, {Name: "first file loaded"}})
	r := &Report{N: 2, Failed: []string{"b"}, Nodes: []NodeResult{{Name: "a", Up: true}, {Name: "b", IP: "192.168.1.5", Boot: "ipxe", StoppedAt: stopped, Error: "timed out", Console: "b.log"}}}
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), `b (192.168.1.5, boot = ipxe): stopped before "kernel and initramfs fetched": timed out (console: b.log)`) {
		t.Errorf("report error: %v", err)
	}
	// all up, but a fault that could not be applied fails the storm
	ok := &Report{N: 1, Nodes: []NodeResult{{Name: "a", Up: true}}, Events: []EventResult{{Name: "nginx killed", Error: "nginx is not running"}}}
	if err := ok.Err(); err == nil || !strings.Contains(err.Error(), "event nginx killed: nginx is not running") {
		t.Errorf("a failed event: %v", err)
	}
}

func TestParseLoss(t *testing.T) {
	for in, want := range map[string]float64{"5%": 0.05, "0.02": 0.02, "2.5%": 0.025} {
		if got, err := ParseLoss(in); err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"5", "x%", "lots"} {
		if _, err := ParseLoss(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// lab:storm refuses bad arguments before it provisions or starts anything.
func TestCommandRefusals(t *testing.T) {
	base, err := nodes.Parse([]byte(inv), "nodes.toml")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, c := range []struct {
		o    CommandOptions
		want string
	}{
		{CommandOptions{Settings: &settings.Settings{NodesFile: "nodes.toml", Root: root}, Args: Args{N: 2}}, "nodes.toml does not exist"},
		{CommandOptions{Settings: &settings.Settings{Inventory: base, Root: root}, Args: Args{N: 2, Faults: []string{"dns"}}}, "fault=dns: want one of http, master, nfs, publish, tftp"},
		{CommandOptions{Settings: &settings.Settings{Inventory: base, Root: root}, Args: Args{N: 2, Link: relay.Impairment{Loss: 2}}}, "loss 2.000"},
		{CommandOptions{Settings: &settings.Settings{Inventory: base, Root: root}, Args: Args{N: 2}}, "nothing published in " + root},
		{CommandOptions{Settings: &settings.Settings{Inventory: base, NodesFile: "nodes.toml", Root: root}, Args: Args{N: 2, Faults: []string{"master"}}}, "fault=master: nodes.toml names one master: add a second [[master]]"},
	} {
		if _, _, err := Command(context.Background(), c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.o, err, c.want)
		}
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("a refused storm wrote into the root: %v", entries)
	}
}

// lab:storm's one argument: every key, and a clear refusal of each bad
// word, before anything is installed or started.
func TestParseArgs(t *testing.T) {
	a, err := ParseArgs("n=16 loss=5% delay=50ms fault=nfs,tftp,http,publish timeout=10m")
	if err != nil {
		t.Fatal(err)
	}
	if a.N != 16 || a.Link.Loss != 0.05 || a.Link.Delay.String() != "50ms" || a.Timeout.String() != "10m0s" || strings.Join(a.Faults, ",") != "nfs,tftp,http,publish" {
		t.Errorf("parsed %+v", a)
	}
	for words, want := range map[string]string{
		"":                         "say how many nodes: n=8",
		"n=0":                      "n=0: want a number of nodes",
		"n=x":                      "n=x: want a number of nodes",
		"8":                        `lab:storm "8": want key=value words`,
		"n=8 loss=lots":            "loss=lots",
		"n=8 loss=150%":            "loss 1.500",
		"n=8 delay=fast":           "delay=fast: want a duration",
		"n=8 fault=dns":            "fault=dns: want one of http, master, nfs, publish, tftp",
		"n=8 timeout=-1s":          "timeout=-1s",
		"n=8 nodes=3":              "unknown nodes=",
		"n=8 delay=20s":            "delay 20s: want 0 to 10 s",
		"n=8 fault=master,publish": "fault=master,publish: fault=master takes a master down for good",
		"n=8 fault=nfs,master":     "fault=master,nfs: fault=master takes a master down for good",
	} {
		if _, err := ParseArgs(words); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", words, err, want)
		}
	}
}

// Each fault is the event the README says: its trigger and the daemon it
// takes down (the outage itself is proved by the storm tests).
func TestFaultEvents(t *testing.T) {
	published := false
	ev := FaultEvents(nil, []string{"nfs", "tftp", "http", "publish"}, func(context.Context) error { published = true; return nil })
	if len(ev) != 4 {
		t.Fatalf("%d events", len(ev))
	}
	want := []struct {
		after string
		at    string
	}{{boot.IPConfig, "0s"}, {"", "2s"}, {boot.FirstFile, "0s"}, {boot.FirstFile, "0s"}}
	for i, w := range want {
		if ev[i].After != w.after || ev[i].At.String() != w.at || ev[i].Do == nil || ev[i].Name == "" {
			t.Errorf("event %d: %+v, want after %q at %s", i, ev[i], w.after, w.at)
		}
	}
	if err := ev[3].Do(context.Background()); err != nil || !published {
		t.Errorf("the publish fault did not publish: %v", err)
	}
	for i, name := range []string{"nfs", "tftp", "http", "publish"} {
		if ev[i].Name != Faults[name] {
			t.Errorf("event %d is %q, want %q", i, ev[i].Name, Faults[name])
		}
	}
	// every trigger is a stage the judgement knows
	for _, e := range ev {
		if e.After != "" && boot.Index(e.After) == len(boot.Names()) {
			t.Errorf("event %q waits for %q, which is no stage", e.Name, e.After)
		}
	}
}

// Each event runs once, when its trigger fires (a stage, a console line,
// a time); one whose trigger never fires says so; the results wait for
// an event that started.
func TestRunEvents(t *testing.T) {
	var g triggers
	ran := make(chan string, 8)
	do := func(name string) func(context.Context) error {
		return func(context.Context) error { ran <- name; return nil }
	}
	o := Options{Log: slog.New(slog.DiscardHandler), Events: []Event{
		{Name: "after", After: boot.FirstFile, Do: do("after")},
		{Name: "line", Line: "wrote 3 MB", Do: do("line")},
		{Name: "at", At: 10 * time.Millisecond, Do: do("at")},
		{Name: "never", After: boot.MultiUser, Do: do("never")},
		{Name: "slow", After: boot.Kernel, Do: func(context.Context) error {
			time.Sleep(200 * time.Millisecond)
			ran <- "slow"
			return errors.New("restart failed")
		}},

		{Name: "by line", Line: "bootserver=", DoLine: func(_ context.Context, line string) (string, error) {
			ran <- "by line"
			return "got " + line, nil
		}},
	}}
	results := runEvents(context.Background(), o, &g, time.Now())
	g.fire(boot.FirstFile)
	g.fire(boot.FirstFile) // twice: once
	g.fire("line:wrote 3 MB")
	g.fire(boot.Kernel)
	g.fireLine("line:bootserver=", "     bootserver=192.168.1.2, rootserver=192.168.1.2, rootpath=")
	g.fireLine("line:bootserver=", "     bootserver=192.168.1.1, rootserver=192.168.1.1, rootpath=")
	time.Sleep(50 * time.Millisecond)
	r := results()
	close(ran)
	var got []string
	for n := range ran {
		got = append(got, n)
	}
	sort.Strings(got)
	if strings.Join(got, ",") != "after,at,by line,line,slow" {
		t.Errorf("ran %v", got)
	}
	if r[3].Error != "never ran: no node reached multi-user" || r[3].Started != 0 {
		t.Errorf("never: %+v", r[3])
	}
	if r[4].Error != "restart failed" || r[4].Ended < r[4].Started {
		t.Errorf("slow: %+v", r[4])
	}
	// the event that asked for its line gets the first one
	if r[5].Detail != "got      bootserver=192.168.1.2, rootserver=192.168.1.2, rootpath=" || r[5].Error != "" {
		t.Errorf("by line: %+v", r[5])
	}
}

// With two masters the report says which served each node (by the bytes
// from its address), what each sent and its daemons' CPU.
func TestByMaster(t *testing.T) {
	masters := []lab.MasterInfo{{Name: "m1", Address: "192.168.1.1"}, {Name: "m2", Address: "192.168.1.2", CgroupPrefix: "m2."}}
	results := []NodeResult{
		{Name: "a", Link: relay.Stats{ToNodeFrom: map[string]int64{"192.168.1.1": 70e6, "192.168.1.2": 2e3}}},
		{Name: "b", Link: relay.Stats{ToNodeFrom: map[string]int64{"192.168.1.1": 3e6, "192.168.1.2": 68e6, "192.168.1.77": 5}}},
	}
	r := &Report{MasterCPU: map[string]float64{"nginx": 2, "dhcpd": 0.5, "m2.nginx": 3, "m2.dhcpd": 0.25}}
	r.byMaster(masters, results)
	if results[0].ServedBy["m1"] != 70e6 || results[1].ServedBy["m2"] != 68e6 || len(results[1].ServedBy) != 2 {
		t.Errorf("per node: %v %v", results[0].ServedBy, results[1].ServedBy)
	}
	if r.ServedByMaster["m1"] != 73e6 || r.ServedByMaster["m2"] != 68e6+2e3 {
		t.Errorf("per master: %v", r.ServedByMaster)
	}
	// a served b's first file, m2 the rest; m2's 2 kB to a is no serving
	if r.NodesByMaster["m1"] != 2 || r.NodesByMaster["m2"] != 1 {
		t.Errorf("nodes per master: %v", r.NodesByMaster)
	}
	if r.CPUByMaster["m1"] != 2.5 || r.CPUByMaster["m2"] != 3.25 {
		t.Errorf("CPU per master: %v", r.CPUByMaster)
	}
	if !strings.Contains(r.Summary(), "m2 68.0 MB to 1 nodes, CPU 3.25 s") {
		t.Errorf("summary: %s", r.Summary())
	}
	one := &Report{MasterCPU: map[string]float64{"nginx": 1}}
	one.byMaster(masters[:1], results)
	if one.ServedByMaster != nil || strings.Contains(one.Summary(), "by master") {
		t.Error("one master: split by master")
	}
}
