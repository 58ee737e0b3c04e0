// Package settings is the one place where the project's settings are read:
// the documented environment variables and the node inventory (nodes.toml),
// once, at the edge (the magefile, the tests), into one Settings value that
// every stage takes its options from. Packages under pkg/ read no
// environment variable; they take plain values from here.
//
// Precedence: nodes.toml, when it exists, is the source of truth for the
// network: the master (NFS server), where the roots live (DISKLESS_ROOT,
// NFS_ROOT) and the NFS options. A value the file states wins: the
// variable may repeat it, and a different one makes Load fail naming both
// and the file's line. A key the file leaves out (root, nfs_opts; master
// is required) is no conflict: the variable fills it, else its default.
// Without an inventory the variables give those values. Everything else
// comes from the environment, with the defaults the README lists.
//
// It validates and converts values; it builds, boots and writes nothing.
package settings

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/diskless/diskless/internal/flagval"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/image"
	"github.com/diskless/diskless/pkg/initramfs"
	"github.com/diskless/diskless/pkg/kbuild"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/pxe"
	"github.com/diskless/diskless/pkg/secureboot"
	"github.com/diskless/diskless/pkg/sign"
)

// Lookup is how Load reads a variable (the process environment, at the edge; a map in
// tests).
type Lookup func(string) (string, bool)

// Map is a Lookup over a map, for tests and callers that build their own.
func Map(m map[string]string) Lookup {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// Settings is every setting of the project, validated.
type Settings struct {
	// ProjectDir is the repository root (go.mod, kernels/, initramfs/).
	ProjectDir string
	// Artifacts is ProjectDir/artifacts.
	Artifacts string
	// CacheDir is $XDG_CACHE_HOME/diskless (default ~/.cache/diskless).
	CacheDir string

	// Kernel build.
	KernelSrc   string   // KERNEL_SRC; empty: Debian's linux-source
	Extra       []string // KCONFIG_EXTRA, as paths
	Jobs        int      // JOBS; 0: number of CPUs
	ConfigOnly  bool     // CONFIG_ONLY
	NoCcache    bool     // NO_CCACHE
	DistccHosts string   // DISTCC_HOSTS
	// SourceDateEpoch (SOURCE_DATE_EPOCH) is the build timestamp; 0: the
	// source tree's release date.
	SourceDateEpoch int64
	// What the kernel's make runs with instead of the whole environment
	// (see kbuild.Options): PATH, HOME, CCACHE_DIR and XDG_CACHE_HOME as
	// the command was started with them.
	Path, Home, CcacheDir, XDGCacheHome string

	// Boot is what a node is told (NFS_SERVER, NFS_ROOT, NFS_OPTS,
	// KERNEL_ARGS, or the inventory's network).
	Boot pxe.Settings
	// Root is DISKLESS_ROOT (or the inventory's root): the TFTP root and
	// the parent of the per-node roots.
	Root string
	// Compress is INITRAMFS_COMPRESS.
	Compress initramfs.Compressor
	// NetbootInitramfs (NETBOOT_INITRAMFS, default on) puts the fallback
	// initramfs inside vmlinuz_<arch> on x86 (the ELF image) and arm64
	// (built into the EFI kernel); NetbootInitramfsSet says the variable
	// was given (an explicit 1 on riscv64 is an error).
	NetbootInitramfs    bool
	NetbootInitramfsSet bool

	// Publishing.
	PublishNoWait bool     // PUBLISH_NOWAIT
	PublishKeep   int      // PUBLISH_KEEP; 0: the default
	PublishFrom   []string // PUBLISH_FROM: bundle files (a directory expanded)
	// PublishDrop (PUBLISH_DROP) names arches whose files a publish removes
	// from the live generation; other arches are kept.
	PublishDrop []string

	// Signing. SigningKey (SIGNING_KEY, a signify secret key file) signs
	// SHA256SUMS of bundles and published trees; SigningPub is its public
	// key file's name for the signature's comment. TrustedKeys
	// (TRUSTED_KEY, comma-separated public key files) are what publish,
	// verify and rollback accept.
	SigningKey  *sign.SecretKey
	SigningPub  string
	TrustedKeys []*sign.PublicKey
	// SecureBoot (SECUREBOOT_KEY and SECUREBOOT_CERT, secureboot:keygen's
	// files) signs the EFI binaries a node's firmware loads; checked
	// when read (a pair, valid now, for code signing).
	SecureBoot *secureboot.Key

	// Node images.
	Image     string // IMAGE (default: the inventory's image, else debian-12)
	ImageFrom string // IMAGE_FROM: a directory or tarball with a root
	Mirror    string // DEBIAN_MIRROR (default: the host's apt sources)
	ImageKeep int    // IMAGE_KEEP: generations of an image kept (0: default)

	// The lab (lab:up): LAB_DHCP is dhcpd (default) or dnsmasq.
	LabDHCP string

	// Node inventory.
	NodesFile string           // NODES_FILE (default ProjectDir/nodes.toml)
	Inventory *nodes.Inventory // nil when NodesFile does not exist
	NodeBoot  string           // BOOT, for nodes:add

	// rootSet: DISKLESS_ROOT was given (not the default)
	rootSet bool

	// Tests.
	QEMUAccel  string   // QEMU_ACCEL: "", tcg or kvm
	SmokePaths []string // SMOKE_PATHS
	CI         bool     // CI
}

// Load reads the environment through lookup and the inventory, validates
// every value and returns the settings. projectDir is the repository root.
// Errors name the variable or the file and line.
func Load(lookup Lookup, projectDir string) (*Settings, error) {
	get := func(k string) string { v, _ := lookup(k); return strings.TrimSpace(v) }
	s := &Settings{ProjectDir: projectDir, Artifacts: filepath.Join(projectDir, "artifacts")}
	s.CacheDir = kbuild.CacheDir(get("XDG_CACHE_HOME"), get("HOME"))
	s.Path, s.Home, s.CcacheDir, s.XDGCacheHome = get("PATH"), get("HOME"), get("CCACHE_DIR"), get("XDG_CACHE_HOME")
	for _, read := range []func(func(string) string, Lookup) error{s.kernel, s.boot, s.publishing, s.signing, s.images, s.tests, s.inventory} {
		if err := read(get, lookup); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// kernel reads the kernel build's settings.
func (s *Settings) kernel(get func(string) string, _ Lookup) error {
	s.KernelSrc = get("KERNEL_SRC")
	for _, f := range strings.Split(get("KCONFIG_EXTRA"), ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if !filepath.IsAbs(f) {
			f = filepath.Join(s.ProjectDir, f)
		}
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("KCONFIG_EXTRA: fragment %s: %w", f, pathErr(err))
		}
		s.Extra = append(s.Extra, f)
	}
	if j := get("JOBS"); j != "" {
		n, err := strconv.Atoi(j)
		if err != nil || n < 1 || n > 1024 {
			return fmt.Errorf("JOBS=%q: want a whole number of parallel jobs from 1 to 1024", j)
		}
		s.Jobs = n
	}
	var err error
	for name, dst := range map[string]*bool{"CONFIG_ONLY": &s.ConfigOnly, "NO_CCACHE": &s.NoCcache, "PUBLISH_NOWAIT": &s.PublishNoWait} {
		if *dst, err = flagval.Bool(name, get(name)); err != nil {
			return err
		}
	}
	if s.DistccHosts = get("DISTCC_HOSTS"); s.DistccHosts != "" {
		if _, err := kbuild.ParseDistccHosts(s.DistccHosts); err != nil {
			return err
		}
	}
	if e := get("SOURCE_DATE_EPOCH"); e != "" {
		n, err := strconv.ParseInt(e, 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970 as a positive whole number (e.g. $(git log -1 --format=%%ct))", e)
		}
		s.SourceDateEpoch = n
	}
	return nil
}

// boot reads what goes into the initramfs and the netboot image.
func (s *Settings) boot(get func(string) string, lookup Lookup) error {
	var err error
	if s.Compress, err = initramfs.ParseCompressor(get("INITRAMFS_COMPRESS")); err != nil {
		return err
	}
	s.NetbootInitramfs = true
	if v, ok := lookup("NETBOOT_INITRAMFS"); ok && strings.TrimSpace(v) != "" {
		s.NetbootInitramfsSet = true
		if s.NetbootInitramfs, err = flagval.Bool("NETBOOT_INITRAMFS", v); err != nil {
			return err
		}
	}
	return nil
}

// publishing reads how publish keeps, takes and drops generations.
func (s *Settings) publishing(get func(string) string, _ Lookup) error {
	if k := get("PUBLISH_KEEP"); k != "" {
		n, err := strconv.Atoi(k)
		if err != nil || n < 1 {
			return fmt.Errorf("PUBLISH_KEEP=%q: want a number of generations, at least 1", k)
		}
		s.PublishKeep = n
	}
	var err error
	if s.PublishFrom, err = bundles(get("PUBLISH_FROM")); err != nil {
		return err
	}
	for _, d := range strings.Split(get("PUBLISH_DROP"), ",") {
		if d = strings.TrimSpace(d); d == "" {
			continue
		}
		a, err := arch.Lookup(d)
		if err != nil {
			return fmt.Errorf("PUBLISH_DROP: %w", err)
		}
		s.PublishDrop = append(s.PublishDrop, a.Name)
	}
	return nil
}

// signing reads the keys: the one that signs, those trusted.
func (s *Settings) signing(get func(string) string, _ Lookup) error {
	var err error
	if p := get("SIGNING_KEY"); p != "" {
		if s.SigningKey, err = sign.ReadSecretKey(p); err != nil {
			return fmt.Errorf("SIGNING_KEY: %w", pathErr(err))
		}
		s.SigningPub = sign.PubName(p)
	}
	for _, p := range strings.Split(get("TRUSTED_KEY"), ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		k, err := sign.ReadPublicKey(p)
		if err != nil {
			return fmt.Errorf("TRUSTED_KEY: %w", pathErr(err))
		}
		s.TrustedKeys = append(s.TrustedKeys, k)
	}
	switch key, cert := get("SECUREBOOT_KEY"), get("SECUREBOOT_CERT"); {
	case key != "" && cert != "":
		if s.SecureBoot, err = secureboot.Load(key, cert, time.Now()); err != nil {
			return err
		}
	case key != "":
		return fmt.Errorf("SECUREBOOT_KEY=%s without SECUREBOOT_CERT: give its certificate too (secureboot:keygen's .crt)", key)
	case cert != "":
		return fmt.Errorf("SECUREBOOT_CERT=%s without SECUREBOOT_KEY: give its key too (secureboot:keygen's .key)", cert)
	}
	return nil
}

// images reads the node image's settings (IMAGE is read with the
// inventory, whose image is its default).
func (s *Settings) images(get func(string) string, _ Lookup) error {
	s.ImageFrom = get("IMAGE_FROM")
	if s.Mirror = get("DEBIAN_MIRROR"); s.Mirror == "" {
		s.Mirror = image.HostMirror()
	}
	if k := get("IMAGE_KEEP"); k != "" {
		n, err := strconv.Atoi(k)
		if err != nil || n < 1 {
			return fmt.Errorf("IMAGE_KEEP=%q: want a number of generations, at least 1", k)
		}
		s.ImageKeep = n
	}
	return nil
}

// tests reads the lab's and the boot tests' settings.
func (s *Settings) tests(get func(string) string, _ Lookup) error {
	switch s.LabDHCP = get("LAB_DHCP"); s.LabDHCP {
	case "":
		s.LabDHCP = "dhcpd"
	case "dhcpd", "dnsmasq":
	default:
		return fmt.Errorf("LAB_DHCP=%q: want dhcpd (ISC) or dnsmasq", s.LabDHCP)
	}
	switch s.QEMUAccel = get("QEMU_ACCEL"); s.QEMUAccel {
	case "", "tcg", "kvm":
	default:
		return fmt.Errorf("QEMU_ACCEL=%q: want tcg or kvm (or unset: probe KVM)", s.QEMUAccel)
	}
	for _, p := range strings.Split(get("SMOKE_PATHS"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			s.SmokePaths = append(s.SmokePaths, p)
		}
	}
	s.CI = flagval.CI(get("CI"))
	return nil
}

// inventory reads nodes.toml (NODES_FILE), the network settings with it
// (network), and IMAGE, whose default is the inventory's.
func (s *Settings) inventory(get func(string) string, _ Lookup) error {
	s.NodeBoot = get("BOOT")
	if s.NodesFile = get("NODES_FILE"); s.NodesFile == "" {
		s.NodesFile = filepath.Join(s.ProjectDir, "nodes.toml")
	}
	if _, err := os.Stat(s.NodesFile); err == nil {
		if s.Inventory, err = nodes.Load(s.NodesFile); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("NODES_FILE=%s: %w", s.NodesFile, pathErr(err))
	}
	if err := s.network(get); err != nil {
		return err
	}
	if s.Inventory != nil {
		s.Inventory.Initrd = s.Initrds()
		if !s.NetbootInitramfs {
			// arm64's kernel carries the initramfs that fetches a
			// stateless node's own command line
			for _, nd := range s.Inventory.Sorted() {
				if s.Inventory.NodeCmdlineFile(nd) {
					return fmt.Errorf("NETBOOT_INITRAMFS=0: %s has %s stateless on arm64, whose kernel then lacks the fallback initramfs that fetches its image; unset NETBOOT_INITRAMFS (or make the node mode = \"nfs\")", s.NodesFile, nd.Name)
				}
			}
		}
	}
	s.Image = get("IMAGE")
	if s.Image == "" && s.Inventory != nil {
		s.Image = s.Inventory.Network.Image
	}
	if s.Image == "" {
		s.Image = "debian-12"
	}
	if err := image.ValidName(s.Image); err != nil {
		return fmt.Errorf("IMAGE: %w", err)
	}
	return nil
}

// Initrds names the fallback initramfs of each arch as publish names it
// (INITRAMFS_COMPRESS decides the extension): what an inventory's
// per-node files boot as INITRD.
func (s *Settings) Initrds() map[string]string {
	out := map[string]string{}
	for _, a := range arch.All() {
		out[a.Name] = initramfs.ArtifactName(a, s.Compress)
	}
	return out
}

// ImageOptions are the options of build:image for an arch.
func (s *Settings) ImageOptions(a arch.Arch) image.Options {
	return image.Options{Name: s.Image, Arch: a, ProjectDir: s.ProjectDir, CacheDir: s.CacheDir, Mirror: s.Mirror, From: s.ImageFrom}
}

// network sets Boot and Root from the inventory or the environment. With
// an inventory, a variable that contradicts a value the file states is an
// error quoting the file's line; a key the file leaves out is filled by
// the variable, in the inventory too (every stage renders from it).
func (s *Settings) network(get func(string) string) error {
	env := pxe.Settings{Server: get("NFS_SERVER"), Root: get("NFS_ROOT"), Opts: get("NFS_OPTS"), Extra: get("KERNEL_ARGS")}
	root := get("DISKLESS_ROOT")
	if s.Inventory == nil {
		s.Boot = env.WithDefaults()
		s.Root, s.rootSet = root, root != ""
		if s.Root == "" {
			s.Root = "/diskless"
		}
		return s.Boot.Validate()
	}
	inv := s.Inventory
	n := &inv.Network
	for _, c := range []struct{ name, env, key, stated, note string }{
		{"NFS_SERVER", env.Server, "master", n.Master, ""},
		{"NFS_ROOT", env.Root, "root", n.Root, " (NFS_ROOT is <root>/%s)"},
		{"NFS_OPTS", env.Opts, "nfs_opts", n.NFSOpts, ""},
		{"DISKLESS_ROOT", root, "root", n.Root, ""},
	} {
		where, stated := inv.Stated(c.key)
		if c.env == "" || !stated && c.key != "master" { // master is required: always stated
			continue
		}
		if where == "" {
			where = s.NodesFile
		}
		want := c.stated
		if c.name == "NFS_ROOT" {
			want = path.Join(c.stated, "%s")
		}
		if c.env != want {
			return fmt.Errorf("%s=%s but %s says %s = %q%s: the inventory is the source of truth for the network; change it there (or unset %s)", c.name, c.env, where, c.key, c.stated, c.note, c.name)
		}
	}
	if _, stated := inv.Stated("root"); !stated {
		fill, from := root, "DISKLESS_ROOT"
		if env.Root != "" {
			r, ok := strings.CutSuffix(env.Root, "/%s")
			if !ok || r == "" {
				return fmt.Errorf("NFS_ROOT=%s: with an inventory (%s) the nodes' roots are <root>/<ip>, so NFS_ROOT must be <root>/%%s; set root in %s (or unset NFS_ROOT)", env.Root, s.NodesFile, s.NodesFile)
			}
			if root != "" && r != root {
				return fmt.Errorf("NFS_ROOT=%s and DISKLESS_ROOT=%s disagree: %s states no root, so both give it and NFS_ROOT must be DISKLESS_ROOT/%%s; set root in %s (or unset one)", env.Root, root, s.NodesFile, s.NodesFile)
			}
			fill, from = r, "NFS_ROOT"
		}
		if fill != "" {
			if !nodes.ValidPath(fill) {
				return fmt.Errorf("%s=%s: the root of the nodes in %s: %s", from, get(from), s.NodesFile, nodes.PathRule)
			}
			n.Root = fill
		}
	}
	if _, stated := inv.Stated("nfs_opts"); !stated && env.Opts != "" {
		if strings.ContainsAny(env.Opts, "\"#") {
			return fmt.Errorf("NFS_OPTS=%s: comma-separated nfsroot options without quotes or # (e.g. %s)", env.Opts, pxe.DefaultOpts)
		}
		n.NFSOpts = env.Opts
	}
	s.Boot = pxe.Settings{Server: n.Master, Root: path.Join(n.Root, "%s"), Opts: n.NFSOpts, Extra: env.Extra}
	s.Root = n.Root
	return s.Boot.Validate()
}

// NewNetwork is the [network] nodes:add writes into the inventory it
// creates for its first node nd: the node's /24 (nodes.NewNetwork) with
// the master, root and NFS options this command uses, so the next command
// with the same variables reads them back from the file: NFS_SERVER, else
// the .1 of that /24; DISKLESS_ROOT, else /diskless; NFS_OPTS when it is
// not the default. Only for a new inventory (Inventory == nil).
func (s *Settings) NewNetwork(nd nodes.Node) (nodes.Network, error) {
	n, err := nodes.NewNetwork(nd)
	if err != nil {
		return n, err
	}
	if s.Boot.Server != "" {
		_, subnet, _ := net.ParseCIDR(n.Subnet)
		if ip := net.ParseIP(s.Boot.Server); ip == nil || !subnet.Contains(ip) {
			return n, fmt.Errorf("NFS_SERVER=%s is outside %s, the /24 of node %s (%s) that a new %s gets: write %s by hand with the right subnet (README, Nodes), or unset NFS_SERVER", s.Boot.Server, n.Subnet, nd.Name, nd.IP, s.NodesFile, s.NodesFile)
		}
		n.Master = s.Boot.Server
	}
	n.Root = s.Root
	// NFS_ROOT alone says the root too: <root>/%s
	if s.Boot.Root != pxe.DefaultRoot {
		r, ok := strings.CutSuffix(s.Boot.Root, "/%s")
		switch {
		case !ok || r == "":
			return n, fmt.Errorf("NFS_ROOT=%s: an inventory's nodes have their roots at <root>/<ip>, so NFS_ROOT must be <root>/%%s for a new %s (or unset NFS_ROOT)", s.Boot.Root, s.NodesFile)
		case s.rootSet && r != s.Root:
			return n, fmt.Errorf("NFS_ROOT=%s but DISKLESS_ROOT=%s: the nodes' roots are <root>/%%s; set one of them", s.Boot.Root, s.Root)
		}
		n.Root = r
	}
	if s.Boot.Opts != pxe.DefaultOpts {
		n.NFSOpts = s.Boot.Opts
	}
	return n, nil
}

// bundles expands PUBLISH_FROM: comma-separated bundle files, or a
// directory whose *.tar.zst are all taken (sorted).
func bundles(v string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("PUBLISH_FROM: %s: %w", p, pathErr(err))
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		m, _ := filepath.Glob(filepath.Join(p, "*.tar.zst"))
		if len(m) == 0 {
			return nil, fmt.Errorf("PUBLISH_FROM: directory %s holds no bundle (*.tar.zst)", p)
		}
		sort.Strings(m)
		out = append(out, m...)
	}
	return out, nil
}

func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Kernel is the kbuild options for a role and arch: project-relative
// fragments, the output directory (artifacts/<arch>, or .../master) and,
// for a slave, the node's command line and the check of the NFS version
// against the kernel config.
func (s *Settings) Kernel(a arch.Arch, role kbuild.Role) kbuild.Options {
	o := kbuild.NewOptions(s.ProjectDir, s.CacheDir, a, role)
	if o.OutDir = filepath.Join(s.Artifacts, a.Name); role == kbuild.Master {
		o.OutDir = filepath.Join(o.OutDir, "master")
	}
	o.Extra = s.Extra
	o.KernelSrc, o.Jobs, o.ConfigOnly, o.NoCcache = s.KernelSrc, s.Jobs, s.ConfigOnly, s.NoCcache
	o.DistccHosts, o.SourceDateEpoch = s.DistccHosts, s.SourceDateEpoch
	o.Path, o.Home, o.CcacheDir, o.XDGCacheHome = s.Path, s.Home, s.CcacheDir, s.XDGCacheHome
	if role == kbuild.Slave {
		o.Cmdline = s.Boot.Cmdline(a)
		o.Checks = append(o.Checks, s.Boot.CheckKernel)
		if k := s.SecureBoot; k != nil && a.EFIImagePath != "" {
			// the zboot decompressor hands its payload to the firmware's
			// LoadImage: under Secure Boot it must be signed too
			o.SignPayload = func(ctx context.Context, path string) (string, error) { return k.Signed(ctx, path, s.CacheDir) }
			o.SignPayloadCert = k.Fingerprint()
		}
	}
	return o
}
