package qemu

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/diskless/diskless/internal/fsutil"
)

// Debian's x86-64 UEFI firmware (package ovmf): the code, read-only, and
// the template of the variable store each machine gets a copy of.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// OVMFOptions trim what OVMF's network boot tries on each NIC: PXEv4,
// PXEv6, HTTPv4, HTTPv6 in turn, each waiting for DHCP.
type OVMFOptions struct {
	// PXE keeps IPv4 PXE (first); without it the first try is HTTPv4 (OVMF
	// has no fw_cfg switch for HTTP boot). IPv6 PXE is always off.
	PXE bool
}

// OVMF returns the arguments that boot a q35 machine with OVMF: the code
// as read-only pflash, a fresh copy of the variable store in dir as
// writable pflash (a used store remembers boot options and would change
// what the next boot tries), and the fw_cfg switches of o.
func OVMF(dir string, o OVMFOptions) ([]string, error) {
	for _, p := range []string{OVMFCode, OVMFVars} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%s not found: apt-get install ovmf", p)
		}
	}
	vars := filepath.Join(dir, "OVMF_VARS.fd")
	data, err := os.ReadFile(OVMFVars)
	if err != nil {
		return nil, err
	}
	if err := fsutil.WriteAtomic(vars, data); err != nil {
		return nil, err
	}
	yn := func(b bool) string {
		if b {
			return "y"
		}
		return "n"
	}
	return []string{
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
		"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=" + yn(o.PXE),
		"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n",
	}, nil
}
