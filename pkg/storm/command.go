package storm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/diskless/diskless/internal/textutil"
	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/deps"
	"github.com/diskless/diskless/pkg/lab"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/pipeline"
	"github.com/diskless/diskless/pkg/publish"
	"github.com/diskless/diskless/pkg/relay"
	"github.com/diskless/diskless/pkg/settings"
)

// Faults lab:storm can apply (fault=...), each once during the storm.
var Faults = map[string]string{
	"nfs":     "NFS-Ganesha killed when the first kernel has its address, back after 10 s",
	"tftp":    "tftpd-hpa killed 2 s after the start, back after 20 s",
	"http":    "nginx killed when the first node loaded its first file, back after 20 s",
	"publish": "the artifacts published again when the first node loaded its first file (and pulled by the secondary masters)",
	"master":  "every daemon of a master killed when the first kernel has its address, the master that gave it, never back: two [[master]] and stateless nodes, booted by iPXE",
}

// faultNames lists the faults, sorted, for messages.
func faultNames() string {
	var n []string
	for k := range Faults {
		n = append(n, k)
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

// UpFor are the stages at which a storm node is up: multi-user (or a
// login prompt) when it runs an image; its NFS root mounted otherwise (the
// HOWTO's root, populated by the admin, or a skeleton that
// nodes:provision made and nobody filled, which has no init: the storm
// then measures the boot up to the root, and says so before it starts).
func UpFor(inv *nodes.Inventory, nd nodes.Node) []string {
	if inv.ImageOf(nd) != "" {
		return []string{boot.MultiUser, boot.Login}
	}
	return []string{boot.Root}
}

// Args are lab:storm's options.
type Args struct {
	N       int
	Link    relay.Impairment
	Faults  []string
	Timeout time.Duration
}

// checkFaults refuses faults that undo each other: fault=master takes a
// master down for good, which an outage's restart or a publish on the
// primary would contradict.
func (a Args) checkFaults() error {
	if !a.has("master") {
		return nil
	}
	for _, f := range a.Faults {
		if f != "master" {
			return fmt.Errorf("fault=master,%s: fault=master takes a master down for good (%s would bring a daemon back, or publish on the primary it may take); storm them one at a time", f, f)
		}
	}
	return nil
}

// has says whether the fault was asked for.
func (a Args) has(fault string) bool { return slices.Contains(a.Faults, fault) }

// ParseArgs reads lab:storm's one argument, "n=8 loss=5% delay=50ms
// fault=nfs,tftp,http,publish timeout=10m", and checks every value.
func ParseArgs(words string) (Args, error) {
	var a Args
	for _, w := range strings.Fields(words) {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return a, fmt.Errorf("lab:storm %q: want key=value words: n=8 loss=5%% delay=50ms fault=nfs,http timeout=10m", w)
		}
		var err error
		switch k {
		case "n":
			if _, err := fmt.Sscan(v, &a.N); err != nil || a.N < 1 {
				return a, fmt.Errorf("n=%s: want a number of nodes, at least 1", v)
			}
		case "loss":
			if a.Link.Loss, err = ParseLoss(v); err != nil {
				return a, err
			}
		case "delay":
			if a.Link.Delay, err = time.ParseDuration(v); err != nil {
				return a, fmt.Errorf("delay=%s: want a duration like 50ms", v)
			}
		case "timeout":
			if a.Timeout, err = time.ParseDuration(v); err != nil || a.Timeout <= 0 {
				return a, fmt.Errorf("timeout=%s: want a duration like 10m", v)
			}
		case "fault":
			for _, f := range strings.Split(v, ",") {
				if Faults[f] == "" {
					return a, fmt.Errorf("fault=%s: want one of %s", f, faultNames())
				}
				a.Faults = append(a.Faults, f)
			}
		default:
			return a, fmt.Errorf("lab:storm: unknown %s=: want n, loss, delay, fault or timeout", k)
		}
	}
	if a.N == 0 {
		return a, errors.New("lab:storm: say how many nodes: n=8")
	}
	if err := a.checkFaults(); err != nil {
		return a, err
	}
	return a, a.Link.Validate()
}

// Target is lab:storm: it parses the argument, installs what the lab
// needs, runs Command with progress lines (live on a terminal, log lines
// otherwise), and prints the summary and the report's path to out.
func Target(ctx context.Context, s *settings.Settings, words string, log *slog.Logger, out, terminal io.Writer) error {
	a, err := ParseArgs(words)
	if err != nil {
		return err
	}
	if err := deps.Ensure(ctx, log, append(deps.Lab(), deps.NodeOS()...)); err != nil {
		return err
	}
	o := CommandOptions{Settings: s, Args: a, Log: log, Progress: textutil.Progress(terminal, log, "storm")}
	r, path, err := Command(ctx, o)
	if r != nil {
		fmt.Fprint(out, r.Summary())
		fmt.Fprintln(out, "report:", path)
	}
	return err
}

// CommandOptions for Command.
type CommandOptions struct {
	Settings *settings.Settings
	Args
	Log *slog.Logger
	// Progress, when set, gets a line each time a node reaches a stage.
	Progress func(string)
	// Dir receives the lab's files and the report (default
	// Settings.Artifacts/lab).
	Dir string
}

// Command is lab:storm after its argument is parsed: it grows the
// inventory to N BIOS x86-64 nodes (Grow), provisions their roots in
// DISKLESS_ROOT, publishes their per-node files, brings a lab up with
// them, storms with the faults asked for, writes the report under the
// lab's directory and takes the lab down. The error names every node
// that did not come up.
func Command(ctx context.Context, o CommandOptions) (*Report, string, error) {
	s := o.Settings
	if s.Inventory == nil {
		return nil, "", fmt.Errorf("node inventory %s does not exist: add a node first (nodes:add ...)", s.NodesFile)
	}
	for _, f := range o.Faults {
		if Faults[f] == "" {
			return nil, "", fmt.Errorf("fault=%s: want one of %s", f, faultNames())
		}
	}
	if err := o.Link.Validate(); err != nil {
		return nil, "", err
	}
	if o.has("master") && len(s.Inventory.Masters) < 2 {
		return nil, "", fmt.Errorf("fault=master: %s names one master: add a second [[master]] (the lab fills it by publish:pull)", s.NodesFile)
	}
	if err := o.checkFaults(); err != nil {
		return nil, "", err
	}
	if _, err := publish.Current(s.Root); err != nil {
		return nil, "", fmt.Errorf("%w: build:all arch=x86_64 first", err)
	}
	if lab.Running() {
		return nil, "", fmt.Errorf("the lab is up (namespace %s): lab:down first, a storm brings up its own with the storm's nodes", lab.NetNS)
	}
	var boots []string
	if o.has("master") {
		// PXELINUX, its server lost midway, waits at its boot: prompt
		// for good; iPXE's script gives up and the firmware asks DHCP again
		boots = []string{nodes.BootIPXE}
	}
	inv, nds, err := Grow(s.Inventory, o.N, boots...)
	if err != nil {
		return nil, "", err
	}
	if o.has("master") {
		for _, nd := range nds {
			if !inv.Stateless(nd) {
				return nil, "", fmt.Errorf("fault=master: node %s is not stateless (mode = \"stateless\" in %s): its NFS root lives on its home master and is lost with it", nd.Name, s.NodesFile)
			}
		}
	}
	if len(inv.Masters) > 1 && len(pipeline.PublicKeys(s)) == 0 {
		return nil, "", fmt.Errorf("%s names %d masters: the lab's secondaries pull the primary's signed set, which needs SIGNING_KEY (or TRUSTED_KEY)", s.NodesFile, len(inv.Masters))
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := o.Dir
	if dir == "" {
		dir = filepath.Join(s.Artifacts, "lab")
	}
	if _, err = inv.Provision(s.Root); err != nil {
		return nil, "", err
	}
	log.Info("storm nodes provisioned", "nodes", len(nds), "root", s.Root)
	var bare []string
	for _, nd := range nds {
		if inv.ImageOf(nd) != "" {
			continue
		}
		if _, err := os.Lstat(filepath.Join(s.Root, nd.IP, "sbin", "init")); err != nil {
			bare = append(bare, nd.Name)
		}
	}
	if len(bare) > 0 {
		log.Warn("these nodes' roots have no /sbin/init (no image in nodes.toml, nothing copied in): the storm times them up to their NFS root", "nodes", strings.Join(bare, " "))
	}
	labOpts := lab.Options{Dir: dir, Root: s.Root, Inventory: inv, DHCP: s.LabDHCP, CacheDir: s.CacheDir, Log: log}
	pull := pipeline.ReplicaFill(s, log)
	labOpts.Fill = pull
	if err := lab.Preflight(labOpts); err != nil {
		return nil, "", err
	}
	// the nodes boot what this inventory says, whatever an earlier render
	// or publish left: its per-node files, published (and published again
	// by the publish fault) from it
	grown := *s
	grown.Inventory = inv
	if ok, m, err := pipeline.PublishNodes(ctx, &grown, log); err != nil {
		return nil, "", err
	} else if ok {
		log.Info("published the storm inventory's per-node files", "generation", m.Generation)
	}
	l, err := lab.Up(ctx, labOpts)
	if err != nil {
		return nil, "", err
	}
	defer l.Down()
	progress := func(node string, st boot.Reached) {}
	if o.Progress != nil {
		progress = func(node string, st boot.Reached) { o.Progress(fmt.Sprintf("%6.1f s  %-10s %s", st.At, node, st.Name)) }
	}
	r, err := Run(ctx, Options{Lab: l, Nodes: nds, Link: o.Link, Timeout: o.Timeout, LogDir: filepath.Join(dir, "storm-consoles"),
		Events: FaultEvents(l, o.Faults, func(ctx context.Context) error {
			if _, err := pipeline.Publish(ctx, &grown, log); err != nil {
				return err
			}
			// what each secondary's timer does next (publish:pull)
			return l.Refill(ctx, pull)
		}),
		Accel: s.QEMUAccel, Log: log, Progress: progress,
		UpFor: func(nd nodes.Node) []string { return UpFor(inv, nd) }})
	if err != nil {
		return nil, "", err
	}
	p, werr := r.Write(dir)
	return r, p, errors.Join(werr, r.Err())
}

// FaultEvents are the storm's events for the faults named (Faults): when
// each happens, and what it does to the lab's daemons; publish is the
// publish fault's action.
func FaultEvents(l *lab.Lab, faults []string, publish func(context.Context) error) []Event {
	var mu sync.Mutex
	out := func(daemon string, down time.Duration) func(context.Context) error {
		return Outage(l, daemon, down, &mu)
	}
	var events []Event
	for _, f := range faults {
		switch f {
		case "nfs":
			events = append(events, Event{Name: Faults[f], After: boot.IPConfig, Do: out(lab.NFS, 10*time.Second)})
		case "tftp":
			events = append(events, Event{Name: Faults[f], At: 2 * time.Second, Do: out(lab.TFTP, 20*time.Second)})
		case "http":
			events = append(events, Event{Name: Faults[f], After: boot.FirstFile, Do: out(lab.HTTP, 20*time.Second)})
		case "publish":
			events = append(events, Event{Name: Faults[f], After: boot.FirstFile, Do: publish})
		case "master":
			// nodes still in iPXE retry through their firmware; that
			// kernel's initramfs (and any whose lease came from the
			// same master) fetches its image from the next master
			// (diskless.masters=)
			events = append(events, Event{Name: Faults[f], Line: BootServerLine, DoLine: func(_ context.Context, line string) (string, error) {
				return KillBootServer(l, line)
			}})
		}
	}
	return events
}

// BootServerLine starts the kernel's line naming the server whose DHCP
// gave it its address (IP-Config: "bootserver=192.168.1.2, rootserver=…").
const BootServerLine = "bootserver="

// KillBootServer kills every daemon of the lab's master named on the
// kernel's bootserver= line, and says which.
func KillBootServer(l *lab.Lab, line string) (string, error) {
	_, rest, _ := strings.Cut(line, BootServerLine)
	addr, _, _ := strings.Cut(rest, ",")
	addr = strings.TrimSpace(addr)
	for _, m := range l.Masters() {
		if m.Address == addr {
			return "killed master " + m.Name + " (" + addr + ")", l.KillMaster(m.Name)
		}
	}
	return "", fmt.Errorf("the first kernel's address came from %q, no master of the lab (%q)", addr, line)
}

// Outage is an event's action: kill a daemon of the lab, wait down, start
// it again. mu keeps two outages of one storm from overlapping.
func Outage(l *lab.Lab, daemon string, down time.Duration, mu *sync.Mutex) func(context.Context) error {
	return func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if err := l.Kill(daemon); err != nil {
			return err
		}
		time.Sleep(down)
		return l.Restart(ctx, daemon)
	}
}

// ParseLoss reads loss=5% or loss=0.05.
func ParseLoss(v string) (float64, error) {
	var f float64
	if p, ok := strings.CutSuffix(v, "%"); ok {
		if _, err := fmt.Sscan(p, &f); err != nil {
			return 0, fmt.Errorf("loss=%s: want a percentage like 5%%", v)
		}
		return f / 100, nil
	}
	if _, err := fmt.Sscan(v, &f); err != nil {
		return 0, fmt.Errorf("loss=%s: want a percentage like 5%% or a fraction like 0.05", v)
	}
	if f >= 1 {
		return 0, fmt.Errorf("loss=%s: a fraction below 1, or a percentage like 5%%", v)
	}
	return f, nil
}
