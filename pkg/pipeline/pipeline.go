// Package pipeline chains the stages for one arch: the slave kernel
// (pkg/kbuild), the fallback initramfs (pkg/initramfs) and the netboot image
// (pkg/elfboot), and the CI artifact job on top (publish to a scratch root,
// boot every path, bundle), the publish target (CI bundles or artifacts/
// into DISKLESS_ROOT, with the per-node files rendered from the loaded
// inventory) and the bodies of the targets that chain packages (kernel,
// build:all, smoke, lab:up, nodes:add; targets.go). The magefile's targets
// call it with the settings it loaded; each stage's logic stays in its own
// package, and the scenarios (pkg/smoke, pkg/storm) sit beside it: storm
// calls it to publish.
package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/diskless/diskless/initramfs/fallback"
	"github.com/diskless/diskless/internal/debpkg"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/deps"
	"github.com/diskless/diskless/pkg/elfboot"
	"github.com/diskless/diskless/pkg/image"
	"github.com/diskless/diskless/pkg/initramfs"
	"github.com/diskless/diskless/pkg/kbuild"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/publish"
	"github.com/diskless/diskless/pkg/pxe"
	"github.com/diskless/diskless/pkg/settings"
	"github.com/diskless/diskless/pkg/sign"
	"github.com/diskless/diskless/pkg/smoke"
)

// Options for a per-arch run.
type Options struct {
	Arch arch.Arch
	// Settings, read once at the edge; the arch's files go to
	// Settings.Artifacts/<arch>.
	Settings *settings.Settings
	Log      *slog.Logger
	Terminal io.Writer
}

func (o Options) outDir() string { return filepath.Join(o.Settings.Artifacts, o.Arch.Name) }

// Result of BuildArch.
type Result struct {
	Kernel    *kbuild.Result
	Initramfs *initramfs.Result
	Netboot   string
}

// StepError names the step that failed.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

func step(name string, err error) error {
	if err == nil {
		return nil
	}
	return &StepError{Step: name, Err: err}
}

// BuildArch builds the fallback initramfs, the slave kernel and the netboot
// image of o.Arch into Artifacts/<arch>, each skipped when its inputs are
// unchanged (the initramfs first: arm64's kernel carries it).
func BuildArch(ctx context.Context, o Options) (*Result, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &Result{}
	var err error
	if r.Initramfs, err = Initramfs(ctx, o); err != nil {
		return nil, err
	}
	ko, err := slaveOptions(ctx, o, r.Initramfs.Path)
	if err != nil {
		return nil, err
	}
	ko.OutDir, ko.Log, ko.Terminal = o.outDir(), o.Log, o.Terminal
	if r.Kernel, err = kbuild.Build(ctx, ko); err != nil {
		return nil, step("build:slave", err)
	}
	if r.Netboot, err = Netboot(o, r.Initramfs.Path); err != nil {
		return nil, err
	}
	return r, nil
}

// SlaveOptions are the slave kernel's build options for o.Arch: the
// settings' (Settings.Kernel), and on an arch whose EFI kernel carries the
// fallback initramfs (KernelCarriesInitramfs) that initramfs, built first
// when needed.
func SlaveOptions(ctx context.Context, o Options) (kbuild.Options, error) {
	return slaveOptions(ctx, o, "")
}

// slaveOptions is SlaveOptions with the initramfs already built at initrd
// ("" builds it when the kernel carries it).
func slaveOptions(ctx context.Context, o Options, initrd string) (kbuild.Options, error) {
	ko := o.Settings.Kernel(o.Arch, kbuild.Slave)
	// NETBOOT_INITRAMFS=1 where the kernel cannot carry it is build:netboot's
	// to refuse; CONFIG_ONLY checks the fragments without building the
	// initramfs (the config it verifies lacks INITRAMFS_SOURCE)
	carry, _ := KernelCarriesInitramfs(o)
	if !carry || ko.ConfigOnly {
		return ko, nil
	}
	if initrd == "" {
		res, err := Initramfs(ctx, o)
		if err != nil {
			return ko, err
		}
		initrd = res.Path
	}
	ko.Initramfs = initrd
	return ko, nil
}

// Initramfs builds Artifacts/<arch>/initramfs_<arch>.cpio.<ext>
// (INITRAMFS_COMPRESS), the fallback init's default NFS options from the
// node settings.
func Initramfs(ctx context.Context, o Options) (*initramfs.Result, error) {
	fs := fallback.DefaultSettings
	fs.DefaultOpts = o.Settings.Boot.Opts
	fs.TrustedKeys = TrustedKeys(o.Settings)
	// inside arm64's EFI kernel its command line is everyone's: a
	// stateless node asks for its own
	fs.NodeLookup, _ = KernelCarriesInitramfs(o)
	res, err := initramfs.Build(ctx, initramfs.Options{Arch: o.Arch, ProjectDir: o.Settings.ProjectDir, Compress: o.Settings.Compress, OutDir: o.outDir(), CacheDir: o.Settings.CacheDir, Settings: fs, Log: o.Log})
	return res, step("build:initramfs", err)
}

// TrustedKeys are the keys a stateless node trusts, as the initramfs
// carries them: SIGNING_KEY's public key and TRUSTED_KEY's, one after
// another, each once.
func TrustedKeys(s *settings.Settings) string {
	var b strings.Builder
	for _, k := range PublicKeys(s) {
		b.WriteString(string(k.Marshal()))
	}
	return b.String()
}

// PublicKeys are the keys a signed set is checked with: SIGNING_KEY's
// public half, then TRUSTED_KEY's, each once.
func PublicKeys(s *settings.Settings) []*sign.PublicKey {
	seen := map[string]bool{}
	keys := s.TrustedKeys
	if s.SigningKey != nil {
		keys = append([]*sign.PublicKey{s.SigningKey.Public()}, keys...)
	}
	var out []*sign.PublicKey
	for _, k := range keys {
		if m := string(k.Marshal()); !seen[m] {
			seen[m] = true
			out = append(out, k)
		}
	}
	return out
}

// NetbootCarriesInitramfs says whether vmlinuz_<arch> of o.Arch carries the
// fallback initramfs, so that a node whose root is unreachable gets the
// diagnosis and a shell, never a panic, and a stateless node fetches its
// image: on x86 (inside the ELF netboot image) and arm64 (built into the
// EFI kernel, KernelCarriesInitramfs) unless NETBOOT_INITRAMFS=0. riscv64's
// EFI kernel does not yet, and asking for it there is an error.
func NetbootCarriesInitramfs(o Options) (bool, error) {
	if o.Arch.SrcArch == "x86" || o.Arch.Name == "arm64" {
		return o.Settings.NetbootInitramfs, nil
	}
	if o.Settings.NetbootInitramfsSet && o.Settings.NetbootInitramfs {
		return false, step("build:netboot", fmt.Errorf("NETBOOT_INITRAMFS=1: the %s EFI kernel does not carry the fallback initramfs (arm64's does; riscv64 nodes boot the kernel alone)", o.Arch.Name))
	}
	return false, nil
}

// KernelCarriesInitramfs says whether the slave kernel itself has the
// fallback initramfs built in (CONFIG_INITRAMFS_SOURCE): on an EFI arch
// whose vmlinuz carries it, since the firmware loads that kernel alone.
func KernelCarriesInitramfs(o Options) (bool, error) {
	carry, err := NetbootCarriesInitramfs(o)
	return carry && o.Arch.EFIImagePath != "", err
}

// Netboot makes Artifacts/<arch>/vmlinuz_<arch> with the settings' command
// line, carrying the initramfs at initrd when NetbootCarriesInitramfs (an
// empty initrd: the one in Artifacts/<arch>); an EFI kernel that carries it
// was built with it (SlaveOptions).
func Netboot(o Options, initrd string) (string, error) {
	carry, err := NetbootCarriesInitramfs(o)
	if err != nil {
		return "", err
	}
	with := ""
	if carry && o.Arch.EFIImagePath == "" {
		if initrd == "" {
			m, _ := filepath.Glob(filepath.Join(o.outDir(), "initramfs_"+o.Arch.Name+".cpio*"))
			if len(m) == 0 {
				return "", step("build:netboot", fmt.Errorf("vmlinuz_%s carries the fallback initramfs but there is no initramfs_%s.cpio.*: run build:initramfs arch=%s first (or NETBOOT_INITRAMFS=0)", o.Arch.Name, o.Arch.Name, o.Arch.Name))
			}
			initrd = m[0]
		}
		with = initrd
	}
	out, err := elfboot.Artifact(o.Arch, o.outDir(), o.Settings.Boot.Cmdline(o.Arch), with)
	return out, step("build:netboot", err)
}

// NetbootImage is build:netboot after the kernel: the initramfs first
// (cached) when the x86 image carries it, then Netboot.
func NetbootImage(ctx context.Context, o Options) (string, error) {
	carry, err := NetbootCarriesInitramfs(o)
	if err != nil {
		return "", err
	}
	initrd := ""
	if carry && o.Arch.EFIImagePath == "" {
		res, err := Initramfs(ctx, o)
		if err != nil {
			return "", err
		}
		initrd = res.Path
	}
	return Netboot(o, initrd)
}

// Version names a bundle: the kernel version and the project's git
// revision (with -dirty for uncommitted changes), or "nogit".
func Version(projectDir, kernelVersion string) string {
	rev := "nogit"
	c := exec.Command("git", "describe", "--always", "--dirty", "--abbrev=12")
	c.Dir = projectDir
	if out, err := c.Output(); err == nil {
		rev = strings.TrimSpace(string(out))
	}
	return kernelVersion + "-" + rev
}

// CIResult is what the CI artifact job produced.
type CIResult struct {
	Bundle string
	Smoke  *smoke.Report
}

// CIArtifacts is the per-arch CI job: the packages it needs, BuildArch,
// publish the arch's files
// into a scratch root, boot every path there, then write
// Artifacts/diskless_<arch>_<version>.tar.zst. A failure names its step;
// no bundle is written for a build that did not boot.
func CIArtifacts(ctx context.Context, o Options) (*CIResult, error) {
	pkgs := append(deps.KernelBuild(o.Arch, o.Settings.KernelSrc == "", !o.Settings.NoCcache), deps.Boot(o.Arch)...)
	if o.Settings.SecureBoot != nil {
		pkgs = append(pkgs, deps.SecureBoot()...)
	}
	if err := deps.Ensure(ctx, o.log(), pkgs); err != nil {
		return nil, step("deps", err)
	}
	r, err := BuildArch(ctx, o)
	if err != nil {
		return nil, err
	}
	// this arch's files alone, whatever else lies in artifacts/ (another
	// arch's build would change pxelinux.cfg/default), and no per-node
	// files: a bundle is the same for every master
	files, err := publish.Collect(o.Settings.Artifacts, o.Settings.Boot, o.Arch)
	if err != nil {
		return nil, step("collect", err)
	}
	// with SECUREBOOT_KEY, the bundle's EFI binaries are signed (and
	// booted signed by the smoke tests)
	if files, err = SignEFI(ctx, o.Settings, o.log(), files); err != nil {
		return nil, step("secure boot signing", err)
	}
	work, err := os.MkdirTemp("", "diskless-ci-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	os.MkdirAll(root, 0o755)
	if _, err := publish.Publish(ctx, files, publish.Options{Root: root, Log: o.Log}); err != nil {
		return nil, step("publish (scratch root)", err)
	}
	res := &CIResult{}
	res.Smoke, err = smoke.Run(ctx, smoke.Options{Arch: o.Arch, Root: root, LogDir: filepath.Join(o.outDir(), "smoke"), Work: filepath.Join(work, "smoke"), Accel: o.Settings.QEMUAccel})
	if err != nil {
		return res, step("test:smoke", err)
	}
	res.Bundle = filepath.Join(o.Settings.Artifacts, fmt.Sprintf("diskless_%s_%s.tar.zst", o.Arch.Name, Version(o.Settings.ProjectDir, r.Kernel.KernelVersion)))
	if _, err := publish.WriteBundle(res.Bundle, files, Signer(o.Settings)); err != nil {
		return res, step("bundle", err)
	}
	return res, nil
}

// Signer is the signer of s's SIGNING_KEY, or nil.
func Signer(s *settings.Settings) *publish.Signer {
	if s.SigningKey == nil {
		return nil
	}
	return &publish.Signer{Key: s.SigningKey, PubName: s.SigningPub}
}

// checkTrust refuses, before any work, a publish that TRUSTED_KEY would
// not accept: local artifacts (unsigned), or a tree the master cannot sign
// with a key that verify then accepts. artifacts says the publish brings
// files from artifacts/ (not only what the master renders itself).
func checkTrust(s *settings.Settings, artifacts bool) error {
	if len(s.TrustedKeys) == 0 {
		return nil
	}
	if artifacts && len(s.PublishFrom) == 0 {
		return errors.New("TRUSTED_KEY is set: only signed bundles are published (PUBLISH_FROM=<bundles>); artifacts/ holds no signature")
	}
	if s.SigningKey == nil {
		return errors.New("TRUSTED_KEY is set, so the published tree must be signed too (verify checks it): set SIGNING_KEY to the master's secret key, its public key in TRUSTED_KEY")
	}
	for _, k := range s.TrustedKeys {
		if k.KeyNum == s.SigningKey.KeyNum {
			return nil
		}
	}
	return fmt.Errorf("SIGNING_KEY (key %s) is not among TRUSTED_KEY: verify would refuse the tree this publish signs; add %s to TRUSTED_KEY", s.SigningKey.KeyNum, s.SigningPub)
}

// Publish publishes into s.Root what s says: the bundles of PUBLISH_FROM
// (several at once, into one generation) or what Artifacts holds (of the
// arches in only, all when none is given: build:all arch=i386 publishes
// i386's build alone). The live generation's other arches are kept unless
// PUBLISH_DROP names them, and pxelinux.cfg/default is written for every
// x86 arch of the result with the node settings of s. The per-node boot
// files are rendered from s's inventory (none without one), never taken
// from nodes:render's output or a bundle, so what nodes are served always
// matches the inventory loaded now. With TRUSTED_KEY, every bundle's
// signature must verify; with SIGNING_KEY, the published SHA256SUMS is
// signed.
func Publish(ctx context.Context, s *settings.Settings, log *slog.Logger, only ...arch.Arch) (*publish.Manifest, error) {
	if err := checkTrust(s, true); err != nil {
		return nil, err
	}
	// bundles may carry what CI signed for Secure Boot: checked once read
	if len(s.PublishFrom) == 0 {
		if err := CheckSecureBoot(s); err != nil {
			return nil, err
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nodeFiles, err := NodeFiles(ctx, s, log)
	if err != nil {
		return nil, err
	}
	var files []publish.File
	if len(s.PublishFrom) > 0 {
		dir, err := os.MkdirTemp("", "diskless-bundles-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		var sets [][]publish.File
		for i, b := range s.PublishFrom {
			set, err := publish.ReadBundle(b, filepath.Join(dir, fmt.Sprint(i)), s.TrustedKeys)
			if err != nil {
				return nil, err
			}
			kept := set[:0]
			for _, f := range set {
				if publish.IsNodeFile(f.Name) {
					log.Warn("a bundle's per-node file is not published: per-node files come from the inventory", "bundle", b, "file", f.Name)
					continue
				}
				kept = append(kept, f)
			}
			sets = append(sets, kept)
		}
		if files, err = publish.Combine(sets, s.PublishFrom); err != nil {
			return nil, err
		}
	} else {
		if files, err = publish.Collect(s.Artifacts, s.Boot, only...); err != nil {
			return nil, err
		}
	}
	if s.Inventory == nil {
		if live, err := publish.ReadManifest(s.Root); err == nil {
			n := 0
			for _, f := range live.Files {
				if publish.IsNodeFile(f.Name) {
					n++
				}
			}
			if n > 0 {
				log.Warn("no node inventory: the live generation's per-node files are not published again", "files", n, "inventory", s.NodesFile)
			}
		}
	}
	if files, err = SignEFI(ctx, s, log, files); err != nil {
		return nil, err
	}
	all := append(files, nodeFiles...)
	kept, err := publish.Kept(s.Root, all, s.PublishDrop, true)
	if err != nil {
		return nil, err
	}
	if err := checkSignedForNodes(ctx, s, all, kept); err != nil {
		return nil, err
	}
	boot := s.Boot
	return publish.Publish(ctx, all, publish.Options{Root: s.Root, Keep: s.PublishKeep, NoWait: s.PublishNoWait, Merge: true, Nodes: true, Drop: s.PublishDrop, PXE: &boot,
		Sign: Signer(s), Trusted: s.TrustedKeys, Log: log})
}

// NodeFiles are the per-node boot files of s's inventory, ready to
// publish (none without an inventory), and for stateless nodes the
// squashfs of each image they run and each one's overlay. What a
// stateless node needs and the master does not have yet (its image not
// published, its identity not provisioned) is left out with a warning
// naming the command that makes it: each of those commands publishes the
// nodes' files again (image:publish, nodes:provision). With shim nodes,
// Debian's signed shim, MokManager and netboot GRUB and grub/grub.cfg
// come with them (ShimFiles).
func NodeFiles(ctx context.Context, s *settings.Settings, log *slog.Logger) ([]publish.File, error) {
	if s.Inventory == nil {
		return nil, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	inv := s.Inventory
	rendered, err := inv.BootFiles()
	if err != nil {
		return nil, err
	}
	files := publish.NodeFiles(rendered)
	if inv.UsesShim() {
		shim, err := ShimFiles(ctx, s, log)
		if err != nil {
			return nil, err
		}
		files = append(files, shim...)
	}
	imgs := inv.StatelessImages()
	if len(imgs) > 0 && s.SigningKey == nil {
		return nil, fmt.Errorf("%s has stateless nodes, which boot only a signed set (their initramfs checks SHA256SUMS.sig): set SIGNING_KEY (go run mage.go keygen) and rebuild the initramfs (build:all), which then trusts it", s.NodesFile)
	}
	for _, img := range imgs {
		live, err := image.Live(s.Root, img[0], img[1])
		if err != nil {
			log.Warn("stateless nodes cannot boot until their image is published", "image", img[0]+"-"+img[1], "run", "IMAGE="+img[0]+" go run mage.go image:publish arch="+img[1])
			continue
		}
		m, err := image.ReadManifest(live + ".json")
		if err != nil || m.Squashfs == nil {
			log.Warn("stateless nodes cannot boot until their image's live generation has a squashfs", "generation", live, "run", "IMAGE="+img[0]+" go run mage.go image:publish arch="+img[1])
			continue
		}
		// the manifest says which image generation a node boots next
		build, _ := json.Marshal(map[string]any{"image": img[0], "arch": img[1], "generation": filepath.Base(live), "tree_sha256": m.TreeSHA256, "squashfs_seconds": m.Squashfs.Seconds})
		files = append(files, publish.File{Name: nodes.SquashfsName(img[0], img[1]), Source: image.SquashfsPath(live), SHA256: m.Squashfs.SHA256, Kind: publish.KindSquashfs, Build: build})
	}
	var unprovisioned []string
	for _, nd := range inv.Sorted() {
		if !inv.Stateless(nd) {
			continue
		}
		data, err := inv.Overlay(s.Root, nd)
		if errors.Is(err, nodes.ErrNotProvisioned) {
			unprovisioned = append(unprovisioned, nd.Name)
			continue
		}
		if err != nil {
			return nil, err
		}
		files = append(files, publish.File{Name: nodes.OverlayName(nd), Data: data, Kind: "overlay", Private: true})
	}
	if len(unprovisioned) > 0 {
		log.Warn("stateless nodes without an identity yet: they cannot boot until provisioned", "nodes", strings.Join(unprovisioned, " "), "run", "go run mage.go nodes:provision")
	}
	return files, nil
}

// ShimFiles are what shim nodes load before their kernel: Debian's
// shimx64.efi (signed by Microsoft), mmx64.efi (MokManager) and netboot
// GRUB as grubx64.efi (signed by Debian, whose key shim carries), from
// their packages unpacked in the cache, and grub/grub.cfg. With
// SECUREBOOT_KEY, shimx64.efi, the file the firmware itself loads, gets
// the site's signature too (beside Microsoft's): a firmware with the
// site's key in db and not Microsoft's starts it as well. GRUB and
// MokManager are shim's to verify, the kernel too (db or the MOK list).
func ShimFiles(ctx context.Context, s *settings.Settings, log *slog.Logger) ([]publish.File, error) {
	var files []publish.File
	for _, f := range publish.Shim {
		root, err := debpkg.Extract(f.Package, s.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("shim nodes (boot = \"shim\") need Debian's %s: %w", f.Package, err)
		}
		files = append(files, publish.File{Name: f.Name, Source: filepath.Join(root, f.Path), Kind: "bootloader"})
	}
	// the one the firmware loads
	for i := range files {
		if files[i].Name != nodes.ShimFile {
			continue
		}
		signed, err := SignEFI(ctx, s, log, files[i:i+1])
		if err != nil {
			return nil, err
		}
		files[i] = signed[0]
	}
	cfg := pxe.GRUBConfig("generated by diskless publish: GRUB (shim's second stage) reads this from\n(tftp,<master>)/grub and goes on with the node's own grub/<mac>.cfg (nodes:render)")
	return append(files, publish.File{Name: pxe.GRUBConfigName, Data: []byte(cfg), Kind: "grub-config"}), nil
}

// RollbackImage is image:rollback: the image's previous generation live
// again, and, when stateless nodes run it, the signed set they boot from
// published with that generation's squashfs.
func RollbackImage(ctx context.Context, s *settings.Settings, a arch.Arch, log *slog.Logger) (*image.Generation, error) {
	g, err := image.Rollback(s.Root, s.Image, a.Name, log)
	if err != nil {
		return nil, err
	}
	return g, publishStateless(ctx, s, log, "image "+g.Dir+" is live")
}

// publishStateless publishes the stateless nodes' files with the live set
// (their images' squashfs, their overlays) after what changed them: done
// says what that was, for the error. Nothing without stateless nodes or
// before a first publish (which publishes them).
func publishStateless(ctx context.Context, s *settings.Settings, log *slog.Logger, done string) error {
	if s.Inventory == nil || len(s.Inventory.StatelessImages()) == 0 {
		return nil
	}
	if _, err := publish.Current(s.Root); err != nil {
		log.Warn("nothing published yet: stateless nodes get their image and overlays with the first publish (build:all)")
		return nil
	}
	changed, m, err := PublishNodes(ctx, s, log)
	if err != nil {
		return fmt.Errorf("%s, but the set that serves the stateless nodes was not published: %w", done, err)
	}
	if changed {
		log.Info("stateless nodes get what changed at their next boot", "generation", m.Generation)
	}
	return nil
}

// ProvisionNodes is nodes:provision: each node's root (or a stateless
// node's identity) under DISKLESS_ROOT, then, when the inventory has
// stateless nodes and a set is live, their overlays published (a no-op
// when they already are).
func ProvisionNodes(ctx context.Context, s *settings.Settings, log *slog.Logger) (*nodes.Report, error) {
	if s.Inventory == nil {
		return nil, fmt.Errorf("node inventory %s does not exist: add a node first (nodes:add ...)", s.NodesFile)
	}
	// it publishes the stateless nodes' files: refused first, not after
	if len(s.Inventory.StatelessImages()) > 0 {
		if err := preflightSecureBoot(ctx, s); err != nil {
			return nil, err
		}
	}
	r, err := s.Inventory.Provision(s.Root)
	if err != nil {
		return r, err
	}
	return r, publishStateless(ctx, s, log, "provisioned")
}

// PublishNodes makes the live generation serve the per-node boot files of
// s's inventory, carrying everything else over: what lab:up and lab:storm
// run before their nodes boot, whatever an earlier render or publish left.
// It publishes nothing when the live files already match (false), and
// needs a published generation to start from.
func PublishNodes(ctx context.Context, s *settings.Settings, log *slog.Logger) (bool, *publish.Manifest, error) {
	if _, err := publish.Current(s.Root); err != nil {
		return false, nil, fmt.Errorf("%w: build:all arch=x86_64 (or publish) first", err)
	}
	// what the nodes' files leave as it is must suit secure_boot nodes
	// too, even when those files are already live
	if err := preflightSecureBoot(ctx, s); err != nil {
		return false, nil, err
	}
	files, err := NodeFiles(ctx, s, log)
	if err != nil {
		return false, nil, err
	}
	if same, err := publish.NodesCurrent(s.Root, files); err != nil || same {
		return false, nil, err
	}
	if err := checkTrust(s, false); err != nil {
		return false, nil, err
	}
	if live, err := publish.ReadManifest(s.Root); err == nil && live.Signed && s.SigningKey == nil {
		return false, nil, fmt.Errorf("the live generation %d of %s is signed, and its per-node files differ from %s's: set SIGNING_KEY to publish them signed (an unsigned generation would replace a signed one)", live.Generation, s.Root, s.NodesFile)
	}
	boot := s.Boot
	m, err := publish.Publish(ctx, files, publish.Options{Root: s.Root, Keep: s.PublishKeep, NoWait: s.PublishNoWait, Merge: true, Nodes: true, PXE: &boot,
		Sign: Signer(s), Trusted: s.TrustedKeys, Log: log})
	return err == nil, m, err
}

// BuildImage builds (or finds in the cache) the node image the settings
// name (IMAGE, IMAGE_FROM) for an arch.
func BuildImage(ctx context.Context, s *settings.Settings, a arch.Arch, log *slog.Logger) (*image.Result, error) {
	o := s.ImageOptions(a)
	o.Log = log
	return image.Build(ctx, o)
}

// PublishImage builds the image if needed and publishes it as a new
// generation under DISKLESS_ROOT/images (no work when it is already live).
func PublishImage(ctx context.Context, s *settings.Settings, a arch.Arch, log *slog.Logger) (*image.Result, *image.Generation, error) {
	if s.Inventory != nil && len(s.Inventory.StatelessImages()) > 0 {
		if err := preflightSecureBoot(ctx, s); err != nil {
			return nil, nil, err
		}
	}
	res, err := BuildImage(ctx, s, a, log)
	if err != nil {
		return nil, nil, err
	}
	g, err := image.Publish(ctx, res, image.PublishOptions{Root: s.Root, Keep: s.ImageKeep, NoWait: s.PublishNoWait, Log: log})
	if err != nil {
		return res, g, err
	}
	// the signed set serves the stateless nodes' squashfs: publish it there
	return res, g, publishStateless(ctx, s, log, "image "+g.Dir+" is live")
}
