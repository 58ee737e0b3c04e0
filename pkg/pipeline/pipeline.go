// Package pipeline chains the stages for one arch: the slave kernel
// (pkg/kbuild), the fallback initramfs (pkg/initramfs) and the netboot image
// (pkg/elfboot), and the CI artifact job on top (publish to a scratch root,
// boot every path, bundle). The magefile's build:all and ci:artifacts call
// it; each stage's logic stays in its own package.
package pipeline

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/diskless/diskless/initramfs/fallback"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/elfboot"
	"github.com/diskless/diskless/pkg/initramfs"
	"github.com/diskless/diskless/pkg/kbuild"
	"github.com/diskless/diskless/pkg/publish"
	"github.com/diskless/diskless/pkg/pxe"
	"github.com/diskless/diskless/pkg/qemu"
)

// Options for a per-arch run.
type Options struct {
	Arch       arch.Arch
	ProjectDir string
	// Artifacts is the artifacts directory (artifacts/); the arch's files go
	// to Artifacts/<arch>.
	Artifacts string
	Getenv    func(string) string
	Log       *slog.Logger
	Terminal  io.Writer
}

// Result of BuildArch.
type Result struct {
	Kernel    *kbuild.Result
	Initramfs *initramfs.Result
	Netboot   string
	Settings  pxe.Settings
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

// BuildArch builds the slave kernel, the initramfs and the netboot image of
// o.Arch into Artifacts/<arch>, each skipped when its inputs are unchanged.
func BuildArch(ctx context.Context, o Options) (*Result, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &Result{}
	st, err := pxe.SettingsFromEnv(o.Getenv)
	if err != nil {
		return nil, step("settings", err)
	}
	r.Settings = st
	ko, err := kbuild.OptionsFromEnv(o.Getenv, o.ProjectDir, o.Arch, kbuild.Slave)
	if err != nil {
		return nil, step("build:slave", err)
	}
	ko.OutDir, ko.Log, ko.Terminal = filepath.Join(o.Artifacts, o.Arch.Name), o.Log, o.Terminal
	if r.Kernel, err = kbuild.Build(ctx, ko); err != nil {
		return nil, step("build:slave", err)
	}
	if r.Initramfs, err = Initramfs(ctx, o); err != nil {
		return nil, err
	}
	if r.Netboot, err = Netboot(o, r.Initramfs.Path); err != nil {
		return nil, err
	}
	return r, nil
}

// Initramfs builds Artifacts/<arch>/initramfs_<arch>.cpio.<ext>
// (INITRAMFS_COMPRESS), the fallback init's default NFS options from
// NFS_OPTS.
func Initramfs(ctx context.Context, o Options) (*initramfs.Result, error) {
	st, err := pxe.SettingsFromEnv(o.Getenv)
	if err != nil {
		return nil, step("settings", err)
	}
	comp, err := initramfs.ParseCompressor(o.Getenv("INITRAMFS_COMPRESS"))
	if err != nil {
		return nil, step("build:initramfs", err)
	}
	fs := fallback.DefaultSettings
	fs.DefaultOpts = st.Opts
	res, err := initramfs.Build(ctx, initramfs.Options{Arch: o.Arch, ProjectDir: o.ProjectDir, Compress: comp, OutDir: filepath.Join(o.Artifacts, o.Arch.Name), CacheDir: kbuild.CacheDir(), Settings: fs, Log: o.Log})
	return res, step("build:initramfs", err)
}

// Netboot makes Artifacts/<arch>/vmlinuz_<arch> with the settings' command
// line; with NETBOOT_INITRAMFS=1 it carries the initramfs at initrd (x86).
func Netboot(o Options, initrd string) (string, error) {
	st, err := pxe.SettingsFromEnv(o.Getenv)
	if err != nil {
		return "", step("settings", err)
	}
	with := ""
	if o.Getenv("NETBOOT_INITRAMFS") == "1" {
		if o.Arch.SrcArch != "x86" {
			return "", step("build:netboot", fmt.Errorf("NETBOOT_INITRAMFS=1: the %s EFI image cannot carry an initramfs", o.Arch.Name))
		}
		if initrd == "" {
			m, _ := filepath.Glob(filepath.Join(o.Artifacts, o.Arch.Name, "initramfs_"+o.Arch.Name+".cpio*"))
			if len(m) == 0 {
				return "", step("build:netboot", fmt.Errorf("NETBOOT_INITRAMFS=1 but there is no initramfs_%s.cpio.*: run build:initramfs arch=%s first", o.Arch.Name, o.Arch.Name))
			}
			initrd = m[0]
		}
		with = initrd
	}
	out, err := elfboot.Artifact(o.Arch, filepath.Join(o.Artifacts, o.Arch.Name), st.Cmdline(o.Arch), with)
	return out, step("build:netboot", err)
}

// ArchFiles are the files of Collect that belong to arch a: its own and,
// for x86, PXELINUX and its configuration.
func ArchFiles(files []publish.File, a arch.Arch) []publish.File {
	var out []publish.File
	for _, f := range files {
		if f.Arch == a.Name || (f.Arch == "" && a.SrcArch == "x86") {
			out = append(out, f)
		}
	}
	return out
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
	Smoke  []qemu.PathResult
}

// CIArtifacts is the per-arch CI job: BuildArch, publish the arch's files
// into a scratch root, boot every path there, then write
// Artifacts/diskless_<arch>_<version>.tar.zst. A failure names its step;
// no bundle is written for a build that did not boot.
func CIArtifacts(ctx context.Context, o Options) (*CIResult, error) {
	r, err := BuildArch(ctx, o)
	if err != nil {
		return nil, err
	}
	all, err := publish.Collect(o.Artifacts, r.Settings)
	if err != nil {
		return nil, step("collect", err)
	}
	files := ArchFiles(all, o.Arch)
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
	res.Smoke, err = qemu.Smoke(ctx, qemu.SmokeOptions{Arch: o.Arch, Root: root, LogDir: filepath.Join(o.Artifacts, o.Arch.Name, "smoke"), Work: filepath.Join(work, "smoke")})
	if err != nil {
		return res, step("test:smoke", err)
	}
	res.Bundle = filepath.Join(o.Artifacts, fmt.Sprintf("diskless_%s_%s.tar.zst", o.Arch.Name, Version(o.ProjectDir, r.Kernel.KernelVersion)))
	if _, err := publish.WriteBundle(res.Bundle, files); err != nil {
		return res, step("bundle", err)
	}
	return res, nil
}
