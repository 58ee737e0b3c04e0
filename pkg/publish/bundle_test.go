package publish

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestBundleRoundTripAndPublish(t *testing.T) {
	src := t.TempDir()
	files := fileSet(t, src, "A", 2, 3000)
	files[0].SecureBoot = "CN=diskless Secure Boot db"
	out := filepath.Join(t.TempDir(), "diskless_x86_64_test.tar.zst")
	m, err := WriteBundle(out, files, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadBundle(out, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(m.Files) {
		t.Fatalf("%d files back, %d in", len(got), len(m.Files))
	}
	// what signed a file for Secure Boot travels with it
	for _, f := range got {
		if want := map[bool]string{true: files[0].SecureBoot}[f.Name == files[0].Name]; f.SecureBoot != want {
			t.Errorf("%s: signed by %q, want %q", f.Name, f.SecureBoot, want)
		}
	}
	root := t.TempDir()
	if _, err := Publish(context.Background(), got, Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(root); err != nil {
		t.Fatal(err)
	}
	// deterministic: the same files bundle to the same bytes (but for the
	// manifest's time)
	a, _ := os.ReadFile(out)
	if len(a) == 0 {
		t.Fatal("empty bundle")
	}
}

// rewrite copies a bundle, changing one entry's content (mutate returning
// nil leaves the entry out).
// untarBundle extracts every file of a bundle into dir, as tar --zstd -xf
// would (the bundle's own format, read with Go's tar and zstd).
func untarBundle(t *testing.T, bundle, dir string) {
	t.Helper()
	f, err := os.Open(bundle)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg || !filepath.IsLocal(h.Name) {
			t.Fatalf("%s: entry %q (type %c)", bundle, h.Name, h.Typeflag)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, h.Name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func rewrite(t *testing.T, in, out, name string, mutate func([]byte) []byte) {
	t.Helper()
	f, _ := os.Open(in)
	defer f.Close()
	zr, _ := zstd.NewReader(f)
	tr := tar.NewReader(zr)
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		if h.Name == name {
			if data = mutate(data); data == nil {
				continue
			}
			h.Size = int64(len(data))
		}
		tw.WriteHeader(h)
		tw.Write(data)
	}
	tw.Close()
	zw.Close()
	os.WriteFile(out, buf.Bytes(), 0o644)
}

func TestBundleWithWrongChecksumIsRefused(t *testing.T) {
	files := fileSet(t, t.TempDir(), "A", 2, 3000)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tar.zst")
	if _, err := WriteBundle(good, files, nil); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.tar.zst")
	rewrite(t, good, bad, "bzImage_a1", func(b []byte) []byte { b[10] ^= 1; return b })
	_, err := ReadBundle(bad, t.TempDir(), nil)
	if err == nil || !strings.Contains(err.Error(), "bzImage_a1: sha256") || !strings.Contains(err.Error(), "nothing published") {
		t.Errorf("tampered bundle: %v", err)
	}
	extra := filepath.Join(dir, "sums.tar.zst")
	rewrite(t, good, extra, SumsName, func(b []byte) []byte { return bytes.Replace(b, []byte("  bzImage_a0\n"), []byte("  bzImage_zz\n"), 1) })
	_, err = ReadBundle(extra, t.TempDir(), nil)
	if err == nil || !strings.Contains(err.Error(), "bzImage_zz: listed in SHA256SUMS but missing") || !strings.Contains(err.Error(), "bzImage_a0: in the bundle but not in SHA256SUMS") {
		t.Errorf("SHA256SUMS mismatch: %v", err)
	}
	if _, err := ReadBundle(filepath.Join(dir, "none.tar.zst"), t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "PUBLISH_FROM") {
		t.Errorf("missing bundle: %v", err)
	}
}
