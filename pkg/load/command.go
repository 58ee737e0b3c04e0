package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/diskless/diskless/internal/textutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/deps"
	"github.com/diskless/diskless/pkg/lab"
	"github.com/diskless/diskless/pkg/nfstrace"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/pipeline"
	"github.com/diskless/diskless/pkg/relay"
	"github.com/diskless/diskless/pkg/settings"
	"github.com/diskless/diskless/pkg/simnode"
	"github.com/diskless/diskless/pkg/storm"
)

// DefaultTrace is the committed trace lab:load plays when none is given:
// a Debian 12 node's boot to multi-user (recorded with lab:trace).
const DefaultTrace = "traces/debian-12-x86_64.json"

// Args are lab:load's options.
type Args struct {
	N        int
	Ramp     float64
	DHCP     string
	Boot     string
	Firmware simnode.Firmware
	Loss     float64
	Trace    string
	Timeout  time.Duration
}

// ParseArgs reads lab:load's one argument: "n=1000 ramp=200/s
// dhcp=dnsmasq boot=ipxe firmware=pxe loss=1% trace=traces/x.json
// timeout=10m"; n is required, the rest default to all at once, the
// settings' LAB_DHCP, ipxe, a PXE ROM, no loss, DefaultTrace, 10 minutes.
func ParseArgs(words string) (Args, error) {
	a := Args{Boot: nodes.BootIPXE, Firmware: simnode.PXE, Timeout: 10 * time.Minute}
	for _, w := range strings.Fields(words) {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return a, fmt.Errorf("lab:load %q: want key=value words: n=1000 ramp=200/s dhcp=dnsmasq boot=ipxe loss=1%%", w)
		}
		var err error
		switch k {
		case "n":
			if a.N, err = strconv.Atoi(v); err != nil || a.N < 1 || a.N > 60000 {
				return a, fmt.Errorf("n=%s: want a number of nodes from 1 to 60,000", v)
			}
		case "ramp":
			r := strings.TrimSuffix(v, "/s")
			if a.Ramp, err = strconv.ParseFloat(r, 64); err != nil || a.Ramp <= 0 {
				return a, fmt.Errorf("ramp=%s: want nodes per second, like 200/s", v)
			}
		case "dhcp":
			if v != "dhcpd" && v != "dnsmasq" {
				return a, fmt.Errorf("dhcp=%s: want dhcpd (ISC) or dnsmasq", v)
			}
			a.DHCP = v
		case "boot":
			if v != nodes.BootIPXE && v != nodes.BootPXELinux {
				return a, fmt.Errorf("boot=%s: want ipxe (TFTP for the first file, then HTTP) or pxelinux (everything over TFTP)", v)
			}
			a.Boot = v
		case "firmware":
			if v != string(simnode.PXE) && v != string(simnode.IPXE) {
				return a, fmt.Errorf("firmware=%s: want pxe (a NIC's PXE ROM) or ipxe (an iPXE ROM, as QEMU's)", v)
			}
			a.Firmware = simnode.Firmware(v)
		case "loss":
			if a.Loss, err = storm.ParseLoss(v); err != nil {
				return a, err
			}
		case "trace":
			a.Trace = v
		case "timeout":
			if a.Timeout, err = time.ParseDuration(v); err != nil || a.Timeout <= 0 {
				return a, fmt.Errorf("timeout=%s: want a duration like 10m", v)
			}
		default:
			return a, fmt.Errorf("lab:load: unknown %s=: want n, ramp, dhcp, boot, firmware, loss, trace or timeout", k)
		}
	}
	if a.N == 0 {
		return a, errors.New("lab:load: say how many nodes: n=1000")
	}
	return a, relay.Impairment{Loss: a.Loss}.Validate()
}

// Target is lab:load: it parses the argument, installs what the lab
// needs, runs Command with progress lines and prints the summary and the
// report's path to out.
func Target(ctx context.Context, s *settings.Settings, words string, log *slog.Logger, out, terminal io.Writer) error {
	a, err := ParseArgs(words)
	if err != nil {
		return err
	}
	if err := deps.Ensure(ctx, log, append(deps.Lab(), deps.NodeOS()...)); err != nil {
		return err
	}
	o := CommandOptions{Settings: s, Args: a, Log: log, Progress: textutil.Progress(terminal, log, "load")}
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
	Log      *slog.Logger
	Progress func(string)
	// Dir holds the lab's files, the scratch root the nodes boot from and
	// the reports (default Settings.Artifacts/lab/load).
	Dir string
}

// Command is lab:load after its argument is parsed: an inventory of N
// nodes on Subnet, the built artifacts published with its per-node files
// into a root of its own (Dir/root: DISKLESS_ROOT is not touched), the
// nodes' roots provisioned there (with what the trace reads: the image,
// when it mounts one), a lab with the daemons rendered for it and a port
// for simulated nodes, then Run; the report is written to Dir.
func Command(ctx context.Context, o CommandOptions) (*Report, string, error) {
	s := o.Settings
	if os.Geteuid() != 0 {
		return nil, "", errors.New("lab:load needs root (network namespaces, the master's daemons)")
	}
	if lab.Running() {
		return nil, "", fmt.Errorf("the lab is up (namespace %s): lab:down first, lab:load brings up its own", lab.NetNS)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, name := range []string{"bzImage_x86_64", "initramfs_x86_64.cpio.zst"} {
		if _, err := os.Stat(filepath.Join(s.Artifacts, "x86_64", name)); err != nil {
			return nil, "", fmt.Errorf("lab:load boots x86_64 nodes from what is built in %s: no %s (go run mage.go build:all arch=x86_64 first)", s.Artifacts, name)
		}
	}
	tracePath := o.Trace
	if tracePath == "" {
		tracePath = filepath.Join(s.ProjectDir, DefaultTrace)
	}
	tr, err := nfstrace.Read(tracePath)
	if err != nil {
		return nil, "", fmt.Errorf("trace=%s: %w (%v)", tracePath, err, errNoTrace)
	}
	dir := o.Dir
	if dir == "" {
		dir = filepath.Join(s.Artifacts, "lab", "load")
	}
	// the inventory and the daemons take absolute paths
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, "", err
	}
	root := filepath.Join(dir, "root")
	layout, exports, err := layoutFor(tr, dir)
	if err != nil {
		return nil, "", err
	}
	inv, err := Inventory(o.N, o.Boot, layout)
	if err != nil {
		return nil, "", err
	}
	inv.Initrd = s.Initrds()
	scratch := *s
	scratch.Root, scratch.Inventory, scratch.PublishFrom, scratch.TrustedKeys, scratch.SigningKey = root, inv, nil, nil, nil
	// what the nodes boot, without the netboot image: its built-in
	// command line names the admin's root, and no simulated node boots it
	if scratch.Artifacts, err = bootArtifacts(s.Artifacts, dir); err != nil {
		return nil, "", err
	}
	log.Info("publishing the artifacts and the nodes' files into the load's root", "root", root, "nodes", o.N)
	if _, err := pipeline.Publish(ctx, &scratch, log); err != nil {
		return nil, "", err
	}
	if err := provision(ctx, &scratch, inv, tr, log); err != nil {
		return nil, "", err
	}
	if tr, err = moveTrace(tr, exports); err != nil {
		return nil, "", err
	}
	dhcp := o.DHCP
	if dhcp == "" {
		dhcp = s.LabDHCP
	}
	// the master's neighbour table and receive buffers, as the rendered
	// sysctl.d file says (the host's: see lab.RaiseLimits), back as they
	// were after
	restore, err := lab.RaiseLimits(inv.Sysctls())
	defer func() {
		if err := restore(); err != nil {
			log.Error("the host's limits", "err", err)
		}
	}()
	if err != nil {
		return nil, "", err
	}
	l, err := lab.Up(ctx, lab.Options{Dir: dir, Root: root, Inventory: inv, DHCP: dhcp, CacheDir: s.CacheDir, Log: log, Fill: pipeline.ReplicaFill(s, log)})
	if err != nil {
		return nil, "", err
	}
	defer l.Down()
	if err := l.SimPort(o.Loss); err != nil {
		return nil, "", err
	}
	r, err := Run(ctx, Options{Lab: l, Inventory: inv, Root: root, Firmware: o.Firmware, Trace: tr, Ramp: o.Ramp, Timeout: o.Timeout, Log: log, Progress: o.Progress})
	if err != nil {
		return nil, "", err
	}
	r.Loss = o.Loss
	p, werr := r.Write(dir)
	return r, p, errors.Join(werr, r.Err())
}

// bootArtifacts links the x86_64 artifacts the simulated nodes boot (all
// but the netboot image) into dir/artifacts and returns that.
func bootArtifacts(artifacts, dir string) (string, error) {
	out := filepath.Join(dir, "artifacts")
	if err := os.RemoveAll(out); err != nil {
		return "", err
	}
	src := filepath.Join(artifacts, "x86_64")
	dst := filepath.Join(out, "x86_64")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == "vmlinuz_x86_64" || e.Name() == "netboot_x86_64.json" {
			continue
		}
		if err := os.Link(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return "", err
		}
	}
	return out, nil
}

// layoutFor lays out the load's master under dir as the trace's was: the
// roots under dir/root, the image the recorded node ran, /home and the
// shared trees it mounted under dir/home and dir/shared/. exports maps
// each recorded mount but the root (each node mounts its own) to the
// load's.
func layoutFor(tr *nfstrace.Trace, dir string) (Layout, map[string]string, error) {
	l := Layout{Root: filepath.Join(dir, "root")}
	exports := map[string]string{}
	for i, m := range tr.Mounts {
		kind, mp, _ := strings.Cut(tr.Kinds[m], " ")
		switch kind {
		case nfstrace.KindRoot:
			if i != 0 {
				return l, nil, fmt.Errorf("trace %s mounts a second root, %s", tr.Source, m)
			}
			continue
		case nfstrace.KindImage:
			img, ok := strings.CutSuffix(filepath.Base(m), "-x86_64")
			if !ok {
				return l, nil, fmt.Errorf("trace %s mounts image %s: lab:load plays x86_64 nodes", tr.Source, m)
			}
			l.Image = img
			exports[m] = filepath.Join(l.Root, "images", filepath.Base(m))
			continue
		case nfstrace.KindHome:
			l.Home = filepath.Join(dir, "home")
			exports[m] = l.Home
		case nfstrace.KindShared:
			d := filepath.Join(dir, "shared", strings.ReplaceAll(strings.Trim(mp, "/"), "/", "-"))
			l.Shared = append(l.Shared, d+":"+mp)
			exports[m] = d
		default:
			return l, nil, fmt.Errorf("trace %s mounts %s, which it does not say is a root, an image, /home or a shared tree (record it again with lab:trace)", tr.Source, m)
		}
		if err := os.MkdirAll(exports[m], 0o755); err != nil {
			return l, nil, err
		}
	}
	if l.Home != "" {
		os.Chmod(l.Home, 0o1777) // root on the nodes is squashed to nobody
	}
	if len(tr.Mounts) == 0 || tr.Kinds[tr.Mounts[0]] != nfstrace.KindRoot {
		return l, nil, fmt.Errorf("trace %s: its first mount is not the node's root", tr.Source)
	}
	return l, exports, nil
}

// moveTrace maps the trace's mounts to the load's master (exports) and
// its image's generation directory to the live one in the load's root
// (the recorded node read /gen-0001/usr/...; the load's image may be
// another generation).
func moveTrace(tr *nfstrace.Trace, exports map[string]string) (*nfstrace.Trace, error) {
	recorded := tr.MountOf(nfstrace.KindImage)
	if recorded == "" {
		return tr.Map(exports, nil), nil
	}
	image := exports[recorded]
	live, err := os.Readlink(filepath.Join(image, "current"))
	if err != nil {
		return nil, fmt.Errorf("the load's image %s has no live generation: %w", image, err)
	}
	var was string
	for _, op := range tr.Ops {
		if op.Export == recorded && op.Proc == "LOOKUP" && op.Path == "/" && strings.HasPrefix(op.Name, "gen-") {
			was = op.Name
			break
		}
	}
	if was == "" || was == live {
		return tr.Map(exports, nil), nil
	}
	return tr.Map(exports, func(op *nfstrace.Op) {
		if op.Export != image {
			return
		}
		if op.Path == "/"+was || strings.HasPrefix(op.Path, "/"+was+"/") {
			op.Path = "/" + live + strings.TrimPrefix(op.Path, "/"+was)
		}
		if op.Path == "/" && op.Name == was {
			op.Name = live
		}
	}), nil
}

// provision makes every node's root hold what the trace reads: with an
// image, the image published into the load's root, the first node
// provisioned from it and the others as hard links of it (the same files,
// no copies: thousands of roots fit); without, the HOWTO's skeleton, and
// the recorded root's files the trace reads as hard links of files of
// that size.
func provision(ctx context.Context, s *settings.Settings, inv *nodes.Inventory, tr *nfstrace.Trace, log *slog.Logger) error {
	first := *inv
	first.Nodes = inv.Nodes[:1]
	image := inv.Network.Image
	if image != "" {
		x86, _ := arch.Lookup("x86_64")
		si := *s
		si.Image = image
		if _, _, err := pipeline.PublishImage(ctx, &si, x86, log); err != nil {
			return err
		}
	}
	if _, err := first.Provision(s.Root); err != nil {
		return err
	}
	template := filepath.Join(s.Root, inv.Nodes[0].IP)
	if image == "" {
		if err := traceFiles(tr, template); err != nil {
			return err
		}
	}
	start := time.Now()
	for _, nd := range inv.Nodes[1:] {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := cloneTree(template, filepath.Join(s.Root, nd.IP)); err != nil {
			return fmt.Errorf("node %s's root: %w", nd.Name, err)
		}
	}
	log.Info("roots provisioned", "nodes", len(inv.Nodes), "seconds", fmt.Sprintf("%.1f", time.Since(start).Seconds()))
	return nil
}

// traceFiles puts into root the files a skeleton node's trace reads from
// its own root, as large as it read them (a boot test's init, its
// writes' directory): their contents are not what is measured.
func traceFiles(tr *nfstrace.Trace, root string) error {
	sizes := map[string]uint64{}
	for _, op := range tr.Ops {
		if op.Export != tr.Mounts[0] || op.Path == "" || op.Path == "/" {
			continue
		}
		switch op.Proc {
		case "READ":
			sizes[op.Path] = max(sizes[op.Path], op.Offset+uint64(op.Count))
		case "GETATTR", "ACCESS", "READLINK":
			if _, ok := sizes[op.Path]; !ok {
				sizes[op.Path] = 0
			}
		}
	}
	for p, size := range sizes {
		dst := filepath.Join(root, p)
		if st, err := os.Lstat(dst); err == nil && (st.IsDir() || uint64(st.Size()) >= size) {
			continue
		}
		if size == 0 {
			continue // a directory or a link the skeleton has, or not needed to read
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, make([]byte, size), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// cloneTree makes dst a copy of src whose files are hard links (the
// roots share their bytes; a node's writes in the trace go to a file of
// its own).
func cloneTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.MkdirAll(target, info.Mode().Perm()); err != nil {
				return err
			}
			return os.Chmod(target, info.Mode()&(fs.ModePerm|fs.ModeSticky))
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			os.Remove(target)
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			if _, err := os.Lstat(target); err == nil {
				return nil
			}
			return os.Link(p, target)
		}
		return nil // device nodes: the node's console is not read over NFS
	})
}
