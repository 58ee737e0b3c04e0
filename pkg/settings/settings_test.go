package settings

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/kbuild"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/secureboot"
	"github.com/diskless/diskless/pkg/sign"
)

// project is a scratch project dir with the repository's kernels/.
func project(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "kernels", "arch"), 0o755)
	return dir
}

func load(t *testing.T, dir string, env map[string]string) (*Settings, error) {
	t.Helper()
	if _, ok := env["HOME"]; !ok {
		env["HOME"] = "/home/u"
	}
	return Load(Map(env), dir)
}

func TestDefaults(t *testing.T) {
	dir := project(t)
	s, err := load(t, dir, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Root != "/diskless" || s.CacheDir != "/home/u/.cache/diskless" || s.Artifacts != filepath.Join(dir, "artifacts") {
		t.Errorf("paths: %+v", s)
	}
	if s.Boot.Root != "/diskless/%s" || s.Boot.Opts != "vers=3,tcp" || s.Boot.Server != "" {
		t.Errorf("boot: %+v", s.Boot)
	}
	if !s.NetbootInitramfs || s.NetbootInitramfsSet || s.Compress != "zstd" || s.CI || s.Inventory != nil {
		t.Errorf("defaults: %+v", s)
	}
	if s.NodesFile != filepath.Join(dir, "nodes.toml") {
		t.Errorf("nodes file %s", s.NodesFile)
	}
}

func TestEnvironmentValues(t *testing.T) {
	dir := project(t)
	os.WriteFile(filepath.Join(dir, "extra.config"), []byte("CONFIG_HZ_100=y\n"), 0o644)
	bundles := t.TempDir()
	for _, b := range []string{"diskless_x86_64_1.tar.zst", "diskless_arm64_1.tar.zst", "notes.txt"} {
		os.WriteFile(filepath.Join(bundles, b), nil, 0o644)
	}
	s, err := load(t, dir, map[string]string{
		"XDG_CACHE_HOME": "/x", "KCONFIG_EXTRA": "extra.config", "JOBS": "3", "CONFIG_ONLY": "1", "NO_CCACHE": "yes",
		"SOURCE_DATE_EPOCH": "1700000000", "DISKLESS_ROOT": "/srv/tftp", "NFS_SERVER": "10.0.0.1", "NFS_OPTS": "vers=4,tcp",
		"KERNEL_ARGS": "quiet", "NETBOOT_INITRAMFS": "0", "PUBLISH_FROM": bundles, "PUBLISH_DROP": "aarch64, riscv64",
		"PUBLISH_KEEP": "5", "QEMU_ACCEL": "tcg", "SMOKE_PATHS": "direct, fallback", "CI": "1", "INITRAMFS_COMPRESS": "xz",
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.CacheDir != "/x/diskless" || s.Jobs != 3 || !s.ConfigOnly || !s.NoCcache || s.SourceDateEpoch != 1700000000 {
		t.Errorf("kernel settings: %+v", s)
	}
	if len(s.Extra) != 1 || s.Extra[0] != filepath.Join(dir, "extra.config") {
		t.Errorf("extra %v", s.Extra)
	}
	if s.Root != "/srv/tftp" || s.Boot.Server != "10.0.0.1" || s.Boot.Opts != "vers=4,tcp" || s.Boot.Extra != "quiet" {
		t.Errorf("boot: %+v root %s", s.Boot, s.Root)
	}
	if s.NetbootInitramfs || !s.NetbootInitramfsSet || s.Compress != "xz" || !s.CI || s.QEMUAccel != "tcg" || s.PublishKeep != 5 {
		t.Errorf("flags: %+v", s)
	}
	if strings.Join(s.PublishDrop, ",") != "arm64,riscv64" || strings.Join(s.SmokePaths, ",") != "direct,fallback" {
		t.Errorf("lists: drop %v paths %v", s.PublishDrop, s.SmokePaths)
	}
	if len(s.PublishFrom) != 2 || filepath.Base(s.PublishFrom[0]) != "diskless_arm64_1.tar.zst" {
		t.Errorf("a directory of bundles: %v", s.PublishFrom)
	}
	x, _ := arch.Lookup("x86_64")
	o := s.Kernel(x, kbuild.Slave)
	if o.SourceDateEpoch != 1700000000 || o.Jobs != 3 || !o.NoCcache || len(o.Checks) != 1 ||
		o.Cmdline != "ip=dhcp root=/dev/nfs nfsroot=10.0.0.1:/diskless/%s,vers=4,tcp rw console=ttyS0 quiet" {
		t.Errorf("kernel options %+v", o)
	}
	if m := s.Kernel(x, kbuild.Master); m.Cmdline != "" || len(m.Checks) != 0 || !strings.HasSuffix(m.OutDir, "x86_64/master") {
		t.Errorf("master options %+v", m)
	}
}

// Every bad value is refused naming its variable and saying what it wants.
func TestBadValuesNameTheVariable(t *testing.T) {
	dir := project(t)
	for want, env := range map[string]map[string]string{
		"JOBS=\"two\"":                    {"JOBS": "two"},
		"CONFIG_ONLY=\"maybe\"":           {"CONFIG_ONLY": "maybe"},
		"NO_CCACHE=\"x\"":                 {"NO_CCACHE": "x"},
		"NETBOOT_INITRAMFS=\"sometimes\"": {"NETBOOT_INITRAMFS": "sometimes"},
		"KCONFIG_EXTRA: fragment":         {"KCONFIG_EXTRA": "nope.config"},
		"SOURCE_DATE_EPOCH=\"yesterday\"": {"SOURCE_DATE_EPOCH": "yesterday"},
		"SOURCE_DATE_EPOCH=\"-5\"":        {"SOURCE_DATE_EPOCH": "-5"},
		"INITRAMFS_COMPRESS=\"lz4\"":      {"INITRAMFS_COMPRESS": "lz4"},
		"PUBLISH_KEEP=\"0\"":              {"PUBLISH_KEEP": "0"},
		"PUBLISH_FROM: /nonexistent":      {"PUBLISH_FROM": "/nonexistent/a.tar.zst"},
		"holds no bundle":                 {"PUBLISH_FROM": t.TempDir()},
		"PUBLISH_DROP: unknown arch":      {"PUBLISH_DROP": "sparc"},
		"QEMU_ACCEL=\"hvf\"":              {"QEMU_ACCEL": "hvf"},
		"NFS_OPTS=\"vers=9\"":             {"NFS_OPTS": "vers=9"},
		"NFS_SERVER=\"master.lab\"":       {"NFS_SERVER": "master.lab"},
		"DISTCC_HOSTS":                    {"DISTCC_HOSTS": "@node21"},
		"PUBLISH_NOWAIT=\"soon\"":         {"PUBLISH_NOWAIT": "soon"},
		"LAB_DHCP=\"kea\"":                {"LAB_DHCP": "kea"},
		"IMAGE: image name":               {"IMAGE": "../etc"},
		"IMAGE_KEEP=\"none\"":             {"IMAGE_KEEP": "none"},
	} {
		_, err := load(t, dir, env)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: error %v does not say %q", env, err, want)
		}
	}
}

const inventory = `[network]
master = "192.168.1.1"
subnet = "192.168.1.0/24"
root = "/srv/diskless"
nfs_opts = "vers=4,tcp"

[[node]]
name = "slave21"
mac = "00:02:A5:04:3B:66"
ip = "192.168.1.21"
arch = "x86_64"
`

// With nodes.toml, the inventory gives the network settings to every
// stage; the environment may repeat them but not contradict them.
func TestInventoryIsTheSourceOfTruthForTheNetwork(t *testing.T) {
	dir := project(t)
	os.WriteFile(filepath.Join(dir, "nodes.toml"), []byte(inventory), 0o644)
	s, err := load(t, dir, map[string]string{"KERNEL_ARGS": "quiet"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Inventory == nil || len(s.Inventory.Nodes) != 1 {
		t.Fatal("inventory not loaded")
	}
	if s.Root != "/srv/diskless" || s.Boot.Server != "192.168.1.1" || s.Boot.Root != "/srv/diskless/%s" || s.Boot.Opts != "vers=4,tcp" || s.Boot.Extra != "quiet" {
		t.Errorf("boot %+v root %s", s.Boot, s.Root)
	}
	// the published default and each node's own file say the same
	nd := s.Inventory.Nodes[0]
	if got, want := s.Inventory.Settings(nd).NFSRoot(), strings.ReplaceAll(s.Boot.NFSRoot(), "%s", nd.IP); got != want {
		t.Errorf("per-node nfsroot %s, default's %s", got, want)
	}
	// agreeing values are fine
	if _, err := load(t, dir, map[string]string{"DISKLESS_ROOT": "/srv/diskless", "NFS_SERVER": "192.168.1.1", "NFS_OPTS": "vers=4,tcp", "NFS_ROOT": "/srv/diskless/%s"}); err != nil {
		t.Errorf("agreeing environment: %v", err)
	}
	// a stated value that differs is an error quoting the file's line
	for v, env := range map[string]map[string]string{
		`DISKLESS_ROOT=/diskless but ` + dir + `/nodes.toml:4 says root = "/srv/diskless": `: {"DISKLESS_ROOT": "/diskless"},
		`NFS_SERVER=10.0.0.9 but ` + dir + `/nodes.toml:2 says master = "192.168.1.1": `:     {"NFS_SERVER": "10.0.0.9"},
		`NFS_OPTS=vers=3 but ` + dir + `/nodes.toml:5 says nfs_opts = "vers=4,tcp": `:        {"NFS_OPTS": "vers=3"},
		`NFS_ROOT=/x/%s but ` + dir + `/nodes.toml:4 says root = "/srv/diskless"`:            {"NFS_ROOT": "/x/%s"},
	} {
		_, err := load(t, dir, env)
		if err == nil || !strings.HasPrefix(err.Error(), v) {
			t.Errorf("against the inventory: %v\nwant %s...", err, v)
		}
	}
	// NODES_FILE names another inventory; a broken one is an error with its line
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("[network]\nmaster = \n"), 0o644)
	if _, err := load(t, dir, map[string]string{"NODES_FILE": bad}); err == nil || !strings.Contains(err.Error(), "bad.toml") {
		t.Errorf("broken inventory: %v", err)
	}
	// a missing NODES_FILE is no inventory (nodes:add creates it)
	s, err = load(t, dir, map[string]string{"NODES_FILE": filepath.Join(t.TempDir(), "new.toml")})
	if err != nil || s.Inventory != nil {
		t.Errorf("missing NODES_FILE: %v %v", s, err)
	}
}

// Settings are read once at the edge: no package under pkg/ reads an
// environment variable itself.
func TestNoPackageReadsTheEnvironment(t *testing.T) {
	var bad []string
	filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "os" && (sel.Sel.Name == "Getenv" || sel.Sel.Name == "LookupEnv") {
					bad = append(bad, p)
				}
			}
			return true
		})
		return nil
	})
	if len(bad) > 0 {
		t.Errorf("read the environment: %v", bad)
	}
}

func TestSigningKeys(t *testing.T) {
	dir := project(t)
	keys := t.TempDir()
	pub, sec, err := sign.WriteKeyPair(keys, "ci")
	if err != nil {
		t.Fatal(err)
	}
	pub2, _, _ := sign.WriteKeyPair(keys, "old")
	s, err := load(t, dir, map[string]string{"SIGNING_KEY": sec, "TRUSTED_KEY": pub + ", " + pub2})
	if err != nil {
		t.Fatal(err)
	}
	if s.SigningKey == nil || s.SigningPub != "ci.pub" || len(s.TrustedKeys) != 2 || s.TrustedKeys[0].KeyNum != s.SigningKey.KeyNum {
		t.Errorf("keys: %+v", s)
	}
	secret, _ := os.ReadFile(sec)
	for env, want := range map[[2]string]string{
		{"SIGNING_KEY", "/nonexistent/ci.sec"}: "SIGNING_KEY: no such file",
		{"SIGNING_KEY", pub}:                   "SIGNING_KEY: " + pub + ": secret key: ",
		{"TRUSTED_KEY", sec}:                   "TRUSTED_KEY: " + sec + ": public key: ",
		{"TRUSTED_KEY", pub + ",/nonexistent"}: "TRUSTED_KEY: no such file",
	} {
		_, err := load(t, dir, map[string]string{env[0]: env[1]})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=%s: %v (want %q)", env[0], env[1], err, want)
		}
		if err != nil && strings.Contains(err.Error(), strings.Split(string(secret), "\n")[1]) {
			t.Errorf("an error shows the secret key: %v", err)
		}
	}
}

// SECUREBOOT_KEY and SECUREBOOT_CERT are read as a pair and checked
// when the settings are: each alone, or a pair that does not match, is
// refused naming the variables.
func TestSecureBootKeys(t *testing.T) {
	dir := project(t)
	keys := t.TempDir()
	key, crt, _, err := secureboot.WriteKeyPair(keys, "db", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, crt2, _, _ := secureboot.WriteKeyPair(keys, "other", time.Now())
	s, err := load(t, dir, map[string]string{"SECUREBOOT_KEY": key, "SECUREBOOT_CERT": crt})
	if err != nil || s.SecureBoot == nil || s.SecureBoot.CertPath != crt {
		t.Fatalf("%+v %v", s, err)
	}
	if s, err := load(t, dir, map[string]string{}); err != nil || s.SecureBoot != nil {
		t.Errorf("without the variables: %v %v", s.SecureBoot, err)
	}
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"SECUREBOOT_KEY": key}, "SECUREBOOT_KEY=" + key + " without SECUREBOOT_CERT"},
		{map[string]string{"SECUREBOOT_CERT": crt}, "SECUREBOOT_CERT=" + crt + " without SECUREBOOT_KEY"},
		{map[string]string{"SECUREBOOT_KEY": key, "SECUREBOOT_CERT": crt2}, "do not match"},
	} {
		if _, err := load(t, dir, c.env); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.env, err, c.want)
		}
	}
}

// The admin's two commands: DISKLESS_ROOT=/srv/x nodes:add creates
// nodes.toml (through the same calls as the target), then any command with
// the same variable loads it and uses /srv/x. Before, the created file
// lacked root, Parse defaulted it to /diskless and Load refused the
// variable as a contradiction of a value the file never stated.
func TestNodesAddThenTheSameRootLoads(t *testing.T) {
	dir := project(t)
	env := map[string]string{"DISKLESS_ROOT": "/srv/x"}
	s, err := load(t, dir, env)
	if err != nil {
		t.Fatal(err)
	}
	// nodes:add name=slave21 mac=00:02:A5:04:3B:66 ip=192.168.1.21 arch=x86_64
	nd, err := nodes.ParseAddArgs([]string{"name=slave21", "mac=00:02:A5:04:3B:66", "ip=192.168.1.21", "arch=x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Inventory != nil {
		t.Fatal("an inventory before nodes:add")
	}
	network, err := s.NewNetwork(nd)
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes.AddNode(s.NodesFile, nd, network); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(s.NodesFile)
	if !strings.Contains(string(data), `root = "/srv/x"`) || !strings.Contains(string(data), `master = "192.168.1.1"`) {
		t.Errorf("created inventory lacks the root or master used:\n%s", data)
	}
	// the next command, same variable
	s, err = load(t, dir, env)
	if err != nil {
		t.Fatalf("second command with DISKLESS_ROOT=/srv/x: %v", err)
	}
	if s.Root != "/srv/x" || s.Boot.Root != "/srv/x/%s" || s.Inventory.RootPath(s.Inventory.Nodes[0]) != "/srv/x/192.168.1.21" {
		t.Errorf("root %s, boot %+v, node root %s", s.Root, s.Boot, s.Inventory.RootPath(s.Inventory.Nodes[0]))
	}
	// and without it: the file says /srv/x now
	if s, err = load(t, dir, map[string]string{}); err != nil || s.Root != "/srv/x" {
		t.Errorf("without the variable: root %v, %v", s, err)
	}
	// a different root is now a contradiction of what the file states
	_, err = load(t, dir, map[string]string{"DISKLESS_ROOT": "/srv/y"})
	if want := `DISKLESS_ROOT=/srv/y but ` + s.NodesFile + `:5 says root = "/srv/x": `; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("contradiction: %v\nwant %s...", err, want)
	}
}

// nodes:add writes the NFS_SERVER it was given as the master (and NFS_OPTS
// other than the default); an NFS_SERVER outside the node's /24 is refused
// naming the variable, and nothing is written.
func TestNodesAddWritesTheMasterItUsed(t *testing.T) {
	dir := project(t)
	nd := nodes.Node{Name: "slave21", MAC: "00:02:a5:04:3b:66", IP: "192.168.1.21", Arch: "x86_64"}
	env := map[string]string{"NFS_SERVER": "192.168.1.5", "NFS_OPTS": "vers=4,tcp"}
	s, err := load(t, dir, env)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.NewNetwork(nd)
	if err != nil || n.Master != "192.168.1.5" || n.Subnet != "192.168.1.0/24" || n.Root != "/diskless" || n.NFSOpts != "vers=4,tcp" {
		t.Fatalf("network %+v %v", n, err)
	}
	if err := nodes.AddNode(s.NodesFile, nd, n); err != nil {
		t.Fatal(err)
	}
	if s, err = load(t, dir, env); err != nil || s.Boot.Server != "192.168.1.5" || s.Boot.Opts != "vers=4,tcp" {
		t.Errorf("second command: %+v %v", s, err)
	}
	// no NFS_SERVER: the .1, and the default options stay unwritten
	s, _ = load(t, project(t), map[string]string{})
	if n, err := s.NewNetwork(nd); err != nil || n.Master != "192.168.1.1" || n.NFSOpts != "" || n.Root != "/diskless" {
		t.Errorf("defaults: %+v %v", n, err)
	}
	dir = project(t)
	s, _ = load(t, dir, map[string]string{"NFS_SERVER": "10.0.0.1"})
	if _, err := s.NewNetwork(nd); err == nil || !strings.HasPrefix(err.Error(), "NFS_SERVER=10.0.0.1 is outside 192.168.1.0/24") {
		t.Errorf("master outside the node's /24: %v", err)
	}
}

// A key the inventory does not state is no conflict: the variable fills
// it, in the settings and in the inventory every stage renders from. Only
// stated values conflict, quoting the line (master is required, so always
// stated).
func TestUnstatedKeysAreFilledByTheEnvironment(t *testing.T) {
	dir := project(t)
	// what nodes:add wrote before it wrote root: master and subnet only
	os.WriteFile(filepath.Join(dir, "nodes.toml"), []byte(`# diskless node inventory
[network]
  master = "192.168.1.1"
  subnet = "192.168.1.0/24"

[[node]]
name = "slave21"
mac = "00:02:a5:04:3b:66"
ip = "192.168.1.21"
arch = "x86_64"
`), 0o644)
	s, err := load(t, dir, map[string]string{})
	if err != nil || s.Root != "/diskless" || s.Boot.Opts != "vers=3,tcp" {
		t.Fatalf("defaults: %+v %v", s, err)
	}
	s, err = load(t, dir, map[string]string{"DISKLESS_ROOT": "/srv/x", "NFS_OPTS": "vers=4,tcp", "NFS_ROOT": "/srv/x/%s"})
	if err != nil {
		t.Fatal(err)
	}
	nd := s.Inventory.Nodes[0]
	if s.Root != "/srv/x" || s.Inventory.Network.Root != "/srv/x" || s.Boot.Root != "/srv/x/%s" || s.Boot.Opts != "vers=4,tcp" ||
		s.Inventory.Settings(nd).NFSRoot() != "192.168.1.1:/srv/x/192.168.1.21,vers=4,tcp" {
		t.Errorf("filled: root %s inventory %+v boot %+v node %s", s.Root, s.Inventory.Network, s.Boot, s.Inventory.Settings(nd).NFSRoot())
	}
	if s, err = load(t, dir, map[string]string{"NFS_ROOT": "/srv/y/%s"}); err != nil || s.Root != "/srv/y" || s.Inventory.Network.Root != "/srv/y" {
		t.Errorf("NFS_ROOT fills root: %v %v", s, err)
	}
	for want, env := range map[string]map[string]string{
		`NFS_SERVER=192.168.1.2 but ` + dir + `/nodes.toml:3 says master = "192.168.1.1": `:         {"NFS_SERVER": "192.168.1.2"},
		"NFS_ROOT=/srv/y/%s and DISKLESS_ROOT=/srv/x disagree":                                      {"NFS_ROOT": "/srv/y/%s", "DISKLESS_ROOT": "/srv/x"},
		"NFS_ROOT=/srv/y: with an inventory":                                                        {"NFS_ROOT": "/srv/y"},
		"DISKLESS_ROOT=srv: the root of the nodes in " + dir + "/nodes.toml: want an absolute path": {"DISKLESS_ROOT": "srv"},
		`NFS_OPTS=vers=4,"x": comma-separated`:                                                      {"NFS_OPTS": `vers=4,"x"`},
	} {
		if _, err := load(t, dir, env); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%v: %v\nwant %s...", env, err, want)
		}
	}
}

// The admin's file states root = "/a"; DISKLESS_ROOT=/b is refused quoting
// the line, as the file is written (comments, a quoted key).
func TestStatedRootConflictQuotesTheLine(t *testing.T) {
	dir := project(t)
	os.WriteFile(filepath.Join(dir, "nodes.toml"), []byte("[network]\nmaster = \"192.168.1.1\"\n\"root\" = \"/a\" # ours\nsubnet = \"192.168.1.0/24\"\n\n[[node]]\nname = \"n1\"\nmac = \"00:02:a5:04:3b:66\"\nip = \"192.168.1.21\"\narch = \"x86_64\"\n"), 0o644)
	_, err := load(t, dir, map[string]string{"DISKLESS_ROOT": "/b"})
	if want := `DISKLESS_ROOT=/b but ` + dir + `/nodes.toml:3 says root = "/a": the inventory is the source of truth for the network; change it there (or unset DISKLESS_ROOT)`; err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	if s, err := load(t, dir, map[string]string{"DISKLESS_ROOT": "/a"}); err != nil || s.Root != "/a" {
		t.Errorf("the same value: %v", err)
	}
}

// make's environment is made of settings: Kernel passes PATH, HOME,
// CCACHE_DIR and XDG_CACHE_HOME as Load read them through its Lookup.
func TestKernelOptionsCarryTheBuildEnvironment(t *testing.T) {
	dir := project(t)
	s, err := load(t, dir, map[string]string{"PATH": "/opt/cross/bin:/usr/bin", "HOME": "/home/builder", "CCACHE_DIR": "/var/cache/ccache", "XDG_CACHE_HOME": "/x", "KCFLAGS": "-O0"})
	if err != nil {
		t.Fatal(err)
	}
	x, _ := arch.Lookup("x86_64")
	for _, role := range []kbuild.Role{kbuild.Slave, kbuild.Master} {
		o := s.Kernel(x, role)
		if o.Path != "/opt/cross/bin:/usr/bin" || o.Home != "/home/builder" || o.CcacheDir != "/var/cache/ccache" || o.XDGCacheHome != "/x" {
			t.Errorf("%s: path %q home %q ccache %q xdg %q", role, o.Path, o.Home, o.CcacheDir, o.XDGCacheHome)
		}
	}
	s, _ = load(t, dir, map[string]string{})
	if o := s.Kernel(x, kbuild.Slave); o.Path != "" || o.CcacheDir != "" || o.Home != "/home/u" {
		t.Errorf("unset: path %q ccache %q home %q", o.Path, o.CcacheDir, o.Home)
	}
	// the kernel goes where the settings put the artifacts
	s.Artifacts = "/elsewhere"
	if o := s.Kernel(x, kbuild.Slave); o.OutDir != "/elsewhere/x86_64" {
		t.Errorf("slave kernel into %s", o.OutDir)
	}
	if o := s.Kernel(x, kbuild.Master); o.OutDir != "/elsewhere/x86_64/master" {
		t.Errorf("master kernel into %s", o.OutDir)
	}
}

// An arm64 stateless node boots through the initramfs inside its kernel:
// NETBOOT_INITRAMFS=0 with one in the inventory is an error naming both.
func TestStatelessArm64NeedsTheNetbootInitramfs(t *testing.T) {
	dir := project(t)
	inv := strings.Replace(inventory, "[network]\n", "[network]\nimage = \"debian-12\"\n", 1) + "\n[[node]]\nname = \"arm1\"\nmac = \"52:54:00:aa:00:01\"\nip = \"192.168.1.41\"\narch = \"arm64\"\nboot = \"uefi\"\nmode = \"stateless\"\n"
	os.WriteFile(filepath.Join(dir, "nodes.toml"), []byte(inv), 0o644)
	if _, err := load(t, dir, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	_, err := load(t, dir, map[string]string{"NETBOOT_INITRAMFS": "0"})
	if err == nil || !strings.Contains(err.Error(), "NETBOOT_INITRAMFS=0") || !strings.Contains(err.Error(), "nodes.toml has arm1 stateless on arm64") {
		t.Errorf("NETBOOT_INITRAMFS=0 with a stateless arm64 node: %v", err)
	}
}

// NFS_ROOT alone says the root a new inventory gets (<root>/%s), so the
// next command with it loads; with DISKLESS_ROOT naming another root, or
// not of the <root>/%s form, nodes:add refuses before writing anything.
func TestNodesAddWithNFSRoot(t *testing.T) {
	nd, err := nodes.ParseAddArgs([]string{"name=slave21", "mac=00:02:A5:04:3B:66", "ip=192.168.1.21", "arch=x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	dir := project(t)
	env := map[string]string{"NFS_ROOT": "/srv/y/%s"}
	s, err := load(t, dir, env)
	if err != nil {
		t.Fatal(err)
	}
	network, err := s.NewNetwork(nd)
	if err != nil || network.Root != "/srv/y" {
		t.Fatalf("root %q %v", network.Root, err)
	}
	if err := nodes.AddNode(s.NodesFile, nd, network); err != nil {
		t.Fatal(err)
	}
	if s, err = load(t, dir, env); err != nil || s.Root != "/srv/y" {
		t.Errorf("the next command with NFS_ROOT=/srv/y/%%s: %v (root %q)", err, s.Root)
	}
	for env, want := range map[string]string{
		"/srv/z/%s|/srv/other": "NFS_ROOT=/srv/z/%s but DISKLESS_ROOT=/srv/other",
		"/srv/z/nodes|":        "NFS_ROOT must be <root>/%s",
	} {
		nfsRoot, root, _ := strings.Cut(env, "|")
		e := map[string]string{"NFS_ROOT": nfsRoot}
		if root != "" {
			e["DISKLESS_ROOT"] = root
		}
		s, err := load(t, project(t), e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.NewNetwork(nd); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v, want %q", e, err, want)
		}
	}
}
