//go:build mage

// diskless turns kernel config fragments into what a diskless NFS-root node
// boots from the network. Targets take arch=<name> (or a bare name):
// x86_64, i386, arm64, riscv64 (aliases amd64, x86, aarch64).
//
// Settings are read once per run (pkg/settings) from the environment and
// nodes.toml (NODES_FILE); with an inventory the network keys it states
// (master, root, nfs_opts) win and a NFS_SERVER, NFS_ROOT, NFS_OPTS or
// DISKLESS_ROOT contradicting one of them is an error (a key it leaves out
// is filled from the variable). Environment: KERNEL_SRC (kernel source dir or
// tarball; default the newest /usr/src/linux-source-*.tar.*), KCONFIG_EXTRA
// (extra fragments, comma separated), JOBS (make -j), CONFIG_ONLY=1 (stop
// after the verified config), NO_CCACHE=1, CCACHE_DIR, XDG_CACHE_HOME
// (cache: $XDG_CACHE_HOME/diskless, default ~/.cache/diskless),
// SOURCE_DATE_EPOCH; the rest per target (README, Settings).
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/magefile/mage/mg"
	"github.com/magefile/mage/sh"

	"github.com/diskless/diskless/internal/gotest"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/deps"
	"github.com/diskless/diskless/pkg/kbuild"
	"github.com/diskless/diskless/pkg/lab"
	loadsim "github.com/diskless/diskless/pkg/load"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/pipeline"
	"github.com/diskless/diskless/pkg/publish"
	"github.com/diskless/diskless/pkg/secureboot"
	"github.com/diskless/diskless/pkg/settings"
	"github.com/diskless/diskless/pkg/sign"
	"github.com/diskless/diskless/pkg/storm"
)

// Build targets produce artifacts/<arch>/.
type Build mg.Namespace

// Test targets run the test suites.
type Test mg.Namespace

// Aliases: `test` is the README's test command.
var Aliases = map[string]interface{}{
	"test":         Test.All,
	"publish:pull": Replica.Pull,
}

var log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

// The settings, read once per run from the environment and nodes.toml
// (pkg/settings); every target takes its options from them.
var (
	settingsOnce sync.Once
	cfg          *settings.Settings
	cfgErr       error
)

func load() (*settings.Settings, error) {
	settingsOnce.Do(func() { cfg, cfgErr = settings.Load(os.LookupEnv, ".") })
	return cfg, cfgErr
}

// terminal returns stdout when it is a terminal (live progress lines), nil
// otherwise (plain periodic log lines).
func terminal() io.Writer {
	if st, err := os.Stdout.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
		return os.Stdout
	}
	return nil // an untyped nil: callers test the interface
}

// Deps installs every Debian package the project uses (all arches, QEMU,
// PXELINUX, iPXE, firmware) with apt-get when run as root; otherwise prints
// the exact apt-get line and fails.
func Deps(ctx context.Context) error {
	return deps.Ensure(ctx, log, deps.All())
}

func kernel(ctx context.Context, archArg string, role kbuild.Role) error {
	o, err := pipelineOptions(archArg)
	if err != nil {
		return err
	}
	res, ko, err := pipeline.Kernel(ctx, o, role)
	if err != nil {
		return err
	}
	var names []string
	for _, art := range res.Artifacts {
		names = append(names, fmt.Sprintf("%s (%d bytes)", art.Name, art.Size))
	}
	fmt.Printf("%s %s kernel %s: %s in %s\n", o.Arch.Name, role, res.KernelVersion, strings.Join(names, ", "), ko.OutDir)
	return nil
}

// Slave builds the diskless node's kernel: tinyconfig + kernels/slave.config
// + kernels/arch/<arch>.config (+ KCONFIG_EXTRA), every requested value and
// the built-in NFS-root rule verified before compiling. Writes
// artifacts/<arch>/bzImage_<arch> (Image_<arch> on arm64/riscv64),
// config_<arch> and build_<arch>.json. On arm64 the fallback initramfs is
// built first and built into the kernel (NETBOOT_INITRAMFS=0: not). Skips
// make when nothing changed.
// Usage: build:slave arch=x86_64
func (Build) Slave(ctx context.Context, archArg string) error {
	return kernel(ctx, archArg, kbuild.Slave)
}

// Master builds the master's own kernel (defconfig + kernels/master.config:
// NFS server, netfilter/iptables) into artifacts/<arch>/master/
// (bzImage-master, config-master) for the admin to install in /boot; it is
// never published. Usage: build:master arch=x86_64
func (Build) Master(ctx context.Context, archArg string) error {
	return kernel(ctx, archArg, kbuild.Master)
}

// Netboot makes artifacts/<arch>/vmlinuz_<arch>, the netboot image (the
// HOWTO's mkelf-linux step), after building the slave kernel if needed. On
// x86_64/i386 an ELF32 Multiboot image that QEMU -kernel, iPXE and GRUB boot,
// with the node's command line (nodes.toml, or NFS_SERVER, NFS_ROOT,
// NFS_OPTS, KERNEL_ARGS) embedded and the fallback initramfs inside (built
// if needed; NETBOOT_INITRAMFS=0 leaves it out). On
// arm64/riscv64 the EFI zboot kernel with that command line built in,
// made by build:slave (on arm64 with the fallback initramfs built in too).
// Usage: build:netboot arch=x86_64
func (Build) Netboot(ctx context.Context, archArg string) error {
	if err := kernel(ctx, archArg, kbuild.Slave); err != nil {
		return err
	}
	o, err := pipelineOptions(archArg)
	if err != nil {
		return err
	}
	out, err := pipeline.NetbootImage(ctx, o)
	if err != nil {
		return err
	}
	fmt.Printf("%s netboot image: %s\n", o.Arch.Name, out)
	return nil
}

// Initramfs builds artifacts/<arch>/initramfs_<arch>.cpio.zst, the
// fallback initramfs: u-root's init and gosh, initramfs/commands.txt, and
// the fallback init that mounts the NFS root or says why it cannot and
// starts a rescue shell. INITRAMFS_COMPRESS=zstd|xz|gzip|none. Skips the Go
// build when nothing changed. Usage: build:initramfs arch=x86_64
func (Build) Initramfs(ctx context.Context, archArg string) error {
	o, err := pipelineOptions(archArg)
	if err != nil {
		return err
	}
	a := o.Arch
	res, err := pipeline.Initramfs(ctx, o)
	if err != nil {
		return err
	}
	fmt.Printf("%s initramfs: %s (%d bytes, %d files, cpio %d bytes)\n", a.Name, res.Path, res.Size, res.Files, res.RawSize)
	return nil
}

// Image builds the node image in the cache ($XDG_CACHE_HOME/diskless/images):
// IMAGE (default: nodes.toml's image, else debian-12) from
// images/<IMAGE>.packages with debootstrap from DEBIAN_MIRROR (default: the
// host's apt sources), or the root in IMAGE_FROM (a directory or tarball).
// Foreign arches run through qemu-user-static. Nothing changed: no work.
// Needs root. Usage: build:image arch=x86_64
func (Build) Image(ctx context.Context, archArg string) error {
	o, err := pipelineOptions(archArg)
	if err != nil {
		return err
	}
	if err := deps.Ensure(ctx, log, deps.Image(o.Arch, runtime.GOARCH)); err != nil {
		return err
	}
	res, err := pipeline.BuildImage(ctx, o.Settings, o.Arch, log)
	if err != nil {
		return err
	}
	m := res.Manifest
	fmt.Printf("image %s-%s: %s (%d packages, %d files, %d bytes, tree %s)\n", m.Name, m.Arch, res.Tree, len(m.Packages), m.Files, m.Bytes, m.TreeSHA256[:16])
	return nil
}

// Image targets publish node images to the master.
type Image mg.Namespace

// Publish builds the image if needed (see build:image) and publishes it to
// DISKLESS_ROOT/images/<IMAGE>-<arch>/ as a new generation, switched
// atomically, with the same tree as one squashfs file (zstd) beside it;
// nodes get it at their next boot. When nodes.toml has stateless nodes
// running it, the signed set they boot from (SHA256SUMS, SIGNING_KEY)
// is published again with the new squashfs. IMAGE_KEEP generations are
// kept (default 3). Usage: image:publish arch=x86_64
func (Image) Publish(ctx context.Context, archArg string) error {
	o, err := pipelineOptions(archArg)
	if err != nil {
		return err
	}
	if err := deps.Ensure(ctx, log, deps.Image(o.Arch, runtime.GOARCH)); err != nil {
		return err
	}
	_, g, err := pipeline.PublishImage(ctx, o.Settings, o.Arch, log)
	if err != nil {
		return err
	}
	fmt.Printf("image live: %s\n", g.Dir)
	return nil
}

// Rollback makes the image's previous generation live again (nodes get it
// at their next boot). Usage: image:rollback arch=x86_64
func (Image) Rollback(ctx context.Context, archArg string) error {
	o, err := pipelineOptions(archArg)
	if err != nil {
		return err
	}
	g, err := pipeline.RollbackImage(ctx, o.Settings, o.Arch, log)
	if err != nil {
		return err
	}
	fmt.Printf("image live: %s\n", g.Dir)
	return nil
}

// Publish copies everything built under artifacts/ (kernels, vmlinuz,
// initramfs, configs, PXELINUX and a generated pxelinux.cfg/default) and
// the per-node boot files rendered from nodes.toml into DISKLESS_ROOT
// (default /diskless) as a new generation and switches to it atomically,
// with SHA256SUMS and manifest.json. PUBLISH_FROM=a.tar.zst,b.tar.zst
// (or a directory of bundles) publishes CI bundles instead, all in one
// generation. The live generation's other arches are kept;
// PUBLISH_DROP=arm64,... removes those. PUBLISH_NOWAIT=1 fails instead of
// waiting for another publish; PUBLISH_KEEP generations are kept (default
// 3). The node settings (nodes.toml, or NFS_SERVER, NFS_ROOT, NFS_OPTS,
// KERNEL_ARGS) shape the PXELINUX command line.
func Publish(ctx context.Context) error {
	s, err := load()
	if err != nil {
		return err
	}
	m, err := pipeline.Publish(ctx, s, log)
	if err != nil {
		return err
	}
	fmt.Printf("published generation %d to %s: %d files (check: cd %s && sha256sum -c SHA256SUMS)\n", m.Generation, s.Root, len(m.Files), s.Root)
	return nil
}

// Verify re-reads the published tree in DISKLESS_ROOT and checks every file
// against manifest.json and SHA256SUMS, and with TRUSTED_KEY=<key.pub,...>
// SHA256SUMS.sig; non-zero exit naming each mismatch.
func Verify() error {
	s, err := load()
	if err != nil {
		return err
	}
	m, err := publish.Verify(s.Root, s.TrustedKeys...)
	if err != nil {
		return err
	}
	fmt.Printf("%s: generation %d verified, %d files\n", s.Root, m.Generation, len(m.Files))
	return nil
}

// Replica targets are a secondary master's ([[master]] in nodes.toml).
type Replica mg.Namespace

// Pull (publish:pull) makes the primary master's live signed set the live
// generation of DISKLESS_ROOT here, byte for byte and under the same
// generation number: SHA256SUMS.sig first (the live one's already: done),
// then SHA256SUMS checked with TRUSTED_KEY, then every file this master
// does not have, each checked as it arrives, then the atomic switch.
// Nothing is published on any error (unsigned, another key, a file that
// does not match); an interrupted pull resumes where it was. PUBLISH_KEEP
// and PUBLISH_NOWAIT as for publish.
// Usage: publish:pull from=http://192.168.1.1/
func (Replica) Pull(ctx context.Context, args string) error {
	s, err := load()
	if err != nil {
		return err
	}
	r, err := pipeline.Pull(ctx, s, args, log)
	if err != nil {
		return err
	}
	if r.Unchanged {
		fmt.Printf("%s: generation %d is the primary's live one already (only its signature fetched)\n", s.Root, r.Generation)
		return nil
	}
	fmt.Printf("%s: generation %d pulled and live: %d files fetched (%d bytes), %d already here, %.1f s\n", s.Root, r.Generation, r.Fetched, r.FetchedBytes, r.Reused, r.Seconds)
	return nil
}

// Rollback makes the previous published generation live again (atomically).
// With no previous generation it says so and changes nothing; with
// TRUSTED_KEY the previous generation's signature must verify.
func Rollback() error {
	s, err := load()
	if err != nil {
		return err
	}
	from, to, err := publish.Rollback(s.Root, s.PublishNoWait, log, s.TrustedKeys...)
	if err != nil {
		return err
	}
	fmt.Printf("%s: rolled back from generation %d to %d\n", s.Root, from, to)
	return nil
}

// All builds everything a node of that arch boots from (slave kernel,
// fallback initramfs, netboot image) and publishes that arch's files to
// DISKLESS_ROOT (the live generation's other arches are kept).
// Usage: build:all arch=x86_64
func (Build) All(ctx context.Context, archArg string) error {
	o, err := pipelineOptions(archArg)
	if err != nil {
		return err
	}
	m, err := pipeline.All(ctx, o)
	if err != nil {
		return err
	}
	fmt.Printf("published generation %d to %s: %d files (check: cd %s && sha256sum -c SHA256SUMS)\n", m.Generation, o.Settings.Root, len(m.Files), o.Settings.Root)
	return nil
}

// pipelineOptions parses a target's arch argument and loads the settings.
func pipelineOptions(archArg string) (pipeline.Options, error) {
	a, err := arch.ParseArg(archArg)
	if err != nil {
		return pipeline.Options{}, err
	}
	s, err := load()
	return pipeline.Options{Arch: a, Settings: s, Log: log, Terminal: terminal()}, err
}

// Smoke boots the published tree (DISKLESS_ROOT, default /diskless) of an
// arch in QEMU through every boot path that exists for it (x86: PXELINUX
// with the published default, PXELINUX to the NFS root, per-node
// 01-<mac> config, the ELF image through iPXE, direct -kernel, the fallback
// initramfs; arm64: direct, fallback, UEFI), against a loopback NFS server.
// Prints PASS/FAIL and seconds per path, keeps the console logs in
// artifacts/<arch>/smoke/, exits non-zero on any failure. SMOKE_PATHS=a,b
// runs only those paths. Usage: test:smoke arch=x86_64
func (Test) Smoke(ctx context.Context, archArg string) error {
	o, err := pipelineOptions(archArg)
	if err != nil {
		return err
	}
	r, err := pipeline.Smoke(ctx, o)
	if r != nil {
		fmt.Print(r.Summary())
	}
	return err
}

// Bench runs every benchmark once and prints its numbers: no-op slave
// build against the kernel's own no-op make, bzImage size, initramfs cold
// and unchanged rebuild, compressed sizes and times against the u-root CLI
// with zstd/xz, ELF image build time and overhead, publish against cp +
// sha256sum, boot time per path. BENCH_COLD=1 adds a cold kernel build,
// BENCH_STORM=1 storms of 16 and 32 Debian nodes (lab:storm).
func Bench() error {
	return sh.RunV("go", "test", "-run", "^$", "-bench", ".", "-benchtime", "1x", "-timeout", "120m", "./pkg/...")
}

// Nodes targets manage the node inventory (NODES_FILE, default nodes.toml).
type Nodes mg.Namespace

// Add appends a node to the inventory. When there is none it is created
// with the master NFS_SERVER (else the .1 of the node's /24), the node's
// /24 and the root DISKLESS_ROOT (else /diskless): check those.
// BOOT=pxelinux|etherboot|ipxe|uefi|http and KERNEL_ARGS=... are optional.
// Usage: nodes:add name=slave21 mac=00:02:A5:04:3B:66 ip=192.168.1.21 arch=x86_64
func (Nodes) Add(name, mac, ip, archArg string) error {
	s, err := load()
	if err != nil {
		return err
	}
	nd, created, err := pipeline.AddNode(s, []string{name, mac, ip, archArg})
	if err != nil {
		return err
	}
	if created != nil {
		fmt.Printf("created %s with master %s, subnet %s, root %s: check them\n", s.NodesFile, created.Master, created.Subnet, created.Root)
	}
	fmt.Printf("added %s (%s, %s) to %s\n", nd.Name, nd.IP, nd.MAC, s.NodesFile)
	return nil
}

// Render writes the master's files from the inventory into artifacts/master/:
// dhcpd.conf, dnsmasq.d/diskless.conf, exports, ganesha.conf (NFS-Ganesha
// EXPORT blocks), radvd.conf, nginx/diskless.conf, default/tftpd-hpa,
// ipxe/<mac>.ipxe, pxelinux.cfg/01-<mac> (to read: publish renders the
// per-node files itself from the inventory) and each node's root files
// under nodes/<ip>/.
func (Nodes) Render() error {
	inv, err := inventory()
	if err != nil {
		return err
	}
	out := filepath.Join(cfg.Artifacts, "master")
	n, written, err := inv.RenderInto(out)
	if err != nil {
		return err
	}
	fmt.Printf("%d nodes: %d files in %s, %d of them changed (dhcpd.conf, dnsmasq.d/diskless.conf, exports, ganesha.conf, radvd.conf, nginx/, default/tftpd-hpa, pxelinux.cfg/, ipxe/, nodes/)\n", len(inv.Nodes), n, out, written)
	return nil
}

// Provision creates or updates each node's root skeleton in DISKLESS_ROOT
// (/diskless/<ip>/): the HOWTO's directories, dev/console, fstab, hostname,
// conf.d/net. A node with an image (nodes.toml image =) gets its own copy
// of the published image's etc, var and root once, a machine-id and SSH
// host keys of its own, and authorized_keys; /usr comes from the image at
// boot. A stateless node (mode = "stateless") gets only its identity
// (name, machine-id, SSH host keys, authorized_keys, fstab, network
// files), published as its overlay with the live set. Files an admin
// changed are kept and reported.
func (Nodes) Provision(ctx context.Context) error {
	inv, err := inventory()
	if err != nil {
		return err
	}
	r, err := pipeline.ProvisionNodes(ctx, cfg, log)
	if err != nil {
		return err
	}
	fmt.Print(r.Summary(len(inv.Nodes), cfg.Root))
	return nil
}

// inventory is the loaded nodes.toml, or an error saying how to make one.
func inventory() (*nodes.Inventory, error) {
	s, err := load()
	if err != nil {
		return nil, err
	}
	if s.Inventory == nil {
		return nil, fmt.Errorf("node inventory %s does not exist: add a node first (nodes:add name=... mac=... ip=... arch=...)", s.NodesFile)
	}
	return s.Inventory, nil
}

// Lab targets run the master's real daemons in a network namespace.
type Lab mg.Namespace

func labOptions() (lab.Options, error) {
	if _, err := inventory(); err != nil {
		return lab.Options{}, err
	}
	return pipeline.LabOptions(cfg, log), nil
}

// Up starts the lab master: namespace diskless-lab with bridge br0 on the
// inventory's subnet and master address, and ISC dhcpd (LAB_DHCP=dnsmasq
// for dnsmasq), tftpd-hpa, NFS-Ganesha with rpcbind, radvd and nginx, each with
// its rendered configuration and log in artifacts/lab/, serving
// DISKLESS_ROOT, which must hold a publish. When the live generation's
// per-node files are not the inventory's, they are published first (a new
// generation, every other file kept; signed with SIGNING_KEY when the live
// one is). Returns once each answers; they run until lab:down.
func (Lab) Up(ctx context.Context) error {
	s, err := load()
	if err != nil {
		return err
	}
	l, m, err := pipeline.LabUp(ctx, s, log)
	if m != nil {
		fmt.Printf("published generation %d: the per-node boot files of %s\n", m.Generation, s.NodesFile)
	}
	if err != nil {
		return err
	}
	fmt.Printf("lab up in %.1f s: namespace %s, master %s on %s, %s, tftpd-hpa, NFS-Ganesha, radvd, nginx; logs in %s\n", l.State.Ready, lab.NetNS, l.State.Master, lab.Bridge, l.State.DHCP, filepath.Join(s.Artifacts, "lab"))
	return nil
}

// Boot boots a node of the inventory in QEMU on the lab's bridge, with the
// firmware its boot method needs; its serial console is on your terminal
// (Ctrl-C ends it). Usage: lab:boot node=slave21
func (Lab) Boot(ctx context.Context, nodeArg string) error {
	o, err := labOptions()
	if err != nil {
		return err
	}
	return lab.Console(ctx, o, strings.TrimPrefix(nodeArg, "node="))
}

// Down stops every daemon and node of the lab and removes its namespace.
func (Lab) Down() error {
	s, err := load()
	if err != nil {
		return err
	}
	if err := lab.DownAny(pipeline.LabOptions(s, log)); err != nil {
		return err
	}
	fmt.Println("lab down")
	return nil
}

// Storm powers on N nodes at once in a lab of their own and times every
// stage of every node: the inventory's BIOS x86-64 nodes, then storm01...
// generated on its subnet (roots provisioned in DISKLESS_ROOT, which must
// hold a publish; their per-node files are published first when the live
// generation's differ, as lab:up does). Prints all
// up or failed, the time until all are up, p50/p95 per stage, the master's
// CPU and bytes served per protocol; writes artifacts/lab/storm.json; fails
// naming each node that did not come up and the stage it stopped at.
// Usage: lab:storm n=8, or with faults, one argument:
// lab:storm "n=8 loss=5% delay=50ms fault=nfs,tftp,http,publish timeout=10m".
// With two [[master]] in nodes.toml the lab runs both (the secondary
// filled by publish:pull) and the report splits the load by master;
// lab:storm "n=16 fault=master" kills the primary's daemons while
// stateless nodes boot.
func (Lab) Storm(ctx context.Context, args string) error {
	s, err := load()
	if err != nil {
		return err
	}
	return storm.Target(ctx, s, args, log, os.Stdout, terminal())
}

// Load boots N simulated nodes (no QEMU: the packets of a real node, each
// from its own MAC and address) at once, or on a ramp, against the
// master's real daemons rendered for an inventory of N nodes on
// 10.77.0.0/16, in a lab and a scratch root of its own
// (artifacts/lab/load/): DHCP as the firmware, iPXE or PXELINUX and the
// kernel, the boot files over TFTP or HTTP checked against SHA256SUMS, the
// NFS root's calls of a recorded boot (traces/, lab:trace). Prints a
// progress line, then the stages' p50/p95/p99/max, failures by kind, the
// daemons' CPU and peak memory and bytes per protocol; writes
// artifacts/lab/load/load.json; fails naming every node that failed.
// Usage: lab:load n=1000, or
// lab:load "n=5000 ramp=200/s dhcp=dnsmasq boot=ipxe loss=1%"
func (Lab) Load(ctx context.Context, args string) error {
	s, err := load()
	if err != nil {
		return err
	}
	return loadsim.Target(ctx, s, args, log, os.Stdout, terminal())
}

// Trace boots one node of the inventory through a lab of its own with its
// frames captured (QEMU's filter-dump), until it is up (multi-user for a
// node with an image), and writes the NFS calls its boot made to
// traces/<image>-<arch>.json, or traces/<node>.json (what lab:load plays).
// Usage: lab:trace slave21, or lab:trace "slave21 out=traces/x.json timeout=10m"
func (Lab) Trace(ctx context.Context, args string) error {
	s, err := load()
	if err != nil {
		return err
	}
	return loadsim.TraceTarget(ctx, s, args, log, os.Stdout)
}

// Keygen makes an Ed25519 key pair in OpenBSD signify's format in the
// current directory: <name>.pub (to share: TRUSTED_KEY on the master) and
// <name>.sec (mode 0600: SIGNING_KEY, e.g. a CI secret). It never
// overwrites a key. Usage: keygen name=ci
func Keygen(nameArg string) error {
	pub, sec, err := sign.WriteKeyPair(".", strings.TrimPrefix(nameArg, "name="))
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s (public: give it to the master as TRUSTED_KEY) and %s (secret, mode 0600: SIGNING_KEY)\n", pub, sec)
	return nil
}

// Secureboot targets are the UEFI Secure Boot signing key's.
type Secureboot mg.Namespace

// Keygen makes a Secure Boot signing key in the current directory:
// <name>.key (RSA-2048, PEM, mode 0600: SECUREBOOT_KEY), <name>.crt (its
// self-signed code-signing certificate, PEM: SECUREBOOT_CERT) and
// <name>.cer (the same in DER, for firmware menus and BMCs). It never
// overwrites a file. Usage: secureboot:keygen name=db
func (Secureboot) Keygen(nameArg string) error {
	key, crt, cer, err := secureboot.WriteKeyPair(".", strings.TrimPrefix(nameArg, "name="), time.Now())
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s (secret, mode 0600: SECUREBOOT_KEY), %s (SECUREBOOT_CERT) and %s (the certificate in DER, to enroll in the firmware's db)\n", key, crt, cer)
	return nil
}

// CI targets are the per-arch artifact jobs.
type CI mg.Namespace

// Artifacts is the CI job for one arch: deps, the slave kernel, initramfs
// and netboot image, a publish into a scratch root that every boot path is
// smoke-tested against, then artifacts/diskless_<arch>_<version>.tar.zst
// (the arch's files, SHA256SUMS, manifest.json) for PUBLISH_FROM. The
// failing step is named. Usage: ci:artifacts arch=x86_64
func (CI) Artifacts(ctx context.Context, archArg string) error {
	o, err := pipelineOptions(archArg)
	if err != nil {
		return err
	}
	res, err := pipeline.CIArtifacts(ctx, o)
	if res != nil && res.Smoke != nil {
		fmt.Print(res.Smoke.Summary())
	}
	if err != nil {
		return err
	}
	fmt.Printf("bundle: %s\n", res.Bundle)
	return nil
}

// Unit runs the fast tests with the race detector (go test -short -race
// ./...): no kernel build, no QEMU.
func (Test) Unit() error {
	return sh.RunV("go", "test", "-short", "-race", "-count=1", "./...")
}

// Integration runs every test that -short skips (go test ./... without
// -short, no name filter: the unit tests again, then the real kernel
// builds, QEMU boots, the lab, the storms and the fresh-machine tests),
// one package at a time, and ends with the ten slowest tests, the time
// per package and every skipped test (under CI nothing may skip).
func (Test) Integration(ctx context.Context) error {
	mg.CtxDeps(ctx, Deps)
	// the test binaries compiled on every core first (36 s instead of 56 s
	// cold); then -p 1: kernel builds and QEMU guests of different packages
	// would compete for the 2 CPUs and make boot timeouts flaky
	if err := sh.Run("go", "test", "-count=1", "-run", "^$", "./..."); err != nil {
		return err
	}
	sum, err := gotest.Run(ctx, os.Stdout, []string{"-p", "1", "-count=1", "-timeout", "80m", "./..."})
	if sum != nil {
		sum.Render(os.Stdout)
	}
	return err
}

// All is the README's test command (`test`): deps, unit tests, then the
// integration and boot tests; it says how long each stage took.
func (Test) All(ctx context.Context) error {
	stages := []func() error{func() error { return Deps(ctx) }, Test{}.Unit, func() error { return Test{}.Integration(ctx) }}
	for i, name := range []string{"deps", "unit tests", "integration tests"} {
		start := time.Now()
		err := stages[i]()
		fmt.Printf("test: %s took %s\n", name, time.Since(start).Round(time.Second))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}
