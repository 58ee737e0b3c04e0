// Package arch is the one table of architectures diskless builds for: the
// kernel's ARCH, where the kernel image lands, the cross toolchain and the
// Debian package that provides it, GOARCH for the initramfs, and how QEMU runs
// a guest of that arch. Every other package asks this table; none of them
// repeats its facts.
package arch

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
)

// Arch describes one supported architecture.
type Arch struct {
	// Name is the project's name for the arch: x86_64, i386, arm64, riscv64.
	Name string
	// Aliases are other names users type for it (amd64, aarch64, ...).
	Aliases []string
	// KernelArch is the kernel's ARCH= value.
	KernelArch string
	// SrcArch is the directory under arch/ in the kernel source.
	SrcArch string
	// ImageTarget is the make target that builds the boot image, and
	// ImagePath where it lands relative to the build directory.
	ImageTarget string
	ImagePath   string
	// ImageName is the artifact's name prefix: bzImage or Image.
	ImageName string
	// EFIImagePath is the EFI zboot application (vmlinuz.efi), when the arch
	// builds one, relative to the build directory.
	EFIImagePath string
	// Triplet is the cross compiler prefix without the trailing dash.
	Triplet string
	// ToolchainPackage is the Debian package providing Triplet-gcc.
	ToolchainPackage string
	// NativeOn lists host GOARCHes whose native gcc builds this kernel
	// (x86_64's gcc also builds ARCH=i386).
	NativeOn []string
	// GOARCH for Go programs (the u-root initramfs) on this arch.
	GOARCH string
	// QEMU is the system emulator binary and QEMUPackage its Debian package.
	QEMU        string
	QEMUPackage string
	// Machine, CPU and NIC are QEMU's -M, -cpu and -device for a test guest.
	Machine string
	CPU     string
	NIC     string
	// Console is the kernel console device (console=...).
	Console string
}

var all = []Arch{
	{
		Name: "x86_64", Aliases: []string{"amd64", "x86-64", "x64"},
		KernelArch: "x86_64", SrcArch: "x86",
		ImageTarget: "bzImage", ImagePath: "arch/x86/boot/bzImage", ImageName: "bzImage",
		Triplet: "x86_64-linux-gnu", ToolchainPackage: "gcc-x86-64-linux-gnu",
		NativeOn: []string{"amd64"}, GOARCH: "amd64",
		QEMU: "qemu-system-x86_64", QEMUPackage: "qemu-system-x86",
		Machine: "pc", NIC: "e1000", Console: "ttyS0",
	},
	{
		Name: "i386", Aliases: []string{"x86", "i686", "386"},
		KernelArch: "i386", SrcArch: "x86",
		ImageTarget: "bzImage", ImagePath: "arch/x86/boot/bzImage", ImageName: "bzImage",
		Triplet: "i686-linux-gnu", ToolchainPackage: "gcc-i686-linux-gnu",
		NativeOn: []string{"amd64", "386"}, GOARCH: "386",
		QEMU: "qemu-system-i386", QEMUPackage: "qemu-system-x86",
		Machine: "pc", NIC: "e1000", Console: "ttyS0",
	},
	{
		Name: "arm64", Aliases: []string{"aarch64"},
		KernelArch: "arm64", SrcArch: "arm64",
		ImageTarget: "Image", ImagePath: "arch/arm64/boot/Image", ImageName: "Image",
		EFIImagePath: "arch/arm64/boot/vmlinuz.efi",
		Triplet:      "aarch64-linux-gnu", ToolchainPackage: "gcc-aarch64-linux-gnu",
		NativeOn: []string{"arm64"}, GOARCH: "arm64",
		QEMU: "qemu-system-aarch64", QEMUPackage: "qemu-system-arm",
		Machine: "virt", CPU: "cortex-a57", NIC: "virtio-net-pci", Console: "ttyAMA0",
	},
	{
		Name: "riscv64", Aliases: []string{"riscv"},
		KernelArch: "riscv", SrcArch: "riscv",
		ImageTarget: "Image", ImagePath: "arch/riscv/boot/Image", ImageName: "Image",
		EFIImagePath: "arch/riscv/boot/vmlinuz.efi",
		Triplet:      "riscv64-linux-gnu", ToolchainPackage: "gcc-riscv64-linux-gnu",
		NativeOn: []string{"riscv64"}, GOARCH: "riscv64",
		QEMU: "qemu-system-riscv64", QEMUPackage: "qemu-system-misc",
		Machine: "virt", NIC: "virtio-net-pci", Console: "ttyS0",
	},
}

// All returns every supported arch, in the table's order.
func All() []Arch {
	out := make([]Arch, len(all))
	copy(out, all)
	return out
}

// Names returns the canonical names of all supported arches.
func Names() []string {
	names := make([]string, len(all))
	for i, a := range all {
		names[i] = a.Name
	}
	return names
}

// Lookup finds an arch by its name or one of its aliases (case-insensitive).
func Lookup(name string) (Arch, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	for _, a := range all {
		if n == a.Name {
			return a, nil
		}
		for _, al := range a.Aliases {
			if n == al {
				return a, nil
			}
		}
	}
	return Arch{}, fmt.Errorf("unknown arch %q: supported are %s (aliases: %s)",
		name, strings.Join(Names(), ", "), strings.Join(aliases(), ", "))
}

func aliases() []string {
	var out []string
	for _, a := range all {
		for _, al := range a.Aliases {
			out = append(out, al+"="+a.Name)
		}
	}
	sort.Strings(out)
	return out
}

// ParseArg parses a Mage target argument: "arch=<name>" or a bare "<name>".
// Mage hands the word over as typed, so "arch=x86_64" arrives literally.
func ParseArg(arg string) (Arch, error) {
	s := strings.TrimSpace(arg)
	if k, v, ok := strings.Cut(s, "="); ok {
		if strings.TrimSpace(k) != "arch" {
			return Arch{}, fmt.Errorf("argument %q: expected arch=<name> or a bare arch name (%s)",
				arg, strings.Join(Names(), ", "))
		}
		s = v
	}
	if s == "" {
		return Arch{}, fmt.Errorf("missing arch: give arch=<name> with one of %s", strings.Join(Names(), ", "))
	}
	return Lookup(s)
}

// ArtifactName is the published name of the kernel image: bzImage_<arch> or
// Image_<arch>.
func (a Arch) ArtifactName() string { return a.ImageName + "_" + a.Name }

// NativeFor reports whether the host's native gcc builds this arch's kernel
// on a host with the given GOARCH.
func (a Arch) NativeFor(hostGOARCH string) bool {
	for _, h := range a.NativeOn {
		if h == hostGOARCH {
			return true
		}
	}
	return false
}

// CrossCompile returns the CROSS_COMPILE prefix for building on this host:
// empty when the native compiler does the job, "<triplet>-" otherwise.
func (a Arch) CrossCompile() string {
	if a.NativeFor(runtime.GOARCH) {
		return ""
	}
	return a.Triplet + "-"
}

// Compiler returns the gcc command for this arch on this host and the Debian
// package that provides it.
func (a Arch) Compiler() (cmd, pkg string) {
	if a.NativeFor(runtime.GOARCH) {
		return "gcc", "gcc"
	}
	return a.Triplet + "-gcc", a.ToolchainPackage
}
