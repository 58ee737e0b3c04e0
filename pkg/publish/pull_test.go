package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/diskless/diskless/pkg/sign"
)

// primary is a primary master's root served over HTTP on loopback (as its
// nginx serves it: top-level names through the live generation, and the
// numbered generations), counting the requests by path; cut, when set,
// ends a response early after that many bytes, once per path.
type primary struct {
	root string
	srv  *httptest.Server
	mu   sync.Mutex
	hits map[string]int
	cut  map[string]int
}

func newPrimary(t testing.TB) *primary {
	p := &primary{root: t.TempDir(), hits: map[string]int{}, cut: map[string]int{}}
	files := http.FileServer(http.Dir(p.root))
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.hits[r.URL.Path]++
		n, cut := p.cut[r.URL.Path]
		delete(p.cut, r.URL.Path)
		p.mu.Unlock()
		if cut {
			data, err := os.ReadFile(filepath.Join(p.root, r.URL.Path))
			if err != nil {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			w.Write(data[:n])
			panic(http.ErrAbortHandler) // the connection goes, mid-body
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *primary) requests() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.hits
	p.hits = map[string]int{}
	return out
}

// publish publishes files (name -> content) on the primary, signed by k
// (unsigned without), with a per-node PXELINUX file pinned to the
// generation.
func (p *primary) publish(t testing.TB, k *keyPair, files map[string]string) *Manifest {
	t.Helper()
	var set []File
	for name, content := range files {
		set = append(set, File{Name: name, Data: []byte(content), Kind: "kernel"})
	}
	set = append(set, File{Name: "pxelinux.cfg/01-52-54-00-aa-00-01", Data: []byte("DEFAULT n\nLABEL n\n  KERNEL bzImage_x86_64\n  APPEND ip=dhcp\n"), Kind: "pxelinux-config"})
	o := Options{Root: p.root, Keep: 5}
	if k != nil {
		o.Sign = k.signer()
	}
	m, err := Publish(context.Background(), set, o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func pullOpts(root string, k keyPair) PullOptions {
	return PullOptions{Root: root, Trusted: []*sign.PublicKey{k.pub}}
}

// A replica pulls the primary's signed set byte for byte under the same
// generation; pulling again when nothing changed fetches only the
// signature; a new generation fetches only the files it does not have.
func TestPull(t *testing.T) {
	k := keys(t, "primary")
	p := newPrimary(t)
	m1 := p.publish(t, &k, map[string]string{"bzImage_x86_64": strings.Repeat("kernel ", 10000), "initramfs_x86_64.cpio.zst": "initramfs"})
	replica := t.TempDir()
	ctx := context.Background()
	res, err := Pull(ctx, p.srv.URL, pullOpts(replica, k))
	if err != nil {
		t.Fatal(err)
	}
	if res.Generation != m1.Generation || res.Unchanged || res.Fetched != 3 || res.Reused != 0 {
		t.Errorf("first pull: %+v", res)
	}
	if _, err := Verify(replica, k.pub); err != nil {
		t.Errorf("the replica's live set: %v", err)
	}
	for _, name := range []string{SumsName, SigName, ManifestName, "pxelinux.cfg/01-52-54-00-aa-00-01", "bzImage_x86_64"} {
		a, _ := os.ReadFile(filepath.Join(p.root, name))
		b, err := os.ReadFile(filepath.Join(replica, name))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs on the replica: %v", name, err)
		}
	}
	cfg, _ := os.ReadFile(filepath.Join(replica, "pxelinux.cfg/01-52-54-00-aa-00-01"))
	if !strings.Contains(string(cfg), GenerationDir(m1.Generation)+"/bzImage_x86_64") {
		t.Errorf("the pinned configuration:\n%s", cfg)
	}
	p.requests()

	// nothing changed: the signature alone
	res, err = Pull(ctx, p.srv.URL, pullOpts(replica, k))
	if err != nil || !res.Unchanged {
		t.Fatalf("second pull: %+v %v", res, err)
	}
	if got := p.requests(); len(got) != 1 || got["/"+SigName] != 1 {
		t.Errorf("an unchanged pull asked for %v", got)
	}

	// a new generation: only what changed crosses the network
	m2 := p.publish(t, &k, map[string]string{"bzImage_x86_64": strings.Repeat("kernel ", 10000), "initramfs_x86_64.cpio.zst": "initramfs v2"})
	res, err = Pull(ctx, p.srv.URL, pullOpts(replica, k))
	if err != nil {
		t.Fatal(err)
	}
	got := p.requests()
	gen := "/" + GenerationDir(m2.Generation) + "/"
	if res.Generation != m2.Generation || got[gen+"bzImage_x86_64"] != 0 || got[gen+"initramfs_x86_64.cpio.zst"] != 1 || got[gen+"pxelinux.cfg/01-52-54-00-aa-00-01"] != 1 {
		t.Errorf("pull of generation %d: %+v, requests %v", m2.Generation, res, got)
	}
	if cur, _ := Current(replica); cur != m2.Generation {
		t.Errorf("the replica's live generation is %d", cur)
	}
	if data, _ := os.ReadFile(filepath.Join(replica, "initramfs_x86_64.cpio.zst")); string(data) != "initramfs v2" {
		t.Errorf("initramfs on the replica: %q", data)
	}
}

// An unsigned set, one signed by another key, a tampered file or a
// manifest that names another generation is refused, naming what is wrong,
// and the replica's live set stays as it was.
func TestPullRefuses(t *testing.T) {
	k, other := keys(t, "primary"), keys(t, "other")
	ctx := context.Background()
	good := newPrimary(t)
	good.publish(t, &k, map[string]string{"bzImage_x86_64": "kernel"})
	replica := t.TempDir()
	if _, err := Pull(ctx, good.srv.URL, pullOpts(replica, k)); err != nil {
		t.Fatal(err)
	}
	before, _ := Current(replica)
	unchanged := func(what string) {
		t.Helper()
		if cur, _ := Current(replica); cur != before {
			t.Errorf("%s: the replica's live generation went from %d to %d", what, before, cur)
		}
		if _, err := Verify(replica, k.pub); err != nil {
			t.Errorf("%s: the replica's live set: %v", what, err)
		}
	}

	unsigned := newPrimary(t)
	unsigned.publish(t, nil, map[string]string{"bzImage_x86_64": "kernel"})
	unsigned.publish(t, nil, map[string]string{"bzImage_x86_64": "kernel 2"})
	if _, err := Pull(ctx, unsigned.srv.URL, pullOpts(replica, k)); err == nil || !strings.Contains(err.Error(), "SHA256SUMS.sig: not found: the primary's set is not signed") {
		t.Errorf("unsigned: %v", err)
	}
	unchanged("unsigned")

	foreign := newPrimary(t)
	foreign.publish(t, &other, map[string]string{"bzImage_x86_64": "kernel"})
	foreign.publish(t, &other, map[string]string{"bzImage_x86_64": "kernel 2"})
	if _, err := Pull(ctx, foreign.srv.URL, pullOpts(replica, k)); err == nil || !strings.Contains(err.Error(), "SHA256SUMS.sig does not verify") || !strings.Contains(err.Error(), "refused, nothing published") {
		t.Errorf("another key: %v", err)
	}
	unchanged("another key")

	m := good.publish(t, &k, map[string]string{"bzImage_x86_64": "kernel 2"})
	tampered := filepath.Join(good.root, GenerationDir(m.Generation), "bzImage_x86_64")
	os.WriteFile(tampered, []byte("kernel 3"), 0o644)
	_, err := Pull(ctx, good.srv.URL, pullOpts(replica, k))
	if err == nil || !strings.Contains(err.Error(), GenerationDir(m.Generation)+"/bzImage_x86_64: sha256 ") || !strings.Contains(err.Error(), "tampered with or torn; refused") {
		t.Errorf("tampered: %v", err)
	}
	unchanged("tampered")

	// the manifest (not signed) naming another generation than the one
	// the signed configuration is pinned to
	os.WriteFile(tampered, []byte("kernel 2"), 0o644)
	mpath := filepath.Join(good.root, GenerationDir(m.Generation), ManifestName)
	data, _ := os.ReadFile(mpath)
	other2 := filepath.Join(good.root, GenerationDir(m.Generation+5))
	os.MkdirAll(filepath.Dir(other2), 0o755)
	os.Symlink(fmt.Sprintf("%06d", m.Generation), other2)
	os.WriteFile(mpath, bytes.Replace(data, []byte(fmt.Sprintf(`"generation": %d`, m.Generation)), []byte(fmt.Sprintf(`"generation": %d`, m.Generation+5)), 1), 0o644)
	if _, err := Pull(ctx, good.srv.URL, pullOpts(replica, k)); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("names generation %06d, the manifest %d: refused", m.Generation, m.Generation+5)) {
		t.Errorf("manifest naming another generation: %v", err)
	}
	unchanged("manifest")

	if _, err := Pull(ctx, good.srv.URL, PullOptions{Root: replica}); err == nil || !strings.Contains(err.Error(), "needs TRUSTED_KEY") {
		t.Errorf("no trusted key: %v", err)
	}
	if _, err := Pull(ctx, "ftp://x/", pullOpts(replica, k)); err == nil || !strings.Contains(err.Error(), "from=ftp://x/: want the primary's HTTP root") {
		t.Errorf("bad from: %v", err)
	}
}

// A pull cut off midway publishes nothing; the next one does not fetch
// again what the first verified.
func TestPullResumes(t *testing.T) {
	k := keys(t, "primary")
	p := newPrimary(t)
	m := p.publish(t, &k, map[string]string{"a_kernel": strings.Repeat("a", 200000), "z_image": strings.Repeat("z", 300000)})
	gen := "/" + GenerationDir(m.Generation) + "/"
	p.cut[gen+"z_image"] = 100000
	replica := t.TempDir()
	ctx := context.Background()
	if _, err := Pull(ctx, p.srv.URL, pullOpts(replica, k)); err == nil || !strings.Contains(err.Error(), "z_image") || !strings.Contains(err.Error(), "nothing published") {
		t.Fatalf("a pull cut off: %v", err)
	}
	if _, err := Current(replica); err == nil {
		t.Error("a pull cut off published something")
	}
	p.requests()
	res, err := Pull(ctx, p.srv.URL, pullOpts(replica, k))
	if err != nil {
		t.Fatal(err)
	}
	got := p.requests()
	if got[gen+"a_kernel"] != 0 || got[gen+"z_image"] != 1 || res.Reused < 1 {
		t.Errorf("the resumed pull: %+v, requests %v", res, got)
	}
	if _, err := Verify(replica, k.pub); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(replica, pullDir)); err == nil {
		t.Error("the pull's staging directory is left after a pull that worked")
	}
}

// BenchmarkPull: a replica's pull of a set the size of the lab's (x86_64
// and arm64 kernels and initramfs, one Debian squashfs: ~80 MB) over
// loopback HTTP, the same pull when nothing changed, and one after a
// publish that changed the kernel alone.
func BenchmarkPull(b *testing.B) {
	k := keys(b, "primary")
	p := newPrimary(b)
	rnd := func(n int, seed byte) string {
		buf := make([]byte, n)
		x := uint32(seed) + 1
		for i := range buf {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			buf[i] = byte(x)
		}
		return string(buf)
	}
	set := map[string]string{
		"bzImage_x86_64": rnd(2_778_112, 1), "initramfs_x86_64.cpio.zst": rnd(2_900_000, 2),
		"vmlinuz_arm64": rnd(5_496_832, 3), "squashfs/debian-12-x86_64.squashfs": rnd(64_000_000, 4),
	}
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		set["bzImage_x86_64"] = rnd(2_778_112, byte(10+i))
		p.publish(b, &k, set)
		replica := b.TempDir()
		b.StartTimer()
		first, err := Pull(ctx, p.srv.URL, pullOpts(replica, k))
		if err != nil {
			b.Fatal(err)
		}
		again, err := Pull(ctx, p.srv.URL, pullOpts(replica, k))
		if err != nil || !again.Unchanged {
			b.Fatal(err)
		}
		b.StopTimer()
		set["bzImage_x86_64"] = rnd(2_778_112, byte(100+i))
		p.publish(b, &k, set)
		b.StartTimer()
		next, err := Pull(ctx, p.srv.URL, pullOpts(replica, k))
		if err != nil || next.Fetched != 2 {
			b.Fatalf("%v %+v", err, next)
		}
		b.ReportMetric(first.Seconds, "first-pull-s")
		b.ReportMetric(float64(first.FetchedBytes)/1e6, "first-pull-MB")
		b.ReportMetric(again.Seconds*1000, "unchanged-pull-ms")
		b.ReportMetric(next.Seconds, "kernel-only-pull-s")
		b.ReportMetric(float64(next.FetchedBytes)/1e6, "kernel-only-MB")
	}
}

// A signed set whose names leave the root is refused before any fetch.
func TestPullRefusesNamesOutsideTheRoot(t *testing.T) {
	k := keys(t, "primary")
	p := newPrimary(t)
	gen := filepath.Join(p.root, GenerationDir(1))
	os.MkdirAll(gen, 0o755)
	files := []File{{Name: "../evil", SHA256: strings.Repeat("ab", 32), Size: 1, Kind: "kernel"}}
	sums := []byte(Sums(files))
	data, _ := json.Marshal(Manifest{Generation: 1, Signed: true, Files: files})
	for name, content := range map[string][]byte{SumsName: sums, SigName: k.signer().signature(sums), ManifestName: data} {
		os.WriteFile(filepath.Join(gen, name), content, 0o644)
		os.Symlink(filepath.Join(GenerationDir(1), name), filepath.Join(p.root, name))
	}
	replica := t.TempDir()
	_, err := Pull(context.Background(), p.srv.URL, pullOpts(replica, k))
	if err == nil || !strings.Contains(err.Error(), `bad file name "../evil"`) {
		t.Errorf("a name outside the root: %v", err)
	}
	if got := p.requests(); got["/"+GenerationDir(1)+"/../evil"] != 0 || got["/evil"] != 0 {
		t.Errorf("fetched it: %v", got)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(replica), "evil")); err == nil {
		t.Error("written outside the root")
	}
}

// What the unsigned manifest says cannot change a file a generation here
// serves; a damaged file here is fetched again, not linked; an older
// generation than the live one is refused unless asked for (a rollback on
// the primary).
func TestPullKeepsWhatIsHere(t *testing.T) {
	k := keys(t, "primary")
	p := newPrimary(t)
	ctx := context.Background()
	m1 := p.publish(t, &k, map[string]string{"bzImage_x86_64": "kernel", "initramfs_x86_64.cpio.zst": "initramfs"})
	replica := t.TempDir()
	if _, err := Pull(ctx, p.srv.URL, pullOpts(replica, k)); err != nil {
		t.Fatal(err)
	}
	// generation 2 keeps the kernel; its manifest, edited, calls it private
	m2 := p.publish(t, &k, map[string]string{"bzImage_x86_64": "kernel", "initramfs_x86_64.cpio.zst": "initramfs 2"})
	mpath := filepath.Join(p.root, GenerationDir(m2.Generation), ManifestName)
	data, _ := os.ReadFile(mpath)
	os.WriteFile(mpath, bytes.Replace(data, []byte(`"name": "bzImage_x86_64",`), []byte(`"name": "bzImage_x86_64", "private": true,`), 1), 0o644)
	if _, err := Pull(ctx, p.srv.URL, pullOpts(replica, k)); err != nil {
		t.Fatal(err)
	}
	for _, g := range []int{m1.Generation, m2.Generation} {
		st, err := os.Stat(filepath.Join(replica, GenerationDir(g), "bzImage_x86_64"))
		if err != nil || st.Mode().Perm() != 0o644 {
			t.Errorf("generation %d's kernel: %v %v", g, st.Mode(), err)
		}
	}
	// a damaged copy here of a file the next set has
	old := filepath.Join(replica, GenerationDir(m1.Generation), "initramfs_x86_64.cpio.zst")
	os.Chmod(old, 0o644)
	os.WriteFile(old, []byte("initramfX"), 0o644)
	p.publish(t, &k, map[string]string{"bzImage_x86_64": "kernel 3", "initramfs_x86_64.cpio.zst": "initramfs"})
	p.requests()
	if _, err := Pull(ctx, p.srv.URL, pullOpts(replica, k)); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(replica, "initramfs_x86_64.cpio.zst")); string(data) != "initramfs" {
		t.Errorf("the damaged copy was taken: %q", data)
	}
	// the primary rolls back: refused, then asked for
	if _, _, err := Rollback(p.root, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(ctx, p.srv.URL, pullOpts(replica, k)); err == nil || !strings.Contains(err.Error(), "is older than this master's") {
		t.Errorf("an older generation: %v", err)
	}
	o := pullOpts(replica, k)
	o.Older = true
	if res, err := Pull(ctx, p.srv.URL, o); err != nil || res.Generation != m2.Generation {
		t.Errorf("older=1: %+v %v", res, err)
	}
	if cur, _ := Current(replica); cur != m2.Generation {
		t.Errorf("live here: %d, want %d", cur, m2.Generation)
	}
}

// A staged file another generation shares (two links) and that needs
// another mode is copied, never linked and changed: the live
// generation's file keeps its mode, and the copy is whole, with the mode
// and group asked for.
func TestPlacePulledCopiesASharedFile(t *testing.T) {
	dir := t.TempDir()
	src, live := filepath.Join(dir, "staged"), filepath.Join(dir, "live")
	data := bytes.Repeat([]byte("overlay "), 100000)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(src, live); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "placed")
	if err := placePulled(src, dst, 0o640, os.Getegid()); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the copy: %d bytes, %v", len(got), err)
	}
	for p, want := range map[string]os.FileMode{live: 0o644, dst: 0o640} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want %v", p, st.Mode(), err, want)
		}
	}
	a, _ := os.Stat(dst)
	b, _ := os.Stat(live)
	if os.SameFile(a, b) {
		t.Error("linked to the live generation's file")
	}
	// an existing file is never overwritten
	if err := placePulled(src, dst, 0o640, -1); err == nil {
		t.Error("placed over an existing file")
	}
	// the copy is its owner's alone until placePulled gives it its mode
	priv := filepath.Join(dir, "private")
	if err := copyPrivately(src, priv); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(priv); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("a copy being made: %v %v, want 0600", st.Mode(), err)
	}
}
