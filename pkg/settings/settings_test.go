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

	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/kbuild"
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
	for v, env := range map[string]map[string]string{
		"DISKLESS_ROOT=/diskless": {"DISKLESS_ROOT": "/diskless"},
		"NFS_SERVER=10.0.0.9":     {"NFS_SERVER": "10.0.0.9"},
		"NFS_OPTS=vers=3":         {"NFS_OPTS": "vers=3"},
		"NFS_ROOT=/x/%s":          {"NFS_ROOT": "/x/%s"},
	} {
		_, err := load(t, dir, env)
		if err == nil || !strings.Contains(err.Error(), v) || !strings.Contains(err.Error(), "nodes.toml says") {
			t.Errorf("%s against the inventory: %v", v, err)
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
