// Package nodes reads the node inventory (nodes.toml), validates it, and
// renders every per-slave piece of the Gentoo diskless HOWTO from it: ISC
// dhcpd.conf and a dnsmasq equivalent, /etc/exports lines and the same
// exports for NFS-Ganesha, per-node pxelinux.cfg files, and each slave's
// root (fstab, hostname, conf.d/net, mount points, /dev/console; for a node
// running an image, its own etc, var and root copied from the published
// image once, its machine-id, SSH host keys and authorized_keys).
// Provisioning never overwrites a file an admin changed.
//
// It renders and writes files; it starts no daemon and touches nothing in
// the host's /etc.
package nodes

import (
	"bytes"
	"cmp"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/diskless/diskless/internal/fsutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/pxe"
)

// Network holds the settings shared by all nodes ([network] in nodes.toml).
type Network struct {
	// Master is the master's address: NFS, TFTP (next-server) and, by
	// default, router and DNS.
	Master string `toml:"master"`
	// Subnet in CIDR form ("192.168.1.0/24"); every node must be inside.
	Subnet string   `toml:"subnet"`
	Router string   `toml:"router,omitempty"`
	DNS    []string `toml:"dns,omitempty"`
	Domain string   `toml:"domain,omitempty"`
	// Root is where the per-slave roots live on the master (/diskless).
	Root string `toml:"root,omitempty"`
	// SharedRO are exported read-only to the subnet (/usr, /opt) and
	// mounted at the same path on the nodes; "/srv/opt:/opt" exports
	// /srv/opt and mounts it at /opt.
	SharedRO []string `toml:"shared_ro,omitempty"`
	// Home is exported read-write to the subnet (no no_root_squash) and
	// mounted at /home on the nodes.
	Home string `toml:"home,omitempty"`
	// SharedLog, when set, is a shared read-write /var/log export.
	SharedLog string `toml:"shared_log,omitempty"`
	// NFSOpts are the nodes' nfsroot options.
	NFSOpts string `toml:"nfs_opts,omitempty"`
	// HexIPFiles also writes pxelinux.cfg/<hex IP> for each node.
	HexIPFiles bool `toml:"hex_ip_files,omitempty"`
	// Image is the node image (build:image, image:publish) every node runs
	// unless it names its own; empty: the HOWTO's bare skeleton.
	Image string `toml:"image,omitempty"`
	// Interface is the master's network interface on the nodes' network
	// (radvd.conf); default eth0.
	Interface string `toml:"interface,omitempty"`
	// AuthorizedKeys is a file of SSH public keys (relative to nodes.toml)
	// provision installs as each image node's /root/.ssh/authorized_keys.
	AuthorizedKeys string `toml:"authorized_keys,omitempty"`
	// Mode is every node's mode unless it names its own: nfs (default,
	// the HOWTO's NFS root) or stateless (its image from RAM).
	Mode string `toml:"mode,omitempty"`
	// TmpfsSize is a stateless node's writable layer (tmpfs size=: 2G,
	// 512M, 50%); default half its RAM.
	TmpfsSize string `toml:"tmpfs_size,omitempty"`
	// SecureBoot is every node's secure_boot unless it states its own.
	SecureBoot bool `toml:"secure_boot,omitempty"`
}

// Node is one slave ([[node]]).
type Node struct {
	Name       string `toml:"name"`
	MAC        string `toml:"mac"`
	IP         string `toml:"ip"`
	Arch       string `toml:"arch"`
	Boot       string `toml:"boot,omitempty"` // pxelinux (default), etherboot, ipxe, uefi, http, shim
	KernelArgs string `toml:"kernel_args,omitempty"`
	// Image overrides [network] image for this node.
	Image string `toml:"image,omitempty"`
	// Mode and TmpfsSize override [network]'s for this node.
	Mode      string `toml:"mode,omitempty"`
	TmpfsSize string `toml:"tmpfs_size,omitempty"`
	// Master names the node's home master ([[master]]): its NFS root and
	// shared mounts are there. Default: the primary.
	Master string `toml:"master,omitempty"`
	// SecureBoot: the node's firmware enforces UEFI Secure Boot. Its boot
	// must be uefi or http (a chain of signed EFI binaries), and publishing
	// for it needs SECUREBOOT_KEY and SECUREBOOT_CERT. Unset: [network]'s.
	SecureBoot *bool `toml:"secure_boot,omitempty"`
}

// Inventory is nodes.toml.
type Inventory struct {
	Network Network `toml:"network"`
	// Masters, when given, are the masters (the first is the primary);
	// Network.Master is then the primary's address.
	Masters []Master `toml:"master"`
	Nodes   []Node   `toml:"node"`

	// Initrd names the fallback initramfs per arch as publish names it
	// (INITRAMFS_COMPRESS decides the extension; the settings set it): a
	// node's pxelinux.cfg file boots it as INITRD, as pxelinux.cfg/default
	// does. A node running an image needs it (it mounts the image's /usr).
	Initrd map[string]string `toml:"-"`

	file   string
	subnet *net.IPNet
	// stated maps each [network] key the file states (as opposed to a
	// default) to its line (0: not found, e.g. a dotted key).
	stated map[string]int
	// nodeLines are the [[node]] headers' lines, masterLines the
	// [[master]] ones (Parse)
	nodeLines, masterLines []int
	// statedMaster is [network] master as the file gives it
	statedMaster string
	// self is the master a ForMaster view renders for
	self string
}

// Boot methods: how the node's firmware starts and what it fetches how.
const (
	// BootPXELinux: BIOS PXE loads pxelinux.0, which loads the kernel and
	// initramfs, all over TFTP (the HOWTO's way).
	BootPXELinux = "pxelinux"
	// BootEtherboot: BIOS Etherboot/iPXE loads vmlinuz_<arch> (the
	// Multiboot ELF with the command line and initramfs inside) over TFTP.
	BootEtherboot = "etherboot"
	// BootIPXE: BIOS PXE loads undionly.kpxe over TFTP; iPXE (or a NIC's
	// own iPXE ROM) then takes boot.ipxe, the kernel and the initramfs
	// over HTTP.
	BootIPXE = "ipxe"
	// BootUEFI: UEFI PXE. x86-64 firmware loads snponly.efi over TFTP and
	// iPXE continues over HTTP as for ipxe; arm64 and riscv64 firmware load
	// vmlinuz_<arch> (the EFI zboot kernel, command line built in) over TFTP.
	BootUEFI = "uefi"
	// BootHTTP: UEFI HTTP boot; the firmware loads its first file from a
	// URL (snponly.efi on x86-64, vmlinuz_<arch> on arm64 and riscv64) and
	// nothing goes over TFTP.
	BootHTTP = "http"
	// BootShim: UEFI PXE for x86-64 Secure Boot nodes that trust only
	// Microsoft's keys: the firmware loads Debian's shimx64.efi (signed by
	// Microsoft) over TFTP, shim loads Debian's signed GRUB (grubx64.efi),
	// GRUB the kernel (which shim verifies: signed by a key in db or the
	// MOK list) and the initramfs over TFTP.
	BootShim = "shim"
)

// biosLoads is what the BIOS boot methods load unverified, for messages.
var biosLoads = map[string]string{
	BootPXELinux:  "pxelinux.0, then the kernel",
	BootEtherboot: "the Multiboot ELF vmlinuz_<arch>",
	BootIPXE:      "undionly.kpxe, then the kernel",
}

// SecureBootOf is whether nd's firmware enforces Secure Boot: its own
// secure_boot, else [network]'s.
func (inv *Inventory) SecureBootOf(nd Node) bool {
	if nd.SecureBoot != nil {
		return *nd.SecureBoot
	}
	return inv.Network.SecureBoot
}

// SecureBootNodes are the nodes whose firmware enforces Secure Boot, each
// as Validate's errors name it ("node 3 (n3, line 14)").
func (inv *Inventory) SecureBootNodes() []string {
	var out []string
	for i, nd := range inv.Nodes {
		if inv.SecureBootOf(nd) {
			out = append(out, inv.nodeWhere(i))
		}
	}
	return out
}

// File is the inventory's path, as errors name it.
func (inv *Inventory) File() string { return inv.file }

// BootMethods lists the boot methods, for messages.
var BootMethods = []string{BootPXELinux, BootEtherboot, BootIPXE, BootUEFI, BootHTTP, BootShim}

// bootRefusal says why a node of arch a cannot boot by method, or "".
func bootRefusal(method string, a arch.Arch) string {
	switch method {
	case BootPXELinux, BootEtherboot, BootIPXE:
		if a.SrcArch != "x86" {
			return fmt.Sprintf("boot = %q is for BIOS x86 nodes; %s boots by uefi or http", method, a.Name)
		}
	case BootUEFI, BootHTTP:
		if a.Name == "i386" {
			return fmt.Sprintf("boot = %q: no EFI kernel is built for i386 (32-bit UEFI); boot it by pxelinux, etherboot or ipxe", method)
		}
	case BootShim:
		if a.Name != "x86_64" {
			return fmt.Sprintf("boot = %q is for x86_64 nodes (Debian's shimx64.efi and grubx64.efi); %s boots by uefi or http", method, a.Name)
		}
	default:
		return fmt.Sprintf("boot = %q: want one of %s", method, strings.Join(BootMethods, ", "))
	}
	return ""
}

// Load reads and validates an inventory file.
func Load(path string) (*Inventory, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("node inventory: %w", err)
	}
	return Parse(data, path)
}

// Parse reads and validates inventory text; name is used in errors.
func Parse(data []byte, name string) (*Inventory, error) {
	inv := &Inventory{file: name}
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(inv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		var keys []string
		for _, k := range und {
			keys = append(keys, k.String())
		}
		return nil, fmt.Errorf("%s: unknown key(s) %s (see the schema in README.md)", name, strings.Join(keys, ", "))
	}
	inv.nodeLines, inv.masterLines = headerLines(data, "node"), headerLines(data, "master")
	inv.statedMaster = inv.Network.Master
	inv.stated = map[string]int{}
	for _, k := range md.Keys() {
		if len(k) == 2 && k[0] == "network" && md.IsDefined(k...) {
			inv.stated[k[1]] = networkKeyLine(data, k[1])
		}
	}
	inv.defaults()
	return inv, inv.Validate()
}

// Stated says whether the inventory file states the [network] key (the
// file gives it; otherwise it holds a default) and where: "nodes.toml:3",
// or the file's name when the line is not found (a dotted key or an inline
// table). An inventory not read by Parse states nothing.
func (inv *Inventory) Stated(key string) (where string, ok bool) {
	line, ok := inv.stated[key]
	if !ok {
		return "", false
	}
	if line == 0 {
		return inv.file, true
	}
	return fmt.Sprintf("%s:%d", inv.file, line), true
}

// headerLines are the 1-based lines of the file's [[table]] headers, in
// order: node i's is headerLines(data, "node")[i].
func headerLines(data []byte, table string) []int {
	var out []int
	for i, line := range strings.Split(string(data), "\n") {
		l, _, _ := strings.Cut(line, "#")
		if strings.ReplaceAll(strings.ReplaceAll(l, " ", ""), "\t", "") == "[["+table+"]]" {
			out = append(out, i+1)
		}
	}
	return out
}

// nodeWhere names node i (0-based) for a message: "node 2 (b, line
// 12)", the line of its [[node]] when the file was read by Parse.
func (inv *Inventory) nodeWhere(i int) string {
	if i < len(inv.nodeLines) && len(inv.nodeLines) == len(inv.Nodes) {
		return fmt.Sprintf("node %d (%s, line %d)", i+1, inv.Nodes[i].Name, inv.nodeLines[i])
	}
	return fmt.Sprintf("node %d (%s)", i+1, inv.Nodes[i].Name)
}

// networkKeyLine is the 1-based line where data states key in its
// [network] table ("key = ..." under [network], or "network.key = ..."
// before any table), or 0.
func networkKeyLine(data []byte, key string) int {
	unquote := func(s string) string { return strings.Trim(strings.TrimSpace(s), `"'`) }
	table := ""
	for i, line := range strings.Split(string(data), "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "[") {
			name, _, _ := strings.Cut(strings.TrimLeft(l, "["), "]")
			table = unquote(name)
			continue
		}
		k, _, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		k = unquote(k)
		if table == "network" && k == key || table == "" && k == "network."+key {
			return i + 1
		}
	}
	return 0
}

func (inv *Inventory) defaults() {
	n := &inv.Network
	if len(inv.Masters) > 0 && n.Master == "" {
		n.Master = inv.Masters[0].Address
	}
	if n.Router == "" {
		n.Router = n.Master
	}
	if len(n.DNS) == 0 && n.Master != "" {
		n.DNS = []string{n.Master}
		for _, m := range inv.Masters[min(1, len(inv.Masters)):] {
			n.DNS = append(n.DNS, m.Address)
		}
	}
	if n.Root == "" {
		n.Root = "/diskless"
	}
	if n.SharedRO == nil {
		n.SharedRO = []string{"/usr", "/opt"}
	}
	if n.Home == "" {
		n.Home = "/home"
	}
	if n.Interface == "" {
		n.Interface = "eth0"
	}
	if n.NFSOpts == "" {
		n.NFSOpts = "vers=3,tcp"
	}
	for i := range inv.Nodes {
		nd := &inv.Nodes[i]
		if nd.Boot == "" {
			nd.Boot = BootPXELinux
		}
		if hw, err := net.ParseMAC(nd.MAC); err == nil {
			nd.MAC = hw.String() // lower case, colons
		}
		if a, err := arch.Lookup(nd.Arch); err == nil {
			nd.Arch = a.Name
		}
	}
}

// imageNameRe is pkg/image's rule for image names.
var imageNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

var hostnameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Validate checks every field; the error names the file and the entry.
func (inv *Inventory) Validate() error {
	var errs []string
	add := func(where, format string, args ...any) {
		errs = append(errs, fmt.Sprintf("%s: %s: %s", inv.file, where, fmt.Sprintf(format, args...)))
	}
	n := &inv.Network
	if ip := net.ParseIP(n.Master).To4(); ip == nil {
		add("[network]", "master = %q: not an IPv4 address", n.Master)
	}
	_, subnet, err := net.ParseCIDR(n.Subnet)
	if err != nil || subnet.IP.To4() == nil {
		add("[network]", "subnet = %q: want IPv4 CIDR like 192.168.1.0/24", n.Subnet)
	} else {
		inv.subnet = subnet
		if ip := net.ParseIP(n.Master); ip != nil && !subnet.Contains(ip) {
			add("[network]", "master %s is outside subnet %s", n.Master, n.Subnet)
		}
	}
	if net.ParseIP(n.Router).To4() == nil {
		add("[network]", "router = %q: not an IPv4 address", n.Router)
	}
	for _, d := range n.DNS {
		if net.ParseIP(d).To4() == nil {
			add("[network]", "dns entry %q: not an IPv4 address", d)
		}
	}
	if n.Domain != "" && !validDomain(n.Domain) {
		add("[network]", "domain = %q: not a domain name", n.Domain)
	}
	var paths []string
	for _, p := range n.SharedRO {
		e, m := SplitShared(p)
		paths = append(paths, e, m)
	}
	for _, p := range append(append([]string{n.Root, n.Home}, paths...), n.SharedLog) {
		if p != "" && !ValidPath(p) {
			add("[network]", "path %q: %s", p, PathRule)
		}
	}
	if n.Image != "" && !imageNameRe.MatchString(n.Image) {
		add("[network]", "image = %q: want an image name like debian-12", n.Image)
	}
	if n.Mode != "" && n.Mode != ModeNFS && n.Mode != ModeStateless {
		add("[network]", "mode = %q: want one of %s", n.Mode, strings.Join(Modes, ", "))
	}
	if n.TmpfsSize != "" {
		if msg := checkTmpfsSize(n.TmpfsSize); msg != "" {
			add("[network]", "%s", msg)
		}
	}
	if strings.ContainsAny(n.NFSOpts, " \t\"") {
		add("[network]", "nfs_opts = %q: comma-separated options without spaces", n.NFSOpts)
	}
	if len(inv.Nodes) == 0 {
		add("[[node]]", "no nodes: add one with nodes:add")
	}
	inv.validateMasters(add)
	seen := map[string]map[string]int{"name": {}, "mac": {}, "ip": {}}
	for i, nd := range inv.Nodes {
		where := inv.nodeWhere(i)
		if !hostnameRe.MatchString(nd.Name) {
			add(where, "name %q: want a host name (lower-case letters, digits, '-', at most 63 characters)", nd.Name)
		}
		hw, err := net.ParseMAC(nd.MAC)
		if err != nil || len(hw) != 6 {
			add(where, "mac %q: want six hex bytes like 00:02:a5:04:3b:66", nd.MAC)
		}
		ip := net.ParseIP(nd.IP).To4()
		if ip == nil {
			add(where, "ip %q: not an IPv4 address", nd.IP)
		} else if inv.subnet != nil && !inv.subnet.Contains(ip) {
			add(where, "ip %s is outside subnet %s", nd.IP, n.Subnet)
		} else if ip.Equal(net.ParseIP(n.Master)) {
			add(where, "ip %s is the master's", nd.IP)
		}
		if _, err := arch.Lookup(nd.Arch); err != nil {
			add(where, "%v", err)
		}
		if a, err := arch.Lookup(nd.Arch); err == nil {
			if msg := bootRefusal(nd.Boot, a); msg != "" {
				add(where, "%s", msg)
			}
		}
		if nd.Boot == BootShim && strings.ContainsAny(nd.KernelArgs, pxe.GRUBSyntax) {
			add(where, "kernel_args = %q: boot = \"shim\" passes it in GRUB's configuration, which reads %s as syntax: leave them out", nd.KernelArgs, pxe.GRUBSyntax)
		}
		if inv.SecureBootOf(nd) && (nd.Boot == BootPXELinux || nd.Boot == BootEtherboot || nd.Boot == BootIPXE) {
			add(where, "secure_boot = true with boot = %q: no firmware verifies what a BIOS boot loads (%s); boot it by uefi or http (or shim), whose chain is signed EFI binaries", nd.Boot, biosLoads[nd.Boot])
		}
		if nd.Image != "" && !imageNameRe.MatchString(nd.Image) {
			add(where, "image = %q: want an image name like debian-12", nd.Image)
		}
		if nd.Mode != "" && nd.Mode != ModeNFS && nd.Mode != ModeStateless {
			add(where, "mode = %q: want one of %s", nd.Mode, strings.Join(Modes, ", "))
		}
		if nd.TmpfsSize != "" {
			if msg := checkTmpfsSize(nd.TmpfsSize); msg != "" {
				add(where, "%s", msg)
			}
		}
		if a, err := arch.Lookup(nd.Arch); err == nil && inv.Stateless(nd) {
			if msg := statelessRefusal(nd, a, inv.ImageOf(nd)); msg != "" {
				add(where, "%s", msg)
			}
		}
		if strings.ContainsAny(nd.KernelArgs, "\"\n\r") {
			add(where, "kernel_args must not contain quotes or line breaks")
		}
		mac := nd.MAC
		if err == nil {
			mac = hw.String() // 00:02:A5:... and 00:02:a5:... are one NIC
		}
		for _, k := range []struct{ key, val string }{{"name", nd.Name}, {"mac", mac}, {"ip", nd.IP}} {
			if k.val == "" {
				continue
			}
			if j, dup := seen[k.key][k.val]; dup {
				add(where, "%s %s is also that of %s", k.key, k.val, inv.nodeWhere(j))
			}
			seen[k.key][k.val] = i
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid node inventory:\n  %s", strings.Join(errs, "\n  "))
	}
	return nil
}

// PathRule is what ValidPath wants, for messages.
const PathRule = "want an absolute path without spaces, quotes, commas or .."

// ValidPath says whether p may be an inventory path (root, home, shared_ro,
// shared_log): the rendered exports and configs take it as it is.
func ValidPath(p string) bool {
	return strings.HasPrefix(p, "/") && !strings.Contains(p, "..") && !strings.ContainsAny(p, " \t\"#,")
}

func validDomain(d string) bool {
	for _, l := range strings.Split(d, ".") {
		if !hostnameRe.MatchString(strings.ToLower(l)) {
			return false
		}
	}
	return true
}

// SplitShared reads a shared_ro entry: "path" or "export:mountpoint".
func SplitShared(entry string) (export, mountpoint string) {
	if e, m, ok := strings.Cut(entry, ":"); ok {
		return e, m
	}
	return entry, entry
}

// Node finds a node by name.
func (inv *Inventory) Node(name string) (Node, bool) {
	for _, nd := range inv.Nodes {
		if nd.Name == name {
			return nd, true
		}
	}
	return Node{}, false
}

// ImageOf is the image the node runs ("" for none).
func (inv *Inventory) ImageOf(nd Node) string {
	return cmp.Or(nd.Image, inv.Network.Image)
}

// AuthorizedKeysPath is the authorized_keys file, resolved against the
// inventory's directory ("" when none is set).
func (inv *Inventory) AuthorizedKeysPath() string {
	p := inv.Network.AuthorizedKeys
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(inv.file), p)
}

// Sorted returns the nodes ordered by IP (stable rendering).
func (inv *Inventory) Sorted() []Node {
	out := append([]Node(nil), inv.Nodes...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := net.ParseIP(out[i].IP).To4(), net.ParseIP(out[j].IP).To4()
		return bytes.Compare(a, b) < 0
	})
	return out
}

// AddNode appends a node to the inventory file (creating it with the
// given network when missing), after validating the result; nothing is
// written on error.
func AddNode(path string, nd Node, network Network) error {
	var existing []byte
	if data, err := os.ReadFile(path); err == nil {
		existing = data
	} else if os.IsNotExist(err) {
		var b bytes.Buffer
		b.WriteString("# diskless node inventory: see README.md (Nodes) for the schema\n")
		if err := toml.NewEncoder(&b).Encode(struct {
			Network Network `toml:"network"`
		}{network}); err != nil {
			return err
		}
		existing = b.Bytes()
	} else {
		return err
	}
	var b bytes.Buffer
	b.Write(existing)
	if len(existing) > 0 && existing[len(existing)-1] != '\n' {
		b.WriteByte('\n')
	}
	b.WriteString("\n[[node]]\n")
	enc := toml.NewEncoder(&b)
	if err := enc.Encode(nd); err != nil {
		return err
	}
	if _, err := Parse(b.Bytes(), path); err != nil {
		return err
	}
	return fsutil.WriteAtomic(path, b.Bytes())
}

// ParseAddArgs reads nodes:add's words: name=, mac=, ip=, arch= (any order,
// each once), as Mage hands them over literally.
func ParseAddArgs(words []string) (Node, error) {
	var nd Node
	seen := map[string]bool{}
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return nd, fmt.Errorf("%q: want key=value (name=, mac=, ip=, arch=)", w)
		}
		if seen[k] {
			return nd, fmt.Errorf("%s= given twice", k)
		}
		seen[k] = true
		switch k {
		case "name":
			nd.Name = v
		case "mac":
			nd.MAC = v
		case "ip":
			nd.IP = v
		case "arch":
			nd.Arch = v
		default:
			return nd, fmt.Errorf("%q: unknown key %s (name=, mac=, ip=, arch=)", w, k)
		}
	}
	for _, k := range []string{"name", "mac", "ip", "arch"} {
		if !seen[k] {
			return nd, fmt.Errorf("missing %s=", k)
		}
	}
	return nd, nil
}

// NewNetwork guesses the network for a new inventory from the first node:
// its /24, with the master at .1. The admin checks it in nodes.toml.
func NewNetwork(nd Node) (Network, error) {
	ip := net.ParseIP(nd.IP).To4()
	if ip == nil {
		return Network{}, fmt.Errorf("ip %q: not an IPv4 address", nd.IP)
	}
	master := net.IPv4(ip[0], ip[1], ip[2], 1).String()
	return Network{Master: master, Subnet: fmt.Sprintf("%d.%d.%d.0/24", ip[0], ip[1], ip[2])}, nil
}
