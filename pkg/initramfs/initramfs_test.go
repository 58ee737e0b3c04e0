package initramfs

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	cgcpio "github.com/cavaliergopher/cpio"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/diskless/diskless/initramfs/fallback"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
)

// sample is a small newc archive in a deliberately bad order with host
// metadata, plus the project's base skeleton.
func sample(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	recs := []cpio.Record{
		cpio.StaticFile("bbin/bb", "busybox", 0o755),
		cpio.Directory("bbin", 0o755),
		cpio.Symlink("bbin/ls", "bb"),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.CharDev("dev/null", 0o666, 1, 3),
		cpio.Directory("dev", 0o755),
		cpio.StaticFile("etc/diskless-fallback.json", "{}\n", 0o644),
		cpio.Directory("etc", 0o755),
	}
	for i := range recs {
		recs[i].MTime = uint64(1700000000 + i)
		recs[i].UID, recs[i].GID = 1000, 1000
		recs[i].Ino = uint64(9000 - i)
		if err := w.WriteRecord(recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	cpio.WriteTrailer(w)
	return buf.Bytes()
}

func TestNormalizeIsDeterministicAndSorted(t *testing.T) {
	raw := sample(t)
	a, err := Normalize(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Normalize(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("normalizing twice changes the archive")
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(a)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i, r := range recs {
		if r.Name == cpio.Trailer {
			continue
		}
		names = append(names, r.Name)
		if r.MTime != 0 || r.UID != 0 || r.GID != 0 || r.Ino != uint64(i+1) {
			t.Errorf("%s: mtime %d uid %d gid %d ino %d", r.Name, r.MTime, r.UID, r.GID, r.Ino)
		}
		if r.Name == "dev/console" && (r.Rmajor != 5 || r.Rminor != 1) {
			t.Errorf("dev/console is %d:%d", r.Rmajor, r.Rminor)
		}
	}
	want := "bbin bbin/bb bbin/ls dev dev/console dev/null etc etc/diskless-fallback.json"
	if strings.Join(names, " ") != want {
		t.Errorf("order %v", names)
	}
}

// The archive reads back with the Debian tools: cpio -itv lists the device
// node as 5, 1; bsdtar lists every file.
func TestArchiveReadsBackWithDebianTools(t *testing.T) {
	cpioBin := testutil.NeedTool(t, "cpio", "cpio")
	bsdtar := testutil.NeedTool(t, "bsdtar", "libarchive-tools")
	norm, err := Normalize(bytes.NewReader(sample(t)))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "x.cpio")
	os.WriteFile(p, norm, 0o644)
	f, _ := os.Open(p)
	defer f.Close()
	c := exec.Command(cpioBin, "-itv")
	c.Stdin = f
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -itv: %v\n%s", err, out)
	}
	if !regexpLine(string(out), "crw-------", "5,", "1", "dev/console") || !regexpLine(string(out), "crw-rw-rw-", "1,", "3", "dev/null") {
		t.Errorf("cpio -itv does not show the device nodes:\n%s", out)
	}
	out, err = exec.Command(bsdtar, "-tf", p).CombinedOutput()
	if err != nil {
		t.Fatalf("bsdtar: %v\n%s", err, out)
	}
	for _, n := range []string{"bbin/bb", "bbin/ls", "dev/console", "etc/diskless-fallback.json"} {
		if !strings.Contains(string(out), n) {
			t.Errorf("bsdtar does not list %s", n)
		}
	}
}

func regexpLine(out string, parts ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// Regular files read back with cavaliergopher/cpio (the reader the
// manifest and verify use); it ignores rdev, so device nodes are checked
// with u-root's reader above.
func TestRegularFilesReadBackWithCavaliergopher(t *testing.T) {
	norm, _ := Normalize(bytes.NewReader(sample(t)))
	r := cgcpio.NewReader(bytes.NewReader(norm))
	found := map[string]string{}
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Mode.IsRegular() {
			data, _ := io.ReadAll(r)
			found[h.Name] = string(data)
		}
	}
	if found["bbin/bb"] != "busybox" || found["etc/diskless-fallback.json"] != "{}\n" {
		t.Errorf("files %v", found)
	}
}

func TestCompressionRoundTrips(t *testing.T) {
	raw := bytes.Repeat(sample(t), 50)
	for _, c := range []Compressor{Zstd, XZ, Gzip, None} {
		var buf bytes.Buffer
		if err := Compress(&buf, bytes.NewReader(raw), c); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		r, err := Decompress(bytes.NewReader(buf.Bytes()), c)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, raw) {
			t.Errorf("%s: round trip differs (%v)", c, err)
		}
		if c == XZ {
			// Stream header: magic (6 bytes), flags (2): the check type is
			// the low nibble of the second flag byte. 1 = CRC32.
			if !bytes.HasPrefix(buf.Bytes(), []byte("\xfd7zXZ\x00")) || buf.Bytes()[7]&0x0f != 1 {
				t.Errorf("xz check type %#x, want CRC32 (1)", buf.Bytes()[7]&0x0f)
			}
		}
	}
}

func TestParseCompressor(t *testing.T) {
	if c, err := ParseCompressor(""); err != nil || c != Zstd {
		t.Errorf("default: %v %v", c, err)
	}
	if c, _ := ParseCompressor("XZ"); c != XZ || c.Ext() != ".xz" {
		t.Errorf("XZ: %v", c)
	}
	if _, err := ParseCompressor("lz4"); err == nil || !strings.Contains(err.Error(), "zstd, xz, gzip or none") {
		t.Errorf("lz4: %v", err)
	}
}

func TestReadCommands(t *testing.T) {
	p := filepath.Join(t.TempDir(), "commands.txt")
	os.WriteFile(p, []byte("# comment\nls\n\ncat # inline\ngithub.com/x/y/cmd/z\nls\n"), 0o644)
	cmds, err := ReadCommands(p, "example.com/m")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cmds {
		got = append(got, c.Pkg)
	}
	want := []string{uroot + "gosh", "example.com/m/initramfs/dlinit", uroot + "ls", uroot + "cat", "github.com/x/y/cmd/z"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("commands %v", got)
	}
	if cmds[3].Line != 4 {
		t.Errorf("cat line %d", cmds[3].Line)
	}
	os.WriteFile(p, []byte("ls cat\n"), 0o644)
	if _, err := ReadCommands(p, "m"); err == nil || !strings.Contains(err.Error(), "commands.txt:1") {
		t.Errorf("two words: %v", err)
	}
}

// Bad input fails before any Go build and leaves nothing in OutDir.
func TestBuildRejectsBadInput(t *testing.T) {
	testutil.NeedBaseTool(t, "go", "golang-go")
	x, _ := arch.Lookup("x86_64")
	out := t.TempDir()
	list := filepath.Join(t.TempDir(), "commands.txt")
	os.WriteFile(list, []byte("ls\nnosuchcommand\n"), 0o644)
	_, err := Build(context.Background(), Options{Arch: x, ProjectDir: "../..", Commands: list, OutDir: out, CacheDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "commands.txt:2") || !strings.Contains(err.Error(), "nosuchcommand") {
		t.Errorf("unknown command: %v", err)
	}
	_, err = Build(context.Background(), Options{Arch: x, ProjectDir: "../..", Compress: "lz4", OutDir: out, CacheDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "lz4") {
		t.Errorf("unknown compressor: %v", err)
	}
	if left, _ := os.ReadDir(out); len(left) != 0 {
		t.Errorf("bad input left %d files in the output dir", len(left))
	}
}

func TestBaseArchiveCarriesSettings(t *testing.T) {
	a := baseArchive([]byte(`{"shell":"/bbin/gosh"}`))
	r, ok := a.Get("etc/diskless-fallback.json")
	if !ok {
		t.Fatal("no settings file")
	}
	data, _ := io.ReadAll(io.NewSectionReader(r, 0, int64(r.FileSize)))
	if !strings.Contains(string(data), "/bbin/gosh") {
		t.Errorf("settings %q", data)
	}
	if _, ok := a.Get("dev/console"); !ok {
		t.Error("no dev/console")
	}
	if _, ok := a.Get("etc/resolv.conf"); !ok {
		t.Error("no empty resolv.conf")
	}
	_ = fallback.SettingsPath
}

// Two cold builds (separate caches) give byte-identical images; a third
// with nothing changed skips the Go build.
func TestIntegrationReproducible(t *testing.T) {
	testutil.Integration(t, "two cold Go builds of the whole initramfs (minutes)")
	testutil.NeedBaseTool(t, "go", "golang-go")
	x, _ := arch.Lookup("x86_64")
	var sums []string
	for i := 0; i < 2; i++ {
		res, err := Build(context.Background(), Options{Arch: x, ProjectDir: "../..", OutDir: t.TempDir(), CacheDir: t.TempDir(), Log: quietLog()})
		if err != nil {
			t.Fatal(err)
		}
		if res.Skipped {
			t.Fatal("cold build skipped")
		}
		sums = append(sums, res.SHA256)
		if i == 1 {
			again, err := Build(context.Background(), Options{Arch: x, ProjectDir: "../..", OutDir: filepath.Dir(res.Path), CacheDir: t.TempDir(), Log: quietLog()})
			if err != nil || !again.Skipped || again.SHA256 != res.SHA256 {
				t.Errorf("unchanged rebuild: skipped=%v err=%v", again != nil && again.Skipped, err)
			}
			// the image holds what the list asks for
			f, _ := os.Open(res.Path)
			r, _ := Decompress(f, Zstd)
			raw, _ := io.ReadAll(r)
			f.Close()
			recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
			if err != nil {
				t.Fatal(err)
			}
			have := map[string]bool{}
			for _, rec := range recs {
				have[rec.Name] = true
			}
			for _, n := range []string{"init", "bbin/bb", "bbin/gosh", "bbin/dlinit", "bbin/ip", "bbin/dhclient", "bbin/mount", "dev/console", "dev/null", "etc/diskless-fallback.json"} {
				if !have[n] {
					t.Errorf("image lacks %s", n)
				}
			}
		}
	}
	if sums[0] != sums[1] {
		t.Errorf("two cold builds differ: %s vs %s", sums[0], sums[1])
	}
}

// The cache key hashes every package of the project the init is built
// from: go list -deps is the oracle.
func TestProjectSourcesAreTheInitsPackages(t *testing.T) {
	testutil.NeedTool(t, "go", "golang")
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "github.com/diskless/diskless/initramfs/...").Output()
	if err != nil {
		t.Fatal(err)
	}
	const mod = "github.com/diskless/diskless/"
	for _, p := range strings.Fields(string(out)) {
		rel, ok := strings.CutPrefix(p, mod)
		if !ok {
			continue
		}
		covered := false
		for _, d := range ProjectSources {
			if rel == d || strings.HasPrefix(rel, "initramfs/") && d == "initramfs" {
				covered = true
			}
		}
		if !covered {
			t.Errorf("the initramfs is built from %s, which its cache key does not hash (ProjectSources)", rel)
		}
	}
}
