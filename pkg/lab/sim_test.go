package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskless/diskless/pkg/relay"
)

// The counters are read by the rules' comments, each way, in Ethernet
// bytes; the dropped frames are summed over both ways.
func TestParseCounters(t *testing.T) {
	doc := `{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
 {"table": {"family": "bridge", "name": "diskless_sim", "handle": 1}},
 {"chain": {"family": "bridge", "table": "diskless_sim", "name": "to_nodes", "handle": 1, "type": "filter", "hook": "output", "prio": 0, "policy": "accept"}},
 {"rule": {"family": "bridge", "table": "diskless_sim", "chain": "to_nodes", "handle": 2, "comment": "dropped", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "dlsim"}}, {"counter": {"packets": 3, "bytes": 900}}, {"drop": null}]}},
 {"rule": {"family": "bridge", "table": "diskless_sim", "chain": "to_nodes", "handle": 3, "comment": "dhcp", "expr": [{"counter": {"packets": 2, "bytes": 656}}, {"accept": null}]}},
 {"rule": {"family": "bridge", "table": "diskless_sim", "chain": "to_nodes", "handle": 4, "comment": "tftp", "expr": [{"counter": {"packets": 10, "bytes": 14600}}, {"accept": null}]}},
 {"rule": {"family": "bridge", "table": "diskless_sim", "chain": "from_nodes", "handle": 5, "comment": "dropped", "expr": [{"counter": {"packets": 1, "bytes": 60}}, {"drop": null}]}},
 {"rule": {"family": "bridge", "table": "diskless_sim", "chain": "from_nodes", "handle": 6, "comment": "tftp", "expr": [{"counter": {"packets": 10, "bytes": 320}}, {"accept": null}]}}]}`
	c, err := parseCounters([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.ToNodes[relay.ProtoDHCP] != 656+2*14 || c.ToNodes[relay.ProtoTFTP] != 14600+10*14 || c.FromNodes[relay.ProtoTFTP] != 320+10*14 {
		t.Errorf("bytes: to %v from %v", c.ToNodes, c.FromNodes)
	}
	if c.FramesToNodes[relay.ProtoTFTP] != 10 || c.Dropped != 4 {
		t.Errorf("frames %v, dropped %d", c.FramesToNodes, c.Dropped)
	}
	if _, err := parseCounters([]byte("nft: no such table")); err == nil {
		t.Error("not JSON, no error")
	}
}

// The rules count every protocol each way and drop only with a loss.
func TestSimRules(t *testing.T) {
	none := simRules("dlsim", 0)
	if strings.Contains(none, "drop") {
		t.Errorf("no loss, yet a drop rule:\n%s", none)
	}
	lossy := simRules("dlsim", 0.01)
	if n := strings.Count(lossy, "numgen random mod 100000 < 1000 counter drop"); n != 2 {
		t.Errorf("1 %% loss: %d drop rules, want one each way:\n%s", n, lossy)
	}
	for _, p := range []string{relay.ProtoDHCP, relay.ProtoTFTP, relay.ProtoHTTP, relay.ProtoNFS, relay.ProtoRPC, relay.ProtoOther} {
		if n := strings.Count(lossy, `comment "`+p+`"`); n < 2 {
			t.Errorf("%s counted %d times", p, n)
		}
	}
}

// Each node's frames go to a chain of its own by MAC, each way.
func TestNodeRules(t *testing.T) {
	r := nodeRules([]string{"52:54:00:AA:BB:01", "52:54:00:aa:bb:02"})
	for _, want := range []string{
		"ether saddr 52:54:00:aa:bb:01 jump from_0", "ether daddr 52:54:00:aa:bb:02 jump to_1",
		`udp dport { 67, 68 } counter accept comment "52:54:00:aa:bb:01 from dhcp"`,
		`tcp sport 2049 counter accept comment "52:54:00:aa:bb:02 to nfs"`,
		"type filter hook input priority -10", "type filter hook output priority -10",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("no %q in\n%s", want, r)
		}
	}
}

func TestParseLinkDrops(t *testing.T) {
	drops, err := parseLinkDrops([]byte(`[{"ifname":"lo","stats64":{"rx":{"dropped":0},"tx":{"dropped":0}}},{"ifname":"dlsim","stats64":{"rx":{"dropped":3},"tx":{"dropped":4}}}]`))
	if err != nil || len(drops) != 1 || drops["dlsim"] != 7 {
		t.Errorf("%v %v", drops, err)
	}
}

func TestRaiseLimitsTakesOnlyThem(t *testing.T) {
	restore, err := RaiseLimits(map[string]int{"net.ipv4.ip_forward": 1})
	if err == nil || !strings.Contains(err.Error(), "net.ipv4.ip_forward: not a neighbour table limit") {
		t.Errorf("got %v", err)
	}
	if err := restore(); err != nil {
		t.Error(err)
	}
}

// A daemon started through inCgroup is in its groups before it runs: the
// shell writes its own PID, then execs (the same PID).
func TestInCgroup(t *testing.T) {
	dir := t.TempDir()
	cpu, mem := filepath.Join(dir, "cpu.procs"), filepath.Join(dir, "mem.procs")
	for _, m := range []string{mem, ""} {
		argv := inCgroup(cpu, m, []string{"sh", "-c", "echo $$"})
		out, err := exec.Command(argv[0], argv[1:]...).Output()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(cpu)
		if strings.TrimSpace(string(got)) != strings.TrimSpace(string(out)) {
			t.Errorf("joined as %q, ran as %q", got, out)
		}
		if m != "" {
			if got, _ := os.ReadFile(m); strings.TrimSpace(string(got)) != strings.TrimSpace(string(out)) {
				t.Errorf("memory: joined as %q, ran as %q", got, out)
			}
		}
	}
}
