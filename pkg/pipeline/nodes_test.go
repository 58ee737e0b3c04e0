package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/publish"
	"github.com/diskless/diskless/pkg/pxe"
	"github.com/diskless/diskless/pkg/settings"
)

// fakeBuild writes an arm64 kernel as a build leaves it in artifacts (no
// x86 arch: no PXELINUX or iPXE files from Debian's packages are needed).
func fakeBuild(t *testing.T, artifacts, content string) {
	t.Helper()
	for a, names := range map[string][]string{"arm64": {"Image_arm64"}, "x86_64": {"bzImage_x86_64", "initramfs_x86_64.cpio.zst"}} {
		dir := filepath.Join(artifacts, a)
		os.MkdirAll(dir, 0o755)
		var list []map[string]string
		for _, name := range names {
			os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
			sum := sha256.Sum256([]byte(content))
			list = append(list, map[string]string{"name": name, "sha256": hex.EncodeToString(sum[:])})
		}
		meta, _ := json.Marshal(map[string]any{"artifacts": list})
		os.WriteFile(filepath.Join(dir, "build_"+a+".json"), meta, 0o644)
	}
}

const invA = `[network]
master = "192.168.1.1"
subnet = "192.168.1.0/24"
root = "%s"

[[node]]
name = "slave21"
mac = "00:02:A5:04:3B:66"
ip = "192.168.1.21"
arch = "x86_64"

[[node]]
name = "slave22"
mac = "00:02:A5:04:3B:67"
ip = "192.168.1.22"
arch = "x86_64"
boot = "ipxe"

[[node]]
name = "slave23"
mac = "00:02:A5:04:3B:68"
ip = "192.168.1.23"
arch = "x86_64"
`

// B: slave21's address changed, slave22 gone, slave23's MAC changed.
const invB = `[network]
master = "192.168.1.1"
subnet = "192.168.1.0/24"
root = "%s"

[[node]]
name = "slave21"
mac = "00:02:A5:04:3B:66"
ip = "192.168.1.31"
arch = "x86_64"

[[node]]
name = "slave23"
mac = "00:02:A5:04:3B:99"
ip = "192.168.1.23"
arch = "x86_64"
`

func inventorySettings(t *testing.T, artifacts, text, root string) *settings.Settings {
	t.Helper()
	p := filepath.Join(t.TempDir(), "nodes.toml")
	os.WriteFile(p, []byte(fmt.Sprintf(text, root)), 0o644)
	s := testSettings(t, map[string]string{"NODES_FILE": p})
	s.Artifacts = artifacts
	return s
}

// publishedNodeFiles are the live per-node files of root with their
// contents.
func publishedNodeFiles(t *testing.T, root string) map[string]string {
	t.Helper()
	m, err := publish.ReadManifest(root)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range m.Files {
		if publish.IsNodeFile(f.Name) {
			data, err := os.ReadFile(filepath.Join(root, f.Name))
			if err != nil {
				t.Fatal(err)
			}
			out[f.Name] = string(data)
		}
	}
	return out
}

// checkServes says whether root serves exactly the per-node files of s's
// inventory, pinned to the live generation.
func checkServes(t *testing.T, root string, s *settings.Settings) {
	t.Helper()
	want, err := s.Inventory.BootFiles()
	if err != nil {
		t.Fatal(err)
	}
	got := publishedNodeFiles(t, root)
	names := func(m map[string]string) string {
		var n []string
		for k := range m {
			n = append(n, k)
		}
		sort.Strings(n)
		return strings.Join(n, " ")
	}
	if names(got) != names(want) {
		t.Fatalf("%s serves per-node files %s, the inventory has %s", root, names(got), names(want))
	}
	m, _ := publish.ReadManifest(root)
	tops := map[string]bool{}
	for _, top := range publish.TopLevel(m.Files) {
		tops[top] = true
	}
	for name, text := range want {
		pinned := pxe.Pin(text, publish.GenerationDir(m.Generation), func(top string) bool { return tops[top] })
		if got[name] != pinned {
			t.Errorf("%s serves:\n%s\nthe inventory says:\n%s", name, got[name], pinned)
		}
		if nfsroot(got[name]) == "" {
			t.Errorf("%s has no nfsroot=", name)
		}
		// written out, not by Pin: the kernel comes from the live generation
		if gen := fmt.Sprintf(".diskless/generations/%06d/", m.Generation); !strings.Contains(got[name], gen) {
			t.Errorf("%s does not fetch from %s:\n%s", name, gen, got[name])
		}
	}
}

func nfsroot(cfg string) string {
	for _, f := range strings.Fields(cfg) {
		if strings.HasPrefix(f, "nfsroot=") {
			return f
		}
	}
	return ""
}

// What is published for the nodes is what the inventory loaded for the
// publish says, whatever nodes:render left in artifacts/master or an
// earlier publish served: a changed address is served, a removed node's
// files and an old MAC's are gone.
func TestPublishServesTheLoadedInventory(t *testing.T) {
	ctx := context.Background()
	artifacts := t.TempDir()
	fakeBuild(t, artifacts, "kernel one")
	rootA, rootB := t.TempDir(), t.TempDir()
	a := inventorySettings(t, artifacts, invA, rootA)

	// nodes:render for A, as the magefile writes it
	rendered, err := a.Inventory.Render()
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes.WriteFiles(filepath.Join(artifacts, "master"), rendered); err != nil {
		t.Fatal(err)
	}
	// publishing with B (another root) serves B's files, not A's render
	b := inventorySettings(t, artifacts, invB, rootB)
	if _, err := Publish(ctx, b, nil); err != nil {
		t.Fatal(err)
	}
	checkServes(t, rootB, b)
	if got := publishedNodeFiles(t, rootB)["pxelinux.cfg/01-00-02-a5-04-3b-66"]; !strings.Contains(got, rootB+"/192.168.1.31") || strings.Contains(got, rootA) {
		t.Errorf("slave21's file names root A or the old address:\n%s", got)
	}

	// in one root: A published, then B: the removed node and the old MAC
	// lose their files, the changed address is served
	a2 := inventorySettings(t, artifacts, invA, rootB)
	if _, err := Publish(ctx, a2, nil); err != nil {
		t.Fatal(err)
	}
	checkServes(t, rootB, a2)
	if _, ok := publishedNodeFiles(t, rootB)["ipxe/00-02-a5-04-3b-67.ipxe"]; !ok {
		t.Fatal("A's iPXE node has no script")
	}
	// a new build of the kernel, published with B
	fakeBuild(t, artifacts, "kernel two")
	if _, err := Publish(ctx, b, nil); err != nil {
		t.Fatal(err)
	}
	checkServes(t, rootB, b)
	got := publishedNodeFiles(t, rootB)
	for _, gone := range []string{"ipxe/00-02-a5-04-3b-67.ipxe", "pxelinux.cfg/01-00-02-a5-04-3b-68"} {
		if _, ok := got[gone]; ok {
			t.Errorf("%s is still published", gone)
		}
	}
	if _, err := publish.Verify(rootB); err != nil {
		t.Error(err)
	}

	// without an inventory no per-node file is served
	none := testSettings(t, map[string]string{"DISKLESS_ROOT": rootB})
	none.Artifacts = artifacts
	if _, err := Publish(ctx, none, nil); err != nil {
		t.Fatal(err)
	}
	if got := publishedNodeFiles(t, rootB); len(got) != 0 {
		t.Errorf("no inventory, yet per-node files are published: %v", got)
	}
}

// PublishNodes (lab:up, lab:storm) publishes the inventory's per-node files
// when the live generation's differ, keeping every other file, and nothing
// when they match.
func TestPublishNodes(t *testing.T) {
	ctx := context.Background()
	artifacts := t.TempDir()
	fakeBuild(t, artifacts, "kernel")
	root := t.TempDir()
	a := inventorySettings(t, artifacts, invA, root)
	if _, _, err := PublishNodes(ctx, a, nil); err == nil || !strings.Contains(err.Error(), "nothing published") {
		t.Errorf("nothing published yet: %v", err)
	}
	m1, err := Publish(ctx, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := PublishNodes(ctx, a, nil); ok || err != nil {
		t.Errorf("the live files match A, yet PublishNodes published (%v, %v)", ok, err)
	}
	b := inventorySettings(t, artifacts, invB, root)
	ok, m2, err := PublishNodes(ctx, b, nil)
	if !ok || err != nil || m2.Generation != m1.Generation+1 {
		t.Fatalf("B's files: published %v, %v, %+v", ok, err, m2)
	}
	checkServes(t, root, b)
	if data, err := os.ReadFile(filepath.Join(root, "Image_arm64")); err != nil || string(data) != "kernel" {
		t.Errorf("the kernel was not carried over: %q %v", data, err)
	}
	if ok, _, _ := PublishNodes(ctx, b, nil); ok {
		t.Error("published B's files twice")
	}
}
