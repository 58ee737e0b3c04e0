package publish

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/testutil"
)

// fileSet makes n files of size bytes whose content depends on tag, in dir.
func fileSet(t testing.TB, dir, tag string, n, size int) []File {
	t.Helper()
	var files []File
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("bzImage_a%d", i)
		data := bytes.Repeat([]byte(fmt.Sprintf("%s-%d|", tag, i)), size)[:size]
		p := filepath.Join(dir, tag+"-"+name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, File{Name: name, Source: p, Kind: "kernel", Arch: "x86_64"})
	}
	files = append(files, File{Name: "pxelinux.cfg/default", Data: []byte("DEFAULT " + tag + "\n"), Kind: "pxelinux-config"})
	return files
}

func sum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func TestPublishVerifyAndSha256sum(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "192.168.1.21", "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "192.168.1.21", "etc", "hostname"), []byte("slave21\n"), 0o644)
	m, err := Publish(context.Background(), fileSet(t, t.TempDir(), "A", 2, 5000), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if m.Generation != 1 || len(m.Files) != 3 {
		t.Fatalf("manifest %+v", m)
	}
	if _, err := Verify(root); err != nil {
		t.Fatal(err)
	}
	// coreutils' sha256sum (Essential) agrees
	c := exec.Command(testutil.NeedBaseTool(t, "sha256sum", "coreutils"), "-c", SumsName)
	c.Dir = root
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	for _, p := range []string{"bzImage_a0", "pxelinux.cfg/default", SumsName, ManifestName} {
		st, err := os.Stat(filepath.Join(root, p))
		if err != nil || st.Mode().Perm() != 0o644 {
			t.Errorf("%s: %v %v", p, err, st)
		}
	}
	// links are relative and stay inside the root (tftpd -s chroots there)
	if target, _ := os.Readlink(filepath.Join(root, "bzImage_a0")); filepath.IsAbs(target) || strings.Contains(target, "..") {
		t.Errorf("link target %q", target)
	}
	// a flipped byte in any published file is named by verify
	for _, name := range []string{"bzImage_a1", "pxelinux.cfg/default"} {
		p := filepath.Join(root, name)
		data, _ := os.ReadFile(p)
		data[len(data)/2] ^= 1
		os.WriteFile(p, data, 0o644)
		_, err := Verify(root)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("flipped byte in %s: %v", name, err)
		}
		data[len(data)/2] ^= 1
		os.WriteFile(p, data, 0o644)
	}
	if hn, _ := os.ReadFile(filepath.Join(root, "192.168.1.21", "etc", "hostname")); string(hn) != "slave21\n" {
		t.Error("the per-slave directory was touched")
	}
}

func TestRollbackRestoresPreviousByteForByte(t *testing.T) {
	root := t.TempDir()
	src := t.TempDir()
	if _, _, err := Rollback(root, false, nil); err == nil {
		t.Error("rollback of an empty root succeeded")
	}
	a := fileSet(t, src, "A", 2, 3000)
	if _, err := Publish(context.Background(), a, Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	// with only one generation: says so, changes nothing
	_, _, err := Rollback(root, false, nil)
	if err == nil || !strings.Contains(err.Error(), "nothing to roll back to") {
		t.Errorf("rollback with one generation: %v", err)
	}
	if n, _ := Current(root); n != 1 {
		t.Errorf("current %d after a refused rollback", n)
	}
	want := map[string][]byte{}
	for _, f := range a {
		if f.Source != "" {
			want[f.Name], _ = os.ReadFile(f.Source)
		} else {
			want[f.Name] = f.Data
		}
	}
	b := fileSet(t, src, "B", 3, 4000) // B adds bzImage_a2
	if _, err := Publish(context.Background(), b, Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	from, to, err := Rollback(root, false, nil)
	if err != nil || from != 2 || to != 1 {
		t.Fatalf("rollback %d -> %d: %v", from, to, err)
	}
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(root, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s not restored byte for byte", name)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "bzImage_a2")); err == nil {
		t.Error("a name only the newer generation had is still linked")
	}
	if _, err := Verify(root); err != nil {
		t.Error(err)
	}
}

func TestPruneKeepsNGenerations(t *testing.T) {
	root := t.TempDir()
	for i := 0; i < 5; i++ {
		if _, err := Publish(context.Background(), fileSet(t, t.TempDir(), fmt.Sprint("G", i), 1, 100), Options{Root: root, Keep: 2}); err != nil {
			t.Fatal(err)
		}
	}
	gens, _ := generations(root)
	if fmt.Sprint(gens) != "[4 5]" {
		t.Errorf("generations kept: %v", gens)
	}
}

func TestPublishRefusesAndLeavesLiveTreeUntouched(t *testing.T) {
	root := t.TempDir()
	src := t.TempDir()
	if _, err := Publish(context.Background(), fileSet(t, src, "A", 2, 1000), Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)
	check := func(name string, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
		if after := snapshot(t, root); after != before {
			t.Errorf("%s changed the live tree", name)
		}
	}
	_, err := Publish(context.Background(), nil, Options{Root: root})
	check("nothing", err, "nothing to publish")

	changed := fileSet(t, src, "C", 1, 1000)
	changed[0].SHA256 = strings.Repeat("0", 64)
	_, err = Publish(context.Background(), changed, Options{Root: root})
	check("changed since build", err, "C-bzImage_a0 changed since it was built")

	full := fileSet(t, src, "D", 2, 200000)
	_, err = Publish(context.Background(), full, Options{Root: root, wrap: func(name string, w io.Writer) io.Writer {
		if name == "bzImage_a1" {
			return &enospc{w: w, left: 50000}
		}
		return w
	}})
	check("ENOSPC", err, "no space left on device")

	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o644)
	_, err = Publish(context.Background(), fileSet(t, src, "E", 1, 10), Options{Root: notDir})
	if err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("root a file: %v", err)
	}
	_, err = Publish(context.Background(), fileSet(t, src, "E", 1, 10), Options{Root: filepath.Join(root, "missing", "deeper")})
	if err == nil || !strings.Contains(err.Error(), "DISKLESS_ROOT") {
		t.Errorf("root with a missing parent: %v", err)
	}
	// a missing root itself is created, as /diskless on a fresh master
	fresh := filepath.Join(t.TempDir(), "diskless")
	if _, err := Publish(context.Background(), fileSet(t, src, "F", 1, 10), Options{Root: fresh}); err != nil {
		t.Errorf("missing root not created: %v", err)
	}
	// an admin's real file under a name publish wants
	os.WriteFile(filepath.Join(root, "bzImage_a9"), []byte("admin"), 0o644)
	before = snapshot(t, root)
	_, err = Publish(context.Background(), []File{{Name: "bzImage_a9", Data: []byte("x"), Kind: "kernel"}}, Options{Root: root})
	check("unmanaged file", err, "not managed by diskless")
	_, err = Publish(context.Background(), []File{{Name: "../escape", Data: []byte("x")}}, Options{Root: root})
	check("escape", err, "bad file name")
}

type enospc struct {
	w    io.Writer
	left int
}

func (e *enospc) Write(b []byte) (int, error) {
	if len(b) > e.left {
		n, _ := e.w.Write(b[:e.left])
		e.left = 0
		return n, syscall.ENOSPC
	}
	e.left -= len(b)
	return e.w.Write(b)
}

// snapshot describes what a client sees: every top-level name and its
// content hash through the links.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if strings.HasPrefix(rel, ".diskless") {
			if info.IsDir() && rel != ".diskless" && rel != ".diskless/generations" {
				return filepath.SkipDir
			}
			return nil
		}
		if info.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			data, _ := os.ReadFile(p)
			fmt.Fprintf(&b, "%s -> %s %s\n", rel, target, sum(data))
		}
		return nil
	})
	cur, _ := os.Readlink(filepath.Join(root, current))
	fmt.Fprintf(&b, "current %s\n", cur)
	return b.String()
}

// TestMain lets the fault-injection tests run a real publishing process:
// the test binary re-executed with DISKLESS_PUBLISH_CHILD set.
func TestMain(m *testing.M) {
	if spec := os.Getenv("DISKLESS_PUBLISH_CHILD"); spec != "" {
		os.Exit(child(spec))
	}
	os.Exit(m.Run())
}

// child publishes the files of a set directory: spec is "root|setdir".
func child(spec string) int {
	root, setdir, _ := strings.Cut(spec, "|")
	entries, _ := os.ReadDir(setdir)
	var files []File
	for _, e := range entries {
		name := strings.ReplaceAll(e.Name(), "__", "/")
		files = append(files, File{Name: name, Source: filepath.Join(setdir, e.Name()), Kind: "kernel"})
	}
	fmt.Println(childStarted)
	if _, err := Publish(context.Background(), files, Options{Root: root}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(childDone)
	return 0
}

// The child's markers: its publish began, and returned.
const (
	childStarted = "diskless-child: started"
	childDone    = "diskless-child: done"
)

// startChild starts a publishing child and returns once it says it has
// started publishing, with a function that waits for it and reports
// whether it finished (printed done) and how long its publish ran.
func startChild(t *testing.T, root, set string) (*exec.Cmd, func() (finished bool, took time.Duration)) {
	t.Helper()
	c := runChild(root, set)
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != childStarted {
		c.Process.Kill()
		c.Wait()
		t.Fatalf("the child did not start publishing: %q", sc.Text())
	}
	began := time.Now()
	return c, func() (bool, time.Duration) {
		finished, took := false, time.Duration(0)
		for sc.Scan() {
			if sc.Text() == childDone && !finished {
				// not at exit: a -race binary sleeps a second at exit
				finished, took = true, time.Since(began)
			}
		}
		c.Wait()
		return finished, took
	}
}

// writeSet writes a file set as a directory for child (/ as __).
func writeSet(t *testing.T, tag string, n, size int) (string, map[string]string) {
	dir := t.TempDir()
	sums := map[string]string{}
	for i := 0; i < n; i++ {
		data := bytes.Repeat([]byte(fmt.Sprintf("%s%d.", tag, i)), size/4)
		name := fmt.Sprintf("bzImage_a%d", i)
		os.WriteFile(filepath.Join(dir, name), data, 0o644)
		sums[name] = sum(data)
	}
	cfg := []byte("DEFAULT " + tag + "\n")
	os.WriteFile(filepath.Join(dir, "pxelinux.cfg__default"), cfg, 0o644)
	sums["pxelinux.cfg/default"] = sum(cfg)
	return dir, sums
}

func runChild(root, set string) *exec.Cmd {
	c := exec.Command(os.Args[0], "-test.run=^$")
	c.Env = append(os.Environ(), "DISKLESS_PUBLISH_CHILD="+root+"|"+set)
	return c
}

// A publishing process is SIGKILLed at random points, 100 times, while a
// reader keeps reading the TFTP names: every file read is complete and
// belongs to one of the two sets; a reader that resolves the current
// generation once sees a set that matches its own SHA256SUMS; after each
// kill verify passes and the next publish succeeds.
func TestIntegrationFaultInjectionKillPublisher(t *testing.T) {
	testutil.Integration(t, "100 publisher processes killed at random points (a minute or more)")
	root := t.TempDir()
	setA, sumsA := writeSet(t, "A", 4, 1<<20)
	setB, sumsB := writeSet(t, "B", 4, 1<<20)
	if out, err := runChild(root, setA).CombinedOutput(); err != nil {
		t.Fatalf("first publish: %v\n%s", err, out)
	}
	stop := make(chan struct{})
	var readerErr atomic.Pointer[error]
	var reads, setReads atomic.Int64
	fail := func(err error) { readerErr.CompareAndSwap(nil, &err) }
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for name := range sumsA {
				data, err := os.ReadFile(filepath.Join(root, name))
				if err != nil {
					continue // a name can be briefly unlinked; never partial
				}
				s := sum(data)
				if s != sumsA[name] && s != sumsB[name] {
					fail(fmt.Errorf("read of %s saw content of neither set (%d bytes)", name, len(data)))
					return
				}
				reads.Add(1)
			}
			// resolve the generation once: the whole set is consistent
			if gen, err := os.Readlink(filepath.Join(root, current)); err == nil {
				dir := filepath.Join(root, stateDir, gen)
				sums, err := os.ReadFile(filepath.Join(dir, SumsName))
				if err != nil {
					continue // pruned under us
				}
				for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
					want, name, _ := strings.Cut(line, "  ")
					data, err := os.ReadFile(filepath.Join(dir, name))
					if err == nil && sum(data) != want {
						fail(fmt.Errorf("generation %s: %s does not match its SHA256SUMS", gen, name))
						return
					}
				}
				setReads.Add(1)
			}
		}
	}()
	// how long an uninterrupted publish takes (the median of three, from
	// its start marker, with the reader running), to spread the kills over
	var spans []time.Duration
	for _, set := range []string{setB, setA, setB} {
		_, wait := startChild(t, root, set)
		finished, took := wait()
		if !finished {
			t.Fatal("an uninterrupted publish did not finish")
		}
		spans = append(spans, took)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i] < spans[j] })
	span := spans[1]
	rng := rand.New(rand.NewSource(1))
	midway := 0
	for i := 0; i < 100 && readerErr.Load() == nil; i++ {
		set := setA
		if i%2 == 1 {
			set = setB
		}
		c, wait := startChild(t, root, set)
		time.Sleep(time.Duration(rng.Int63n(int64(span)*6/5 + 1)))
		c.Process.Signal(syscall.SIGKILL)
		if finished, _ := wait(); !finished {
			midway++ // killed between its start and done markers
		}
		if _, err := Verify(root); err != nil {
			t.Fatalf("run %d: verify after SIGKILL: %v", i, err)
		}
	}
	if out, err := runChild(root, setA).CombinedOutput(); err != nil {
		t.Fatalf("publish after the kills: %v\n%s", err, out)
	}
	close(stop)
	wg.Wait()
	if err := readerErr.Load(); err != nil {
		t.Fatal(*err)
	}
	if _, err := Verify(root); err != nil {
		t.Fatal(err)
	}
	gens, _ := generations(root)
	t.Logf("%d of 100 publishes killed between their start and done markers (the rest finished first) over a %s publish; reader: %d file reads, %d whole-set reads; generations kept %v", midway, span.Round(time.Millisecond), reads.Load(), setReads.Load(), gens)
	if midway < 50 {
		t.Errorf("only %d of 100 kills landed mid-publish: the test did not exercise what it claims (need 50)", midway)
	}
}

// Two publishes at once: one waits for the other; both complete, one
// generation is live and verify passes.
func TestConcurrentPublishes(t *testing.T) {
	root := t.TempDir()
	setA, _ := writeSet(t, "A", 3, 1<<20)
	setB, _ := writeSet(t, "B", 3, 1<<20)
	a, b := runChild(root, setA), runChild(root, setB)
	var outA, outB bytes.Buffer
	a.Stderr, b.Stderr = &outA, &outB
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	if err := a.Wait(); err != nil {
		t.Errorf("publish A: %v %s", err, outA.String())
	}
	if err := b.Wait(); err != nil {
		t.Errorf("publish B: %v %s", err, outB.String())
	}
	m, err := Verify(root)
	if err != nil {
		t.Fatal(err)
	}
	if m.Generation != 2 {
		t.Errorf("live generation %d, want 2", m.Generation)
	}
}

func TestNoWaitFailsClearly(t *testing.T) {
	root := t.TempDir()
	unlock, err := Lock(root, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	_, err = Publish(context.Background(), fileSet(t, t.TempDir(), "A", 1, 10), Options{Root: root, NoWait: true})
	if err == nil || !strings.Contains(err.Error(), "PUBLISH_NOWAIT=1") {
		t.Errorf("no-wait publish under a held lock: %v", err)
	}
}

// Publishing 4 arches' worth of files (kernel, vmlinuz, initramfs, config
// per arch) against cp + sha256sum of the same files.
func BenchmarkPublish4Arches(b *testing.B) {
	src := b.TempDir()
	var files []File
	var paths []string
	for _, a := range []string{"x86_64", "i386", "arm64", "riscv64"} {
		for _, f := range []struct {
			name string
			size int
		}{{"kernel_" + a, 2 << 20}, {"vmlinuz_" + a, 2 << 20}, {"initramfs_" + a + ".cpio.zst", 4 << 20}, {"config_" + a, 64 << 10}} {
			p := filepath.Join(src, f.name)
			data := make([]byte, f.size)
			rand.New(rand.NewSource(int64(f.size))).Read(data)
			os.WriteFile(p, data, 0o644)
			files = append(files, File{Name: f.name, Source: p, Kind: "kernel"})
			paths = append(paths, p)
		}
	}
	b.Run("publish", func(b *testing.B) {
		root := b.TempDir()
		for i := 0; i < b.N; i++ {
			if _, err := Publish(context.Background(), files, Options{Root: root}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cp+sha256sum", func(b *testing.B) {
		testutil.NeedBaseTool(b, "sha256sum", "coreutils")
		for i := 0; i < b.N; i++ {
			dst := filepath.Join(b.TempDir(), strconv.Itoa(i))
			os.MkdirAll(dst, 0o755)
			if out, err := exec.Command("cp", append(paths, dst)...).CombinedOutput(); err != nil {
				b.Fatal(err, string(out))
			}
			c := exec.Command("sh", "-c", "sha256sum * > SHA256SUMS && sync")
			c.Dir = dst
			if out, err := c.CombinedOutput(); err != nil {
				b.Fatal(err, string(out))
			}
		}
	})
}
