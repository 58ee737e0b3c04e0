package publish

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/pxe"
)

var boot = pxe.Settings{}.WithDefaults()

// archBundle writes a bundle shaped like ci:artifacts's for name: kernel,
// vmlinuz, initramfs, config and, on x86, PXELINUX and its default
// configuration. tag varies the contents (a rebuild).
func archBundle(t *testing.T, name, tag string) string {
	t.Helper()
	a, err := arch.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var files []File
	for _, f := range []struct{ name, kind string }{{a.ArtifactName(), "kernel"}, {"vmlinuz_" + a.Name, "netboot"}, {"initramfs_" + a.Name + ".cpio.zst", "initramfs"}, {"config_" + a.Name, "config"}} {
		p := filepath.Join(dir, f.name)
		os.WriteFile(p, []byte(strings.Repeat(tag+f.name, 200)), 0o644)
		files = append(files, File{Name: f.name, Source: p, Arch: a.Name, Kind: f.kind})
	}
	if a.SrcArch == "x86" {
		for _, p := range PXELinux {
			files = append(files, File{Name: p.Name, Data: []byte("syslinux 6.04 " + p.Name), Kind: "bootloader"})
		}
		gen, err := BootConfigs(files, boot)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, gen...)
	}
	out := filepath.Join(t.TempDir(), "diskless_"+name+"_"+tag+".tar.zst")
	if _, err := WriteBundle(out, files, nil); err != nil {
		t.Fatal(err)
	}
	return out
}

func readBundles(t *testing.T, paths ...string) []File {
	t.Helper()
	var sets [][]File
	for _, p := range paths {
		set, err := ReadBundle(p, t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		sets = append(sets, set)
	}
	files, err := Combine(sets, paths)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func publishMerged(t *testing.T, root string, files []File, drop ...string) (*Manifest, error) {
	t.Helper()
	return Publish(context.Background(), files, Options{Root: root, Merge: true, Drop: drop, PXE: &boot})
}

func liveArches(t *testing.T, root string) string {
	t.Helper()
	m, err := Verify(root)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range m.Files {
		if f.Arch != "" {
			seen[f.Arch] = true
		}
	}
	var out []string
	for a := range seen {
		out = append(out, a)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func sha256sumC(t *testing.T, root string) {
	t.Helper()
	c := exec.Command("sha256sum", "-c", "--quiet", SumsName)
	c.Dir = root
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c in %s: %v\n%s", root, err, out)
	}
}

// The four per-arch bundles CI makes go into one generation, with one
// pxelinux.cfg/default for both x86 arches (x86_64 first).
func TestFourBundlesOneGeneration(t *testing.T) {
	var paths []string
	for _, a := range []string{"x86_64", "i386", "arm64", "riscv64"} {
		paths = append(paths, archBundle(t, a, "v1"))
	}
	root := t.TempDir()
	m, err := publishMerged(t, root, readBundles(t, paths...))
	if err != nil {
		t.Fatal(err)
	}
	if m.Generation != 1 || liveArches(t, root) != "arm64,i386,riscv64,x86_64" {
		t.Errorf("generation %d with arches %s", m.Generation, liveArches(t, root))
	}
	sha256sumC(t, root)
	def, _ := os.ReadFile(filepath.Join(root, "pxelinux.cfg", "default"))
	// both x86 arches: the CPU picks its kernel (ifcpu64.c32)
	if !strings.Contains(string(def), "DEFAULT auto\n") || !strings.Contains(string(def), "LABEL auto\n  COM32 ifcpu64.c32\n  APPEND slave_x86_64 -- slave_i386\n") ||
		!strings.Contains(string(def), "LABEL slave_i386") || !strings.Contains(string(def), "INITRD "+GenerationDir(1)+"/initramfs_i386.cpio.zst") {
		t.Errorf("default config:\n%s", def)
	}
	for _, name := range []string{"pxelinux.0", "ldlinux.c32", "ifcpu64.c32", "libcom32.c32", "libutil.c32", "Image_arm64", "vmlinuz_riscv64", "bzImage_i386", "boot.ipxe", "boot-x86_64.ipxe", "boot-i386.ipxe"} {
		if _, err := os.Stat(filepath.Join(root, name)); err != nil {
			t.Errorf("%s not published: %v", name, err)
		}
	}
	// iPXE: both x86 arches' scripts, a 64-bit CPU takes x86_64's
	disp, _ := os.ReadFile(filepath.Join(root, "boot.ipxe"))
	g := "/" + GenerationDir(1)
	if !strings.Contains(string(disp), ":cpu64\nchain --replace --autofree "+g+"/boot-x86_64.ipxe") || !strings.Contains(string(disp), ":cpu32\nchain --replace --autofree "+g+"/boot-i386.ipxe") {
		t.Errorf("boot.ipxe:\n%s", disp)
	}
	i386, _ := os.ReadFile(filepath.Join(root, "boot-i386.ipxe"))
	if !strings.Contains(string(i386), "kernel "+g+"/bzImage_i386 initrd=initramfs_i386.cpio.zst ip=dhcp root=/dev/nfs") || !strings.Contains(string(i386), "initrd "+g+"/initramfs_i386.cpio.zst") {
		t.Errorf("boot-i386.ipxe:\n%s", i386)
	}
}

// One arch at a time: each publish keeps the arches the live generation
// already has; PUBLISH_DROP removes one.
func TestPublishingOneArchKeepsTheOthers(t *testing.T) {
	root := t.TempDir()
	if _, err := publishMerged(t, root, readBundles(t, archBundle(t, "x86_64", "v1"))); err != nil {
		t.Fatal(err)
	}
	if _, err := publishMerged(t, root, readBundles(t, archBundle(t, "arm64", "v1"))); err != nil {
		t.Fatal(err)
	}
	if got := liveArches(t, root); got != "arm64,x86_64" {
		t.Fatalf("after x86_64 then arm64: %s live", got)
	}
	sha256sumC(t, root)
	defaultLabel := func() string {
		t.Helper()
		def, err := os.ReadFile(filepath.Join(root, "pxelinux.cfg", "default"))
		if err != nil {
			t.Fatal(err)
		}
		l, _, _ := strings.Cut(string(def[strings.Index(string(def), "DEFAULT "):]), "\n")
		return l
	}
	if l := defaultLabel(); l != "DEFAULT slave_x86_64" {
		t.Errorf("x86_64 alone: %s", l)
	}
	for _, name := range []string{"pxelinux.0", "pxelinux.cfg/default", "bzImage_x86_64", "vmlinuz_arm64"} {
		if _, err := os.Stat(filepath.Join(root, name)); err != nil {
			t.Errorf("%s not live: %v", name, err)
		}
	}
	// a rebuilt x86_64 replaces x86_64's files only
	x2 := archBundle(t, "x86_64", "v2")
	if _, err := publishMerged(t, root, readBundles(t, x2)); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(root, "bzImage_x86_64"))
	if !strings.HasPrefix(string(got), "v2") || liveArches(t, root) != "arm64,x86_64" {
		t.Errorf("after a new x86_64: %q..., arches %s", got[:8], liveArches(t, root))
	}
	// dropping arm64 explicitly
	if _, err := publishMerged(t, root, readBundles(t, x2), "arm64"); err != nil {
		t.Fatal(err)
	}
	if got := liveArches(t, root); got != "x86_64" {
		t.Errorf("after PUBLISH_DROP=arm64: %s live", got)
	}
	if _, err := os.Lstat(filepath.Join(root, "vmlinuz_arm64")); err == nil {
		t.Error("vmlinuz_arm64 still linked after the drop")
	}
	// i386 after x86_64: the default picks by CPU; i386 alone: its label
	if _, err := publishMerged(t, root, readBundles(t, archBundle(t, "i386", "v1"))); err != nil {
		t.Fatal(err)
	}
	if l := defaultLabel(); l != "DEFAULT auto" {
		t.Errorf("x86_64 and i386: %s", l)
	}
	if _, err := publishMerged(t, root, readBundles(t, archBundle(t, "i386", "v1")), "x86_64"); err != nil {
		t.Fatal(err)
	}
	if l := defaultLabel(); l != "DEFAULT slave_i386" {
		t.Errorf("i386 alone: %s", l)
	}
	// the x86 loaders go when the last x86 arch is dropped
	if _, err := publishMerged(t, root, readBundles(t, archBundle(t, "riscv64", "v1")), "i386"); err != nil {
		t.Fatal(err)
	}
	if got := liveArches(t, root); got != "riscv64" {
		t.Errorf("after dropping x86_64: %s", got)
	}
	for _, name := range []string{"pxelinux.0", "pxelinux.cfg"} {
		if _, err := os.Lstat(filepath.Join(root, name)); err == nil {
			t.Errorf("%s left after the last x86 arch went", name)
		}
	}
	sha256sumC(t, root)
}

func TestMergeRefusals(t *testing.T) {
	root := t.TempDir()
	x := archBundle(t, "x86_64", "v1")
	if _, err := publishMerged(t, root, readBundles(t, x), "x86_64"); err == nil || !strings.Contains(err.Error(), "PUBLISH_DROP names x86_64, which this publish brings") {
		t.Errorf("dropping what is published: %v", err)
	}
	// two builds of one arch at once
	a, b := archBundle(t, "x86_64", "v1"), archBundle(t, "x86_64", "v2")
	sa, _ := ReadBundle(a, t.TempDir(), nil)
	sb, _ := ReadBundle(b, t.TempDir(), nil)
	if _, err := Combine([][]File{sa, sb}, []string{a, b}); err == nil || !strings.Contains(err.Error(), "bzImage_x86_64 differs between "+a+" and "+b) {
		t.Errorf("conflicting bundles: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, ".diskless", "current")); err == nil {
		t.Error("a refused publish made a generation")
	}
}

// A node that read a configuration of generation 1 and fetches the next
// file after generation 2 went live still gets generation 1's: every boot
// configuration names files inside its own generation, a per-node file
// carried over is pinned to the new one, and one changed since it was
// recorded is refused.
func TestConfigurationsStayOnTheirGeneration(t *testing.T) {
	root := t.TempDir()
	nodeCfg := "# per node\nDEFAULT n\nLABEL n\n  KERNEL bzImage_x86_64\n  INITRD initramfs_x86_64.cpio.zst\n  APPEND ip=dhcp\n"
	nodeScript, _ := pxe.IPXEBoot("per node", pxe.Label{Name: "n", Kernel: "bzImage_x86_64", Initrd: "initramfs_x86_64.cpio.zst", Append: "ip=dhcp"})
	v1 := append(readBundles(t, archBundle(t, "x86_64", "v1")), File{Name: "pxelinux.cfg/01-00-02-a5-04-3b-66", Data: []byte(nodeCfg), Kind: "pxelinux-config"}, File{Name: "ipxe/00-02-a5-04-3b-66.ipxe", Data: []byte(nodeScript), Kind: "ipxe-script"})
	if _, err := publishMerged(t, root, v1); err != nil {
		t.Fatal(err)
	}
	// what a node is told by generation 1, before the switch
	told := map[string][]byte{}
	for _, name := range []string{"pxelinux.cfg/default", "pxelinux.cfg/01-00-02-a5-04-3b-66", "boot-x86_64.ipxe", "ipxe/00-02-a5-04-3b-66.ipxe"} {
		told[name], _ = os.ReadFile(filepath.Join(root, name))
	}
	kernel1, _ := os.ReadFile(filepath.Join(root, "bzImage_x86_64"))
	if _, err := publishMerged(t, root, readBundles(t, archBundle(t, "x86_64", "v2"))); err != nil {
		t.Fatal(err)
	}
	kernel2, _ := os.ReadFile(filepath.Join(root, "bzImage_x86_64"))
	if string(kernel1) == string(kernel2) {
		t.Fatal("generation 2 has generation 1's kernel: the test proves nothing")
	}
	kernelNamed := func(cfg []byte) string {
		for _, f := range strings.Fields(string(cfg)) {
			if strings.HasSuffix(f, "bzImage_x86_64") {
				return strings.TrimPrefix(f, "/")
			}
		}
		return ""
	}
	for name, cfg := range told {
		got, err := os.ReadFile(filepath.Join(root, kernelNamed(cfg)))
		if err != nil || string(got) != string(kernel1) {
			t.Errorf("%s of generation 1 names %q: after the switch that is not generation 1's kernel (%v)", name, kernelNamed(cfg), err)
		}
		now, _ := os.ReadFile(filepath.Join(root, name))
		if got, _ := os.ReadFile(filepath.Join(root, kernelNamed(now))); string(got) != string(kernel2) {
			t.Errorf("%s of generation 2 names %q, not generation 2's kernel:\n%s", name, kernelNamed(now), now)
		}
	}
	sha256sumC(t, root)
	// a carried-over configuration edited in the live tree is refused
	p := filepath.Join(root, GenerationDir(2), "pxelinux.cfg", "01-00-02-a5-04-3b-66")
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, []byte(nodeCfg+"  APPEND init=/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := publishMerged(t, root, readBundles(t, archBundle(t, "x86_64", "v3"))); err == nil || !strings.Contains(err.Error(), "changed since it was recorded") {
		t.Errorf("a tampered live configuration carried over: %v", err)
	}
}
