package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/deps"
	"github.com/diskless/diskless/pkg/nfstrace"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/pipeline"
	"github.com/diskless/diskless/pkg/qemu"
	"github.com/diskless/diskless/pkg/settings"
	"github.com/diskless/diskless/pkg/storm"
)

// TraceOptions for Record.
type TraceOptions struct {
	Settings *settings.Settings
	// Node is the inventory's node to boot (default: the first with an
	// image, else the first).
	Node string
	// Out is the trace file (default traces/<image>-<arch>.json, or
	// traces/<node>.json for a node without an image).
	Out     string
	Timeout time.Duration
	// Up are the stages that end the recording (default: the storm's up
	// stages for the node, storm.UpFor).
	Up []string
	// Dir holds the lab's files, the capture and the console log
	// (default Settings.Artifacts/lab/trace).
	Dir string
	Log *slog.Logger
}

// Record is lab:trace: it boots one node of the inventory in QEMU through
// a lab of its own (the daemons rendered from the inventory, serving
// DISKLESS_ROOT as lab:up does), with QEMU dumping the node's frames
// (filter-dump), until the node is up (multi-user for an image), and
// writes the NFS calls it made (pkg/nfstrace) to o.Out.
func Record(ctx context.Context, o TraceOptions) (*nfstrace.Trace, string, error) {
	s := o.Settings
	inv := s.Inventory
	if inv == nil {
		return nil, "", errors.New("lab:trace boots a node of the inventory: nodes:add first (NODES_FILE)")
	}
	nd, err := traceNode(inv, o.Node)
	if err != nil {
		return nil, "", err
	}
	if nd.Arch != "x86_64" && nd.Arch != "i386" && nd.Arch != "arm64" {
		return nil, "", fmt.Errorf("node %s is %s: the lab boots x86_64, i386 and arm64 nodes", nd.Name, nd.Arch)
	}
	out := o.Out
	if out == "" {
		name := nd.Name
		if img := inv.ImageOf(nd); img != "" {
			name = img + "-" + nd.Arch
		}
		out = filepath.Join(s.ProjectDir, "traces", name+".json")
	}
	dir := o.Dir
	if dir == "" {
		dir = filepath.Join(s.Artifacts, "lab", "trace")
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	labOpts := pipeline.LabOptions(s, log)
	labOpts.Dir, labOpts.Detach = dir, false
	l, published, err := pipeline.LabUpWith(ctx, s, log, labOpts)
	if published != nil {
		log.Info("published the inventory's per-node files", "generation", published.Generation)
	}
	if err != nil {
		return nil, "", err
	}
	defer l.Down()
	dump := filepath.Join(dir, nd.Name+".pcap")
	os.Remove(dump)
	m, remove, err := l.Machine(nd, nd.MAC, filepath.Join(dir, nd.Name+".log"))
	if err != nil {
		return nil, "", err
	}
	defer remove()
	m.Accel, m.MemoryMB = s.QEMUAccel, 1024
	m.Extra = append(m.Extra, "-object", "filter-dump,id=dump0,netdev=n0,file="+dump)
	up := o.Up
	if len(up) == 0 {
		up = storm.UpFor(inv, nd)
	}
	log.Info("booting the node with its frames captured", "node", nd.Name, "boot", nd.Boot, "until", up, "console", m.LogPath)
	sess, err := qemu.Start(ctx, m)
	if err != nil {
		return nil, "", err
	}
	_, err = sess.Expect(boot.Markers(up...), boot.Failures(storm.Retried...), o.Timeout)
	sess.Stop()
	if err != nil {
		return nil, "", fmt.Errorf("node %s did not come up (console: %s): %w", nd.Name, m.LogPath, err)
	}
	src := fmt.Sprintf("%s (%s, boot = %s, image %q) booted to %v by lab:trace, %s", nd.Name, nd.Arch, nd.Boot, inv.ImageOf(nd), up, time.Now().UTC().Format("2006-01-02"))
	rec := nfstrace.NewRecorder(src)
	if err := rec.ReadPcap(dump); err != nil {
		return nil, "", err
	}
	tr := rec.Trace()
	if len(tr.Mounts) == 0 {
		return nil, "", fmt.Errorf("the capture %s (%d frames) has no NFS mount: was the node's root over NFS?", dump, rec.Frames)
	}
	tr.Kinds = mountKinds(inv, nd, tr.Mounts)
	if tr.Kinds[tr.Mounts[0]] != nfstrace.KindRoot {
		return nil, "", fmt.Errorf("the node's first mount was %s, not its root %s", tr.Mounts[0], inv.RootPath(nd))
	}
	if rec.Errors > 0 || rec.Truncated > 0 {
		log.Warn("some RPC messages could not be read", "undecoded", rec.Errors, "cut", rec.Truncated)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, "", err
	}
	if err := tr.Write(out); err != nil {
		return nil, "", err
	}
	return tr, out, nil
}

// mountKinds says what each mount is in the inventory: the node's root,
// its image, /home or a shared tree (with its mount point).
func mountKinds(inv *nodes.Inventory, nd nodes.Node, mounts []string) map[string]string {
	kinds := map[string]string{}
	for _, m := range mounts {
		switch {
		case m == inv.RootPath(nd):
			kinds[m] = nfstrace.KindRoot
		case inv.ImageOf(nd) != "" && m == inv.ImagePath(nd):
			kinds[m] = nfstrace.KindImage
		case m == inv.Network.Home:
			kinds[m] = nfstrace.KindHome
		}
		for _, p := range inv.Network.SharedRO {
			if e, mp := nodes.SplitShared(p); e == m {
				kinds[m] = nfstrace.KindShared + " " + mp
			}
		}
	}
	return kinds
}

// traceNode is the node named, or the first with an image, or the first.
func traceNode(inv *nodes.Inventory, name string) (nodes.Node, error) {
	nds := inv.Sorted()
	if name != "" {
		for _, nd := range nds {
			if nd.Name == name {
				return nd, nil
			}
		}
		return nodes.Node{}, fmt.Errorf("node=%s: not in the inventory", name)
	}
	if len(nds) == 0 {
		return nodes.Node{}, errors.New("the inventory has no node")
	}
	for _, nd := range nds {
		if inv.ImageOf(nd) != "" {
			return nd, nil
		}
	}
	return nds[0], nil
}

// TraceTarget is lab:trace: "slave21 out=traces/x.json timeout=10m", the
// node's name first (or node=), the rest optional. It installs what the
// lab needs, records and prints what the trace holds.
func TraceTarget(ctx context.Context, s *settings.Settings, words string, log *slog.Logger, out io.Writer) error {
	o := TraceOptions{Settings: s, Log: log}
	for i, w := range strings.Fields(words) {
		k, v, ok := strings.Cut(w, "=")
		switch {
		case !ok && i == 0:
			o.Node = w
		case !ok:
			return fmt.Errorf("lab:trace %q: want the node's name, then key=value words: slave21 out=traces/debian-12-x86_64.json timeout=10m", w)
		case k == "node":
			o.Node = v
		case k == "out":
			o.Out = v
		case k == "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return fmt.Errorf("timeout=%s: want a duration like 10m", v)
			}
			o.Timeout = d
		default:
			return fmt.Errorf("lab:trace: unknown %s=: want node, out or timeout", k)
		}
	}
	if s.Inventory != nil {
		if _, err := traceNode(s.Inventory, o.Node); err != nil {
			return err
		}
	}
	if err := deps.Ensure(ctx, log, append(deps.Lab(), deps.NodeOS()...)); err != nil {
		return err
	}
	tr, path, err := Record(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s\n%s\ntrace: %s\n", tr.Source, tr.Stats(), path)
	return nil
}
