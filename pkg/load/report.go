package load

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/diskless/diskless/internal/fsutil"
	"github.com/diskless/diskless/internal/netns"
	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/lab"
	"github.com/diskless/diskless/pkg/relay"
	"github.com/diskless/diskless/pkg/simnode"
)

// Percentiles of one stage over the nodes that reached it.
type Percentiles struct {
	Stage string  `json:"stage"`
	Nodes int     `json:"nodes"`
	P50   float64 `json:"p50_seconds"`
	P95   float64 `json:"p95_seconds"`
	P99   float64 `json:"p99_seconds"`
	Max   float64 `json:"max_seconds"`
}

// NodeFailure is a node that did not come up: where and why.
type NodeFailure struct {
	Node  string `json:"node"`
	IP    string `json:"ip"`
	Kind  string `json:"kind"`
	Stage string `json:"stage"`
	Err   string `json:"error"`
}

// Report is a run's result (written as JSON by Write).
type Report struct {
	Started  time.Time `json:"started"`
	N        int       `json:"nodes"`
	UpCount  int       `json:"up"`
	Failed   []string  `json:"failed"`
	DHCP     string    `json:"dhcp_server"`
	Boot     string    `json:"boot"`
	Firmware string    `json:"firmware"`
	Loss     float64   `json:"loss"`
	Ramp     float64   `json:"ramp_per_second"`
	Trace    string    `json:"trace"`
	// AllDone is when the last node came up or failed.
	AllDone  float64 `json:"all_done_seconds"`
	Duration float64 `json:"duration_seconds"`
	// SetupSeconds is the simulator's making of the nodes' NICs before
	// power-on, not part of any node's time.
	SetupSeconds float64       `json:"setup_seconds"`
	Stages       []Percentiles `json:"stages"`
	// Failures are counted by kind and listed by node.
	FailureKinds map[string]int `json:"failures_by_kind"`
	Failures     []NodeFailure  `json:"failures"`
	// MasterCPU is each daemon's processor time during the run, and its
	// share per node; PeakMemory each daemon's peak.
	MasterCPU           map[string]float64 `json:"master_cpu_seconds"`
	MasterCPUPercent    float64            `json:"master_cpu_percent_of_one_cpu"`
	MasterCPUPerNodeMs  float64            `json:"master_cpu_ms_per_node"`
	PeakMemory          map[string]int64   `json:"peak_memory_bytes"`
	Served              map[string]int64   `json:"served_bytes"`
	Received            map[string]int64   `json:"received_bytes"`
	FramesServed        map[string]int64   `json:"frames_served"`
	FramesReceived      map[string]int64   `json:"frames_received"`
	Dropped             int64              `json:"dropped_frames"`
	LinkDrops           map[string]int64   `json:"link_drops"`
	NodeRetransmits     int64              `json:"node_tcp_retransmits"`
	MasterRetransmits   int64              `json:"master_tcp_retransmits"`
	MasterUDPErrors     int64              `json:"master_udp_receive_errors"`
	DHCPRequests        int                `json:"dhcp_requests"`
	DHCPRequestsPerNode float64            `json:"dhcp_requests_per_node"`
	Nodes               []simnode.Result   `json:"node_results"`
}

// tally fills the report from the nodes' results and the lab's counters.
func (r *Report) tally(o Options, results []simnode.Result, cpu0, cpu1 map[string]time.Duration) {
	r.Nodes = results
	r.FailureKinds = map[string]int{}
	for _, n := range results {
		r.DHCPRequests += n.DHCP
		r.NodeRetransmits += n.Retransmits
		end := n.UpAt
		if len(n.Stages) > 0 {
			end = math.Max(end, n.Stages[len(n.Stages)-1].At)
		}
		r.AllDone = math.Max(r.AllDone, end)
		if n.Up {
			r.UpCount++
			continue
		}
		r.Failed = append(r.Failed, n.Name)
		f := NodeFailure{Node: n.Name, IP: n.IP, Kind: "unknown", Stage: boot.Next(n.Stages), Err: "no result"}
		if n.Failure != nil {
			f.Kind, f.Stage, f.Err = n.Failure.Kind, n.Failure.Stage, n.Failure.Err
		}
		r.FailureKinds[f.Kind]++
		r.Failures = append(r.Failures, f)
	}
	if r.N > 0 {
		r.DHCPRequestsPerNode = float64(r.DHCPRequests) / float64(r.N)
	}
	r.MasterCPU = map[string]float64{}
	var total time.Duration
	for name, d := range cpu1 {
		used := d - cpu0[name]
		r.MasterCPU[name] = used.Seconds()
		total += used
	}
	if r.Duration > 0 {
		r.MasterCPUPercent = 100 * total.Seconds() / r.Duration
	}
	if r.N > 0 {
		r.MasterCPUPerNodeMs = 1000 * total.Seconds() / float64(r.N)
	}
	r.PeakMemory = o.Lab.PeakMemory()
	if c, err := o.Lab.Counters(); err == nil {
		r.Served, r.Received, r.FramesServed, r.FramesReceived, r.Dropped = c.ToNodes, c.FromNodes, c.FramesToNodes, c.FramesFromNodes, c.Dropped
	} else {
		o.Log.Warn("the traffic was not counted", "err", err)
	}
	if d, err := o.Lab.LinkDrops(); err == nil {
		r.LinkDrops = d
	}
	r.MasterRetransmits, r.MasterUDPErrors = masterSNMP()
	r.Stages = percentiles(results)
}

// masterSNMP is TCP's retransmitted segments and UDP's receive errors
// (full socket buffers: a daemon too slow to read) in the lab's
// namespace.
func masterSNMP() (retrans, udpErrors int64) {
	data, err := netns.Do(lab.NetNSPath(), func() ([]byte, error) { return os.ReadFile("/proc/thread-self/net/snmp") })
	if err != nil {
		return 0, 0
	}
	get := func(proto, field string) int64 {
		var head []string
		for _, l := range strings.Split(string(data), "\n") {
			f := strings.Fields(l)
			if len(f) < 2 || f[0] != proto+":" {
				continue
			}
			if head == nil {
				head = f
				continue
			}
			for i := range head {
				if head[i] == field && i < len(f) {
					v, _ := strconv.ParseInt(f[i], 10, 64)
					return v
				}
			}
		}
		return 0
	}
	return get("Tcp", "RetransSegs"), get("Udp", "RcvbufErrors") + get("Udp", "InErrors")
}

// percentiles of each stage over the nodes that reached it, in boot order.
func percentiles(results []simnode.Result) []Percentiles {
	var boots [][]boot.Reached
	for _, n := range results {
		boots = append(boots, n.Stages)
	}
	order, at := boot.StageTimes(boots)
	var out []Percentiles
	for _, name := range order {
		s := at[name]
		sort.Float64s(s)
		out = append(out, Percentiles{Stage: name, Nodes: len(s), P50: boot.NearestRank(s, 0.50), P95: boot.NearestRank(s, 0.95), P99: boot.NearestRank(s, 0.99), Max: s[len(s)-1]})
	}
	return out
}

// Err names the failures: how many of each kind, and the first nodes of
// each with their stage and reason.
func (r *Report) Err() error {
	if len(r.Failed) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d simulated nodes did not come up:", len(r.Failed), r.N)
	shown := map[string]int{}
	for _, f := range r.Failures {
		if shown[f.Kind]++; shown[f.Kind] <= 5 {
			fmt.Fprintf(&b, "\n  %s (%s): %s before %q: %s", f.Node, f.IP, f.Kind, f.Stage, f.Err)
		}
	}
	for k, n := range r.FailureKinds {
		if n > 5 {
			fmt.Fprintf(&b, "\n  ... and %d more %s failures", n-5, k)
		}
	}
	return errors.New(b.String())
}

// Summary is the report as a few lines for a terminal or a log.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "load: %d of %d simulated nodes up (%s, boot = %s, %s firmware, loss %.1f %%), all done after %.1f s, failed: %d", r.UpCount, r.N, r.DHCP, r.Boot, r.Firmware, r.Loss*100, r.AllDone, len(r.Failed))
	if len(r.FailureKinds) > 0 {
		var kinds []string
		for k, n := range r.FailureKinds {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(kinds)
		fmt.Fprintf(&b, " (%s)", strings.Join(kinds, ", "))
	}
	fmt.Fprintf(&b, "\n  %-32s %6s %8s %8s %8s %8s\n", "stage", "nodes", "p50 s", "p95 s", "p99 s", "max s")
	for _, p := range r.Stages {
		fmt.Fprintf(&b, "  %-32s %6d %8.1f %8.1f %8.1f %8.1f\n", p.Stage, p.Nodes, p.P50, p.P95, p.P99, p.Max)
	}
	var names []string
	for n := range r.MasterCPU {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(&b, "  master CPU %.1f %% of one CPU, %.1f ms per node:", r.MasterCPUPercent, r.MasterCPUPerNodeMs)
	for _, n := range names {
		fmt.Fprintf(&b, " %s %.2f s", n, r.MasterCPU[n])
	}
	b.WriteString("\n  peak memory:")
	for _, n := range names {
		fmt.Fprintf(&b, " %s %.1f MB", n, float64(r.PeakMemory[n])/1e6)
	}
	b.WriteString("\n  served:")
	for _, p := range []string{relay.ProtoDHCP, relay.ProtoTFTP, relay.ProtoHTTP, relay.ProtoNFS, relay.ProtoRPC, relay.ProtoOther} {
		fmt.Fprintf(&b, " %s %.1f MB (%d frames)", p, float64(r.Served[p])/1e6, r.FramesServed[p])
	}
	fmt.Fprintf(&b, "\n  dropped %d frames (loss), by the lab's links %v; TCP retransmissions: nodes %d, master %d; master UDP receive errors %d; DHCP requests %.1f per node\n",
		r.Dropped, r.LinkDrops, r.NodeRetransmits, r.MasterRetransmits, r.MasterUDPErrors, r.DHCPRequestsPerNode)
	return b.String()
}

// Write puts the report into dir as load-<time>.json and load.json (the
// latest) and returns the first's path.
func (r *Report) Write(dir string) (string, error) {
	return fsutil.WriteReport(dir, "load", r.Started, r)
}
