// Package storm boots many nodes at once in the lab (pkg/lab) and times
// every stage of every node (judged by pkg/boot): the scenario behind
// lab:storm and the storm tests. Faults (a lossy, slow link through
// pkg/relay; the NFS server killed and restarted; TFTP or HTTP down for a
// while; a publish) are applied while the nodes boot, and the run fails,
// naming the node and the stage it stopped at, when any node does not
// come up.
package storm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/diskless/diskless/internal/fsutil"
	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/lab"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/qemu"
	"github.com/diskless/diskless/pkg/relay"
)

// Options for Run.
type Options struct {
	Lab   *lab.Lab
	Nodes []nodes.Node
	// Link is the impairment of every node's link (zero: none, still
	// counted).
	Link relay.Impairment
	// Up lists the stages (pkg/boot) at which a node is up; a node's own
	// (UpFor) win when it returns any.
	Up    []string
	UpFor func(nodes.Node) []string
	// Timeout for each node (default 10 min).
	Timeout time.Duration
	// Events happen while the nodes boot.
	Events   []Event
	LogDir   string
	Accel    string
	MemoryMB int
	Log      *slog.Logger
	// Progress, when set, is called each time a node reaches a stage.
	Progress func(node string, stage boot.Reached)
}

// Event is a fault or an action during the storm: it runs once, when the
// first node reaches the stage After (a stage of pkg/boot), or when a
// console line of any node contains Line, or At after the start.
type Event struct {
	Name  string
	After string
	Line  string
	At    time.Duration
	Do    func(ctx context.Context) error
	// DoLine, instead of Do, gets the console line that triggered the
	// event (Line) and says what it did (the report's detail).
	DoLine func(ctx context.Context, line string) (string, error)
}

// EventResult is when an event ran and how it ended.
type EventResult struct {
	Name    string  `json:"name"`
	Started float64 `json:"started_seconds"`
	Ended   float64 `json:"ended_seconds"`
	Detail  string  `json:"detail,omitempty"`
	Error   string  `json:"error,omitempty"`
}

// NodeResult is one node's boot.
type NodeResult struct {
	Name   string         `json:"name"`
	IP     string         `json:"ip"`
	Boot   string         `json:"boot"`
	Up     bool           `json:"up"`
	UpAt   float64        `json:"up_seconds,omitempty"`
	Stages []boot.Reached `json:"stages"`
	// StoppedAt is the first stage it did not reach (a failed node).
	StoppedAt string `json:"stopped_at,omitempty"`
	Error     string `json:"error,omitempty"`
	// Generations are the published generations whose files it fetched
	// (from the paths on its console): one, or none for a single-file boot.
	Generations []string    `json:"generations,omitempty"`
	Link        relay.Stats `json:"link"`
	// ServedBy are the bytes each master sent it, by master name (DHCP
	// left out): with several masters, which one served its files.
	ServedBy map[string]int64 `json:"served_by_master_bytes,omitempty"`
	Console  string           `json:"console_log"`
}

// Percentiles of one stage over the nodes that reached it.
type Percentiles struct {
	Stage string  `json:"stage"`
	Nodes int     `json:"nodes"`
	P50   float64 `json:"p50_seconds"`
	P95   float64 `json:"p95_seconds"`
	Max   float64 `json:"max_seconds"`
}

// Report is a storm's result (written as JSON by Write).
type Report struct {
	Started time.Time        `json:"started"`
	N       int              `json:"nodes"`
	UpCount int              `json:"up"`
	Failed  []string         `json:"failed"`
	Link    relay.Impairment `json:"link"`
	// AllUp is when the last node came up (0: not all did).
	AllUp    float64       `json:"all_up_seconds"`
	Duration float64       `json:"duration_seconds"`
	Stages   []Percentiles `json:"stages"`
	// MasterCPU is the daemons' processor time during the storm, by
	// daemon, and MasterCPUPercent its share of one CPU over the run.
	MasterCPU        map[string]float64 `json:"master_cpu_seconds"`
	MasterCPUPercent float64            `json:"master_cpu_percent_of_one_cpu"`
	// Served is what the master sent to the nodes, by protocol, in bytes
	// of Ethernet frames; Dropped counts the frames the links lost.
	Served  map[string]int64 `json:"served_bytes"`
	Dropped int64            `json:"dropped_frames"`
	// With several masters: what each one sent the nodes (bytes, DHCP
	// left out), its daemons' processor time, and how many nodes got
	// files from it.
	ServedByMaster map[string]int64   `json:"served_by_master_bytes,omitempty"`
	CPUByMaster    map[string]float64 `json:"cpu_by_master_seconds,omitempty"`
	NodesByMaster  map[string]int     `json:"nodes_served_by_master,omitempty"`
	Events         []EventResult      `json:"events"`
	Nodes          []NodeResult       `json:"node_results"`
}

// Err names every node that did not come up and the stage it stopped at,
// and every event that failed: a storm whose fault could not be applied
// (or undone) failed even when all nodes came up.
func (r *Report) Err() error {
	failedEvents := 0
	for _, e := range r.Events {
		if e.Error != "" {
			failedEvents++
		}
	}
	if len(r.Failed) == 0 && failedEvents == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d nodes did not come up, %d events failed:", len(r.Failed), r.N, failedEvents)
	for _, n := range r.Nodes {
		if !n.Up {
			fmt.Fprintf(&b, "\n  %s (%s, boot = %s): stopped before %q: %s (console: %s)", n.Name, n.IP, n.Boot, n.StoppedAt, n.Error, n.Console)
		}
	}
	for _, e := range r.Events {
		if e.Error != "" {
			fmt.Fprintf(&b, "\n  event %s: %s", e.Name, e.Error)
		}
	}
	return errors.New(b.String())
}

// Retried is what retries a lab node's failed steps: its firmware (the
// lab's BIOS nodes try again after 5 s), the iPXE scripts and the
// initramfs. Only a failure none of them retries ends a node's boot at
// once; the others fail by the timeout.
var Retried = []boot.Retrier{boot.Firmware, boot.IPXEScript, boot.Initramfs}

// generationRe finds the published generation in a fetched path.
var generationRe = regexp.MustCompile(`\.diskless/generations/([0-9]+)/`)

// upOf is the stages at which nd is up.
func (o Options) upOf(nd nodes.Node) []string {
	if o.UpFor != nil {
		if u := o.UpFor(nd); len(u) > 0 {
			return u
		}
	}
	return o.Up
}

// check refuses a storm that cannot run or cannot be judged, and fills
// the defaults.
func (o *Options) check() error {
	if o.Lab == nil || len(o.Nodes) == 0 {
		return errors.New("a storm needs a lab and nodes")
	}
	for _, nd := range o.Nodes {
		up := o.upOf(nd)
		if len(up) == 0 {
			return fmt.Errorf("node %s: no stage says it is up", nd.Name)
		}
		for _, st := range up {
			if !boot.Waitable(st) {
				return fmt.Errorf("node %s: up at %q, which is no stage of pkg/boot told by its own console lines", nd.Name, st)
			}
		}
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.MemoryMB == 0 {
		o.MemoryMB = 384
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return os.MkdirAll(o.LogDir, 0o755)
}

// triggers fires each event's trigger once: the first node to reach a
// stage (or print a line) closes its channel.
type triggers struct {
	mu      sync.Mutex
	reached map[string]chan struct{}
	fired   map[string]bool
	// lines are the console lines that fired line triggers
	lines map[string]string
}

func (g *triggers) wait(key string) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.reached == nil {
		g.reached, g.fired = map[string]chan struct{}{}, map[string]bool{}
	}
	if g.reached[key] == nil {
		g.reached[key] = make(chan struct{})
	}
	return g.reached[key]
}

func (g *triggers) fire(key string) { g.fireLine(key, "") }

// fireLine fires key, keeping the console line that fired it.
func (g *triggers) fireLine(key, line string) {
	ch := g.wait(key)
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.fired[key] {
		g.fired[key] = true
		if g.lines == nil {
			g.lines = map[string]string{}
		}
		g.lines[key] = line
		close(ch)
	}
}

// line is the console line that fired key.
func (g *triggers) line(key string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lines[key]
}

// runEvents starts each event, waiting for its trigger, and returns the
// function that ends the waiting and returns the events' results once
// those started have finished (a restart must not be cut short).
func runEvents(ctx context.Context, o Options, g *triggers, start time.Time) func() []EventResult {
	ectx, stop := context.WithCancel(ctx)
	events := make([]EventResult, len(o.Events))
	var wg sync.WaitGroup
	for i, ev := range o.Events {
		wg.Add(1)
		go func() {
			defer wg.Done()
			events[i].Name = ev.Name
			var due <-chan struct{}
			what := "the storm ended first"
			switch {
			case ev.Line != "":
				due, what = g.wait("line:"+ev.Line), "no node printed "+ev.Line
			case ev.After != "":
				due, what = g.wait(ev.After), "no node reached "+ev.After
			default:
				t := make(chan struct{})
				time.AfterFunc(ev.At, func() { close(t) })
				due = t
			}
			select {
			case <-due:
			case <-ectx.Done():
				events[i].Error = "never ran: " + what
				return
			}
			events[i].Started = time.Since(start).Seconds()
			o.Log.Info("storm event", "event", ev.Name, "at", fmt.Sprintf("%.1f s", events[i].Started))
			var err error
			if ev.DoLine != nil {
				events[i].Detail, err = ev.DoLine(context.WithoutCancel(ectx), g.line("line:"+ev.Line))
			} else {
				err = ev.Do(context.WithoutCancel(ectx))
			}
			if err != nil {
				events[i].Error = err.Error()
			}
			events[i].Ended = time.Since(start).Seconds()
		}()
	}
	return func() []EventResult {
		stop()
		wg.Wait()
		return events
	}
}

// Run boots opts.Nodes at once and returns the report; the error is about
// the run itself (a node failing is in the report: Report.Err).
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if err := o.Lab.UseLinks(&o.Link); err != nil {
		return nil, err
	}
	defer o.Lab.UseLinks(nil)
	r := &Report{Started: time.Now().UTC(), N: len(o.Nodes), Link: o.Link, Failed: []string{}}
	cpu0 := o.Lab.CPU()
	machines := make([]*qemu.Machine, len(o.Nodes))
	var removes []func()
	cleanup := func() {
		for _, remove := range removes {
			remove()
		}
		removes = nil
	}
	defer cleanup()
	for i, nd := range o.Nodes {
		m, remove, err := o.Lab.Machine(nd, nd.MAC, filepath.Join(o.LogDir, nd.Name+".log"))
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", nd.Name, err)
		}
		m.Accel, m.MemoryMB = o.Accel, o.MemoryMB
		machines[i], removes = m, append(removes, remove)
	}
	var g triggers
	start := time.Now()
	events := runEvents(ctx, o, &g, start)
	results := make([]NodeResult, len(o.Nodes))
	var wg sync.WaitGroup
	for i, nd := range o.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = bootNode(ctx, o, nd, machines[i], func(st boot.Reached) {
				g.fire(st.Name)
				if o.Progress != nil {
					o.Progress(nd.Name, st)
				}
			}, func(line string) {
				for _, ev := range o.Events {
					if ev.Line != "" && strings.Contains(line, ev.Line) {
						g.fireLine("line:"+ev.Line, line)
					}
				}
			})
		}()
	}
	wg.Wait()
	r.Duration = time.Since(start).Seconds()
	r.Events = events()
	cleanup()
	r.tally(o, results, cpu0)
	return r, nil
}

// tally fills the report from the nodes' results: link counters and bytes
// served, the master's CPU since cpu0, who came up, the percentiles.
func (r *Report) tally(o Options, results []NodeResult, cpu0 map[string]time.Duration) {
	stats := o.Lab.LinkStats()
	r.Served = map[string]int64{}
	for i, nd := range o.Nodes {
		s := stats[lab.TapName(nd.MAC)]
		results[i].Link = s
		for p, b := range s.ToNode {
			r.Served[p] += b
		}
		r.Dropped += s.DroppedToNode + s.DroppedFromNode
	}
	o.Lab.ResetLinks()
	r.MasterCPU = map[string]float64{}
	var total time.Duration
	for name, d := range o.Lab.CPU() {
		used := d - cpu0[name]
		r.MasterCPU[name] = used.Seconds()
		total += used
	}
	r.MasterCPUPercent = 100 * total.Seconds() / r.Duration
	r.byMaster(o.Lab.Masters(), results)
	r.Nodes = results
	for _, n := range results {
		if n.Up {
			r.UpCount++
			r.AllUp = math.Max(r.AllUp, n.UpAt)
		} else {
			r.Failed = append(r.Failed, n.Name)
		}
	}
	if r.UpCount < r.N {
		r.AllUp = 0 // never all up
	}
	r.Stages = percentiles(results)
}

// byMaster splits the bytes served and the daemons' CPU by master, when
// the lab runs more than one; a master named by a node served it at
// least 1 MB (its files, not a stray answer).
func (r *Report) byMaster(masters []lab.MasterInfo, results []NodeResult) {
	if len(masters) < 2 {
		return
	}
	name := map[string]string{}
	for _, m := range masters {
		name[m.Address] = m.Name
	}
	r.ServedByMaster, r.CPUByMaster, r.NodesByMaster = map[string]int64{}, map[string]float64{}, map[string]int{}
	for _, m := range masters {
		r.ServedByMaster[m.Name], r.CPUByMaster[m.Name], r.NodesByMaster[m.Name] = 0, 0, 0
	}
	for i := range results {
		for src, b := range results[i].Link.ToNodeFrom {
			if m, ok := name[src]; ok {
				if results[i].ServedBy == nil {
					results[i].ServedBy = map[string]int64{}
				}
				results[i].ServedBy[m] += b
				r.ServedByMaster[m] += b
			}
		}
		for m, b := range results[i].ServedBy {
			if b >= 1e6 {
				r.NodesByMaster[m]++
			}
		}
	}
	for cg, sec := range r.MasterCPU {
		owner := masters[0].Name
		for _, m := range masters[1:] {
			if strings.HasPrefix(cg, m.CgroupPrefix) {
				owner = m.Name
			}
		}
		r.CPUByMaster[owner] += sec
	}
}

// bootNode runs one node until it is up, fails or times out.
func bootNode(ctx context.Context, o Options, nd nodes.Node, m *qemu.Machine, progress func(boot.Reached), line func(string)) NodeResult {
	res := NodeResult{Name: nd.Name, IP: nd.IP, Boot: nd.Boot, Console: m.LogPath}
	up := o.upOf(nd)
	sess, err := qemu.Start(ctx, m)
	if err != nil {
		res.Error = err.Error()
		res.StoppedAt = "QEMU started"
		return res
	}
	defer sess.Stop()
	// stages as they come (for the events and the progress line)
	done := make(chan struct{})
	go func() {
		seen, lines := 0, 0
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			tl := sess.Timeline()
			for ; lines < len(tl); lines++ {
				line(tl[lines].Text)
			}
			st := boot.Stages(tl)
			for ; seen < len(st); seen++ {
				progress(st[seen])
			}
		}
	}()
	// up may be a login prompt, which has no newline after it
	_, err = sess.ExpectOrPrompt(boot.Markers(up...), boot.Failures(Retried...), o.Timeout)
	close(done)
	timeline := sess.TimelineWithPrompt()
	v := boot.Judge(timeline, up, Retried...)
	res.Stages = v.Stages
	gens := map[string]bool{}
	for _, l := range timeline {
		for _, m := range generationRe.FindAllStringSubmatch(l.Text, -1) {
			gens[m[1]] = true
		}
	}
	for g := range gens {
		res.Generations = append(res.Generations, g)
	}
	sort.Strings(res.Generations)
	if err == nil && len(res.Generations) > 1 {
		err = fmt.Errorf("fetched files of generations %s: a mix", strings.Join(res.Generations, " and "))
	}
	if err == nil && !v.Up {
		err = fmt.Errorf("the console showed an up stage (%s) the judgement does not find", strings.Join(up, ", "))
	}
	if err != nil {
		res.Error = err.Error()
		res.StoppedAt = v.StoppedAt
		if res.StoppedAt == "" {
			// up, but not from one generation
			res.StoppedAt = "one generation's files"
		}
		return res
	}
	res.Up, res.UpAt = true, v.UpAt
	return res
}

// percentiles of each stage over the nodes that reached it, in boot order.
func percentiles(results []NodeResult) []Percentiles {
	var boots [][]boot.Reached
	up := []float64{}
	for _, n := range results {
		boots = append(boots, n.Stages)
		if n.Up {
			up = append(up, n.UpAt)
		}
	}
	order, at := boot.StageTimes(boots)
	var out []Percentiles
	for _, name := range order {
		out = append(out, pct(name, at[name]))
	}
	if len(up) > 0 {
		out = append(out, pct("up", up))
	}
	return out
}

// pct: nearest-rank percentiles.
func pct(name string, v []float64) Percentiles {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return Percentiles{Stage: name, Nodes: len(s), P50: boot.NearestRank(s, 0.50), P95: boot.NearestRank(s, 0.95), Max: s[len(s)-1]}
}

// Write puts the report into dir as storm-<time>.json and storm.json (the
// latest) and returns the first's path.
func (r *Report) Write(dir string) (string, error) {
	return fsutil.WriteReport(dir, "storm", r.Started, r)
}

// Summary is the report as a few lines for a terminal or a log.
func (r *Report) Summary() string {
	var b strings.Builder
	if r.UpCount == r.N {
		fmt.Fprintf(&b, "storm: %d of %d nodes up (%s), all up after %.1f s, failed: %d\n", r.UpCount, r.N, r.Link, r.AllUp, len(r.Failed))
	} else {
		fmt.Fprintf(&b, "storm: %d of %d nodes up (%s), failed: %d (%s)\n", r.UpCount, r.N, r.Link, len(r.Failed), strings.Join(r.Failed, ", "))
	}
	fmt.Fprintf(&b, "  %-32s %5s %8s %8s %8s\n", "stage", "nodes", "p50 s", "p95 s", "max s")
	for _, p := range r.Stages {
		fmt.Fprintf(&b, "  %-32s %5d %8.1f %8.1f %8.1f\n", p.Stage, p.Nodes, p.P50, p.P95, p.Max)
	}
	var names []string
	for n := range r.MasterCPU {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(&b, "  master CPU %.1f %% of one CPU:", r.MasterCPUPercent)
	for _, n := range names {
		fmt.Fprintf(&b, " %s %.2f s", n, r.MasterCPU[n])
	}
	b.WriteString("\n  served:")
	for _, p := range []string{relay.ProtoDHCP, relay.ProtoTFTP, relay.ProtoHTTP, relay.ProtoNFS, relay.ProtoRPC, relay.ProtoOther} {
		fmt.Fprintf(&b, " %s %.1f MB", p, float64(r.Served[p])/1e6)
	}
	fmt.Fprintf(&b, "; frames dropped by the links: %d\n", r.Dropped)
	if len(r.ServedByMaster) > 0 {
		var ms []string
		for m := range r.ServedByMaster {
			ms = append(ms, m)
		}
		sort.Strings(ms)
		b.WriteString("  by master:")
		for _, m := range ms {
			fmt.Fprintf(&b, " %s %.1f MB to %d nodes, CPU %.2f s;", m, float64(r.ServedByMaster[m])/1e6, r.NodesByMaster[m], r.CPUByMaster[m])
		}
		b.WriteString("\n")
	}
	for _, e := range r.Events {
		fmt.Fprintf(&b, "  event %s: %.1f-%.1f s %s%s\n", e.Name, e.Started, e.Ended, e.Detail, e.Error)
	}
	return b.String()
}

// Grow returns a copy of inv with at least n nodes that boot by BIOS on
// x86-64 (the inventory's own first, then new ones, storm01..., with the
// next free addresses of the subnet and MACs 52:54:00:5d:xx:xx, booting
// by PXELINUX and iPXE in turn, with the inventory's image), and the n
// nodes to boot. With boots, only the inventory's nodes of those boot
// methods are taken, and the new ones boot by them in turn.
func Grow(inv *nodes.Inventory, n int, boots ...string) (*nodes.Inventory, []nodes.Node, error) {
	restrict := len(boots) > 0
	if !restrict {
		boots = []string{nodes.BootPXELinux, nodes.BootIPXE}
	}
	if n < 1 {
		return nil, nil, fmt.Errorf("n=%d: want at least one node", n)
	}
	out := *inv
	out.Nodes = append([]nodes.Node(nil), inv.Nodes...)
	var pick []nodes.Node
	usedIP := map[string]bool{inv.Network.Master: true}
	for _, m := range inv.Masters {
		usedIP[m.Address] = true
	}
	usedMAC := map[string]bool{}
	usedName := map[string]bool{}
	for _, nd := range inv.Nodes {
		usedIP[nd.IP], usedMAC[strings.ToLower(nd.MAC)], usedName[nd.Name] = true, true, true
		boot := nd.Boot
		if boot == "" {
			boot = nodes.BootPXELinux
		}
		bios := boot == nodes.BootPXELinux || boot == nodes.BootEtherboot || boot == nodes.BootIPXE
		if nd.Arch == "x86_64" && bios && len(pick) < n && (!restrict || slices.Contains(boots, boot)) {
			pick = append(pick, nd)
		}
	}
	_, subnet, err := net.ParseCIDR(inv.Network.Subnet)
	if err != nil {
		return nil, nil, err
	}
	ip := subnet.IP.To4()
	if ip == nil {
		return nil, nil, fmt.Errorf("subnet %s: IPv4 only", inv.Network.Subnet)
	}
	next := append(net.IP(nil), ip...)
	next[3] = 100
	for i := 1; len(pick) < n; i++ {
		for usedIP[next.String()] {
			next[3]++
			if next[3] == 255 || !subnet.Contains(next) {
				return nil, nil, fmt.Errorf("subnet %s has no room for %d nodes", inv.Network.Subnet, n)
			}
		}
		name := fmt.Sprintf("storm%02d", i)
		mac := fmt.Sprintf("52:54:00:5d:%02x:%02x", i>>8, i&0xff)
		if usedName[name] || usedMAC[mac] {
			continue
		}
		boot := boots[(i-1)%len(boots)]
		nd := nodes.Node{Name: name, MAC: mac, IP: next.String(), Arch: "x86_64", Boot: boot}
		usedIP[nd.IP] = true
		out.Nodes = append(out.Nodes, nd)
		pick = append(pick, nd)
	}
	if err := out.Validate(); err != nil {
		return nil, nil, err
	}
	return &out, pick, nil
}
