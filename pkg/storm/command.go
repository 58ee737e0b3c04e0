package storm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/diskless/diskless/pkg/lab"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/pipeline"
	"github.com/diskless/diskless/pkg/publish"
	"github.com/diskless/diskless/pkg/settings"
)

// Faults lab:storm can apply (fault=...), each once during the storm.
var Faults = map[string]string{
	"nfs":     "NFS-Ganesha killed when the first kernel has its address, back after 10 s",
	"tftp":    "tftpd-hpa killed 2 s after the start, back after 20 s",
	"http":    "nginx killed when the first node loaded its first file, back after 20 s",
	"publish": "the artifacts published again when the first node loaded its first file",
}

// UpLines: a node running an image is up at multi-user; one without (the
// HOWTO's root, populated by the admin) when the initramfs mounted its root
// and hands over to its init, or says the root has none (a skeleton that
// nodes:provision made and nobody filled: the storm then measures the
// boot up to the root, and says so before it starts).
var (
	// systemd colours the unit's name on the console ("Reached target
	// \x1b[0;1;39mmulti-user.target\x1b[0m - Multi-User System"); a getty's
	// prompt can come first
	UpImage    = []string{"- Multi-User System", "Reached target Multi-User System", " login: "}
	UpSkeleton = []string{"mounted: switching to", "the root is mounted but has no init"}
)

// CommandOptions for Command.
type CommandOptions struct {
	Settings *settings.Settings
	N        int
	Link     lab.Impairment
	Faults   []string
	Timeout  time.Duration
	Log      *slog.Logger
	// Progress, when set, gets a line each time a node reaches a stage.
	Progress func(string)
}

// Command is lab:storm: it grows the inventory to N BIOS x86-64 nodes
// (Grow), provisions their roots in DISKLESS_ROOT, brings a lab up with
// them, storms, writes the report under artifacts/lab/ and takes the lab
// down. The error names every node that did not come up.
func Command(ctx context.Context, o CommandOptions) (*Report, string, error) {
	s := o.Settings
	if s.Inventory == nil {
		return nil, "", fmt.Errorf("node inventory %s does not exist: add a node first (nodes:add ...)", s.NodesFile)
	}
	for _, f := range o.Faults {
		if Faults[f] == "" {
			return nil, "", fmt.Errorf("fault=%s: want one of nfs, tftp, http, publish", f)
		}
	}
	if err := o.Link.Validate(); err != nil {
		return nil, "", err
	}
	if _, err := publish.Current(s.Root); err != nil {
		return nil, "", fmt.Errorf("%w: build:all arch=x86_64 first", err)
	}
	if lab.Running() {
		return nil, "", fmt.Errorf("the lab is up (namespace %s): lab:down first, a storm brings up its own with the storm's nodes", lab.NetNS)
	}
	inv, nds, err := Grow(s.Inventory, o.N)
	if err != nil {
		return nil, "", err
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	_, err = inv.Provision(s.Root)
	if err != nil {
		return nil, "", err
	}
	log.Info("storm nodes provisioned", "nodes", len(nds), "root", s.Root)
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
	dir := filepath.Join(s.Artifacts, "lab")
	l, err := lab.Up(ctx, lab.Options{Dir: dir, Root: s.Root, Inventory: inv, DHCP: s.LabDHCP, CacheDir: s.CacheDir, Log: log})
	if err != nil {
		return nil, "", err
	}
	defer l.Down()
	var mu sync.Mutex
	out := func(daemon string, down time.Duration) func(context.Context) error {
		return Outage(l, daemon, down, &mu)
	}
	var events []Event
	for _, f := range o.Faults {
		switch f {
		case "nfs":
			events = append(events, Event{Name: Faults[f], After: "IP-Config (kernel DHCP)", Do: out(lab.NFS, 10*time.Second)})
		case "tftp":
			events = append(events, Event{Name: Faults[f], At: 2 * time.Second, Do: out(lab.TFTP, 20*time.Second)})
		case "http":
			events = append(events, Event{Name: Faults[f], After: "first file loaded", Do: out(lab.HTTP, 20*time.Second)})
		case "publish":
			events = append(events, Event{Name: Faults[f], After: "first file loaded", Do: func(ctx context.Context) error {
				_, err := pipeline.Publish(ctx, &grown, log)
				return err
			}})
		}
	}
	progress := func(node string, st lab.Stage) {}
	if o.Progress != nil {
		progress = func(node string, st lab.Stage) { o.Progress(fmt.Sprintf("%6.1f s  %-10s %s", st.At, node, st.Name)) }
	}
	r, err := Run(ctx, Options{Lab: l, Nodes: nds, Link: o.Link, Timeout: o.Timeout, Events: events, LogDir: filepath.Join(dir, "storm-consoles"),
		Accel: s.QEMUAccel, Log: log, Progress: progress, Up: UpSkeleton,
		UpFor: func(nd nodes.Node) []string {
			if inv.ImageOf(nd) != "" {
				return UpImage
			}
			return nil
		}})
	if err != nil {
		return nil, "", err
	}
	p, werr := r.Write(dir)
	return r, p, errors.Join(werr, r.Err())
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
