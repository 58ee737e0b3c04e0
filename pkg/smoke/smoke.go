// Package smoke is the one-node acceptance suite: it boots a published
// tree (DISKLESS_ROOT, or a CI job's scratch root) of an arch in QEMU
// through every boot path that exists for it (PXELINUX with the published
// default and with per-node files, the ELF image through iPXE, QEMU's
// -kernel, the fallback initramfs with the NFS server down and back,
// UEFI under AAVMF, U-Boot on riscv64) against the user-space NFS test
// server on QEMU's user network, and says per path PASS or FAIL, how long
// it took and where the console log is.
//
// A scenario: it uses the VM driver (pkg/qemu), the test NFS server
// (pkg/testnfs) and the boot judgement (pkg/boot); it builds nothing.
package smoke

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/diskless/diskless/internal/textutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/pxe"
	"github.com/diskless/diskless/pkg/qemu"
	"github.com/diskless/diskless/pkg/testnfs"
)

// QEMU's default NIC MAC, the one the per-node PXELINUX file is named for.
const GuestMAC = "52:54:00:12:34:56"

// PathResult is one boot path's outcome.
type PathResult struct {
	Path string
	Err  error
	// Elapsed is the whole path (servers, QEMU, checks); Boot is QEMU's
	// start to the last marker, the boot time.
	Elapsed time.Duration
	Boot    time.Duration
	Log     string
}

// Line is the one-line report: PASS/FAIL, path, seconds.
func (r PathResult) Line() string {
	status := "PASS"
	if r.Err != nil {
		status = "FAIL"
	}
	return fmt.Sprintf("%s %-18s %6.1fs (boot %5.1fs)  %s", status, r.Path, r.Elapsed.Seconds(), r.Boot.Seconds(), r.Log)
}

// Options say what to boot.
type Options struct {
	Arch arch.Arch
	// Root is the published tree (DISKLESS_ROOT) to boot.
	Root string
	// LogDir receives <path>.log per path (artifacts/<arch>/smoke).
	LogDir string
	// Work is scratch space (the test NFS root, TFTP views).
	Work string
	// Only runs just these paths (all when empty).
	Only []string
	// Timeout per boot (default 120 s).
	Timeout time.Duration
	// Accel is QEMU_ACCEL: "tcg" or "kvm" skips the KVM probe.
	Accel string
}

// Report is a run of the suite: the accelerator it used and why, and one
// result per path.
type Report struct {
	Accel string
	// AccelWhy says how the accelerator was chosen.
	AccelWhy string
	Paths    []PathResult
}

// accel decides between KVM and TCG for the arch's guests: KVM only for a
// guest of the host's own arch when /dev/kvm opens and a real boot under
// it reaches the NFS root within 8 s (1-2 s when KVM works; TCG takes 4-5
// s, so a KVM boot slower than 8 s gains nothing). A BIOS-level probe is not enough:
// on the project's machines /dev/kvm exists and guests hang after the
// firmware ("Booting from ROM"). QEMU_ACCEL=tcg|kvm skips the probe.
func (s *smoke) accel() (string, string) {
	switch v := s.o.Accel; v {
	case "tcg", "kvm":
		return v, "QEMU_ACCEL=" + v
	}
	if !s.o.Arch.NativeFor(runtime.GOARCH) {
		return "tcg", "KVM runs only guests of the host's own arch family"
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg", "no usable /dev/kvm"
	}
	f.Close()
	probe := *s
	probe.o.Timeout = 8 * time.Second
	probe.accelerator = "kvm"
	if err := probe.direct(filepath.Join(s.o.Work, "kvm-probe.log"), s.kernel, s.initrd); err != nil {
		return "tcg", "a KVM boot did not reach the NFS root: " + textutil.FirstLine(err.Error())
	}
	return "kvm", "probed: a boot reached the NFS root"
}

// Paths lists the boot paths that exist for a: pxelinux-default, pxelinux,
// per-node, etherboot-elf (x86 only), direct, direct-vmlinuz (x86), fallback,
// fallback-vmlinuz (x86: the netboot image alone, root unreachable), uefi
// (arm64, riscv64).
func Paths(a arch.Arch) []string {
	if a.SrcArch == "x86" {
		return []string{"pxelinux-default", "pxelinux", "per-node", "etherboot-elf", "direct", "direct-vmlinuz", "fallback", "fallback-vmlinuz"}
	}
	return []string{"direct", "fallback", "uefi"}
}

type smoke struct {
	o           Options
	accelerator string
	rootOnce    bool
	lastBoot    time.Duration
	ctx         context.Context
	rootDir     string // the test NFS root for this arch
	kernel      string
	initrd      string
	vmlinuz     string
}

// Run boots the published tree through every path of the arch and
// returns the report; err is set when any path failed (or none could run).
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Timeout == 0 {
		o.Timeout = 120 * time.Second
	}
	if err := qemu.Available(o.Arch); err != nil {
		return nil, err
	}
	s := &smoke{o: o, ctx: ctx, rootDir: filepath.Join(o.Work, "nfsroot")}
	s.kernel = filepath.Join(o.Root, o.Arch.ArtifactName())
	if _, err := os.Stat(s.kernel); err != nil {
		return nil, fmt.Errorf("%s is not published in %s: run build:all arch=%s (or build:slave and publish) first", o.Arch.ArtifactName(), o.Root, o.Arch.Name)
	}
	if m, _ := filepath.Glob(filepath.Join(o.Root, "initramfs_"+o.Arch.Name+".cpio*")); len(m) > 0 {
		s.initrd = m[0]
	}
	if _, err := os.Stat(filepath.Join(o.Root, "vmlinuz_"+o.Arch.Name)); err == nil {
		s.vmlinuz = filepath.Join(o.Root, "vmlinuz_"+o.Arch.Name)
	}
	if err := os.MkdirAll(o.LogDir, 0o755); err != nil {
		return nil, err
	}
	r := &Report{}
	r.Accel, r.AccelWhy = s.accel()
	s.accelerator = r.Accel
	failed := 0
	for _, p := range Paths(o.Arch) {
		if len(o.Only) > 0 && !slices.Contains(o.Only, p) {
			continue
		}
		res := s.run(p)
		if res.Err != nil {
			failed++
		}
		r.Paths = append(r.Paths, res)
	}
	if len(r.Paths) == 0 {
		return r, fmt.Errorf("no boot path selected for %s (paths: %s)", o.Arch.Name, strings.Join(Paths(o.Arch), ", "))
	}
	if failed > 0 {
		return r, fmt.Errorf("%d of %d boot paths failed for %s", failed, len(r.Paths), o.Arch.Name)
	}
	return r, nil
}

func (s *smoke) run(path string) PathResult {
	r := PathResult{Path: path, Log: filepath.Join(s.o.LogDir, path+".log")}
	start := time.Now()
	var err error
	switch path {
	case "pxelinux-default":
		err = s.pxelinuxDefault(r.Log)
	case "pxelinux":
		err = s.pxelinux(r.Log, false)
	case "per-node":
		err = s.pxelinux(r.Log, true)
	case "etherboot-elf":
		err = s.etherboot(r.Log)
	case "direct":
		err = s.direct(r.Log, s.kernel, s.initrd)
	case "direct-vmlinuz":
		if s.vmlinuz == "" {
			err = fmt.Errorf("vmlinuz_%s is not published: run build:netboot", s.o.Arch.Name)
		} else {
			err = s.direct(r.Log, s.vmlinuz, "")
		}
	case "fallback":
		err = s.fallback(r.Log)
	case "fallback-vmlinuz":
		err = s.fallbackVmlinuz(r.Log)
	case "uefi":
		if s.o.Arch.Name == "riscv64" {
			err = s.uefiUBoot(r.Log)
		} else {
			err = s.uefi(r.Log)
		}
	default:
		err = fmt.Errorf("unknown boot path %q", path)
	}
	r.Err = err
	r.Elapsed = time.Since(start)
	r.Boot, s.lastBoot = s.lastBoot, 0
	return r
}

// start runs QEMU for m with the run's accelerator.
func (s *smoke) start(m *qemu.Machine) (*qemu.Session, error) {
	m.Accel = s.accelerator
	return qemu.Start(s.ctx, m)
}

// serve starts the test NFS server on the arch's test root (built once
// per run).
func (s *smoke) serve() (*testnfs.Server, error) {
	if !s.rootOnce {
		srv, err := testnfs.ServeTestRoot(s.ctx, s.o.Arch, s.rootDir)
		s.rootOnce = err == nil
		return srv, err
	}
	return testnfs.Start(testnfs.TestRootDir(s.o.Arch, s.rootDir), testnfs.TestExport)
}

// reachRoot waits for the test init on the NFS root and checks the mount.
func (s *smoke) reachRoot(sess *qemu.Session, srv *testnfs.Server, extra ...string) error {
	res, err := sess.ExpectWhile(boot.Markers(boot.TestInit), nil, s.o.Timeout, srv.CheckRefused)
	if err != nil {
		return err
	}
	s.lastBoot = res.Elapsed
	if err := srv.CheckNFSRoot(res.Console); err != nil {
		return err
	}
	for _, e := range extra {
		if !strings.Contains(res.Console, e) {
			return fmt.Errorf("the console lacks %q", e)
		}
	}
	return nil
}

// tftpView is a TFTP directory holding the published files (links into
// the published tree, so the bytes served are the published ones) and a
// pxelinux.cfg directory of our choosing.
func (s *smoke) tftpView(name string) (string, error) {
	dir := filepath.Join(s.o.Work, "tftp-"+name)
	os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "pxelinux.cfg"), 0o755); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(s.o.Root)
	if err != nil {
		return "", err
	}
	root, _ := filepath.Abs(s.o.Root)
	for _, e := range entries {
		if e.Name() == "pxelinux.cfg" || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if err := os.Symlink(filepath.Join(root, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// testSettings point a node at the test NFS server, as NFS_SERVER,
// NFS_ROOT and NFS_OPTS would for a real one.
func testSettings(srv *testnfs.Server, extra string) pxe.Settings {
	return pxe.Settings{Server: qemu.HostIP, Root: srv.Export, Opts: srv.GuestOptions(), Extra: extra}
}

func (s *smoke) pxeLabel(st pxe.Settings) (string, error) {
	initrds := map[string]string{}
	if s.initrd != "" {
		initrds[s.o.Arch.Name] = filepath.Base(s.initrd)
	}
	return pxe.Config("diskless smoke test", pxe.SlaveLabels(st, []arch.Arch{s.o.Arch}, initrds))
}

// pxelinuxDefault boots the published tree exactly as published: PXELINUX
// reads the generated pxelinux.cfg/default. Its nfsroot names the real
// master's export, which the test network does not have, so success is the
// published command line of this arch's label (with both x86 arches, the
// CPU's choice: a 32-bit QEMU must get the i386 kernel) reaching the
// kernel, DHCP completing, and the node asking 10.0.2.2 (its DHCP server)
// for /diskless/10.0.2.15.
func (s *smoke) pxelinuxDefault(log string) error {
	if s.o.Arch.SrcArch != "x86" {
		return errors.New("PXELINUX is x86 only")
	}
	cfg, err := os.ReadFile(filepath.Join(s.o.Root, "pxelinux.cfg", "default"))
	if err != nil {
		return fmt.Errorf("no published pxelinux.cfg/default: %w", err)
	}
	label := "slave_" + s.o.Arch.Name
	appendLine, kernel := labelLine(string(cfg), label, "APPEND"), labelLine(string(cfg), label, "KERNEL")
	if appendLine == "" || kernel == "" {
		return fmt.Errorf("the published pxelinux.cfg/default has no label %s with KERNEL and APPEND:\n%s", label, cfg)
	}
	m := &qemu.Machine{Arch: s.o.Arch, NetBoot: true, TFTPRoot: s.o.Root, BootFile: "pxelinux.0", LogPath: log}
	sess, err := s.start(m)
	if err != nil {
		return err
	}
	defer sess.Stop()
	res, err := sess.Expect(boot.Markers(boot.Cmdline), nil, s.o.Timeout)
	if err != nil {
		return err
	}
	cmdline := lineOf(res.Console, boot.Markers(boot.Cmdline)[0]) // a complete line
	if !strings.Contains(cmdline, appendLine) || !strings.Contains(cmdline, "BOOT_IMAGE="+kernel+" ") {
		return fmt.Errorf("the kernel did not get label %s (KERNEL %s, APPEND %q) of the published default:\n%s", label, kernel, appendLine, cmdline)
	}
	if _, err := sess.Expect(boot.Markers(boot.IPConfig), nil, s.o.Timeout); err != nil {
		return err
	}
	// the kernel's own NFS root fails without an initramfs; with one, the
	// fallback init prints its diagnosis and then starts the shell
	res, err = sess.Expect(boot.Markers(boot.RootAsked, boot.Rescue), boot.Failures(boot.Initramfs), s.o.Timeout)
	if err != nil {
		return err
	}
	s.lastBoot = res.Elapsed
	if s.initrd != "" && !strings.Contains(res.Console, "server=10.0.2.2 export=/diskless/10.0.2.15") {
		return fmt.Errorf("the initramfs did not look for /diskless/10.0.2.15 on 10.0.2.2: %s", lineOf(res.Console, "diskless-fallback: mount failed"))
	}
	return nil
}

// labelLine is the value of a keyword (KERNEL, APPEND) in a PXELINUX
// configuration's label, or "".
func labelLine(cfg, label, keyword string) string {
	in := false
	for _, l := range strings.Split(cfg, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "LABEL":
			in = len(f) > 1 && f[1] == label
		case keyword:
			if in {
				return strings.TrimSpace(strings.TrimSpace(l)[len(f[0]):])
			}
		}
	}
	return ""
}

func lineOf(console, s string) string {
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, s) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// pxelinux boots the published kernel and initramfs through PXELINUX with a
// configuration rendered by pkg/pxe for the test server; perNode puts it in
// pxelinux.cfg/01-<mac> next to the published default and proves PXELINUX
// picked it by a marker only that file has.
func (s *smoke) pxelinux(log string, perNode bool) error {
	if s.o.Arch.SrcArch != "x86" {
		return errors.New("PXELINUX is x86 only")
	}
	srv, err := s.serve()
	if err != nil {
		return err
	}
	defer srv.Close()
	marker := ""
	if perNode {
		marker = "diskless.smoke=per-node"
	}
	cfg, err := s.pxeLabel(testSettings(srv, marker))
	if err != nil {
		return err
	}
	dir, err := s.tftpView(map[bool]string{false: "pxelinux", true: "per-node"}[perNode])
	if err != nil {
		return err
	}
	name := "default"
	if perNode {
		// the node's own file, rendered by pkg/nodes (what nodes:render
		// writes) for a node with QEMU's MAC on the test network
		inv, err := nodes.Parse([]byte(fmt.Sprintf("[network]\nmaster = %q\nsubnet = \"10.0.2.0/24\"\nroot = \"/diskless\"\nnfs_opts = %q\n\n[[node]]\nname = \"smoke\"\nmac = %q\nip = %q\narch = %q\nkernel_args = %q\n",
			qemu.HostIP, srv.GuestOptions(), GuestMAC, qemu.GuestIP, s.o.Arch.Name, marker)), "smoke-nodes.toml")
		if err != nil {
			return err
		}
		if cfg, err = inv.PXELinux(inv.Nodes[0]); err != nil {
			return err
		}
		if name, err = pxe.MACFileName(GuestMAC); err != nil {
			return err
		}
		published, err := os.ReadFile(filepath.Join(s.o.Root, "pxelinux.cfg", "default"))
		if err != nil {
			return err
		}
		os.WriteFile(filepath.Join(dir, "pxelinux.cfg", "default"), published, 0o644)
	}
	if err := os.WriteFile(filepath.Join(dir, "pxelinux.cfg", name), []byte(cfg), 0o644); err != nil {
		return err
	}
	sess, err := s.start(&qemu.Machine{Arch: s.o.Arch, NetBoot: true, TFTPRoot: dir, BootFile: "pxelinux.0", MAC: GuestMAC, LogPath: log})
	if err != nil {
		return err
	}
	defer sess.Stop()
	if _, err := sess.Expect(boot.Markers(boot.IPConfig), nil, s.o.Timeout); err != nil {
		return err
	}
	extra := []string{"BOOT_IMAGE=" + s.o.Arch.ArtifactName()}
	if marker != "" {
		extra = append(extra, "cmdline="+"BOOT_IMAGE", marker)
	}
	return s.reachRoot(sess, srv, extra...)
}

// etherboot has QEMU's iPXE fetch the published vmlinuz_<arch> over TFTP
// and boot it (Multiboot), the HOWTO's Etherboot path; an iPXE script adds
// the test server's nfsroot to the embedded command line.
func (s *smoke) etherboot(log string) error {
	if s.vmlinuz == "" {
		return fmt.Errorf("vmlinuz_%s is not published: run build:netboot", s.o.Arch.Name)
	}
	srv, err := s.serve()
	if err != nil {
		return err
	}
	defer srv.Close()
	dir, err := s.tftpView("etherboot")
	if err != nil {
		return err
	}
	script := fmt.Sprintf("#!ipxe\nkernel %s %s diskless.smoke=etherboot\nboot\n", filepath.Base(s.vmlinuz), srv.NFSRootArgs())
	// a name of its own: the view's boot.ipxe is a link into the published
	// tree, and writing through it would change a published file
	if err := os.WriteFile(filepath.Join(dir, "smoke-etherboot.ipxe"), []byte(script), 0o644); err != nil {
		return err
	}
	sess, err := s.start(&qemu.Machine{Arch: s.o.Arch, NetBoot: true, TFTPRoot: dir, BootFile: "smoke-etherboot.ipxe", LogPath: log})
	if err != nil {
		return err
	}
	defer sess.Stop()
	if _, err := sess.Expect(boot.Markers(boot.Kernel), nil, min(45*time.Second, s.o.Timeout)); err != nil {
		return fmt.Errorf("iPXE did not start the kernel from %s (iPXE prints its own errors on the VGA console only; check the image with readelf -l): %w", filepath.Base(s.vmlinuz), err)
	}
	if _, err := sess.Expect(boot.Markers(boot.IPConfig), nil, s.o.Timeout); err != nil {
		return err
	}
	return s.reachRoot(sess, srv, "diskless.smoke=etherboot")
}

// direct boots kernel (and initrd) with QEMU -kernel to the NFS root.
func (s *smoke) direct(log, kernel, initrd string) error {
	srv, err := s.serve()
	if err != nil {
		return err
	}
	defer srv.Close()
	sess, err := s.start(&qemu.Machine{Arch: s.o.Arch, Kernel: kernel, Initrd: initrd, Append: "console=" + s.o.Arch.Console + " " + srv.NFSRootArgs() + " panic=-1", LogPath: log})
	if err != nil {
		return err
	}
	defer sess.Stop()
	return s.reachRoot(sess, srv)
}

// fallback boots kernel + initramfs with the NFS server stopped: the
// diagnosis line, a shell that answers, no panic; then with the server back
// the background retry reaches the root.
func (s *smoke) fallback(log string) error {
	if s.initrd == "" {
		return fmt.Errorf("initramfs_%s is not published: run build:initramfs", s.o.Arch.Name)
	}
	srv, err := s.rescued(log, s.kernel, s.initrd)
	if err != nil {
		return err
	}
	// second boot: the server comes back while the node waits
	sess2, err := s.start(&qemu.Machine{Arch: s.o.Arch, Kernel: s.kernel, Initrd: s.initrd, Append: "console=" + s.o.Arch.Console + " " + srv.NFSRootArgs(), LogPath: strings.TrimSuffix(log, ".log") + "-recovery.log"})
	if err != nil {
		return err
	}
	defer sess2.Stop()
	if _, err := sess2.Expect(boot.Markers(boot.Rescue), nil, s.o.Timeout); err != nil {
		return err
	}
	srv3, err := testnfs.StartOnPort(srv.Dir, testnfs.TestExport, srv.Port)
	if err != nil {
		return err
	}
	defer srv3.Close()
	return s.reachRoot(sess2, srv3, "the NFS root came back")
}

// fallbackVmlinuz boots the published vmlinuz_<arch> alone with the NFS
// server stopped: the initramfs it carries must diagnose and give a shell
// where a bare kernel panics ("No working init found").
func (s *smoke) fallbackVmlinuz(log string) error {
	if s.vmlinuz == "" {
		return fmt.Errorf("vmlinuz_%s is not published: run build:netboot", s.o.Arch.Name)
	}
	_, err := s.rescued(log, s.vmlinuz, "")
	return err
}

// rescued boots kernel (and initrd) against the test NFS server's address
// with the server stopped, and checks the fallback's diagnosis names the
// server and export and its shell answers. It returns the stopped server
// (its address, port and root) for a boot that brings it back.
func (s *smoke) rescued(log, kernel, initrd string) (*testnfs.Server, error) {
	srv, err := s.serve()
	if err != nil {
		return nil, err
	}
	srv.Close()
	sess, err := s.start(&qemu.Machine{Arch: s.o.Arch, Kernel: kernel, Initrd: initrd, Append: "console=" + s.o.Arch.Console + " " + srv.NFSRootArgs(), LogPath: log})
	if err != nil {
		return nil, err
	}
	defer sess.Stop()
	res, err := sess.Expect(boot.Markers(boot.Rescue), nil, s.o.Timeout)
	if err != nil {
		return nil, err
	}
	s.lastBoot = res.Elapsed
	diag := lineOf(res.Console, "diskless-fallback: mount failed")
	if !strings.Contains(diag, "server="+qemu.HostIP) || !strings.Contains(diag, "export="+testnfs.TestExport) {
		return nil, fmt.Errorf("diagnosis %q does not name the server and export", diag)
	}
	time.Sleep(2 * time.Second) // let gosh print its prompt
	// gosh computes 6*7: the answer is not the echo of what we typed
	if err := sess.Send("echo smoke-$((6*7))\r"); err != nil {
		return nil, err
	}
	if _, err := sess.Expect([]string{"smoke-42"}, nil, 30*time.Second); err != nil {
		return nil, fmt.Errorf("the rescue shell did not answer: %w", err)
	}
	// the admin typed: the background retries stop at their next wake-up
	// (which may have come before the shell's answer)
	if !strings.Contains(sess.Console(), "background retries stopped") {
		if _, err := sess.Expect([]string{"background retries stopped"}, nil, 40*time.Second); err != nil {
			return nil, fmt.Errorf("typing at the shell did not stop the background retries: %w", err)
		}
	}
	return srv, nil
}

// uefiServe checks the firmware and the published EFI vmlinuz are there
// and starts the test NFS server.
func (s *smoke) uefiServe(firmware string) (*testnfs.Server, error) {
	if err := qemu.NeedFirmware(firmware); err != nil {
		return nil, err
	}
	if s.vmlinuz == "" {
		return nil, fmt.Errorf("vmlinuz_%s is not published", s.o.Arch.Name)
	}
	return s.serve()
}

// uefi boots the published vmlinuz_arm64 (EFI zboot) under AAVMF.
func (s *smoke) uefi(log string) error {
	srv, err := s.uefiServe(qemu.AAVMFCode)
	if err != nil {
		return err
	}
	defer srv.Close()
	m := &qemu.Machine{Arch: s.o.Arch, Kernel: s.vmlinuz, Append: "console=" + s.o.Arch.Console + " " + srv.NFSRootArgs() + " panic=-1", LogPath: log}
	if _, err := m.UseFirmware(qemu.AAVMF, qemu.FirmwareOptions{}); err != nil {
		return err
	}
	sess, err := s.start(m)
	if err != nil {
		return err
	}
	defer sess.Stop()
	if _, err := sess.Expect(boot.Markers(boot.EFIStub), nil, s.o.Timeout); err != nil {
		return err
	}
	return s.reachRoot(sess, srv)
}

// uefiUBoot boots the published vmlinuz_riscv64 (EFI zboot) the way a
// riscv64 board's firmware does: OpenSBI runs U-Boot, U-Boot fetches the
// image over TFTP and starts it with bootefi, passing bootargs as the EFI
// load options. U-Boot's own DHCP boot only looks for a boot script, so
// the commands are typed at its prompt.
func (s *smoke) uefiUBoot(log string) error {
	srv, err := s.uefiServe(qemu.UBootRISC)
	if err != nil {
		return err
	}
	defer srv.Close()
	dir, err := s.tftpView("uefi")
	if err != nil {
		return err
	}
	m := &qemu.Machine{Arch: s.o.Arch, TFTPRoot: dir, LogPath: log}
	if _, err := m.UseFirmware(qemu.UBoot, qemu.FirmwareOptions{}); err != nil {
		return err
	}
	sess, err := s.start(m)
	if err != nil {
		return err
	}
	defer sess.Stop()
	if _, err := sess.Expect([]string{"U-Boot 20"}, nil, 60*time.Second); err != nil {
		return err
	}
	if _, err := sess.ExpectPrompt("=> ", 120*time.Second); err != nil {
		return fmt.Errorf("no U-Boot prompt: %w", err)
	}
	for _, cmd := range []struct{ line, want string }{
		{"setenv bootargs console=" + s.o.Arch.Console + " " + srv.NFSRootArgs() + " panic=-1", ""},
		{"tftpboot ${kernel_addr_r} " + filepath.Base(s.vmlinuz), "Bytes transferred"},
		{"bootefi ${kernel_addr_r} ${fdtcontroladdr}", boot.Markers(boot.EFIStub)[0]},
	} {
		if err := sess.Send(cmd.line + "\r"); err != nil {
			return err
		}
		if cmd.want == "" { // the echo of the command line, then the next prompt
			if _, err := sess.Expect([]string{"setenv bootargs"}, nil, 30*time.Second); err != nil {
				return fmt.Errorf("U-Boot %q: %w", cmd.line, err)
			}
			if _, err := sess.ExpectPrompt("=> ", 30*time.Second); err != nil {
				return fmt.Errorf("U-Boot %q: %w", cmd.line, err)
			}
			continue
		}
		if _, err := sess.Expect([]string{cmd.want}, []string{"TFTP error", "Unknown command"}, 60*time.Second); err != nil {
			return fmt.Errorf("U-Boot %q: %w", cmd.line, err)
		}
	}
	return s.reachRoot(sess, srv)
}

// Summary is the report as lines for a terminal or a log: the
// accelerator, then one line per path (PASS/FAIL, seconds, console log)
// with a failure's reason under it.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "accelerator: %s (%s)\n", r.Accel, r.AccelWhy)
	for _, p := range r.Paths {
		fmt.Fprintln(&b, p.Line())
		if p.Err != nil {
			fmt.Fprintf(&b, "    %v\n", strings.ReplaceAll(p.Err.Error(), "\n", "\n    "))
		}
	}
	return b.String()
}
