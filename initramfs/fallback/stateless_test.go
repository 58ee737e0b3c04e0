package fallback

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/diskless/diskless/pkg/sign"
)

func TestParseStateless(t *testing.T) {
	const gen = "/.diskless/generations/000012/"
	s, ok, err := ParseStateless(ParseCmdline("ip=dhcp diskless.image=" + gen + "squashfs/debian-12-x86_64.squashfs diskless.overlay=" + gen + "overlays/10.0.0.21.cpio diskless.tmpfs=1G"))
	if err != nil || !ok || s.Tmpfs != "1G" || SetDir(s.Image) != gen || SetName(s.Overlay) != "overlays/10.0.0.21.cpio" {
		t.Errorf("%+v %v %v", s, ok, err)
	}
	if _, ok, _ := ParseStateless(ParseCmdline("ip=dhcp root=/dev/nfs nfsroot=/diskless/%s")); ok {
		t.Error("an NFS-root command line read as stateless")
	}
	s, _, err = ParseStateless(ParseCmdline("diskless.image=/squashfs/x.squashfs"))
	if err != nil || s.Tmpfs != "50%" || SetDir(s.Image) != "/" || SetName(s.Image) != "squashfs/x.squashfs" {
		t.Errorf("unpinned: %+v %v", s, err)
	}
	s, _, err = ParseStateless(ParseCmdline("diskless.image=/a diskless.masters=10.0.0.1,10.0.0.2"))
	if err != nil || !reflect.DeepEqual(s.Masters, []string{"10.0.0.1", "10.0.0.2"}) {
		t.Errorf("masters: %+v %v", s, err)
	}
	// the boot server first, once; then the others in order
	for boot, want := range map[string][]string{"10.0.0.2": {"10.0.0.2", "10.0.0.1"}, "10.0.0.1": {"10.0.0.1", "10.0.0.2"}, "10.0.0.9": {"10.0.0.9", "10.0.0.1", "10.0.0.2"}, "": {"10.0.0.1", "10.0.0.2"}} {
		if got := s.Servers(boot); !reflect.DeepEqual(got, want) {
			t.Errorf("Servers(%q) = %v, want %v", boot, got, want)
		}
	}
	if got := (Stateless{}).Servers("10.0.0.1"); !reflect.DeepEqual(got, []string{"10.0.0.1"}) {
		t.Errorf("one master: %v", got)
	}
	for line, want := range map[string]string{
		"diskless.image=/a diskless.masters=10.0.0.1,m2":                               `"m2" is not an IPv4 address`,
		"diskless.image=/a diskless.masters=":                                          `"" is not an IPv4 address`,
		"diskless.image=/a diskless.masters=::ffff:10.0.0.1":                           `"::ffff:10.0.0.1" is not an IPv4 address`,
		"diskless.image=squashfs/x":                                                    "want an absolute path",
		"diskless.image=/squashfs/../../etc/shadow":                                    "want an absolute path",
		"diskless.image=" + gen + "a diskless.overlay=/overlays/1.2.3.4.cpio":          "diskless.overlay=/overlays/1.2.3.4.cpio is not in the published set",
		"diskless.image=/squashfs/x diskless.overlay=" + gen + "overlays/1.2.3.4.cpio": "diskless.image=/squashfs/x is not in the published set",
		"diskless.image=/a diskless.tmpfs=1G,nr_inodes=1":                              "diskless.tmpfs",
	} {
		if _, _, err := ParseStateless(ParseCmdline(line)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", line, err, want)
		}
	}
}

func signedSet(t *testing.T, files map[string][]byte) (sums, sig []byte, trusted string, key *sign.SecretKey) {
	t.Helper()
	key, err := sign.GenerateKey(rand.Reader, "test")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for name, data := range files {
		sum := sha256.Sum256(data)
		b.WriteString(hex.EncodeToString(sum[:]) + "  " + name + "\n")
	}
	sums = []byte(b.String())
	return sums, key.Sign(sums, "test.pub").Marshal(), string(key.Public().Marshal()), key
}

func TestVerifySums(t *testing.T) {
	img := []byte("squashfs bytes")
	sums, sig, trusted, _ := signedSet(t, map[string][]byte{"squashfs/x.squashfs": img})
	other, _ := sign.GenerateKey(rand.Reader, "other")
	both := string(other.Public().Marshal()) + trusted
	for _, tr := range []string{trusted, both} {
		got, err := VerifySums(sums, sig, tr)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(img)
		if got["squashfs/x.squashfs"] != hex.EncodeToString(sum[:]) {
			t.Errorf("sums %v", got)
		}
	}
	tampered := bytes.Replace(sums, []byte("squashfs/x"), []byte("squashfs/y"), 1)
	for name, c := range map[string]struct {
		sums, sig []byte
		trusted   string
		want      string
	}{
		"unsigned":      {sums, nil, trusted, "not signed"},
		"tampered":      {tampered, sig, trusted, "refused"},
		"another key":   {sums, sig, string(other.Public().Marshal()), "refused"},
		"no key at all": {sums, sig, "", "trusts no key"},
		"garbage sig":   {sums, []byte("untrusted comment: x\nAAAA\n"), trusted, "SHA256SUMS.sig"},
	} {
		if _, err := VerifySums(c.sums, c.sig, c.trusted); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

func TestCheckedCopy(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 3<<20)
	sum := sha256.Sum256(data)
	var out bytes.Buffer
	var seen []int64
	n, err := CheckedCopy(&out, bytes.NewReader(data), "img", hex.EncodeToString(sum[:]), func(n int64) { seen = append(seen, n) })
	if err != nil || n != int64(len(data)) || !bytes.Equal(out.Bytes(), data) || len(seen) == 0 || seen[len(seen)-1] != n {
		t.Errorf("n %d err %v progress %v", n, err, seen)
	}
	data[7] = 'y'
	_, err = CheckedCopy(&bytes.Buffer{}, bytes.NewReader(data), "img", hex.EncodeToString(sum[:]), nil)
	var f *Failure
	if !errors.As(err, &f) || f.Step != StepVerify || !strings.Contains(f.Line(), "verify failed") || !strings.Contains(f.Line(), "img") {
		t.Errorf("a changed byte: %v", err)
	}
	var lines []string
	p := &Progress{Name: "x.squashfs", Total: 100, Every: 1 << 62, Say: func(s string) { lines = append(lines, s) }}
	for _, n := range []int64{10, 50, 100} {
		p.Update(n)
	}
	if len(lines) != 2 || !strings.Contains(lines[1], "fetching x.squashfs: 100% (100 of 100 bytes") {
		t.Errorf("progress lines %q", lines)
	}
}

func TestApplyOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the overlay's files are root's")
	}
	root := t.TempDir()
	// the image: etc/hostname, root 0700, a link the overlay replaces
	os.MkdirAll(filepath.Join(root, "etc/ssh"), 0o755)
	os.Mkdir(filepath.Join(root, "root"), 0o700)
	os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("debian\n"), 0o644)
	os.WriteFile(filepath.Join(root, "elsewhere"), []byte("keep\n"), 0o644)
	os.Symlink("../elsewhere", filepath.Join(root, "etc/machine-id"))
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	recs := []cpio.Record{
		cpio.Directory("etc", 0o755),
		cpio.StaticFile("etc/hostname", "slave21\n", 0o644),
		cpio.StaticFile("etc/machine-id", "0123\n", 0o444),
		cpio.StaticFile("etc/ssh/ssh_host_ed25519_key", "secret\n", 0o600),
		cpio.Directory("root", 0o755),
		cpio.Directory("root/.ssh", 0o700),
		cpio.StaticFile("root/.ssh/authorized_keys", "ssh-ed25519 AAAA admin\n", 0o644),
		cpio.Symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
	}
	if err := cpio.WriteRecords(w, recs); err != nil {
		t.Fatal(err)
	}
	cpio.WriteTrailer(w)
	n, err := ApplyOverlay(bytes.NewReader(buf.Bytes()), root)
	if err != nil || n != len(recs) {
		t.Fatalf("%d entries, %v", n, err)
	}
	read := func(p string) string { b, _ := os.ReadFile(filepath.Join(root, p)); return string(b) }
	mode := func(p string) os.FileMode { st, _ := os.Lstat(filepath.Join(root, p)); return st.Mode() }
	if read("etc/hostname") != "slave21\n" || read("etc/machine-id") != "0123\n" || read("elsewhere") != "keep\n" {
		t.Errorf("hostname %q machine-id %q elsewhere %q (a link in the image is replaced, not followed)", read("etc/hostname"), read("etc/machine-id"), read("elsewhere"))
	}
	if mode("etc/ssh/ssh_host_ed25519_key").Perm() != 0o600 || mode("root").Perm() != 0o700 || mode("root/.ssh").Perm() != 0o700 {
		t.Errorf("modes: key %v, root %v (an existing directory keeps its mode), .ssh %v", mode("etc/ssh/ssh_host_ed25519_key"), mode("root"), mode("root/.ssh"))
	}
	if l, _ := os.Readlink(filepath.Join(root, "etc/localtime")); l != "/usr/share/zoneinfo/UTC" {
		t.Errorf("localtime -> %q", l)
	}
	// an entry below a link of the image is refused, not written where
	// the link points (outside the root)
	outside := t.TempDir()
	os.Symlink(outside, filepath.Join(root, "var-run"))
	buf.Reset()
	w = cpio.Newc.Writer(&buf)
	cpio.WriteRecords(w, []cpio.Record{cpio.Directory("var-run", 0o755), cpio.StaticFile("var-run/escape", "x", 0o644)})
	cpio.WriteTrailer(w)
	if _, err := ApplyOverlay(bytes.NewReader(buf.Bytes()), root); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("an entry below a link: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "escape")); err == nil {
		t.Error("an entry was written through a link, outside the root")
	}
	// an entry outside the root is refused
	buf.Reset()
	w = cpio.Newc.Writer(&buf)
	cpio.WriteRecords(w, []cpio.Record{cpio.StaticFile("../escape", "x", 0o644)})
	cpio.WriteTrailer(w)
	if _, err := ApplyOverlay(bytes.NewReader(buf.Bytes()), filepath.Join(root, "etc")); err == nil {
		if _, serr := os.Stat(filepath.Join(root, "escape")); serr == nil {
			t.Error("an entry ../escape was written outside the root")
		}
	}
}

// A node's command line file is read over the kernel's built-in one: its
// arguments win, comments are skipped, and it must make the node
// stateless; two lines are refused.
func TestNodeCmdline(t *testing.T) {
	kernel := ParseCmdline("ip=dhcp root=/dev/nfs nfsroot=10.0.0.1:/diskless/%s rw console=ttyAMA0")
	file := "# generated\n# node arm1\nip=dhcp rw console=ttyAMA1 diskless.image=/g/squashfs/x.squashfs diskless.overlay=/g/overlays/10.0.0.41.cpio diskless.tmpfs=1G\n"
	got, err := NodeCmdline(kernel, []byte(file), "/cmdline/52-54-00-aa-00-01")
	if err != nil {
		t.Fatal(err)
	}
	if got["console"] != "ttyAMA1" || got["diskless.tmpfs"] != "1G" || got["nfsroot"] != "10.0.0.1:/diskless/%s" {
		t.Errorf("merged: %v", got)
	}
	if kernel["console"] != "ttyAMA0" {
		t.Error("the kernel's command line was changed")
	}
	if sl, ok, err := ParseStateless(got); !ok || err != nil || sl.Image != "/g/squashfs/x.squashfs" {
		t.Errorf("stateless %v %v %+v", ok, err, sl)
	}
	for text, want := range map[string]string{
		"ip=dhcp rw\n":                           "names no diskless.image",
		"diskless.image=/a\ndiskless.image=/b\n": "more than one command line",
		"# only a comment\n":                     "names no diskless.image",
	} {
		if _, err := NodeCmdline(kernel, []byte(text), "/cmdline/x"); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "/cmdline/x") {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
	}
}
