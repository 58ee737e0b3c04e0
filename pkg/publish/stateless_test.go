package publish

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// A stateless node's overlay is published readable by nginx's group only
// (tftpd-hpa serves no file others cannot read), and stays so when a
// later publish carries it over; an image's squashfs is linked, not
// copied, into each generation; NodesCurrent compares both by content.
func TestPublishOverlaysAndSquashfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a private file is root's, group " + PrivateGroup)
	}
	g, err := user.LookupGroup(PrivateGroup)
	if err != nil {
		t.Fatalf("%s: %v", PrivateGroup, err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	img := filepath.Join(dir, "gen-0001.squashfs")
	os.WriteFile(img, []byte("squashfs image"), 0o644)
	nodes := []File{
		{Name: "ipxe/52-54-00-00-00-01.ipxe", Data: []byte("#!ipxe\nkernel /bzImage_x86_64 diskless.image=/squashfs/d-x86_64.squashfs\n"), Kind: "ipxe-script"},
		{Name: "squashfs/d-x86_64.squashfs", Source: img, SHA256: sum([]byte("squashfs image")), Kind: KindSquashfs},
		{Name: "overlays/10.0.0.21.cpio", Data: []byte("host keys"), Kind: "overlay", Private: true},
	}
	kernel := File{Name: "bzImage_x86_64", Data: []byte("kernel"), Arch: "x86_64", Kind: "kernel"}
	m, err := Publish(context.Background(), append([]File{kernel}, nodes...), Options{Root: root, Merge: true, Nodes: true})
	if err != nil {
		t.Fatal(err)
	}
	gen := filepath.Join(root, GenerationDir(m.Generation))
	check := func(gen string) {
		t.Helper()
		st, err := os.Stat(filepath.Join(gen, "overlays/10.0.0.21.cpio"))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o640 || int(st.Sys().(*syscall.Stat_t).Gid) != gid {
			t.Errorf("overlay mode %v gid %d, want 0640 group %s", st.Mode(), st.Sys().(*syscall.Stat_t).Gid, PrivateGroup)
		}
		a, _ := os.Stat(img)
		b, _ := os.Stat(filepath.Join(gen, "squashfs/d-x86_64.squashfs"))
		if !os.SameFile(a, b) {
			t.Error("the squashfs was copied, not linked")
		}
	}
	check(gen)
	if data, _ := os.ReadFile(filepath.Join(gen, "ipxe/52-54-00-00-00-01.ipxe")); string(data) != "#!ipxe\nkernel /"+GenerationDir(m.Generation)+"/bzImage_x86_64 diskless.image=/"+GenerationDir(m.Generation)+"/squashfs/d-x86_64.squashfs\n" {
		t.Errorf("the script is not pinned:\n%s", data)
	}
	if same, err := NodesCurrent(root, nodes); !same || err != nil {
		t.Errorf("NodesCurrent after publishing them: %v %v", same, err)
	}
	changed := append([]File(nil), nodes...)
	changed[2].Data = []byte("new host keys")
	if same, _ := NodesCurrent(root, changed); same {
		t.Error("NodesCurrent with another overlay: true")
	}
	// a publish of the kernel alone carries the node files over, private
	// and linked as before
	m2, err := Publish(context.Background(), []File{{Name: "bzImage_x86_64", Data: []byte("kernel 2"), Arch: "x86_64", Kind: "kernel"}}, Options{Root: root, Merge: true})
	if err != nil {
		t.Fatal(err)
	}
	check(filepath.Join(root, GenerationDir(m2.Generation)))
	if _, err := Verify(root); err != nil {
		t.Errorf("verify: %v", err)
	}
}

// Per-node files are the inventory's, carried and replaced together: an
// arm64 stateless node's command line file among them.
func TestIsNodeFile(t *testing.T) {
	for _, c := range []struct {
		name         string
		node, pinned bool
	}{
		{"pxelinux.cfg/01-52-54-00-aa-00-01", true, true},
		{"ipxe/52-54-00-aa-00-01.ipxe", true, true},
		{"cmdline/52-54-00-aa-00-01", true, true},
		{"overlays/10.0.0.41.cpio", true, false},
		{"squashfs/debian-12-arm64.squashfs", true, false},
		{"pxelinux.cfg/default", false, true},
		{"boot.ipxe", false, true},
		{"pxelinux.0", false, false},
		{"vmlinuz_arm64", false, false},
	} {
		if IsNodeFile(c.name) != c.node || Pinned(c.name) != c.pinned {
			t.Errorf("%s: per-node %v pinned %v, want %v %v", c.name, IsNodeFile(c.name), Pinned(c.name), c.node, c.pinned)
		}
	}
}
