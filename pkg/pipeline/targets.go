package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/diskless/diskless/internal/flagval"
	"github.com/diskless/diskless/pkg/deps"
	"github.com/diskless/diskless/pkg/kbuild"
	"github.com/diskless/diskless/pkg/lab"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/publish"
	"github.com/diskless/diskless/pkg/settings"
	"github.com/diskless/diskless/pkg/smoke"
)

// Kernel is build:slave and build:master: the packages the build needs,
// then the kernel of role for o.Arch into Artifacts/<arch> (.../master).
func Kernel(ctx context.Context, o Options, role kbuild.Role) (*kbuild.Result, kbuild.Options, error) {
	ko := o.Settings.Kernel(o.Arch, role)
	pkgs := deps.KernelBuild(o.Arch, ko.KernelSrc == "", !ko.NoCcache)
	if ko.SignPayload != nil {
		pkgs = append(pkgs, deps.SecureBoot()...) // sbsign, before make
	}
	if err := deps.Ensure(ctx, o.log(), pkgs); err != nil {
		return nil, ko, err
	}
	if role == kbuild.Slave {
		var err error
		if ko, err = SlaveOptions(ctx, o); err != nil {
			return nil, ko, err
		}
	}
	ko.Log, ko.Terminal = o.log(), o.Terminal
	res, err := kbuild.Build(ctx, ko)
	return res, ko, err
}

// All is build:all: the packages, BuildArch, then a publish of o.Arch's
// files (the live generation's other arches are kept).
func All(ctx context.Context, o Options) (*publish.Manifest, error) {
	// what publish would refuse, refused before the build
	if err := CheckSecureBoot(o.Settings); err != nil {
		return nil, err
	}
	pkgs := append(deps.KernelBuild(o.Arch, o.Settings.KernelSrc == "", !o.Settings.NoCcache), deps.Publish(o.Arch)...)
	if o.Settings.SecureBoot != nil {
		pkgs = append(pkgs, deps.SecureBoot()...)
	}
	if err := deps.Ensure(ctx, o.log(), pkgs); err != nil {
		return nil, err
	}
	if _, err := BuildArch(ctx, o); err != nil {
		return nil, err
	}
	return Publish(ctx, o.Settings, o.log(), o.Arch)
}

// Smoke is test:smoke: the boot tests' packages, then every boot path
// (SMOKE_PATHS: those only) of the tree published in DISKLESS_ROOT, the
// console logs in Artifacts/<arch>/smoke.
func Smoke(ctx context.Context, o Options) (*smoke.Report, error) {
	s := o.Settings
	if err := deps.Ensure(ctx, o.log(), deps.Boot(o.Arch)); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "diskless-smoke-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	return smoke.Run(ctx, smoke.Options{Arch: o.Arch, Root: s.Root, LogDir: filepath.Join(o.outDir(), "smoke"), Work: work, Only: s.SmokePaths, Accel: s.QEMUAccel})
}

// LabOptions are the lab's options from the settings: its files in
// Artifacts/lab, DISKLESS_ROOT served, the inventory's nodes.
func LabOptions(s *settings.Settings, log *slog.Logger) lab.Options {
	return lab.Options{Dir: filepath.Join(s.Artifacts, "lab"), Root: s.Root, Inventory: s.Inventory, DHCP: s.LabDHCP, CacheDir: s.CacheDir, Log: log, Detach: true, Fill: ReplicaFill(s, log)}
}

// ReplicaFill is how the lab fills a secondary master's root: publish:pull
// from the primary, checked with SIGNING_KEY's and TRUSTED_KEY's public
// keys (PublicKeys).
func ReplicaFill(s *settings.Settings, log *slog.Logger) func(context.Context, lab.Replica) error {
	return func(ctx context.Context, r lab.Replica) error {
		defer r.Client.CloseIdleConnections()
		keys := PublicKeys(s)
		if len(keys) == 0 {
			return errors.New("a secondary master pulls the primary's signed set: set SIGNING_KEY (or TRUSTED_KEY)")
		}
		_, err := publish.Pull(ctx, "http://"+r.Primary+"/", publish.PullOptions{Root: r.Root, Trusted: keys, Keep: s.PublishKeep, NoWait: true, Client: r.Client, Log: log})
		return err
	}
}

// LabUp is lab:up: the lab's packages, what the lab refuses checked
// first, the inventory's per-node files published when the live ones
// differ (the manifest of that publish, or nil; it needs a published
// tree), then the daemons, left running.
func LabUp(ctx context.Context, s *settings.Settings, log *slog.Logger) (*lab.Lab, *publish.Manifest, error) {
	if s.Inventory == nil {
		return nil, nil, fmt.Errorf("node inventory %s does not exist: add a node first (nodes:add name=... mac=... ip=... arch=...)", s.NodesFile)
	}
	if err := deps.Ensure(ctx, log, append(deps.Lab(), deps.NodeOS()...)); err != nil {
		return nil, nil, err
	}
	return LabUpWith(ctx, s, log, LabOptions(s, log))
}

// LabUpWith is LabUp's lab with o (LabOptions changed: another directory,
// not detached) once the packages are there: what the lab refuses checked
// first, the inventory's per-node files published when the live ones
// differ, then the daemons.
func LabUpWith(ctx context.Context, s *settings.Settings, log *slog.Logger, o lab.Options) (*lab.Lab, *publish.Manifest, error) {
	if err := lab.Preflight(o); err != nil {
		return nil, nil, err
	}
	warnLabSecureBoot(s, log)
	_, m, err := PublishNodes(ctx, s, log)
	if err != nil {
		return nil, nil, err
	}
	l, err := lab.Up(ctx, o)
	return l, m, err
}

func (o Options) log() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Log
}

// AddNode is nodes:add: the node of words (name= mac= ip= arch=, with
// BOOT and KERNEL_ARGS from the settings) appended to the inventory; when
// there is none it is created with the network the settings say
// (NFS_SERVER, DISKLESS_ROOT, NFS_OPTS; else the node's /24 with the
// master at .1, /diskless), which is returned (nil for an existing
// inventory).
func AddNode(s *settings.Settings, words []string) (nodes.Node, *nodes.Network, error) {
	nd, err := nodes.ParseAddArgs(words)
	if err != nil {
		return nd, nil, err
	}
	nd.Boot, nd.KernelArgs = s.NodeBoot, s.Boot.Extra
	var network *nodes.Network // used only when the inventory is created
	if s.Inventory == nil {
		n, err := s.NewNetwork(nd)
		if err != nil {
			return nd, nil, err
		}
		network = &n
	}
	var create nodes.Network
	if network != nil {
		create = *network
	}
	return nd, network, nodes.AddNode(s.NodesFile, nd, create)
}

// Pull is publish:pull on a secondary master: args "from=http://<primary>/"
// (and older=1 to take a generation older than the live one: a rollback
// on the primary); the primary's live signed set (TRUSTED_KEY) becomes
// the live generation of DISKLESS_ROOT, as publish.Pull says.
func Pull(ctx context.Context, s *settings.Settings, args string, log *slog.Logger) (*publish.PullResult, error) {
	o := publish.PullOptions{Root: s.Root, Trusted: s.TrustedKeys, Keep: s.PublishKeep, NoWait: s.PublishNoWait, Log: log}
	from := ""
	for _, f := range strings.Fields(args) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "from":
			from = v
		case "older":
			b, err := flagval.Bool("older", v)
			if err != nil {
				return nil, err
			}
			o.Older = b
		default:
			return nil, fmt.Errorf("publish:pull: unknown argument %q (from=, older=)", f)
		}
	}
	if from == "" {
		return nil, fmt.Errorf("publish:pull wants from=<the primary's HTTP root>, like from=http://192.168.1.1/ (got %q)", args)
	}
	return publish.Pull(ctx, from, o)
}
