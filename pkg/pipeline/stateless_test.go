package pipeline

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/fsutil"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/image"
	"github.com/diskless/diskless/pkg/publish"
	"github.com/diskless/diskless/pkg/sign"
)

const invStateless = `[network]
master = "192.168.1.1"
subnet = "192.168.1.0/24"
root = "%s"
image = "debian-12"
mode = "stateless"

[[node]]
name = "slave31"
mac = "00:02:A5:04:3B:71"
ip = "192.168.1.31"
arch = "x86_64"
boot = "ipxe"
`

// fakeImage lays out a published image generation with its squashfs, as
// image:publish leaves it.
func fakeImage(t *testing.T, root string) string {
	t.Helper()
	dir := image.Published(root, "debian-12", "x86_64")
	gen := filepath.Join(dir, "gen-0001")
	os.MkdirAll(filepath.Join(gen, "etc/ssh"), 0o755)
	os.WriteFile(filepath.Join(gen, "etc/ssh/sshd_config"), []byte("# sshd\n"), 0o644)
	os.WriteFile(image.SquashfsPath(gen), []byte("squashfs bytes"), 0o644)
	sum, n, _ := fsutil.HashFile(image.SquashfsPath(gen))
	m := &image.Manifest{Name: "debian-12", Arch: "x86_64", TreeSHA256: "t", Squashfs: &image.Squashfs{SHA256: sum, Bytes: n}}
	if err := image.WriteManifest(gen+".json", m); err != nil {
		t.Fatal(err)
	}
	os.Symlink("gen-0001", filepath.Join(dir, "current"))
	return gen
}

// The order an admin runs the commands in does not matter: a publish
// before the image or the identity exists serves what there is and says
// what is missing; image:publish and nodes:provision publish the rest.
// Without a signing key a stateless inventory is refused before anything
// is published.
func TestStatelessPublishInAnyOrder(t *testing.T) {
	testutil.NeedTool(t, "ssh-keygen", "openssh-client")
	if os.Geteuid() != 0 {
		t.Skip("needs root: an overlay is root's, group " + publish.PrivateGroup)
	}
	ctx := context.Background()
	artifacts, root := t.TempDir(), t.TempDir()
	fakeBuild(t, artifacts, "kernel one")
	s := inventorySettings(t, artifacts, invStateless, root)
	if _, err := Publish(ctx, s, nil); err == nil || !strings.Contains(err.Error(), "set SIGNING_KEY") {
		t.Fatalf("a stateless inventory without a signing key: %v", err)
	}
	if _, err := publish.Current(root); err == nil {
		t.Fatal("published without a signing key")
	}
	_, sec, err := sign.WriteKeyPair(t.TempDir(), "m")
	if err != nil {
		t.Fatal(err)
	}
	if s.SigningKey, err = sign.ReadSecretKey(sec); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if _, err := Publish(ctx, s, log); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"image:publish arch=x86_64", "nodes:provision", "names=/squashfs/debian-12-x86_64.squashfs"} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("the publish does not say to run %s:\n%s", w, logs.String())
		}
	}
	got := publishedNodeFiles(t, root)
	if _, ok := got["ipxe/00-02-a5-04-3b-71.ipxe"]; !ok || len(got) != 1 {
		t.Errorf("published before image and identity: %v", got)
	}
	// the image, then the identity: nodes:provision publishes both
	fakeImage(t, root)
	if _, err := ProvisionNodes(ctx, s, log); err != nil {
		t.Fatal(err)
	}
	got = publishedNodeFiles(t, root)
	if got["squashfs/debian-12-x86_64.squashfs"] != "squashfs bytes" || !strings.Contains(got["overlays/192.168.1.31.cpio"], "slave31") {
		t.Errorf("after provisioning: %v", func() []string {
			var n []string
			for k := range got {
				n = append(n, k)
			}
			return n
		}())
	}
	if _, err := publish.Verify(root, s.SigningKey.Public()); err != nil {
		t.Errorf("verify: %v", err)
	}
	// again: nothing changed, nothing published
	m, _ := publish.ReadManifest(root)
	if _, err := ProvisionNodes(ctx, s, log); err != nil {
		t.Fatal(err)
	}
	if m2, _ := publish.ReadManifest(root); m2.Generation != m.Generation {
		t.Errorf("provisioning again published generation %d", m2.Generation)
	}
	// a second image generation live, then image:rollback: the set
	// serves the first one's squashfs again
	dir := image.Published(root, "debian-12", "x86_64")
	gen2 := filepath.Join(dir, "gen-0002")
	os.MkdirAll(gen2, 0o755)
	os.WriteFile(image.SquashfsPath(gen2), []byte("squashfs 2"), 0o644)
	sum, n, _ := fsutil.HashFile(image.SquashfsPath(gen2))
	image.WriteManifest(gen2+".json", &image.Manifest{Name: "debian-12", Arch: "x86_64", TreeSHA256: "t2", Squashfs: &image.Squashfs{SHA256: sum, Bytes: n}})
	os.Remove(filepath.Join(dir, "current"))
	os.Symlink("gen-0002", filepath.Join(dir, "current"))
	if _, _, err := PublishNodes(ctx, s, log); err != nil {
		t.Fatal(err)
	}
	if got := publishedNodeFiles(t, root)["squashfs/debian-12-x86_64.squashfs"]; got != "squashfs 2" {
		t.Fatalf("generation 2's squashfs not served: %q", got)
	}
	x86, _ := arch.Lookup("x86_64")
	if g, err := RollbackImage(ctx, s, x86, log); err != nil || g.N != 1 {
		t.Fatalf("rollback: %+v %v", g, err)
	}
	if got := publishedNodeFiles(t, root)["squashfs/debian-12-x86_64.squashfs"]; got != "squashfs bytes" {
		t.Errorf("after image:rollback the set serves %q", got)
	}
}
