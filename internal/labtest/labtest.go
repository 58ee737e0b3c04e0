// Package labtest is the one fixture of the tests that boot nodes from a
// master's root: the lab's (pkg/lab), the storm's (pkg/storm) and the
// node OS's (pkg/nodeos). It lays out a master in a temporary directory
// (the root, /home, /opt, the admin's SSH key, nodes.toml), loads the
// settings from it as the magefile would, builds and publishes the
// arches asked for, the inventory's image when asked, provisions the
// nodes, and puts the boot tests' static init on the roots of nodes
// without an image.
package labtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/testenv"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/ganesha"
	"github.com/diskless/diskless/pkg/image"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/pipeline"
	"github.com/diskless/diskless/pkg/publish"
	"github.com/diskless/diskless/pkg/qemu"
	"github.com/diskless/diskless/pkg/settings"
	"github.com/diskless/diskless/pkg/sign"
	"github.com/diskless/diskless/pkg/testroot"
)

// Options say what the master has.
type Options struct {
	// Inventory is nodes.toml's text: {root}, {home} and {opt} become the
	// fixture's directories.
	Inventory string
	// Arches are built (slave kernel, initramfs, netboot image) with the
	// inventory's settings and published with its per-node files.
	Arches []string
	// Image builds (cached) and publishes the inventory's image for each
	// of Arches: debootstrapped (a foreign arch through qemu-user-static),
	// or from ImageFrom (IMAGE_FROM: a directory or tarball with a root).
	Image     bool
	ImageFrom string
	// Sign signs what is published with a test key (SIGNING_KEY, made
	// once in the cache), which the initramfs then trusts: stateless
	// nodes boot only a signed set.
	Sign bool
	// SecureBoot signs every EFI binary published with Debian's snakeoil
	// test key (SECUREBOOT_KEY, SECUREBOOT_CERT), the key the lab's
	// Secure Boot firmware has enrolled (qemu.OVMFSnakeoilVars).
	SecureBoot bool
}

// Fixture is a master laid out for a test.
type Fixture struct {
	S   *settings.Settings
	Inv *nodes.Inventory
	// Tmp holds everything; Root is DISKLESS_ROOT, Home and Opt the
	// shared trees, Key the admin's private key (Key+".pub" is in the
	// inventory's authorized_keys when it names admin.pub).
	Tmp, Root, Home, Opt, Key string
	// Kernel and Initrd are the built slave kernel and fallback
	// initramfs by arch.
	Kernel, Initrd map[string]string
}

// New checks what every such test needs (root, NFS-Ganesha, OpenSSH's
// ssh-keygen; debootstrap for an image, PXELINUX and iPXE for x86), then
// lays the master out. Slow: skipped by -short.
func New(t testing.TB, o Options) *Fixture {
	t.Helper()
	testutil.Slow(t)
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "needs root (network namespaces, NFS-Ganesha, debootstrap)")
	}
	if err := ganesha.Available(); err != nil {
		testutil.SkipOrFail(t, err.Error())
	}
	testutil.NeedTool(t, "ssh-keygen", "openssh-client")
	if o.Image && o.ImageFrom == "" {
		testutil.NeedTool(t, "debootstrap", "debootstrap")
	}
	var archs []arch.Arch
	for _, name := range o.Arches {
		a := testenv.Arch(t, name)
		if a.SrcArch == "x86" {
			for _, p := range append(publish.PXELinux[:len(publish.PXELinux):len(publish.PXELinux)], publish.IPXE...) {
				testutil.NeedFile(t, p.Path, p.Package)
			}
		}
		if o.Image && o.ImageFrom == "" && !a.NativeFor(runtime.GOARCH) {
			testutil.NeedTool(t, "qemu-"+image.QEMUUser(a)+"-static", "qemu-user-static")
		}
		archs = append(archs, a)
	}
	f := &Fixture{Tmp: t.TempDir(), Kernel: map[string]string{}, Initrd: map[string]string{}}
	// the daemons that drop root (nginx's workers, tftpd) must reach the
	// root: the test's temporary directories are 0700
	for _, d := range []string{f.Tmp, filepath.Dir(f.Tmp)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f.Root, f.Home, f.Opt = filepath.Join(f.Tmp, "diskless"), filepath.Join(f.Tmp, "home"), filepath.Join(f.Tmp, "opt")
	for _, d := range []string{f.Root, f.Home, f.Opt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(f.Home, 0o1777) // root on the nodes is squashed to nobody
	os.WriteFile(filepath.Join(f.Opt, "from-master"), []byte("opt\n"), 0o644)
	f.Key = filepath.Join(f.Tmp, "admin")
	if err := Keygen(f.Key); err != nil {
		t.Fatal(err)
	}
	inv := strings.NewReplacer("{root}", f.Root, "{home}", f.Home, "{opt}", f.Opt).Replace(o.Inventory)
	invPath := filepath.Join(f.Tmp, "nodes.toml")
	if err := os.WriteFile(invPath, []byte(inv), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"NODES_FILE": invPath}
	if o.ImageFrom != "" {
		env["IMAGE_FROM"] = o.ImageFrom
	}
	if o.Sign {
		sec, err := TestKey(testenv.Settings(t, nil).CacheDir)
		if err != nil {
			t.Fatal(err)
		}
		env["SIGNING_KEY"] = sec
	}
	if o.SecureBoot {
		testutil.NeedTool(t, "sbsign", "sbsigntool")
		testutil.NeedTool(t, "openssl", "openssl")
		testutil.NeedFile(t, qemu.OVMFSecureCode, "ovmf")
		key, err := SnakeoilKey(testenv.Settings(t, nil).CacheDir)
		if err != nil {
			t.Fatal(err)
		}
		env["SECUREBOOT_KEY"], env["SECUREBOOT_CERT"] = key, qemu.OVMFSnakeoilCert
	}
	f.S = testenv.Settings(t, env)
	f.S.Artifacts = filepath.Join(f.Tmp, "artifacts")
	f.Inv = f.S.Inventory
	ctx := context.Background()
	for _, a := range archs {
		// an EFI image carries the inventory's command line built in (UEFI
		// PXE passes none): an incremental rebuild of the cached kernel
		r, err := pipeline.BuildArch(ctx, pipeline.Options{Arch: a, Settings: f.S, Log: testenv.Quiet()})
		if err != nil {
			t.Fatal(err)
		}
		f.Kernel[a.Name] = filepath.Join(f.S.Artifacts, a.Name, a.ArtifactName())
		f.Initrd[a.Name] = r.Initramfs.Path
	}
	// the image and the nodes' roots (or a stateless node's identity)
	// first: a stateless node's squashfs and overlay are published with
	// the boot files
	if o.Image {
		for _, a := range archs {
			if _, _, err := pipeline.PublishImage(ctx, f.S, a, testenv.Quiet()); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.Provision(t, f.Inv)
	if len(archs) > 0 {
		if err := f.Publish(f.Inv); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// TestKey is the tests' signing key (a signify secret key file), made
// once under cacheDir and reused, so that the initramfs that trusts it is
// built once too.
func TestKey(cacheDir string) (string, error) {
	dir := filepath.Join(cacheDir, "test-keys")
	sec := filepath.Join(dir, "labtest.sec")
	if _, err := os.Stat(sec); err == nil {
		return sec, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	os.Remove(filepath.Join(dir, "labtest.pub"))
	_, sec, err := sign.WriteKeyPair(dir, "labtest")
	return sec, err
}

// SnakeoilKey is Debian's OVMF snakeoil test key without its password
// ("snakeoil"), as SECUREBOOT_KEY takes it: written once under cacheDir
// by openssl, mode 0600.
func SnakeoilKey(cacheDir string) (string, error) {
	dir := filepath.Join(cacheDir, "test-keys")
	key := filepath.Join(dir, "snakeoil.key")
	if _, err := os.Stat(key); err == nil {
		return key, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	var stderr strings.Builder
	c := exec.Command("openssl", "pkey", "-in", qemu.OVMFSnakeoilKey, "-passin", "pass:snakeoil")
	c.Stderr = &stderr
	pemKey, err := c.Output()
	if err != nil {
		return "", fmt.Errorf("openssl pkey %s: %v: %s", qemu.OVMFSnakeoilKey, err, stderr.String())
	}
	return key, sign.WriteKeyFile(key, pemKey, 0o600)
}

// Publish publishes the built arches with inv's per-node files (publish
// renders them from the inventory it is given).
func (f *Fixture) Publish(inv *nodes.Inventory) error {
	s := *f.S
	s.Inventory = inv
	_, err := pipeline.Publish(context.Background(), &s, testenv.Quiet())
	return err
}

// Provision makes inv's nodes' roots under the fixture's root; a node
// without an image gets the boot tests' static init (testroot), for its
// arch.
func (f *Fixture) Provision(t testing.TB, inv *nodes.Inventory) {
	t.Helper()
	if _, err := inv.Provision(f.Root); err != nil {
		t.Fatal(err)
	}
	for _, nd := range inv.Nodes {
		if inv.ImageOf(nd) != "" {
			continue
		}
		a, err := arch.Lookup(nd.Arch)
		if err != nil {
			t.Fatal(err)
		}
		if err := testroot.Build(context.Background(), filepath.Join(f.Root, nd.IP), a.GOARCH); err != nil {
			t.Fatal(err)
		}
	}
}

// Node is a node of the inventory by name.
func (f *Fixture) Node(name string) nodes.Node {
	nd, ok := f.Inv.Node(name)
	if !ok {
		panic("labtest: no node " + name)
	}
	return nd
}

// Keygen makes the admin's key pair for a test (OpenSSH's ssh-keygen).
func Keygen(path string) error {
	os.Remove(path)
	os.Remove(path + ".pub")
	out, err := exec.Command("ssh-keygen", "-q", "-N", "", "-t", "ed25519", "-C", "diskless-test", "-f", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ssh-keygen: %v: %s", err, out)
	}
	return nil
}
