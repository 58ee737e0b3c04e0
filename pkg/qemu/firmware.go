package qemu

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/diskless/diskless/internal/fsutil"
)

// Firmware is how a machine starts: the recipes every boot of the project
// uses, for the firmware nodes have.
type Firmware string

const (
	// SeaBIOS is QEMU's BIOS booting from the NIC with QEMU's iPXE option
	// ROM, as a PXE ROM would (PXELINUX, an ELF image, an iPXE script from
	// DHCP), its text and iPXE's and PXELINUX's on the serial console.
	SeaBIOS Firmware = "seabios"
	// OVMF is x86-64 UEFI (Debian's ovmf) on q35: a virtio NIC without an
	// option ROM, the firmware's own PXE or HTTP boot.
	OVMF Firmware = "ovmf"
	// AAVMF is arm64 UEFI (Debian's qemu-efi-aarch64) on virt with a device
	// tree (acpi=off), the firmware's own network stack.
	AAVMF Firmware = "aavmf"
	// UBoot is riscv64 U-Boot in S-mode (Debian's u-boot-qemu) started by
	// OpenSBI: it fetches and starts EFI images at its prompt.
	UBoot Firmware = "u-boot"
)

// Debian's firmware files.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	// OVMFSecureCode is OVMF with Secure Boot (it needs SMM);
	// OVMFSnakeoilVars is the variable store with Debian's snakeoil test
	// key (OVMFSnakeoilKey, password "snakeoil", and OVMFSnakeoilCert)
	// in PK, KEK and db: Secure Boot enforcing, for tests only.
	OVMFSecureCode   = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	OVMFSnakeoilVars = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
	OVMFSnakeoilKey  = "/usr/share/ovmf/PkKek-1-snakeoil.key"
	OVMFSnakeoilCert = "/usr/share/ovmf/PkKek-1-snakeoil.pem"
	// OVMFMicrosoftVars has Microsoft's keys in KEK and db, as most
	// servers ship: shim (signed by Microsoft) starts, nothing of ours.
	OVMFMicrosoftVars = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
	AAVMFCode         = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"
	// AAVMFFlashCode is AAVMF as a flash image (it has Secure Boot);
	// AAVMFSnakeoilVars its variable store with the snakeoil test key in
	// PK, KEK and db (the same key as OVMF's): Secure Boot enforcing.
	AAVMFFlashCode    = "/usr/share/AAVMF/AAVMF_CODE.fd"
	AAVMFSnakeoilVars = "/usr/share/AAVMF/AAVMF_VARS.snakeoil.fd"
	UBootRISC         = "/usr/lib/u-boot/qemu-riscv64_smode/uboot.elf"
)

// FirmwarePackage names the Debian package of a firmware file.
var firmwarePackage = map[string]string{OVMFCode: "ovmf", OVMFVars: "ovmf", OVMFSecureCode: "ovmf", OVMFSnakeoilVars: "ovmf", OVMFSnakeoilKey: "ovmf", OVMFSnakeoilCert: "ovmf", OVMFMicrosoftVars: "ovmf", AAVMFCode: "qemu-efi-aarch64", AAVMFFlashCode: "qemu-efi-aarch64", AAVMFSnakeoilVars: "qemu-efi-aarch64", UBootRISC: "u-boot-qemu"}

// NeedFirmware returns an error naming the Debian package when a firmware
// file is missing.
func NeedFirmware(path string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%s not found: install the Debian package %s", path, firmwarePackage[path])
	}
	return nil
}

// FirmwareOptions tune a recipe.
type FirmwareOptions struct {
	// HTTP makes OVMF start with its HTTP boot (IPv4 PXE off); without it
	// OVMF tries IPv4 PXE first. IPv6 PXE is always off.
	HTTP bool
	// Retry makes SeaBIOS try a failed network boot again after this long,
	// as servers' firmware retries PXE (the machine then reboots instead of
	// ending QEMU).
	Retry time.Duration
	// SecureBoot starts OVMF or AAVMF with Secure Boot enforcing: OVMF's
	// Secure Boot build on q35 with SMM, AAVMF from flash, each with a
	// fresh copy of Vars (OVMFSnakeoilVars, AAVMFSnakeoilVars when empty)
	// as its variable store: the firmware then starts only EFI binaries
	// signed by a key in that store's db.
	SecureBoot bool
	Vars       string
}

// UseFirmware sets m up to start with fw. A network boot (m.NetBoot) goes
// through the firmware's own network stack; a kernel (m.Kernel) is started
// by it (AAVMF) or instead of it (UBoot is itself the -kernel). The
// returned function removes what the recipe made (OVMF's variable store,
// a fresh copy per machine: a used one remembers boot options and would
// change what the next boot tries).
func (m *Machine) UseFirmware(fw Firmware, o FirmwareOptions) (func(), error) {
	none := func() {}
	switch fw {
	case SeaBIOS:
		// graphics=off: SeaBIOS puts its, iPXE's and PXELINUX's text on
		// the serial console (DHCP, file names, errors)
		m.Machine = "pc,graphics=off"
		m.RebootTimeout = o.Retry
		return none, nil
	case OVMF:
		code, template := OVMFCode, cmp.Or(o.Vars, OVMFVars)
		if o.SecureBoot {
			code, template = OVMFSecureCode, cmp.Or(o.Vars, OVMFSnakeoilVars)
		}
		remove, err := m.useFlash(code, template)
		if err != nil {
			return nil, err
		}
		yn := map[bool]string{true: "y", false: "n"}
		m.Extra = append(m.Extra,
			"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string="+yn[!o.HTTP],
			"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n")
		m.Machine = "q35"
		if o.SecureBoot {
			// the variable store only SMM code may write: without it a
			// guest could replace db
			m.Machine = "q35,smm=on"
			m.Extra = append(m.Extra, "-global", "driver=cfi.pflash01,property=secure,value=on")
		}
		m.NIC, m.NICOptions = "virtio-net-pci", "romfile="
		return remove, nil
	case AAVMF:
		m.Machine = "virt,acpi=off"
		m.NICOptions = "romfile="
		if !o.SecureBoot {
			if err := NeedFirmware(AAVMFCode); err != nil {
				return nil, err
			}
			m.Extra = append(m.Extra, "-bios", AAVMFCode)
			return none, nil
		}
		return m.useFlash(AAVMFFlashCode, cmp.Or(o.Vars, AAVMFSnakeoilVars))
	case UBoot:
		if err := NeedFirmware(UBootRISC); err != nil {
			return nil, err
		}
		m.Kernel = UBootRISC
		return none, nil
	}
	return nil, fmt.Errorf("unknown firmware %q", fw)
}

// useFlash gives m UEFI firmware in flash: code read-only, and a fresh
// copy of the variable store template (a used one remembers boot options)
// in a directory of its own, which the returned function removes.
func (m *Machine) useFlash(code, template string) (func(), error) {
	for _, p := range []string{code, template} {
		if err := NeedFirmware(p); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "diskless-efivars-")
	if err != nil {
		return nil, err
	}
	vars := filepath.Join(dir, filepath.Base(template))
	data, err := os.ReadFile(template)
	if err == nil {
		err = fsutil.WriteAtomic(vars, data)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	m.Extra = append(m.Extra,
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
		"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	return func() { os.RemoveAll(dir) }, nil
}
