// Package load is the scenario behind lab:load: hundreds to thousands of
// simulated nodes (pkg/simnode) boot at once, or on a ramp, against the
// master's real daemons in the lab (pkg/lab) with the configurations
// nodes:render writes for an inventory of that many nodes, and every
// stage of every node is timed, every failure counted by kind, and the
// master's CPU, memory and traffic measured.
package load

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/lab"
	"github.com/diskless/diskless/pkg/nfstrace"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/publish"
	"github.com/diskless/diskless/pkg/simnode"
	"golang.org/x/sys/unix"
)

// Subnet is the simulated nodes' network: room for 65,000 nodes, the
// master at .0.1.
const (
	Subnet = "10.77.0.0/16"
	Master = "10.77.0.1"
)

// Layout is where an inventory's nodes find their trees: the roots'
// directory, the image every node runs ("" for none), /home and the
// shared read-only trees ("<export>:<mount point>").
type Layout struct {
	Root, Image, Home string
	Shared            []string
}

// Inventory is an inventory of n nodes booting by method, on Subnet,
// laid out as l says: addresses from 10.77.1.1, MACs 52:54:01:xx:xx:xx,
// names load00001....
func Inventory(n int, method string, l Layout) (*nodes.Inventory, error) {
	if n < 1 || n > 60000 {
		return nil, fmt.Errorf("n=%d: want 1 to 60,000 nodes", n)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[network]\nmaster = %q\nsubnet = %q\nroot = %q\nnfs_opts = \"vers=3,tcp\"\n", Master, Subnet, l.Root)
	if l.Image != "" {
		fmt.Fprintf(&b, "image = %q\n", l.Image)
	}
	if l.Home != "" {
		fmt.Fprintf(&b, "home = %q\n", l.Home)
	}
	var shared []string
	for _, s := range l.Shared {
		shared = append(shared, strconv.Quote(s))
	}
	fmt.Fprintf(&b, "shared_ro = [%s]\n", strings.Join(shared, ", "))
	for i := 1; i <= n; i++ {
		ip := net.IPv4(10, 77, byte(1+(i-1)/250), byte(1+(i-1)%250))
		fmt.Fprintf(&b, "\n[[node]]\nname = \"load%05d\"\nmac = \"52:54:01:%02x:%02x:%02x\"\nip = %q\narch = \"x86_64\"\nboot = %q\n", i, byte(i>>16), byte(i>>8), byte(i), ip, method)
	}
	return nodes.Parse([]byte(b.String()), "load.toml")
}

// Options for a run.
type Options struct {
	// Lab is a lab already up with Inventory's nodes and SimPort.
	Lab       *lab.Lab
	Inventory *nodes.Inventory
	// Root is the published tree the lab serves (SHA256SUMS is read from
	// it).
	Root     string
	Firmware simnode.Firmware
	Trace    *nfstrace.Trace
	// Ramp is nodes started per second; 0: all at once.
	Ramp    float64
	Timeout time.Duration
	Log     *slog.Logger
	// Progress, when set, gets a line every few seconds.
	Progress func(string)
}

// Run boots every node of o.Inventory as a simulated node and returns the
// report; the error is about the run itself (failed nodes are in the
// report: Report.Err).
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	sums, err := liveSums(o.Root)
	if err != nil {
		return nil, err
	}
	_, subnet, _ := net.ParseCIDR(o.Inventory.Network.Subnet)
	prefix, _ := subnet.Mask.Size()
	simNet, err := simnode.NewNet(lab.NetNSPath(), lab.SimParent, prefix)
	if err != nil {
		return nil, err
	}
	defer simNet.Close()
	nds := o.Inventory.Sorted()
	var methods []string
	for _, nd := range nds {
		if !slices.Contains(methods, nd.Boot) {
			methods = append(methods, nd.Boot)
		}
	}
	r := &Report{Started: time.Now().UTC(), N: len(nds), DHCP: o.Lab.State.DHCP, Boot: strings.Join(methods, "+"), Firmware: string(o.Firmware), Ramp: o.Ramp, Trace: o.Trace.Source, Failed: []string{}}
	var mu sync.Mutex
	reached := map[string]int{}
	cfg := &simnode.Config{Net: simNet, Master: o.Inventory.Network.Master, Firmware: o.Firmware, Sums: sums, Trace: o.Trace, Timeout: o.Timeout,
		Progress: func(node string, st boot.Reached) {
			mu.Lock()
			reached[st.Name]++
			mu.Unlock()
		}}
	// every node gets its NIC first (its namespace and macvlan, the
	// simulator's work), then all power on at once or by the ramp
	powerOn := make(chan struct{})
	var prepared sync.WaitGroup
	prepared.Add(len(nds))
	cfg.PowerOn, cfg.Prepared = powerOn, prepared.Done
	// each node holds a thread of its own until it ends, and a dozen
	// descriptors at most (netlink, DHCP, TFTP, HTTP, NFS, rpcbind):
	// the simulator's own limits, not the master's
	debug.SetMaxThreads(max(10000, 2*len(nds)+1000))
	if have, want := raiseFiles(uint64(4*len(nds) + 1024)); have < want {
		o.Log.Warn("the simulator may run out of descriptors: a node holds up to 4 at once (its TFTP, HTTP, NFS and rpcbind sockets); raise the hard limit (ulimit -Hn) or simulate fewer nodes", "nodes", len(nds), "want", want, "limit", have)
	}
	results := make([]simnode.Result, len(nds))
	var wg sync.WaitGroup
	t0 := time.Now()
	for i, nd := range nds {
		var after time.Duration
		if o.Ramp > 0 {
			after = time.Duration(float64(i) / o.Ramp * float64(time.Second))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = simnode.Boot(ctx, cfg, simnode.Node{Name: nd.Name, MAC: nd.MAC, IP: nd.IP, Arch: nd.Arch, Boot: nd.Boot, After: after})
		}()
	}
	prepared.Wait()
	r.SetupSeconds = time.Since(t0).Seconds()
	o.Log.Info("simulated nodes ready, powering on", "nodes", len(nds), "seconds", fmt.Sprintf("%.1f", r.SetupSeconds))
	cpu0 := o.Lab.CPU()
	start := time.Now()
	close(powerOn)
	done := make(chan struct{})
	if o.Progress != nil {
		go func() {
			t := time.NewTicker(5 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
				}
				mu.Lock()
				line := fmt.Sprintf("%6.1f s  offered %d, first file %d, fetched %d, root %d, up %d of %d", time.Since(start).Seconds(),
					reached[boot.Lease], reached[boot.FirstFile], reached[boot.Fetched], reached[boot.Root], reached[simnode.Up], len(nds))
				mu.Unlock()
				o.Progress(line)
			}
		}()
	}
	wg.Wait()
	close(done)
	r.Duration = time.Since(start).Seconds()
	cpu1 := o.Lab.CPU()
	r.tally(o, results, cpu0, cpu1)
	return r, nil
}

// liveSums is the live generation's SHA256SUMS, by name.
func liveSums(root string) (map[string]string, error) {
	sums, err := publish.ReadSums(filepath.Join(root, publish.SumsName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: publish into %s first", err, root)
	}
	return sums, err
}

// errNoTrace: a run needs the NFS traffic to play.
var errNoTrace = errors.New("no NFS trace: record one with lab:trace, or give trace=<file>")

// raiseFiles lifts this process's open-file limit toward want, as far
// as the hard limit lets it (raising that needs CAP_SYS_RESOURCE, which
// root in a container may lack), and returns the limit it has.
func raiseFiles(want uint64) (have, wanted uint64) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, want
	}
	if lim.Cur >= want {
		return lim.Cur, want
	}
	if lim.Max < want {
		up := lim
		up.Cur, up.Max = want, want
		if unix.Setrlimit(unix.RLIMIT_NOFILE, &up) == nil {
			return want, want
		}
	}
	lim.Cur = min(want, lim.Max)
	unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	return lim.Cur, want
}
