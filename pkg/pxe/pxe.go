// Package pxe owns what a node is told at boot: the kernel command line
// (ip=dhcp, the NFS root, the console) from the documented settings, and the
// PXELINUX configuration files that carry it. The same command line goes into
// pxelinux.cfg, the ELF netboot image and the EFI kernel's CONFIG_CMDLINE.
//
// It renders text; it does not publish files or talk to servers.
package pxe

import (
	"fmt"
	"net"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/kconfig"
)

// PinnedArgs are the kernel arguments whose value is a published file
// the fallback initramfs fetches over HTTP (a stateless node's image and
// overlay): Pin pins them like the kernel, so the node's image, overlay
// and SHA256SUMS come from the generation it booted.
var PinnedArgs = []string{"diskless.image=", "diskless.overlay="}

func pinArgs(f []string, pin func(string) string) {
	for j := range f {
		for _, a := range PinnedArgs {
			if v, ok := strings.CutPrefix(f[j], a); ok && strings.HasPrefix(v, "/") {
				f[j] = a + pin(v)
			}
		}
	}
}

// Settings for the node's kernel command line.
type Settings struct {
	// Server is the NFS server (NFS_SERVER). Empty: the kernel uses the
	// server that answered DHCP (its next-server), as the HOWTO's single
	// master does.
	Server string
	// Root is the NFS root path (NFS_ROOT); the kernel replaces %s with the
	// node's IP address, giving the HOWTO's /diskless/<ip> per slave.
	Root string
	// Opts are nfsroot mount options (NFS_OPTS). The kernel's own default
	// is NFSv2, which the slave kernel does not build, so vers= matters.
	Opts string
	// Extra kernel arguments (KERNEL_ARGS), appended.
	Extra string
}

// Defaults for Settings.
const (
	DefaultRoot = "/diskless/%s"
	DefaultOpts = "vers=3,tcp"
)

var hostRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// WithDefaults fills an empty Root and Opts with DefaultRoot and
// DefaultOpts.
func (s Settings) WithDefaults() Settings {
	if s.Root == "" {
		s.Root = DefaultRoot
	}
	if s.Opts == "" {
		s.Opts = DefaultOpts
	}
	return s
}

// Validate checks each setting, naming the variable.
func (s Settings) Validate() error {
	if s.Server != "" && net.ParseIP(s.Server) == nil && !hostRe.MatchString(s.Server) {
		return fmt.Errorf("NFS_SERVER=%q: not an IP address or host name", s.Server)
	}
	if s.Server != "" && net.ParseIP(s.Server) == nil {
		// The kernel's nfsroot= takes an address: it has no DNS at boot.
		return fmt.Errorf("NFS_SERVER=%q: the kernel's nfsroot= needs an IP address (there is no DNS before the root is mounted)", s.Server)
	}
	if !strings.HasPrefix(s.Root, "/") || strings.ContainsAny(s.Root, " \t,:") {
		return fmt.Errorf("NFS_ROOT=%q: want an absolute path without spaces, commas or colons (e.g. %s)", s.Root, DefaultRoot)
	}
	if strings.ContainsAny(s.Opts, " \t") {
		return fmt.Errorf("NFS_OPTS=%q: comma-separated nfsroot options without spaces (e.g. %s)", s.Opts, DefaultOpts)
	}
	if _, err := s.NFSVersion(); err != nil {
		return err
	}
	return nil
}

// NFSRoot is the nfsroot= value.
func (s Settings) NFSRoot() string {
	v := s.Root
	if s.Server != "" {
		v = s.Server + ":" + v
	}
	if s.Opts != "" {
		v += "," + s.Opts
	}
	return v
}

// Cmdline is the slave's kernel command line for arch a.
func (s Settings) Cmdline(a arch.Arch) string {
	parts := []string{"ip=dhcp", "root=/dev/nfs", "nfsroot=" + s.NFSRoot(), "rw", "console=" + a.Console}
	if s.Extra != "" {
		parts = append(parts, s.Extra)
	}
	return strings.Join(parts, " ")
}

// NFSVersion returns the vers= of the options ("3" when absent, as the
// options this project writes always say it).
func (s Settings) NFSVersion() (string, error) {
	v := "3"
	for _, o := range strings.Split(s.Opts, ",") {
		if k, val, ok := strings.Cut(o, "="); ok && (k == "vers" || k == "nfsvers") {
			v = val
		}
	}
	if _, ok := nfsVersionSymbol[v]; !ok {
		return "", fmt.Errorf("NFS_OPTS=%q: vers=%s is not an NFS version the kernel knows (2, 3, 4, 4.0, 4.1, 4.2)", s.Opts, v)
	}
	return v, nil
}

var nfsVersionSymbol = map[string]string{
	"2": "NFS_V2", "3": "NFS_V3", "4": "NFS_V4", "4.0": "NFS_V4", "4.1": "NFS_V4_1", "4.2": "NFS_V4_2",
}

// CheckKernel checks that the kernel config can mount the NFS root the
// settings ask for: a vers=4.1 nfsroot on a kernel without NFS_V4_1 hangs
// silently after IP-Config.
func (s Settings) CheckKernel(final *kconfig.Config) error {
	v, err := s.NFSVersion()
	if err != nil {
		return err
	}
	sym := nfsVersionSymbol[v]
	if final.Value(sym) != "y" {
		return fmt.Errorf("NFS_OPTS asks for NFS version %s but %s has CONFIG_%s %s: the node would hang after IP-Config; add CONFIG_%s=y to a fragment or change vers=", v, final.Name, sym, describe(final.Value(sym)), sym)
	}
	return nil
}

func describe(v string) string {
	if v == "n" {
		return "not set"
	}
	return "=" + v
}

// Label is one PXELINUX boot entry: a kernel (KERNEL, INITRD, APPEND) or,
// with Module set, a COM32 module and its arguments (COM32, APPEND).
type Label struct {
	Name, Kernel, Initrd, Append string
	Module                       string
}

// CPULabel is the label that boots the x86_64 kernel on a 64-bit CPU and
// the i386 kernel on a 32-bit one: PXELINUX's ifcpu64.c32 (Debian's
// syslinux-common, with libcom32.c32) jumps to the label named first when
// the CPU has long mode, else to the one after "--". Its module and
// libraries must be published beside ldlinux.c32 (CPULabelModules).
const CPULabel = "auto"

// CPULabelModules are the COM32 files CPULabel needs, in PXELINUX's
// directory.
var CPULabelModules = []string{"ifcpu64.c32", "libcom32.c32", "libutil.c32"}

// Config renders a pxelinux.cfg file in the LABEL form: DEFAULT <first
// label>, then each LABEL with its own KERNEL/INITRD/APPEND. The HOWTO's
// form, DEFAULT /bzImage with a global APPEND, boots PXELINUX 6.04 with an
// empty command line.
func Config(comment string, labels []Label) (string, error) {
	if len(labels) == 0 {
		return "", fmt.Errorf("no boot entries to write")
	}
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(comment), "\n") {
		fmt.Fprintf(&b, "# %s\n", l)
	}
	fmt.Fprintf(&b, "DEFAULT %s\nPROMPT 0\nTIMEOUT 0\n", labels[0].Name)
	seen := map[string]bool{}
	for _, l := range labels {
		if l.Name == "" || strings.ContainsAny(l.Name, " \t\n") || seen[l.Name] {
			return "", fmt.Errorf("bad or duplicate label %q", l.Name)
		}
		seen[l.Name] = true
		for _, v := range []string{l.Kernel, l.Initrd, l.Append, l.Module} {
			if strings.ContainsAny(v, "\n\r") {
				return "", fmt.Errorf("label %s: a value contains a line break", l.Name)
			}
		}
		if l.Module != "" {
			fmt.Fprintf(&b, "\nLABEL %s\n  COM32 %s\n  APPEND %s\n", l.Name, l.Module, l.Append)
			continue
		}
		fmt.Fprintf(&b, "\nLABEL %s\n  KERNEL %s\n", l.Name, l.Kernel)
		if l.Initrd != "" {
			fmt.Fprintf(&b, "  INITRD %s\n", l.Initrd)
		}
		fmt.Fprintf(&b, "  APPEND %s\n", l.Append)
	}
	return b.String(), nil
}

// MACFileName is the per-node pxelinux.cfg name for a MAC:
// 01-<mac, lowercase, dashes> (01 is the ARP type for Ethernet).
func MACFileName(mac string) (string, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("MAC %q: want six hex bytes like 52:54:00:12:34:56", mac)
	}
	return "01-" + strings.ReplaceAll(hw.String(), ":", "-"), nil
}

// HexIPFileName is the per-node pxelinux.cfg name for an IPv4 address:
// eight upper-case hex digits (192.168.1.21 -> C0A80115).
func HexIPFileName(ip string) (string, error) {
	p := net.ParseIP(ip).To4()
	if p == nil {
		return "", fmt.Errorf("IP %q: not an IPv4 address", ip)
	}
	return fmt.Sprintf("%02X%02X%02X%02X", p[0], p[1], p[2], p[3]), nil
}

// SlaveLabels returns one label per built x86 arch (PXELINUX is BIOS x86):
// kernel bzImage_<arch>, the initramfs when given, the slave command line.
// x86_64 comes first (the default) when built; with both x86_64 and i386,
// the first (default) label is CPULabel, which picks between them by the
// CPU, so a 32-bit node never loads a kernel it cannot run.
func SlaveLabels(s Settings, archs []arch.Arch, initramfs map[string]string) []Label {
	var out []Label
	sorted := append([]arch.Arch(nil), archs...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name == "x86_64" && sorted[j].Name != "x86_64" })
	has := map[string]bool{}
	for _, a := range sorted {
		if a.SrcArch != "x86" || has[a.Name] {
			continue
		}
		has[a.Name] = true
		out = append(out, Label{Name: "slave_" + a.Name, Kernel: a.ArtifactName(), Initrd: initramfs[a.Name], Append: s.Cmdline(a)})
	}
	if has["x86_64"] && has["i386"] {
		auto := Label{Name: CPULabel, Module: CPULabelModules[0], Append: "slave_x86_64 -- slave_i386"}
		out = append([]Label{auto}, out...)
	}
	return out
}

// IPXE names: the script DHCP hands every iPXE client (boot.ipxe), the
// per-arch scripts it chains (boot-<arch>.ipxe) and the per-node scripts
// nodes:render writes (ipxe/<mac with dashes>.ipxe).
const (
	IPXEScriptName = "boot.ipxe"
	IPXENodeDir    = "ipxe"
)

// IPXEArchScriptName is the per-arch script boot.ipxe chains.
func IPXEArchScriptName(a arch.Arch) string { return "boot-" + a.Name + ".ipxe" }

// IPXENodeScriptName is a node's own script: ipxe/52-54-00-12-34-56.ipxe,
// the name iPXE's ${mac:hexhyp} gives.
func IPXENodeScriptName(mac string) (string, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("MAC %q: want six hex bytes like 52:54:00:12:34:56", mac)
	}
	return IPXENodeDir + "/" + strings.ReplaceAll(hw.String(), ":", "-") + ".ipxe", nil
}

// NodeCmdlineDir holds the command lines of the nodes whose kernel has its
// own built in (arm64's EFI kernel): the fallback initramfs inside that
// kernel fetches cmdline/<mac with dashes> from its boot server and checks
// it against the set's signed SHA256SUMS.
const NodeCmdlineDir = "cmdline"

// NodeCmdlineName is a node's command line file: cmdline/52-54-00-12-34-56.
func NodeCmdlineName(mac string) (string, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("MAC %q: want six hex bytes like 52:54:00:12:34:56", mac)
	}
	return NodeCmdlineDir + "/" + strings.ReplaceAll(hw.String(), ":", "-"), nil
}

// IPXERetryWaits are the pauses (seconds) between an iPXE script's fetch
// attempts: 31 s in all, longer than a web server's restart (the storm
// test takes nginx down for 20 s; 1+2+4+8 = 15 s was not enough).
var IPXERetryWaits = []int{1, 2, 4, 8, 16}

// IPXEBoot renders an iPXE script that loads l's kernel and initramfs over
// HTTP from the server the script came from (absolute paths: iPXE resolves
// them against the script's URL) and boots them. The initrd= argument names
// the initramfs for the kernel's EFI stub, which loads it from EFI iPXE's
// file system; the BIOS boot protocol ignores it. Each fetch is retried
// (a lossy network, a server restarting) before the script gives up.
func IPXEBoot(comment string, l Label) (string, error) {
	for _, v := range []string{l.Kernel, l.Initrd, l.Append} {
		if strings.ContainsAny(v, "\n\r") {
			return "", fmt.Errorf("label %s: a value contains a line break", l.Name)
		}
	}
	if l.Kernel == "" {
		return "", fmt.Errorf("label %s: no kernel", l.Name)
	}
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	for _, c := range strings.Split(strings.TrimSpace(comment), "\n") {
		fmt.Fprintf(&b, "# %s\n", c)
	}
	args := l.Append
	if l.Initrd != "" {
		args = "initrd=" + path.Base(l.Initrd) + " " + args
	}
	fetch := fmt.Sprintf("kernel /%s %s", l.Kernel, args)
	if l.Initrd != "" {
		fetch += fmt.Sprintf(" && initrd /%s", l.Initrd)
	}
	// unrolled: Debian's iPXE has no arithmetic (no inc, no int settings)
	for i, wait := range IPXERetryWaits {
		fmt.Fprintf(&b, "%s && boot || imgfree\n", fetch)
		fmt.Fprintf(&b, "echo diskless: fetching or booting failed (attempt %d of %d); next in %d s\nsleep %d\n", i+1, len(IPXERetryWaits)+1, wait, wait)
	}
	fmt.Fprintf(&b, "%s && boot ||\n", fetch)
	fmt.Fprintf(&b, "echo diskless: gave up after %d attempts\nexit 1\n", len(IPXERetryWaits)+1)
	return b.String(), nil
}

// IPXEDispatch renders boot.ipxe: the node's own script when nodes:render
// wrote one (ipxe/${mac:hexhyp}.ipxe), else the script of its CPU's arch
// among archs (x86: a 64-bit CPU prefers x86_64, then i386).
func IPXEDispatch(comment string, archs []arch.Arch) string {
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	for _, c := range strings.Split(strings.TrimSpace(comment), "\n") {
		fmt.Fprintf(&b, "# %s\n", c)
	}
	fmt.Fprintf(&b, "imgfetch --name node /%s/${mac:hexhyp}.ipxe || goto by_arch\nchain --replace --autofree node\n", IPXENodeDir)
	has := map[string]bool{}
	for _, a := range archs {
		has[a.Name] = true
	}
	b.WriteString(":by_arch\ncpuid --ext 29 && goto cpu64 || goto cpu32\n")
	chainTo := func(label string, prefs ...string) {
		fmt.Fprintf(&b, ":%s\n", label)
		for _, p := range prefs {
			if has[p] {
				a, _ := arch.Lookup(p)
				fmt.Fprintf(&b, "chain --replace --autofree /%s\n", IPXEArchScriptName(a))
				return
			}
		}
		fmt.Fprintf(&b, "echo diskless: no kernel for this CPU (%s) is published here\nexit 1\n", strings.Join(prefs, " or "))
	}
	chainTo("cpu64", "x86_64", "i386")
	chainTo("cpu32", "i386")
	return b.String()
}

// generationPrefix matches a name already pinned by Pin (a file carried
// over from an earlier generation is pinned again to the new one).
var generationPrefix = regexp.MustCompile(`^(/?)\.diskless/generations/[0-9]+/`)

// ipxeFetches are the iPXE commands whose argument is an image to fetch.
var ipxeFetches = map[string]bool{"kernel": true, "initrd": true, "chain": true, "imgfetch": true}

// Pin makes a boot configuration name, for every published file it loads
// next, that file inside dir (the generation's directory, relative to the
// TFTP and HTTP root: ".diskless/generations/000007") instead of the
// top-level name, which resolves through the live generation when it is
// fetched: a node that read this generation's configuration then fetches
// this generation's kernel and initramfs even when a publish switches in
// between. PXELINUX configurations (KERNEL, LINUX, INITRD, APPEND's
// initrd=, all relative to PXELINUX's directory), GRUB's (linux and
// initrd, absolute in its TFTP root) and iPXE scripts (the
// absolute paths of kernel, initrd, chain and imgfetch) are rewritten,
// and in them and in a bare command line (a node's cmdline/<mac>) the
// PinnedArgs; published says whether a top-level name is in the generation; anything
// else is left as it is.
func Pin(text, dir string, published func(top string) bool) string {
	pin := func(tok string) string {
		slash := ""
		if m := generationPrefix.FindStringSubmatch(tok); m != nil {
			slash, tok = m[1], tok[len(m[0]):]
		} else if strings.HasPrefix(tok, "/") {
			slash, tok = "/", tok[1:]
		}
		top, _, _ := strings.Cut(tok, "/")
		if tok == "" || !published(top) {
			return slash + tok
		}
		return slash + dir + "/" + tok
	}
	ipxe := strings.HasPrefix(text, "#!ipxe")
	lines := strings.SplitAfter(text, "\n")
	for i, line := range lines {
		body := strings.TrimLeft(line, " \t")
		indent := line[:len(line)-len(body)]
		end := ""
		if strings.HasSuffix(body, "\n") {
			body, end = body[:len(body)-1], "\n"
		}
		f := strings.Split(body, " ")
		if len(f) < 2 || strings.HasPrefix(body, "#") {
			continue
		}
		cmd := strings.ToUpper(f[0])
		switch {
		case ipxe && ipxeFetches[f[0]]:
			// the image of each command of the line (after && too): the
			// first word after it that is not an option or an option's value
			for j := 1; j < len(f); j++ {
				if !ipxeFetches[f[j-1]] {
					continue
				}
				k := j
				for k < len(f) && strings.HasPrefix(f[k], "-") {
					if f[k] == "--name" || f[k] == "-n" || f[k] == "--timeout" || f[k] == "-t" {
						k++
					}
					k++
				}
				if k < len(f) && strings.HasPrefix(f[k], "/") {
					f[k] = pin(f[k])
				}
			}
			pinArgs(f, pin)
		case !ipxe && (cmd == "KERNEL" || cmd == "LINUX"):
			f[1] = pin(f[1])
			// GRUB's linux takes the command line on the same line
			pinArgs(f, pin)
		case !ipxe && cmd == "INITRD":
			parts := strings.Split(f[1], ",")
			for j := range parts {
				parts[j] = pin(parts[j])
			}
			f[1] = strings.Join(parts, ",")
		case !ipxe && cmd == "APPEND":
			for j := 1; j < len(f); j++ {
				if v, ok := strings.CutPrefix(f[j], "initrd="); ok {
					parts := strings.Split(v, ",")
					for k := range parts {
						parts[k] = pin(parts[k])
					}
					f[j] = "initrd=" + strings.Join(parts, ",")
				}
			}
			pinArgs(f, pin)
		case !ipxe && !strings.Contains(f[0], "="):
			continue
		default:
			// a bare command line (a node's cmdline/<mac>)
			pinArgs(f, pin)
		}
		lines[i] = indent + strings.Join(f, " ") + end
	}
	return strings.Join(lines, "")
}
