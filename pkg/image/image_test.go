package image

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/fsutil"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
)

func TestParseDefinition(t *testing.T) {
	d, err := ParseDefinition("debian-12", "x.packages", []byte("# c\nsuite: bookworm\n\nsystemd-sysv # init\nopenssh-server\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Suite != "bookworm" || strings.Join(d.Names(), ",") != "systemd-sysv,openssh-server" || d.Packages[1].Line != 5 {
		t.Errorf("%+v", d)
	}
	for _, c := range []struct{ text, want string }{
		{"suite: bookworm\nNot A Package\n", "x.packages:2: \"Not A Package\" is not a Debian package name"},
		{"suite: bookworm\nvim\nvim\n", "x.packages:3: vim is already on line 2"},
		{"vim\n", "no \"suite: <codename>\" line"},
	} {
		_, err := ParseDefinition("custom", "x.packages", []byte(c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.text, err, c.want)
		}
	}
	// the repository's own definitions parse
	for _, n := range Known("../..") {
		if _, err := LoadDefinition("../..", n); err != nil {
			t.Error(err)
		}
	}
	if _, err := LoadDefinition("../..", "debian-99"); err == nil || !strings.Contains(err.Error(), "unknown image (known: debian-12") {
		t.Errorf("unknown image: %v", err)
	}
	if err := ValidName("../etc"); err == nil {
		t.Error("../etc accepted as an image name")
	}
}

func TestMirrorFromAptSources(t *testing.T) {
	for _, c := range []struct {
		files map[string][]byte
		want  string
	}{
		{map[string][]byte{"/etc/apt/sources.list.d/debian.sources": []byte("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\nTypes: deb\nURIs: http://security.example/debian-security\n")}, "http://mirror.example/debian"},
		{map[string][]byte{"/etc/apt/sources.list": []byte("# x\ndeb [arch=amd64 signed-by=/k.gpg] http://proxy:3142/debian bookworm main\n")}, "http://proxy:3142/debian"},
		{map[string][]byte{"/etc/apt/sources.list": []byte("deb http://security.debian.org/debian-security bookworm-security main\n")}, ""},
	} {
		if got := MirrorFromAptSources(c.files); got != c.want {
			t.Errorf("%v: %q, want %q", c.files, got, c.want)
		}
	}
}

// fakeRoot makes a small root filesystem tree.
func fakeRoot(t *testing.T, dir, marker string) {
	t.Helper()
	for _, d := range []string{"etc/ssh", "usr/sbin", "var/lib/dpkg", "var/lib/apt/lists"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "usr/sbin/init"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("usr/sbin", filepath.Join(dir, "sbin"))
	os.WriteFile(filepath.Join(dir, "etc/machine-id"), []byte("0123456789abcdef0123456789abcdef\n"), 0o444)
	os.WriteFile(filepath.Join(dir, "etc/ssh/ssh_host_ed25519_key"), []byte("secret"), 0o600)
	os.WriteFile(filepath.Join(dir, "usr/marker"), []byte(marker), 0o644)
	os.WriteFile(filepath.Join(dir, "var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease"), []byte("big"), 0o644)
	os.WriteFile(filepath.Join(dir, "var/lib/dpkg/status"), []byte("Package: systemd\nStatus: install ok installed\nVersion: 252.38-1\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: bash\nStatus: install ok installed\nVersion: 5.2.15-2\n"), 0o644)
}

func TestBuildFromDirectoryPublishRollback(t *testing.T) {
	if os.Geteuid() != 0 {
		testutil.Integration(t, "root")
		testutil.SkipOrFail(t, "building an image needs root (Build refuses otherwise: it keeps owners and device nodes)")
	}
	unsquashfs := testutil.NeedTool(t, "unsquashfs", "squashfs-tools") // publish writes the squashfs
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	fakeRoot(t, src, "1")
	x86, _ := arch.Lookup("x86_64")
	o := Options{Name: "mine", Arch: x86, CacheDir: filepath.Join(tmp, "cache"), From: src}
	res, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Cached {
		t.Error("first build reported cached")
	}
	// per-node identity and caches are not in the image
	if data, _ := os.ReadFile(filepath.Join(res.Tree, "etc/machine-id")); len(data) != 0 {
		t.Errorf("machine-id kept: %q", data)
	}
	for _, p := range []string{"etc/ssh/ssh_host_ed25519_key", "var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease"} {
		if _, err := os.Stat(filepath.Join(res.Tree, p)); err == nil {
			t.Errorf("%s kept in the image", p)
		}
	}
	m := res.Manifest
	if m.PackageDB != "dpkg" || len(m.Packages) != 2 || m.Packages[0] != (PkgInfo{"bash", "5.2.15-2"}) || m.TreeSHA256 == "" {
		t.Errorf("manifest %+v", m)
	}
	again, err := Build(context.Background(), o)
	if err != nil || !again.Cached || again.Manifest.TreeSHA256 != m.TreeSHA256 {
		t.Errorf("no-op build: cached=%v %v", again != nil && again.Cached, err)
	}

	root := filepath.Join(tmp, "diskless")
	os.Mkdir(root, 0o755)
	g1, err := Publish(context.Background(), res, PublishOptions{Root: root})
	if err != nil || g1.N != 1 {
		t.Fatalf("publish: %+v %v", g1, err)
	}
	// the same tree as one squashfs file beside it, described in its manifest
	sq := SquashfsPath(g1.Dir)
	if g1.Manifest.Squashfs == nil || !fsutil.Matches(sq, g1.Manifest.Squashfs.Bytes, g1.Manifest.Squashfs.SHA256) {
		t.Fatalf("gen-0001's squashfs: %+v", g1.Manifest.Squashfs)
	}
	if m, err := ReadManifest(g1.Dir + ".json"); err != nil || m.Squashfs == nil || *m.Squashfs != *g1.Manifest.Squashfs {
		t.Errorf("gen-0001.json: %+v %v", m, err)
	}
	if out, err := exec.Command(unsquashfs, "-cat", sq, "usr/marker").CombinedOutput(); err != nil || string(out) != "1" {
		t.Errorf("usr/marker in the squashfs: %q %v", out, err)
	}
	// the same tree gives the same bytes
	again2, err := MakeSquashfs(context.Background(), g1.Dir, filepath.Join(tmp, "again.squashfs"), res.Manifest.Built.Unix())
	if err != nil || again2.SHA256 != g1.Manifest.Squashfs.SHA256 {
		t.Errorf("the squashfs again: %+v %v, first %s", again2, err, g1.Manifest.Squashfs.SHA256)
	}
	if g, err := Publish(context.Background(), res, PublishOptions{Root: root}); err != nil || g.N != 1 {
		t.Errorf("republishing the live image made %+v %v", g, err)
	}
	// a live generation published before squashfs files gets one
	os.Remove(sq)
	if g, err := Publish(context.Background(), res, PublishOptions{Root: root}); err != nil || g.N != 1 || !fsutil.Matches(sq, g.Manifest.Squashfs.Bytes, g.Manifest.Squashfs.SHA256) {
		t.Errorf("republishing the live image without its squashfs: %+v %v", g, err)
	}
	// a changed source is a new key, a new build, a new generation
	os.WriteFile(filepath.Join(src, "usr/marker"), []byte("2"), 0o644)
	res2, err := Build(context.Background(), o)
	if err != nil || res2.Cached {
		t.Fatalf("rebuild after a change: cached=%v %v", res2 != nil && res2.Cached, err)
	}
	g2, err := Publish(context.Background(), res2, PublishOptions{Root: root})
	if err != nil || g2.N != 2 {
		t.Fatalf("second publish: %+v %v", g2, err)
	}
	live, _ := Live(root, "mine", "x86_64")
	if data, _ := os.ReadFile(filepath.Join(live, "usr/marker")); string(data) != "2" || filepath.Base(live) != "gen-0002" {
		t.Errorf("live %s has %q", live, data)
	}
	// the old generation is whole while the new one is live
	if data, _ := os.ReadFile(filepath.Join(g1.Dir, "usr/marker")); string(data) != "1" {
		t.Errorf("gen-0001 changed: %q", data)
	}
	if g, err := Rollback(root, "mine", "x86_64", nil); err != nil || g.N != 1 {
		t.Fatalf("rollback: %+v %v", g, err)
	}
	live, _ = Live(root, "mine", "x86_64")
	if data, _ := os.ReadFile(filepath.Join(live, "usr/marker")); string(data) != "1" {
		t.Errorf("after rollback live has %q", data)
	}
	if _, err := Rollback(root, "mine", "x86_64", nil); err == nil || !strings.Contains(err.Error(), "oldest generation") {
		t.Errorf("rollback past the oldest: %v", err)
	}
	// keep: only the newest generations (and never the live one) stay
	for i := 3; i <= 5; i++ {
		os.WriteFile(filepath.Join(src, "usr/marker"), []byte{byte('0' + i)}, 0o644)
		r, err := Build(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Publish(context.Background(), r, PublishOptions{Root: root, Keep: 2}); err != nil {
			t.Fatal(err)
		}
	}
	gens, _ := Generations(Published(root, "mine", "x86_64"))
	if len(gens) != 2 || gens[0].N != 4 || gens[1].N != 5 || !gens[1].Live {
		t.Errorf("generations after keep=2: %+v", gens)
	}
	if left, _ := filepath.Glob(filepath.Join(Published(root, "mine", "x86_64"), "*.squashfs")); len(left) != 2 {
		t.Errorf("squashfs files after keep=2: %v", left)
	}
}

func TestNotARootFilesystem(t *testing.T) {
	tmp := t.TempDir()
	x86, _ := arch.Lookup("x86_64")
	// a tarball of something else (tar and gzip: Debian's Essential set)
	junk := filepath.Join(tmp, "junk")
	os.MkdirAll(filepath.Join(junk, "docs"), 0o755)
	os.WriteFile(filepath.Join(junk, "docs/readme"), []byte("hi"), 0o644)
	tarball := filepath.Join(tmp, "junk.tar.gz")
	if out, err := exec.Command("tar", "-czf", tarball, "-C", junk, ".").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	const notRoot = ": not a root filesystem: it has no etc/, usr/ and an init (sbin/init or usr/sbin/init)"
	// the tarball's listing is checked before anything is extracted, by
	// any user (Build reaches that step only as root)
	work := filepath.Join(tmp, "work")
	err := unpack(context.Background(), tarball, work, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "IMAGE_FROM="+tarball+notRoot) {
		t.Errorf("junk tarball: %v", err)
	}
	if _, err := os.Stat(work); err == nil {
		t.Error("a rejected tarball was extracted")
	}
	// and Build says so as root; as another user it refuses first
	o := Options{Name: "junk", Arch: x86, CacheDir: filepath.Join(tmp, "cache"), From: tarball}
	_, err = Build(context.Background(), o)
	want := "IMAGE_FROM=" + tarball + notRoot
	if os.Geteuid() != 0 {
		want = "building a node image needs root"
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Build from a junk tarball: %v, want %q", err, want)
	}
	o.From = junk
	if _, _, err := Prepare(o); err == nil || !strings.Contains(err.Error(), "IMAGE_FROM="+junk+notRoot) {
		t.Errorf("junk directory: %v", err)
	}
	o.From = filepath.Join(tmp, "x.zip")
	os.WriteFile(o.From, []byte("PK"), 0o644)
	if _, _, err := Prepare(o); err == nil || !strings.Contains(err.Error(), "not a directory or a tarball") {
		t.Errorf("zip: %v", err)
	}
	o.From = filepath.Join(tmp, "missing.tar")
	if _, _, err := Prepare(o); err == nil || !strings.Contains(err.Error(), "IMAGE_FROM=") {
		t.Errorf("missing: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "cache", "images", "junk-x86_64", "tree")); err == nil {
		t.Error("a rejected image left a tree in the cache")
	}
}

func TestPortageNames(t *testing.T) {
	for in, want := range map[string][2]string{"openrc-0.54.2": {"openrc", "0.54.2"}, "gcc-13.2.1_p20240210-r1": {"gcc", "13.2.1_p20240210-r1"}, "python-exec-2.4.10": {"python-exec", "2.4.10"}} {
		if n, v := splitPortage(in); n != want[0] || v != want[1] {
			t.Errorf("%s: %s %s", in, n, v)
		}
	}
}
