// Package fallback is the logic of the diskless fallback init (dlinit): it
// reads the kernel command line the way the kernel's own NFS root code
// does, decides where the NFS root is, and words the one-line diagnosis a
// node prints when a step fails. The program in ../dlinit does the system
// calls; everything here is plain data and is unit-tested on the host.
package fallback

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// Prefix starts every diagnosis line, so a console log can be grepped.
const Prefix = "diskless-fallback:"

// SettingsPath is where pkg/initramfs writes Settings in the image.
const SettingsPath = "/etc/diskless-fallback.json"

// Settings are written into the image at build time.
type Settings struct {
	// DefaultOpts are nfsroot options used when the command line gives
	// none (the kernel's own default is NFSv2, which slaves do not build).
	DefaultOpts string `json:"default_nfs_opts"`
	// RetryMax caps the background retry interval.
	RetryMax Duration `json:"retry_max"`
	// Shell is the rescue shell.
	Shell string `json:"shell"`
	// TrustedKeys are the signify public keys (one after another) a
	// stateless node's set must be signed with (SIGNING_KEY's and
	// TRUSTED_KEY's when the initramfs was built); none: a stateless node
	// refuses to boot.
	TrustedKeys string `json:"trusted_keys,omitempty"`
	// NodeLookup: the kernel's command line is built in and the same for
	// every node (arm64's EFI kernel carries this initramfs), so a node
	// without diskless.image= asks its boot server for a command line of
	// its own (cmdline/<mac>, signed), and boots its NFS root when there
	// is none.
	NodeLookup bool `json:"node_lookup,omitempty"`
}

// Duration is a time.Duration written as "60s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// DefaultSettings are used when the image has no settings file.
var DefaultSettings = Settings{DefaultOpts: "vers=3,tcp", RetryMax: Duration(time.Minute), Shell: "/bbin/gosh"}

// LoadSettings reads the settings file, falling back to the defaults for a
// missing file or field.
func LoadSettings(path string) (Settings, error) {
	s := DefaultSettings
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return DefaultSettings, fmt.Errorf("%s: %w", path, err)
	}
	if s.DefaultOpts == "" {
		s.DefaultOpts = DefaultSettings.DefaultOpts
	}
	if s.RetryMax <= 0 {
		s.RetryMax = DefaultSettings.RetryMax
	}
	if s.Shell == "" {
		s.Shell = DefaultSettings.Shell
	}
	return s, nil
}

// Cmdline is the kernel command line as key -> value ("" for bare words);
// the last occurrence wins, as for the kernel's own parameters.
type Cmdline map[string]string

// ParseCmdline splits /proc/cmdline.
func ParseCmdline(s string) Cmdline {
	c := Cmdline{}
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		c[k] = v
	}
	return c
}

// Target is the NFS root to mount.
type Target struct {
	Server string   // IPv4 address
	Path   string   // export, %s already replaced
	Opts   []string // mount options without addr=
}

// Source is "server:path", the mount source.
func (t Target) Source() string { return t.Server + ":" + t.Path }

// MountData is the option string for mount(2) of type "nfs": the kernel
// needs addr= (no DNS here), nolock unless told otherwise (no rpcbind is
// needed for a root only this node uses, as the kernel's own nfsroot).
func (t Target) MountData() string {
	opts := append([]string(nil), t.Opts...)
	has := func(k string) bool {
		for _, o := range opts {
			if o == k || strings.HasPrefix(o, k+"=") {
				return true
			}
		}
		return false
	}
	if !has("lock") && !has("nolock") {
		opts = append(opts, "nolock")
	}
	return strings.Join(append(opts, "addr="+t.Server), ",")
}

// ParseNFSRoot reads nfsroot=[<server-ip>:]<root-dir>[,<nfs-options>] like
// the kernel (Documentation/admin-guide/nfs/nfsroot.rst): without a server
// the boot server from DHCP is used; %s in the path is the client's IP.
// defaultOpts apply when the value names no options.
func ParseNFSRoot(v, clientIP, bootServer, defaultOpts string) (Target, error) {
	var t Target
	if v == "" {
		return t, fmt.Errorf("no nfsroot= on the kernel command line and no root-path from DHCP")
	}
	spec, opts, _ := strings.Cut(v, ",")
	if i := strings.Index(spec, ":"); i >= 0 {
		t.Server, t.Path = spec[:i], spec[i+1:]
	} else {
		t.Server, t.Path = bootServer, spec
	}
	if t.Server == "" {
		return t, fmt.Errorf("nfsroot=%s names no server and DHCP gave no boot server", v)
	}
	if net.ParseIP(t.Server).To4() == nil {
		return t, fmt.Errorf("nfsroot=%s: server %q is not an IPv4 address", v, t.Server)
	}
	if !strings.HasPrefix(t.Path, "/") {
		return t, fmt.Errorf("nfsroot=%s: the root directory must be an absolute path", v)
	}
	if strings.Contains(t.Path, "%s") {
		if clientIP == "" {
			return t, fmt.Errorf("nfsroot=%s uses %%s but the node has no IP address", v)
		}
		t.Path = strings.ReplaceAll(t.Path, "%s", clientIP)
	}
	if opts == "" {
		opts = defaultOpts
	}
	for _, o := range strings.Split(opts, ",") {
		if o = strings.TrimSpace(o); o != "" && !strings.HasPrefix(o, "addr=") {
			t.Opts = append(t.Opts, o)
		}
	}
	return t, nil
}

// BootServer reads the "bootserver" line of /proc/net/pnp, which the
// kernel's IP autoconfiguration (ip=dhcp) writes.
func BootServer(pnp string) string {
	for _, l := range strings.Split(pnp, "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == "bootserver" && f[1] != "0.0.0.0" {
			return f[1]
		}
	}
	return ""
}

// Step names what failed.
type Step string

// The steps of a boot, in order.
const (
	StepLink   Step = "link"   // no NIC got a carrier
	StepDHCP   Step = "dhcp"   // no lease
	StepConfig Step = "config" // no usable nfsroot
	StepMount  Step = "mount"  // server unreachable, export denied...
	StepInit   Step = "init"   // the root has no init
)

// Failure is one failed step, printed as one line.
type Failure struct {
	Step   Step
	Server string
	Export string
	Err    error
}

func (f *Failure) Error() string { return f.Line() }

// Line is the diagnosis: prefix, step, server, export and the error with a
// hint an admin can act on.
func (f *Failure) Line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s failed", Prefix, f.Step)
	if f.Server != "" {
		fmt.Fprintf(&b, ": server=%s", f.Server)
	}
	if f.Export != "" {
		fmt.Fprintf(&b, " export=%s", f.Export)
	}
	fmt.Fprintf(&b, ": %v", f.Err)
	if h := hint(f); h != "" {
		fmt.Fprintf(&b, " (%s)", h)
	}
	return b.String()
}

func hint(f *Failure) string {
	msg := ""
	if f.Err != nil {
		msg = f.Err.Error()
	}
	switch {
	case f.Step == StepLink:
		return "check the cable and the switch port"
	case f.Step == StepDHCP:
		return "is the DHCP server up, and does it know this MAC?"
	case strings.Contains(msg, "connection refused"):
		return "the server answers but runs no NFS server on that port"
	case strings.Contains(msg, "timed out") || strings.Contains(msg, "no answer") || strings.Contains(msg, "no route") || strings.Contains(msg, "unreachable"):
		return "the server is unreachable, or runs no NFS server/rpcbind"
	case strings.Contains(msg, "permission denied") || strings.Contains(msg, "no such file"):
		return "the server refused the export: check /etc/exports and exportfs -ra"
	case f.Step == StepInit:
		return "the root is mounted but has no init: is the slave root populated?"
	}
	return ""
}

// Jitter spreads a wait over [3/4, 5/4) of d by u (uniform in [0, 1)), so
// that nodes that failed together (a rack rebooting into a server that is
// down) do not retry together.
func Jitter(d time.Duration, u float64) time.Duration {
	return time.Duration(float64(d) * (0.75 + u/2))
}

// Backoff is the wait before retry n (1, 2, ...): 2 s doubling, at most max.
func Backoff(n int, max time.Duration) time.Duration {
	d := 2 * time.Second
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}

// NodeConfPath is the file in a node's root that names its image
// (pkg/nodes writes it at provision).
const NodeConfPath = "/etc/diskless/node.conf"

// NodeConf is what a node's root says about its /usr.
type NodeConf struct {
	// Image is the published image's directory on the root's server; its
	// "current" generation's usr becomes the node's /usr.
	Image string
}

// ParseNodeConf reads key=value lines (# comments).
func ParseNodeConf(data string) (NodeConf, error) {
	var c NodeConf
	for i, l := range strings.Split(data, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return c, fmt.Errorf("%s:%d: want key=value", NodeConfPath, i+1)
		}
		switch strings.TrimSpace(k) {
		case "image":
			c.Image = strings.TrimSpace(v)
			if !strings.HasPrefix(c.Image, "/") {
				return c, fmt.Errorf("%s:%d: image=%s is not an absolute path", NodeConfPath, i+1, c.Image)
			}
		default:
			return c, fmt.Errorf("%s:%d: unknown key %q", NodeConfPath, i+1, k)
		}
	}
	return c, nil
}

// ImageTarget is the NFS mount of the node's image: the root's server and
// options, read-only.
func (t Target) ImageTarget(image string) Target {
	it := Target{Server: t.Server, Path: image}
	for _, o := range t.Opts {
		if o != "rw" && o != "ro" {
			it.Opts = append(it.Opts, o)
		}
	}
	it.Opts = append(it.Opts, "ro")
	return it
}
