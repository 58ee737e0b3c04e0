// Package deps knows which programs each stage runs, which Debian packages
// provide them (a stage's package list is made from its programs), and
// installs the missing packages with apt-get when running as root. When not
// root it stops with the exact apt-get line to run. It does not decide what
// a stage does; stages ask it for their programs and packages.
package deps

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strings"

	"github.com/diskless/diskless/pkg/arch"
)

// KernelSourcePackage provides /usr/src/linux-source-6.1.tar.xz, the
// default kernel source.
const KernelSourcePackage = "linux-source-6.1"

// Program is a command a stage runs and the Debian package that provides
// it.
type Program struct{ Name, Package string }

// Compressors are the programs the kernel's make runs to pack the image,
// by the CONFIG_KERNEL_<name> choice (x86's bzImage, and the EFI zboot
// image of arm64/riscv64, whose default is gzip).
var Compressors = map[string]Program{
	"GZIP":  {"gzip", "gzip"},
	"XZ":    {"xz", "xz-utils"},
	"ZSTD":  {"zstd", "zstd"},
	"LZMA":  {"lzma", "xz-utils"},
	"BZIP2": {"bzip2", "bzip2"},
	"LZO":   {"lzop", "lzop"},
	"LZ4":   {"lz4", "lz4"},
}

// KernelPrograms lists what a kernel build for a runs: make and the
// toolchain (compiler and binutils, cross for a foreign arch; gcc as HOSTCC
// for Kconfig and Kbuild's host programs), Kbuild's tools, tar and xz that
// unpack the default source tarball, ccache (withCcache), and compressor,
// the program that packs the image (Compressors; "" for the kernel's
// default, gzip).
func KernelPrograms(a arch.Arch, compressor string, withCcache bool) []Program {
	cc, ccPkg := a.Compiler()
	binutils := "binutils"
	if pre := a.CrossCompile(); pre != "" {
		binutils = "binutils-" + strings.TrimSuffix(strings.ReplaceAll(pre, "_", "-"), "-")
	}
	ps := []Program{
		{"make", "make"}, {cc, ccPkg}, {a.CrossCompile() + "ld", binutils}, {a.CrossCompile() + "objcopy", binutils},
		{"gcc", "gcc"}, {"flex", "flex"}, {"bison", "bison"}, {"bc", "bc"}, {"perl", "perl-base"},
		{"tar", "tar"}, {"xz", "xz-utils"},
	}
	if withCcache {
		ps = append(ps, Program{"ccache", "ccache"})
	}
	if c, ok := Compressors[strings.ToUpper(compressor)]; ok {
		ps = append(ps, c)
	} else {
		ps = append(ps, Compressors["GZIP"])
	}
	return ps
}

// kernelCompressors are the compressions the project's fragments choose
// from; the kernel-build packages install all their programs up front,
// since the choice is known only once the fragments are merged.
var kernelCompressors = []string{"GZIP", "XZ", "ZSTD"}

// KernelBuild lists the packages a kernel build for a needs on this host:
// those of KernelPrograms for each of the fragments' compressors, the
// headers of the host programs and, with withSource, the default kernel
// source package (when KERNEL_SRC is not given). withCcache is false for
// NO_CCACHE=1: nothing then asks for ccache.
func KernelBuild(a arch.Arch, withSource, withCcache bool) []string {
	pkgs := []string{"build-essential", "libelf-dev", "libssl-dev"}
	for _, c := range kernelCompressors {
		for _, p := range KernelPrograms(a, c, withCcache) {
			pkgs = append(pkgs, p.Package)
		}
	}
	if withSource {
		pkgs = append(pkgs, KernelSourcePackage)
	}
	return Unique(pkgs)
}

// BootPrograms lists what the boot tests of a run: the emulator, and tar
// with zstd for the CI bundles they check.
func BootPrograms(a arch.Arch) []Program {
	return []Program{{a.QEMU, a.QEMUPackage}, {"tar", "tar"}, {"zstd", "zstd"}, {"bsdtar", "libarchive-tools"}, {"cpio", "cpio"}, {"xz", "xz-utils"}}
}

// Boot lists the packages the QEMU boot tests of a need: the programs of
// BootPrograms, firmware and network boot loaders.
func Boot(a arch.Arch) []string {
	pkgs := []string{"ipxe-qemu", "pxelinux", "syslinux-common"}
	for _, p := range BootPrograms(a) {
		pkgs = append(pkgs, p.Package)
	}
	switch a.Name {
	case "arm64":
		pkgs = append(pkgs, "qemu-efi-aarch64")
	case "riscv64":
		pkgs = append(pkgs, "opensbi", "u-boot-qemu")
	}
	return Unique(pkgs)
}

// Publish lists what publishing a's files needs: PXELINUX and iPXE
// (snponly.efi, undionly.kpxe) for x86 arches.
func Publish(a arch.Arch) []string {
	if a.SrcArch == "x86" {
		return []string{"pxelinux", "syslinux-common", "ipxe"}
	}
	return nil
}

// NodesPrograms lists what the node-inventory tests run: dnsmasq's binary
// (no service), findmnt, and apt-get/dpkg-deb to unpack isc-dhcp-server's
// dhcpd without installing its service.
func NodesPrograms() []Program {
	return []Program{{"dnsmasq", "dnsmasq-base"}, {"findmnt", "util-linux"}, {"dpkg-deb", "dpkg"}, {"apt-get", "apt"}}
}

// Nodes lists the packages of NodesPrograms.
func Nodes() []string { return packagesOf(NodesPrograms()) }

// DistccPrograms is what builds spread over distccd hosts run (DISTCC_HOSTS).
func DistccPrograms() []Program { return []Program{{"distcc", "distcc"}, {"distccd", "distcc"}} }

// SignPrograms is what the signature tests run: OpenBSD's signify, the
// independent check of what diskless signs.
func SignPrograms() []Program { return []Program{{"signify-openbsd", "signify-openbsd"}} }

// SecureBootPrograms is what signing EFI binaries for Secure Boot
// (SECUREBOOT_KEY) runs: sbsigntool's sbsign, and sbverify, which checks
// each signature.
func SecureBootPrograms() []Program {
	return []Program{{"sbsign", "sbsigntool"}, {"sbverify", "sbsigntool"}}
}

// SecureBootTestPrograms is what the Secure Boot tests run besides: openssl
// unlocks the firmware's snakeoil test key.
func SecureBootTestPrograms() []Program { return []Program{{"openssl", "openssl"}} }

// SecureBoot lists the packages of SecureBootPrograms.
func SecureBoot() []string { return packagesOf(SecureBootPrograms()) }

// WorkflowPrograms is what the workflow's lint runs besides actionlint (a
// Go tool): shellcheck, on the workflow's shell steps.
func WorkflowPrograms() []Program { return []Program{{"shellcheck", "shellcheck"}} }

// ImagePrograms is what building a node image and provisioning nodes from
// it run: debootstrap, cp and tar (IMAGE_FROM), zstd/xz for compressed
// tarballs, ssh-keygen for each node's host keys.
func ImagePrograms() []Program {
	return []Program{{"debootstrap", "debootstrap"}, {"cp", "coreutils"}, {"tar", "tar"}, {"zstd", "zstd"}, {"xz", "xz-utils"}, {"ssh-keygen", "openssh-client"}, {"mksquashfs", "squashfs-tools"}}
}

// Image lists the packages of ImagePrograms, and qemu-user-static for an
// arch the host cannot run (debootstrap's second stage runs its binaries).
func Image(a arch.Arch, hostGOARCH string) []string {
	pkgs := packagesOf(ImagePrograms())
	if a.GOARCH != hostGOARCH && !(a.GOARCH == "386" && hostGOARCH == "amd64") {
		pkgs = append(pkgs, "qemu-user-static")
	}
	return Unique(pkgs)
}

// NodeOSPrograms is what the node OS tests run besides QEMU: NFS-Ganesha
// with rpcbind in namespaces of their own, OpenSSH's client.
func NodeOSPrograms() []Program {
	return []Program{{"ganesha.nfsd", "nfs-ganesha"}, {"rpcbind", "rpcbind"}, {"nsenter", "util-linux"}, {"unshare", "util-linux"}, {"ssh", "openssh-client"}, {"ssh-keyscan", "openssh-client"}}
}

// NodeOS lists the packages of NodeOSPrograms and NFS-Ganesha's VFS
// backend (a library, no program).
func NodeOS() []string { return Unique(append(packagesOf(NodeOSPrograms()), "nfs-ganesha-vfs")) }

// LabPrograms is what the lab runs besides the daemons it unpacks from
// their packages (isc-dhcp-server, tftpd-hpa, nginx: installed, they would
// start system services): ip for the namespace, bridge and taps, dnsmasq,
// nsenter, curl for its HTTP checks, nft for the simulated nodes' port
// (counters and loss).
func LabPrograms() []Program {
	return []Program{{"ip", "iproute2"}, {"dnsmasq", "dnsmasq-base"}, {"nsenter", "util-linux"}, {"curl", "curl"}, {"apt-get", "apt"}, {"dpkg-deb", "dpkg"}, {"nft", "nftables"}}
}

// Lab lists the packages of LabPrograms, the libraries of the unpacked
// daemons, and the network boot firmware (SeaBIOS's iPXE ROMs, OVMF,
// AAVMF) and loaders (PXELINUX, iPXE's snponly.efi and undionly.kpxe).
func Lab() []string {
	return Unique(append(packagesOf(LabPrograms()), "libwrap0", "libpcre2-8-0", "libssl3", "zlib1g", "libcrypt1", "ipxe-qemu", "ipxe", "ovmf", "pxelinux", "syslinux-common", "qemu-efi-aarch64", "qemu-system-x86"))
}

// Sign lists the packages of SignPrograms.
func Sign() []string { return packagesOf(SignPrograms()) }

// Distcc lists the packages of DistccPrograms.
func Distcc() []string { return packagesOf(DistccPrograms()) }

func packagesOf(ps []Program) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Package)
	}
	return Unique(out)
}

// All lists every package the project uses on any arch.
func All() []string {
	pkgs := append(append(append(append(Nodes(), Distcc()...), Sign()...), SecureBoot()...), packagesOf(WorkflowPrograms())...)
	pkgs = append(append(append(pkgs, NodeOS()...), packagesOf(ImagePrograms())...), Lab()...)
	pkgs = append(append(pkgs, "qemu-user-static"), packagesOf(SecureBootTestPrograms())...)
	for _, a := range arch.All() {
		pkgs = append(pkgs, KernelBuild(a, true, true)...)
		pkgs = append(pkgs, Boot(a)...)
	}
	return Unique(pkgs)
}

// Unique sorts and de-duplicates a package list.
func Unique(pkgs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range pkgs {
		if p != "" && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// Missing returns the packages of pkgs that dpkg does not list as installed.
func Missing(ctx context.Context, pkgs []string) ([]string, error) {
	pkgs = Unique(pkgs)
	if len(pkgs) == 0 {
		return nil, nil
	}
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		return nil, fmt.Errorf("dpkg-query not found: diskless installs its dependencies on Debian 12; elsewhere install the equivalents of: %s", strings.Join(pkgs, " "))
	}
	args := append([]string{"-W", "-f=${Package} ${db:Status-Abbrev}\n"}, pkgs...)
	out, _ := exec.CommandContext(ctx, "dpkg-query", args...).Output() // exit 1 when some are unknown
	installed := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.HasPrefix(f[1], "ii") {
			installed[strings.SplitN(f[0], ":", 2)[0]] = true
		}
	}
	var missing []string
	for _, p := range pkgs {
		if !installed[p] {
			missing = append(missing, p)
		}
	}
	return missing, nil
}

// InstallLine is the command a user runs to install pkgs.
func InstallLine(pkgs []string) string {
	return "sudo apt-get install -y --no-install-recommends " + strings.Join(pkgs, " ")
}

// Ensure installs the missing packages of pkgs. As root it runs apt-get
// (apt-get update first when the install fails, e.g. on a fresh machine with
// empty lists); otherwise it returns an error with the exact apt-get line.
func Ensure(ctx context.Context, log *slog.Logger, pkgs []string) error {
	missing, err := Missing(ctx, pkgs)
	if err != nil || len(missing) == 0 {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing Debian packages: %s\nrun: %s", strings.Join(missing, " "), InstallLine(missing))
	}
	log.Info("installing Debian packages", "packages", strings.Join(missing, " "))
	install := func() error {
		return aptGet(ctx, append([]string{"install", "-y", "-q", "--no-install-recommends"}, missing...)...)
	}
	if err := install(); err != nil {
		log.Info("apt-get install failed; running apt-get update and trying again", "err", err)
		if err := aptGet(ctx, "update", "-q"); err != nil {
			return fmt.Errorf("apt-get update: %w", err)
		}
		if err := install(); err != nil {
			return fmt.Errorf("apt-get install %s: %w", strings.Join(missing, " "), err)
		}
	}
	still, err := Missing(ctx, missing)
	if err != nil {
		return err
	}
	if len(still) > 0 {
		return fmt.Errorf("apt-get did not install: %s", strings.Join(still, " "))
	}
	return nil
}

func aptGet(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		tail := buf.String()
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return fmt.Errorf("%w\n%s", err, tail)
	}
	return nil
}

// LookTool finds a command on PATH or returns an error naming the Debian
// package that provides it.
func LookTool(cmd, pkg string) (string, error) {
	p, err := exec.LookPath(cmd)
	if err != nil {
		return "", fmt.Errorf("%s not found: install the Debian package %s (%s)", cmd, pkg, InstallLine([]string{pkg}))
	}
	return p, nil
}
