package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/diskless/diskless/pkg/relay"
)

// The simulated nodes' port on the bridge (SimPort): SimPortBridge is in
// the bridge, SimParent its veth peer, the parent of the nodes' macvlans.
const (
	SimPortBridge = "dlsim"
	SimParent     = "dlsimp"
	nftTable      = "diskless_sim"
)

// SimPort puts a port for simulated nodes (pkg/simnode) on the bridge: a
// veth pair whose far end, SimParent, carries their macvlans. The frames
// that cross it are counted by protocol each way and, with loss, dropped
// at random that often each way, by nftables rules on the bridge (this
// kernel has no netem; nftables' numgen does the same), as loss on the
// master's interface would.
func (l *Lab) SimPort(loss float64) error {
	if err := (relay.Impairment{Loss: loss}).Validate(); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"link", "add", SimPortBridge, "type", "veth", "peer", "name", SimParent},
		{"link", "set", SimPortBridge, "master", Bridge},
		{"link", "set", SimPortBridge, "up"},
		{"link", "set", SimParent, "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", NetNS}, args...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	p, err := l.write("nft-sim.conf", simRules(SimPortBridge, loss))
	if err != nil {
		return err
	}
	return nftIn(p)
}

// simRules are the bridge's counting and loss rules for port: to the
// nodes (the output hook: what the master sends, its own frames and those
// of its raw sockets, DHCP's) by the master's source port, from them (the
// input hook) by its destination port.
func simRules(port string, loss float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table bridge %s {\n", nftTable)
	for _, dir := range []struct{ chain, hook, match, side string }{{"to_nodes", "output", "oifname", "sport"}, {"from_nodes", "input", "iifname", "dport"}} {
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype filter hook %s priority 0; policy accept;\n", dir.chain, dir.hook)
		if loss > 0 {
			fmt.Fprintf(&b, "\t\t%s %q numgen random mod 100000 < %d counter drop comment \"dropped\"\n", dir.match, port, int(loss*100000))
		}
		protoRules(&b, fmt.Sprintf("%s %q ", dir.match, port), dir.side, "")
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// protoRules writes a rule per protocol, first match wins, as the relay
// classifies a frame (pkg/relay): by the master's port, side being sport
// for frames to the nodes and dport for frames from them; each counts
// and accepts, with its protocol, after prefix, as its comment.
func protoRules(b *strings.Builder, match, side, prefix string) {
	for _, r := range []struct{ match, proto string }{
		{"udp " + side + " { 67, 68 }", relay.ProtoDHCP},
		{"tcp " + side + " 80", relay.ProtoHTTP},
		{"tcp " + side + " 2049", relay.ProtoNFS},
		{"tcp " + side + " { 111, 20048, 875 }", relay.ProtoRPC},
		{"udp " + side + " { 111, 20048, 875 }", relay.ProtoRPC},
		{"meta l4proto tcp", relay.ProtoRPC},
		{"meta l4proto udp", relay.ProtoTFTP}, // tftpd's transfers: ephemeral ports
		{"", relay.ProtoOther},
	} {
		fmt.Fprintf(b, "\t\t%s%s counter accept comment %q\n", match, r.match, prefix+r.proto)
	}
}

// nodesTable counts each node's own frames by protocol (CountNodes).
const nodesTable = "diskless_nodes"

// nodeRules count, for each MAC, the frames the master sends it (the
// output hook, by destination MAC; broadcasts are no node's) and those it
// sends the master (the input hook, by source MAC), by protocol.
func nodeRules(macs []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table bridge %s {\n", nodesTable)
	for i, mac := range macs {
		for _, dir := range []struct{ name, side string }{{"to", "sport"}, {"from", "dport"}} {
			fmt.Fprintf(&b, "\tchain %s_%d {\n", dir.name, i)
			protoRules(&b, "", dir.side, strings.ToLower(mac)+" "+dir.name+" ")
			b.WriteString("\t}\n")
		}
	}
	for _, dir := range []struct{ chain, hook, field, name string }{{"out", "output", "daddr", "to"}, {"in", "input", "saddr", "from"}} {
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype filter hook %s priority -10; policy accept;\n", dir.chain, dir.hook)
		for i, mac := range macs {
			fmt.Fprintf(&b, "\t\tether %s %s jump %s_%d\n", dir.field, strings.ToLower(mac), dir.name, i)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// NodeTraffic is what one node and the master sent each other: Ethernet
// bytes and frames by protocol.
type NodeTraffic struct {
	ToNode         map[string]int64 `json:"to_node_bytes"`
	FromNode       map[string]int64 `json:"from_node_bytes"`
	FramesToNode   map[string]int64 `json:"frames_to_node"`
	FramesFromNode map[string]int64 `json:"frames_from_node"`
}

// CountNodes counts, from now on, what each MAC and the master send each
// other (on any port of the bridge: QEMU nodes' taps and simulated nodes
// alike), for NodeCounters. A few dozen nodes: each adds rules every
// frame passes.
func (l *Lab) CountNodes(macs []string) error {
	p, err := l.write("nft-nodes.conf", nodeRules(macs))
	if err != nil {
		return err
	}
	return nftIn(p)
}

// NodeCounters reads CountNodes' counters, by MAC (lower case).
func (l *Lab) NodeCounters() (map[string]*NodeTraffic, error) {
	data, err := nftList(nodesTable)
	if err != nil {
		return nil, err
	}
	rules, err := parseRules(data)
	if err != nil {
		return nil, err
	}
	out := map[string]*NodeTraffic{}
	for _, r := range rules {
		f := strings.Fields(r.comment)
		if len(f) != 3 {
			continue
		}
		t := out[f[0]]
		if t == nil {
			t = &NodeTraffic{ToNode: map[string]int64{}, FromNode: map[string]int64{}, FramesToNode: map[string]int64{}, FramesFromNode: map[string]int64{}}
			out[f[0]] = t
		}
		bytes := r.bytes + ethernetHeader*r.packets
		if f[1] == "to" {
			t.ToNode[f[2]] += bytes
			t.FramesToNode[f[2]] += r.packets
		} else {
			t.FromNode[f[2]] += bytes
			t.FramesFromNode[f[2]] += r.packets
		}
	}
	return out, nil
}

// SimCounters are what crossed the simulated nodes' port: Ethernet bytes
// and frames by protocol each way, and the frames the loss dropped.
// Frames are as the bridge saw them: the master's TCP hands the veth
// segments of up to 64 KB (GSO) that a NIC would cut into frames.
type SimCounters struct {
	ToNodes, FromNodes             map[string]int64
	FramesToNodes, FramesFromNodes map[string]int64
	Dropped                        int64
}

// LinkDrops are the frames each link of the lab's namespace dropped
// (received and sent: a full queue, no memory), by link.
func (l *Lab) LinkDrops() (map[string]int64, error) {
	out, err := exec.Command("ip", "-n", NetNS, "-s", "-j", "link", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("ip -s link in %s: %w", NetNS, err)
	}
	return parseLinkDrops(out)
}

func parseLinkDrops(data []byte) (map[string]int64, error) {
	var links []struct {
		Name  string `json:"ifname"`
		Stats struct {
			RX struct{ Dropped int64 } `json:"rx"`
			TX struct{ Dropped int64 } `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(data, &links); err != nil {
		return nil, fmt.Errorf("ip's JSON: %w", err)
	}
	drops := map[string]int64{}
	for _, l := range links {
		if n := l.Stats.RX.Dropped + l.Stats.TX.Dropped; n > 0 {
			drops[l.Name] = n
		}
	}
	return drops, nil
}

// ethernetHeader is what a bridge's nftables counters leave out of a
// frame (they count from the IP header); the relay and the veth count it.
const ethernetHeader = 14

// Counters reads the port's counters (nft's JSON), in Ethernet bytes as
// the relay counts a QEMU node's.
func (l *Lab) Counters() (*SimCounters, error) {
	data, err := nftList(nftTable)
	if err != nil {
		return nil, err
	}
	return parseCounters(data)
}

func parseCounters(data []byte) (*SimCounters, error) {
	rules, err := parseRules(data)
	if err != nil {
		return nil, err
	}
	c := &SimCounters{ToNodes: map[string]int64{}, FromNodes: map[string]int64{}, FramesToNodes: map[string]int64{}, FramesFromNodes: map[string]int64{}}
	for _, r := range rules {
		bytes := r.bytes + ethernetHeader*r.packets
		switch {
		case r.comment == "dropped":
			c.Dropped += r.packets
		case r.chain == "to_nodes":
			c.ToNodes[r.comment] += bytes
			c.FramesToNodes[r.comment] += r.packets
		case r.chain == "from_nodes":
			c.FromNodes[r.comment] += bytes
			c.FramesFromNodes[r.comment] += r.packets
		}
	}
	return c, nil
}

// counted is a rule's counter.
type counted struct {
	chain, comment string
	packets, bytes int64
}

// parseRules reads the counters of nft -j list table's rules.
func parseRules(data []byte) ([]counted, error) {
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Chain   string            `json:"chain"`
				Comment string            `json:"comment"`
				Expr    []json.RawMessage `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("nft's JSON: %w", err)
	}
	var out []counted
	for _, item := range doc.Nftables {
		r := item.Rule
		if r == nil {
			continue
		}
		for _, e := range r.Expr {
			var ex struct {
				Counter *struct{ Packets, Bytes int64 } `json:"counter"`
			}
			if json.Unmarshal(e, &ex) == nil && ex.Counter != nil {
				out = append(out, counted{r.Chain, r.Comment, ex.Counter.Packets, ex.Counter.Bytes})
			}
		}
	}
	return out, nil
}

// nftIn loads a ruleset file in the lab's namespace.
func nftIn(path string) error {
	nft, err := exec.LookPath("nft")
	if err != nil {
		return fmt.Errorf("nft not found: apt-get install nftables")
	}
	if out, err := exec.Command("ip", "netns", "exec", NetNS, nft, "-f", path).CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f %s: %v: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// nftList is a bridge table of the lab's namespace in nft's JSON.
func nftList(table string) ([]byte, error) {
	nft, err := exec.LookPath("nft")
	if err != nil {
		return nil, fmt.Errorf("nft not found: apt-get install nftables")
	}
	out, err := exec.Command("ip", "netns", "exec", NetNS, nft, "-j", "list", "table", "bridge", table).Output()
	if err != nil {
		return nil, fmt.Errorf("nft list table bridge %s: %w", table, err)
	}
	return out, nil
}

// RaiseLimits sets the rendered sysctl.d/60-diskless.conf's limits
// (nodes.Inventory.Sysctls: the neighbour tables' gc_thresh1..3, the
// sockets' default receive buffer) where the host's are lower, and
// returns what puts the host's back. Linux has them once for every
// namespace, set only from the first (a namespace of its own has no
// gc_thresh files and a read-only rmem_default): the lab's master and the
// simulated nodes share the host's neighbour table, each node adding an
// entry of its own, so the host is what a load of many nodes needs
// raised.
func RaiseLimits(want map[string]int) (restore func() error, err error) {
	old := map[string][]byte{}
	restore = func() error {
		var errs []error
		for k, v := range old {
			if err := os.WriteFile(sysctlPath(k), v, 0o644); err != nil {
				errs = append(errs, fmt.Errorf("restoring %s: %w", k, err))
			}
		}
		return errors.Join(errs...)
	}
	keys := slices.Sorted(maps.Keys(want))
	slices.Reverse(keys) // gc_thresh3, 2, 1 and rmem_max, rmem_default: the ceiling first

	for _, k := range keys {
		if !(strings.Contains(k, ".neigh.") && strings.Contains(k, "gc_thresh")) && k != "net.core.rmem_default" && k != "net.core.rmem_max" {
			return restore, fmt.Errorf("%s: not a neighbour table limit or receive buffer", k)
		}
		cur, err := os.ReadFile(sysctlPath(k))
		if err != nil {
			return restore, fmt.Errorf("sysctl %s: %w", k, err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(cur)))
		if err != nil {
			return restore, fmt.Errorf("sysctl %s = %q: %w", k, cur, err)
		}
		if n >= want[k] {
			continue
		}
		if err := os.WriteFile(sysctlPath(k), []byte(strconv.Itoa(want[k])), 0o644); err != nil {
			return restore, fmt.Errorf("sysctl %s = %d: %w", k, want[k], err)
		}
		old[k] = cur
	}
	return restore, nil
}

// sysctlPath is a key's file under /proc/sys.
func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}
