package kconfig

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// NFSRootChain is what a diskless slave needs built in to get an address and
// mount its root over NFS before any userspace runs (the HOWTO's list).
var NFSRootChain = []string{
	"NET", "PACKET", "UNIX", "INET",
	"IP_PNP", "IP_PNP_DHCP",
	"NETWORK_FILESYSTEMS", "NFS_FS", "ROOT_NFS",
}

// NICDrivers are Ethernet driver symbols that count as "a NIC driver" for
// the slave rule. A slave kernel must build at least one of them in.
var NICDrivers = []string{
	// QEMU and virtual machines
	"VIRTIO_NET", "E1000", "NE2K_PCI", "PCNET32", "8139CP", "8139TOO", "VMXNET3",
	// Intel
	"E100", "E1000E", "IGB", "IGC", "IXGB", "IXGBE", "I40E", "ICE",
	// Broadcom, Realtek, Marvell, Mellanox, others
	"TIGON3", "BNX2", "BNX2X", "BNXT", "R8169", "SKY2", "SKGE",
	"MLX4_EN", "MLX5_CORE", "FORCEDETH", "ATL1", "ATL1C", "ATL1E", "ALX",
	"VIA_RHINE", "VIA_VELOCITY", "TULIP", "NET_TULIP",
	// SoC and board NICs (arm64, riscv64)
	"STMMAC_ETH", "MACB", "SMC91X", "SMSC911X", "FEC", "MVNETA", "MVPP2",
	"THUNDER_NIC_PF", "THUNDER_NIC_VF", "HNS3", "QCOM_EMAC", "AMD_XGBE",
}

// SlaveRequested checks the requested (merged fragment) values against the
// slave rule before anything is built: any NFS-root chain option or NIC
// driver asked as a module is an error naming its fragment line.
func SlaveRequested(req *Config) error {
	var errs []string
	for _, e := range req.Entries {
		if e.Value != "m" {
			continue
		}
		if slices.Contains(NFSRootChain, e.Symbol) || slices.Contains(NICDrivers, e.Symbol) {
			errs = append(errs, fmt.Sprintf("%s: CONFIG_%s=m: a diskless slave has no disk to load modules from before its NFS root is mounted; set CONFIG_%s=y", e.Pos(), e.Symbol, e.Symbol))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("slave kernel rule:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

// SlaveFinal checks the final .config: every NFS-root chain option built in
// (=y) and at least one NIC driver =y. req gives fragment positions for the
// messages where the value was requested.
func SlaveFinal(final, req *Config) error {
	var errs []string
	for _, sym := range NFSRootChain {
		got := final.Value(sym)
		if got == "y" {
			continue
		}
		where := "not requested by any fragment; add it to kernels/slave.config"
		if e, ok := req.Lookup(sym); ok {
			where = "requested at " + e.Pos()
		}
		what := "not set"
		if got == "m" {
			what = "a module (=m); a slave cannot load modules before its NFS root is mounted"
		}
		errs = append(errs, fmt.Sprintf("CONFIG_%s must be =y for an NFS-root slave, final .config has it %s (%s)", sym, what, where))
	}
	var built, modules []string
	for _, sym := range NICDrivers {
		switch final.Value(sym) {
		case "y":
			built = append(built, sym)
		case "m":
			modules = append(modules, sym)
		}
	}
	if len(built) == 0 {
		msg := "no NIC driver is built in (=y): the slave cannot reach its NFS root; add one (e.g. CONFIG_E1000=y, CONFIG_VIRTIO_NET=y) to kernels/arch/<arch>.config"
		if len(modules) > 0 {
			sort.Strings(modules)
			msg += "; these are modules and must be =y: CONFIG_" + strings.Join(modules, ", CONFIG_")
		}
		errs = append(errs, msg)
	}
	if len(errs) > 0 {
		return fmt.Errorf("slave kernel rule (final %s):\n  %s", final.Name, strings.Join(errs, "\n  "))
	}
	return nil
}
