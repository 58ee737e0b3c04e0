package pxe

import (
	"fmt"
	"net"
	"strings"
)

// GRUB, shim's second stage on Secure Boot nodes that trust only
// Microsoft's keys (boot = "shim"): Debian's signed netboot GRUB takes its
// configuration from (tftp,<server>)/grub: grub/grub.cfg (GRUBConfig),
// which sources the node's own grub/<mac with colons>.cfg (GRUBNodeConfig,
// nodes:render), named as GRUB's ${net_default_mac} says it.
const (
	GRUBDir        = "grub"
	GRUBConfigName = GRUBDir + "/grub.cfg"
)

// GRUBSyntax are the characters GRUB's configuration reads as syntax
// (variables, quotes, separators, blocks, redirections, comments): a
// command line with one of them is refused, not quoted.
const GRUBSyntax = "$;\"'\\{}|&<>#"

// GRUBNodeConfigName is a node's own GRUB configuration:
// grub/52:54:00:12:34:56.cfg.
func GRUBNodeConfigName(mac string) (string, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("MAC %q: want six hex bytes like 52:54:00:12:34:56", mac)
	}
	return GRUBDir + "/" + hw.String() + ".cfg", nil
}

// GRUBConfig is grub/grub.cfg: it sources the node's own configuration,
// and says so when there is none.
func GRUBConfig(comment string) string {
	var b strings.Builder
	for _, c := range strings.Split(strings.TrimSpace(comment), "\n") {
		fmt.Fprintf(&b, "# %s\n", c)
	}
	b.WriteString("set timeout=0\n")
	b.WriteString("source ${prefix}/${net_default_mac}.cfg\n")
	b.WriteString("echo \"diskless: no grub/${net_default_mac}.cfg: this node is not in nodes.toml with boot = \\\"shim\\\"\"\n")
	b.WriteString("sleep 10\n")
	return b.String()
}

// GRUBNodeConfig renders a node's GRUB configuration: l's kernel and
// initramfs by TFTP from the server GRUB came from, with l's command line.
// GRUB hands the kernel to shim's verification (shim_lock) first: it must
// be signed by a key in db or the MOK list.
func GRUBNodeConfig(comment string, l Label) (string, error) {
	for _, v := range []string{l.Kernel, l.Initrd, l.Append} {
		if strings.ContainsAny(v, "\n\r"+GRUBSyntax) {
			return "", fmt.Errorf("label %s: a value contains a line break or one of %s (GRUB's syntax)", l.Name, GRUBSyntax)
		}
	}
	if l.Kernel == "" {
		return "", fmt.Errorf("label %s: no kernel", l.Name)
	}
	var b strings.Builder
	for _, c := range strings.Split(strings.TrimSpace(comment), "\n") {
		fmt.Fprintf(&b, "# %s\n", c)
	}
	fmt.Fprintf(&b, "echo \"diskless: loading /%s\"\n", l.Kernel)
	fmt.Fprintf(&b, "linux /%s %s\n", l.Kernel, l.Append)
	if l.Initrd != "" {
		fmt.Fprintf(&b, "initrd /%s\n", l.Initrd)
	}
	b.WriteString("boot\n")
	return b.String(), nil
}
