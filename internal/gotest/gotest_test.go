package gotest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// module is a tiny module, standard library only, with a passing, a
// failing, a skipped test and subtests (package a), a package that does not
// compile (b), one without test files (c) and one whose test binary
// crashes while a test runs (d).
var module = map[string]string{
	"go.mod": "module example.com/m\n\ngo 1.26\n",
	"a/a_test.go": `package a

import (
	"strings"
	"testing"
	"time"
)

func TestPass(t *testing.T)    { t.Log("hello") }
func TestFail(t *testing.T)    { t.Log("before"); t.Errorf("want %d, got %d", 1, 2) }
func TestSkip(t *testing.T)    { t.Skip("needs root") }
func TestSkipNow(t *testing.T) { t.SkipNow() }

func TestSlow(t *testing.T) {
	t.Run("inner", func(t *testing.T) { time.Sleep(250 * time.Millisecond) })
}

func TestSub(t *testing.T) {
	t.Run("fast", func(t *testing.T) {})
	t.Run("skipped", func(t *testing.T) { t.Log("probing"); t.Skipf("not on %s", "this arch") })
	t.Run("bad", func(t *testing.T) { t.Fatal("boom") })
}

func TestLong(t *testing.T) { t.Log(strings.Repeat("x", 5000)) }

func TestPar(t *testing.T) {
	for _, n := range []string{"p1", "p2"} {
		t.Run(n, func(t *testing.T) { t.Parallel(); time.Sleep(10 * time.Millisecond); t.Log(n) })
	}
}
`,
	"b/b.go":      "package b\n\nfunc F() int { return \"x\" }\n",
	"b/b_test.go": "package b\n\nimport \"testing\"\n\nfunc TestB(t *testing.T) {}\n",
	"c/c.go":      "package c\n",
	"d/d_test.go": `package d

import (
	"testing"
	"time"
)

func TestCrash(t *testing.T) {
	go func() { panic("crash") }()
	time.Sleep(10 * time.Second)
}
`,
}

// writeModule writes module to a new directory and returns it.
func writeModule(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range module {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// childEnv keeps the go command in the temporary module, offline.
var childEnv = []string{"GOFLAGS=-mod=mod", "GOWORK=off", "GOPROXY=off", "GOTOOLCHAIN=local"}

// outputOf is the concatenated Output of the events of a -json stream.
func outputOf(t *testing.T, stream []byte) string {
	t.Helper()
	var b strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(stream))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e struct{ Output string }
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("not an event: %q", sc.Text())
		}
		b.WriteString(e.Output)
	}
	return b.String()
}

func find(t *testing.T, s *Summary, pkg, name string) *Test {
	t.Helper()
	for _, x := range s.Tests {
		if x.Package == pkg && x.Name == name {
			return x
		}
	}
	t.Fatalf("no test %s %s", pkg, name)
	return nil
}

func findPkg(t *testing.T, s *Summary, path string) *Package {
	t.Helper()
	for _, p := range s.Packages {
		if p.Path == path {
			return p
		}
	}
	t.Fatalf("no package %s", path)
	return nil
}

// TestParseRealStream parses what `go test -json` printed for module.
func TestParseRealStream(t *testing.T) {
	dir := writeModule(t)
	cmd := exec.Command("go", "test", "-json", "-count=1", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), childEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("go test should fail with an exit status, got %v; stderr:\n%s", err, stderr.Bytes())
	}
	if stderr.Len() > 0 {
		t.Logf("go test stderr:\n%s", stderr.Bytes())
	}

	var out bytes.Buffer
	s, err := Parse(bytes.NewReader(raw), &out)
	if err != nil {
		t.Fatal(err)
	}
	if want := outputOf(t, raw); out.String() != want {
		t.Errorf("output is not the events' output unchanged:\n got %q\nwant %q", out.String(), want)
	}
	for _, w := range []string{"=== RUN   TestPass", "a_test.go:9: hello", "--- FAIL: TestFail", "FAIL\texample.com/m/b [build failed]", "cannot use", "[no test files]", "panic: crash"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q", w)
		}
	}
	if s.NonJSON != 0 {
		t.Errorf("NonJSON = %d", s.NonJSON)
	}

	const a = "example.com/m/a"
	for _, c := range []struct {
		name string
		res  Result
	}{
		{"TestPass", Pass}, {"TestFail", Fail}, {"TestSkip", Skip}, {"TestSkipNow", Skip},
		{"TestSlow", Pass}, {"TestSlow/inner", Pass},
		{"TestSub", Fail}, {"TestSub/fast", Pass}, {"TestSub/skipped", Skip}, {"TestSub/bad", Fail},
		{"TestLong", Pass}, {"TestPar", Pass}, {"TestPar/p1", Pass}, {"TestPar/p2", Pass},
	} {
		if got := find(t, s, a, c.name).Result; got != c.res {
			t.Errorf("%s: result %q, want %q", c.name, got, c.res)
		}
	}
	if r := find(t, s, a, "TestSkip").Reason; !strings.HasSuffix(r, ": needs root") || !strings.HasPrefix(r, "a_test.go:") {
		t.Errorf("TestSkip reason %q", r)
	}
	if r := find(t, s, a, "TestSkipNow").Reason; r != "--- SKIP: TestSkipNow (0.00s)" {
		t.Errorf("TestSkipNow reason %q", r)
	}
	if r := find(t, s, a, "TestSub/skipped").Reason; !strings.HasSuffix(r, ": not on this arch") {
		t.Errorf("TestSub/skipped reason %q (want its last log entry)", r)
	}
	slow, inner := find(t, s, a, "TestSlow"), find(t, s, a, "TestSlow/inner")
	if inner.Elapsed < 200*time.Millisecond || slow.Elapsed < inner.Elapsed {
		t.Errorf("TestSlow %v, TestSlow/inner %v", slow.Elapsed, inner.Elapsed)
	}
	if inner.top != slow || !inner.Subtest() || slow.Subtest() {
		t.Errorf("TestSlow/inner is not a subtest of TestSlow")
	}
	if top := s.Slowest(1); len(top) != 1 || top[0] != slow {
		t.Errorf("Slowest(1) = %v", top)
	}
	if pa := findPkg(t, s, a); pa.Result != Fail || pa.Tests != 8 || pa.Elapsed < 250*time.Millisecond {
		t.Errorf("package a: %+v", pa)
	}

	pb := findPkg(t, s, "example.com/m/b")
	if pb.Result != Fail || pb.FailedBuild == "" || !strings.HasPrefix(pb.Note, "build failed: b/b.go:3:") {
		t.Errorf("package b: %+v", pb)
	}
	if len(s.BuildFailed) != 1 || !strings.HasPrefix(s.BuildFailed[0], "example.com/m/b") {
		t.Errorf("BuildFailed = %q", s.BuildFailed)
	}
	if pc := findPkg(t, s, "example.com/m/c"); pc.Result != Skip {
		t.Errorf("package c: %+v", pc)
	}
	pd := findPkg(t, s, "example.com/m/d")
	crash := find(t, s, "example.com/m/d", "TestCrash")
	if pd.Result != Fail || crash.Result != None || crash.Reason != "panic: crash" {
		t.Errorf("package d: %+v, TestCrash: %+v", pd, crash)
	}

	top, sub := s.Counts()
	if want := (Counts{Passed: 4, Failed: 2, Skipped: 2, NoResult: 1}); top != want {
		t.Errorf("top-level counts %+v, want %+v", top, want)
	}
	if want := (Counts{Passed: 4, Failed: 1, Skipped: 1}); sub != want {
		t.Errorf("subtest counts %+v, want %+v", sub, want)
	}
	if !s.Failed() {
		t.Error("Failed() = false")
	}

	r := s.String()
	t.Logf("summary:\n%s", r)
	for _, w := range []string{
		"a TestSlow\n",
		"    subtest TestSlow/inner\n",
		"  FAIL  example.com/m/b  (build failed: b/b.go:3:",
		"tests: 4 passed, 2 failed, 2 skipped, 1 without a result; subtests: 4 passed, 1 failed, 1 skipped\n",
		"packages: 0 ok, 3 failed, 0 with no tests to run, 1 without test files\n",
		"skipped (3):\n",
		"  example.com/m/a TestSkipNow: --- SKIP: TestSkipNow (0.00s)\n",
		"  example.com/m/a TestSub/bad (0.0 s)\n",
		"  example.com/m/d TestCrash: no result after ",
		"  example.com/m/b: build failed: b/b.go:3:",
		"result: FAIL (3 failed tests, 1 test without a result, 3 failed packages)\n",
	} {
		if !strings.Contains(r, w) {
			t.Errorf("summary lacks %q", w)
		}
	}
}

// TestRun runs go test through Run in the temporary module.
func TestRun(t *testing.T) {
	t.Chdir(writeModule(t))
	for _, kv := range childEnv {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	ctx := context.Background()

	var out bytes.Buffer
	s, err := Run(ctx, &out, []string{"-count=1", "./a", "./c"})
	if err == nil || !strings.Contains(err.Error(), "3 failed tests") || !strings.Contains(err.Error(), "exit status 1") {
		t.Errorf("Run error = %v", err)
	}
	for _, w := range []string{"=== RUN   TestPass\n", "--- FAIL: TestFail", "FAIL\texample.com/m/a\t", "?   \texample.com/m/c\t[no test files]\n"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("Run output lacks %q:\n%s", w, out.String())
		}
	}
	if len(s.Packages) != 2 || !s.Failed() {
		t.Errorf("summary: %s", s)
	}

	out.Reset()
	s, err = Run(ctx, &out, []string{"-count=1", "-run", "^TestPass$", "./a"})
	if err != nil || s.Failed() || !strings.Contains(out.String(), "ok  \texample.com/m/a\t") {
		t.Errorf("passing run: %v\n%s", err, out.String())
	}
	if !strings.Contains(s.String(), "\nresult: ok\n") {
		t.Errorf("summary of a passing run:\n%s", s)
	}

	// go's own complaints come on its standard error: passed through.
	out.Reset()
	s, err = Run(ctx, &out, []string{"-count=notanumber", "./a"})
	if err == nil || len(s.Packages) != 0 || !strings.Contains(out.String(), "notanumber") {
		t.Errorf("bad flag: %v, %d packages, output %q", err, len(s.Packages), out.String())
	}

	// A cancelled run stops and says so.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Run(cctx, &out, []string{"./a"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Run: %v", err)
	}

	// Cancelled while a test runs: the test binary gets the interrupt too,
	// and Run returns promptly.
	if err := os.MkdirAll("h", 0o755); err != nil {
		t.Fatal(err)
	}
	hang := "package h\n\nimport (\n\t\"testing\"\n\t\"time\"\n)\n\nfunc TestHang(t *testing.T) { time.Sleep(time.Minute) }\n"
	if err := os.WriteFile("h/h_test.go", []byte(hang), 0o644); err != nil {
		t.Fatal(err)
	}
	cctx, cancel = context.WithCancel(ctx)
	defer cancel()
	w := &cancelOn{want: "=== RUN   TestHang", cancel: cancel}
	start := time.Now()
	s, err = Run(cctx, w, []string{"-count=1", "./h"})
	if !errors.Is(err, context.Canceled) || !w.seen {
		t.Errorf("Run cancelled during TestHang: %v (saw it run: %v)", err, w.seen)
	}
	if d := time.Since(w.at); w.seen && d > interruptGrace+2*time.Second {
		t.Errorf("Run took %v after the cancel (%v in all)", d, time.Since(start))
	}
	if !s.Failed() {
		t.Errorf("an interrupted run did not fail:\n%s", s)
	}
}

// cancelOn cancels when the output has shown want.
type cancelOn struct {
	want   string
	cancel func()
	buf    strings.Builder
	seen   bool
	at     time.Time
}

func (c *cancelOn) Write(b []byte) (int, error) {
	c.buf.Write(b)
	if !c.seen && strings.Contains(c.buf.String(), c.want) {
		c.seen, c.at = true, time.Now()
		c.cancel()
	}
	return len(b), nil
}

// stream is a hand-written -json stream: two packages interleaved (go test
// -p 2), a test run twice (-count=2), a line split over two output events,
// a package with no tests to run, lines that are not events, and a package
// the stream ends inside of, with a test running.
const stream = `{"Time":"2026-01-02T10:00:00Z","Action":"start","Package":"x/p1"}
{"Time":"2026-01-02T10:00:00Z","Action":"start","Package":"x/p2"}
{"Time":"2026-01-02T10:00:00.1Z","Action":"run","Package":"x/p1","Test":"TestIntegrationBuild"}
{"Time":"2026-01-02T10:00:00.1Z","Action":"output","Package":"x/p1","Test":"TestIntegrationBuild","Output":"=== RUN   TestIntegrationBuild\n"}
{"Time":"2026-01-02T10:00:00.2Z","Action":"run","Package":"x/p2","Test":"TestBoot"}
{"Time":"2026-01-02T10:00:00.2Z","Action":"output","Package":"x/p2","Test":"TestBoot","Output":"=== RUN   TestBoot\n"}
{"Time":"2026-01-02T10:00:00.3Z","Action":"run","Package":"x/p1","Test":"TestIntegrationBuild/x86_64"}
{"Time":"2026-01-02T10:00:00.3Z","Action":"output","Package":"x/p1","Test":"TestIntegrationBuild/x86_64","Output":"=== RUN   TestIntegrationBuild/x86_64\n"}
{"Time":"2026-01-02T10:00:01Z","Action":"output","Package":"x/p2","Test":"TestBoot","Output":"    boot_test.go:40: qemu: "}
{"Time":"2026-01-02T10:00:01Z","Action":"output","Package":"x/p2","Test":"TestBoot","Output":"no KVM\n"}
{"Time":"2026-01-02T10:00:01Z","Action":"output","Package":"x/p2","Test":"TestBoot","Output":"--- SKIP: TestBoot (0.80s)\n"}
{"Time":"2026-01-02T10:00:01Z","Action":"skip","Package":"x/p2","Test":"TestBoot","Elapsed":0.8}
not an event: go vet printed this
{"Time":"2026-01-02T10:03:00Z","Action":"output","Package":"x/p1","Test":"TestIntegrationBuild/x86_64","Output":"    --- PASS: TestIntegrationBuild/x86_64 (179.70s)\n"}
{"Time":"2026-01-02T10:03:00Z","Action":"pass","Package":"x/p1","Test":"TestIntegrationBuild/x86_64","Elapsed":179.7}
{"Time":"2026-01-02T10:03:00Z","Action":"run","Package":"x/p1","Test":"TestIntegrationBuild/arm64"}
{"Time":"2026-01-02T10:03:00Z","Action":"output","Package":"x/p1","Test":"TestIntegrationBuild/arm64","Output":"=== RUN   TestIntegrationBuild/arm64\n"}
{"Time":"2026-01-02T10:03:30Z","Action":"output","Package":"x/p1","Test":"TestIntegrationBuild/arm64","Output":"    build_test.go:88: config mismatch\n"}
{"Time":"2026-01-02T10:03:30Z","Action":"output","Package":"x/p1","Test":"TestIntegrationBuild/arm64","Output":"    --- FAIL: TestIntegrationBuild/arm64 (30.00s)\n"}
{"Time":"2026-01-02T10:03:30Z","Action":"fail","Package":"x/p1","Test":"TestIntegrationBuild/arm64","Elapsed":30}
{"Time":"2026-01-02T10:03:30Z","Action":"output","Package":"x/p1","Test":"TestIntegrationBuild","Output":"--- FAIL: TestIntegrationBuild (209.90s)\n"}
{"Time":"2026-01-02T10:03:30Z","Action":"fail","Package":"x/p1","Test":"TestIntegrationBuild","Elapsed":209.9}
{"Time":"2026-01-02T10:03:30Z","Action":"run","Package":"x/p1","Test":"TestIntegrationQuick"}
{"Time":"2026-01-02T10:03:30Z","Action":"output","Package":"x/p1","Test":"TestIntegrationQuick","Output":"--- PASS: TestIntegrationQuick (1.00s)\n"}
{"Time":"2026-01-02T10:03:31Z","Action":"pass","Package":"x/p1","Test":"TestIntegrationQuick","Elapsed":1}
{"Time":"2026-01-02T10:03:31Z","Action":"run","Package":"x/p1","Test":"TestIntegrationQuick"}
{"Time":"2026-01-02T10:03:33Z","Action":"pass","Package":"x/p1","Test":"TestIntegrationQuick","Elapsed":2}
{"Time":"2026-01-02T10:03:33Z","Action":"output","Package":"x/p1","Output":"FAIL\n"}
{"Time":"2026-01-02T10:03:33Z","Action":"output","Package":"x/p1","Output":"FAIL\tx/p1\t213.001s\n"}
{"Time":"2026-01-02T10:03:33Z","Action":"fail","Package":"x/p1","Elapsed":213.001}
{"Time":"2026-01-02T10:03:33Z","Action":"output","Package":"x/p2","Output":"PASS\n"}
{"Time":"2026-01-02T10:03:33Z","Action":"output","Package":"x/p2","Output":"ok  \tx/p2\t1.2s\n"}
{"Time":"2026-01-02T10:03:33Z","Action":"pass","Package":"x/p2","Elapsed":1.2}
{"Time":"2026-01-02T10:03:34Z","Action":"start","Package":"x/p3"}
{"Time":"2026-01-02T10:03:34Z","Action":"output","Package":"x/p3","Output":"ok  \tx/p3\t0.01s [no tests to run]\n"}
{"Time":"2026-01-02T10:03:34Z","Action":"pass","Package":"x/p3","Elapsed":0.01}
{"NotAnEvent":true}
{"Time":"2026-01-02T10:03:35Z","Action":"start","Package":"x/p4"}
{"Time":"2026-01-02T10:03:35Z","Action":"run","Package":"x/p4","Test":"TestIntegrationHang"}
{"Time":"2026-01-02T10:03:35Z","Action":"output","Package":"x/p4","Test":"TestIntegrationHang","Output":"=== RUN   TestIntegrationHang\n"}
{"Time":"2026-01-02T10:08:35Z","Action":"output","Package":"x/p4","Test":"TestIntegrationHang","Output":"    hang_test.go:9: still waiting"}`

const wantSummary = `
test summary
slowest tests:
  300.0 s  x/p4 TestIntegrationHang  (no result)
  209.9 s  x/p1 TestIntegrationBuild
  179.7 s    subtest TestIntegrationBuild/x86_64
   30.0 s    subtest TestIntegrationBuild/arm64
    2.0 s  x/p1 TestIntegrationQuick
    1.0 s  x/p1 TestIntegrationQuick
    0.8 s  x/p2 TestBoot
packages by time (sum 514.2 s, wall 515.0 s):
  300.0 s  NONE  x/p4  (no result)
  213.0 s  FAIL  x/p1  (3 tests)
    1.2 s  ok    x/p2  (1 test)
tests: 2 passed, 1 failed, 1 skipped, 1 without a result; subtests: 1 passed, 1 failed, 0 skipped
packages: 1 ok, 1 failed, 1 without a result, 1 with no tests to run, 0 without test files
lines that were not test events: 2
skipped (1):
  x/p2 TestBoot: boot_test.go:40: qemu: no KVM
failed (3):
  x/p1 TestIntegrationBuild (209.9 s)
  x/p1 TestIntegrationBuild/arm64 (30.0 s)
  x/p4 TestIntegrationHang: no result after 300.0 s: the stream ended while it ran
result: FAIL (2 failed tests, 1 test without a result, 1 failed package, 1 package without a result)
`

func TestParseHandWritten(t *testing.T) {
	var out bytes.Buffer
	s, err := Parse(strings.NewReader(stream), &out)
	if err != nil {
		t.Fatal(err)
	}
	wantOut := "=== RUN   TestIntegrationBuild\n=== RUN   TestBoot\n=== RUN   TestIntegrationBuild/x86_64\n" +
		"    boot_test.go:40: qemu: no KVM\n--- SKIP: TestBoot (0.80s)\nnot an event: go vet printed this\n"
	if !strings.HasPrefix(out.String(), wantOut) {
		t.Errorf("output starts\n%q\nwant\n%q", out.String()[:min(len(wantOut), out.Len())], wantOut)
	}
	if !strings.Contains(out.String(), "\n{\"NotAnEvent\":true}\n") || !strings.HasSuffix(out.String(), "    hang_test.go:9: still waiting\n") {
		t.Errorf("output:\n%s", out.String())
	}
	if got := s.String(); got != wantSummary {
		t.Errorf("summary:\n%s\nwant:\n%s", got, wantSummary)
	}
	// The slowest ranks top-level tests; the subtest rides along.
	if sl := s.Slowest(10); len(sl) != 5 || sl[0].Name != "TestIntegrationHang" || sl[1].Name != "TestIntegrationBuild" {
		t.Errorf("Slowest = %v", sl)
	}
	if p4 := findPkg(t, s, "x/p4"); p4.Result != None || p4.Elapsed != 300*time.Second {
		t.Errorf("x/p4: %+v", p4)
	}
	if p3 := findPkg(t, s, "x/p3"); p3.Result != Pass || p3.Tests != 0 {
		t.Errorf("x/p3: %+v", p3)
	}
	if !s.Start.Equal(time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)) || s.End.Sub(s.Start) != 515*time.Second {
		t.Errorf("Start %v End %v", s.Start, s.End)
	}
}

// TestParseLongLines: lines far longer than the read buffer, events or not,
// pass through unchanged.
func TestParseLongLines(t *testing.T) {
	long := strings.Repeat("é", 300<<10) // 600 KiB
	ev, _ := json.Marshal(map[string]any{"Action": "output", "Package": "x/p", "Test": "TestA", "Output": long + "\n"})
	in := "{\"Action\":\"run\",\"Package\":\"x/p\",\"Test\":\"TestA\"}\n" +
		string(ev) + "\n" +
		"   " + long + "\n" + // not an event
		"{" + long + "\n" + // looks like one, is not
		"{\"Action\":\"skip\",\"Package\":\"x/p\",\"Test\":\"TestA\"}\n" +
		"{\"Action\":\"pass\",\"Package\":\"x/p\"}\n" +
		"tail without newline"
	var out bytes.Buffer
	s, err := Parse(strings.NewReader(in), &out)
	if err != nil {
		t.Fatal(err)
	}
	want := long + "\n   " + long + "\n{" + long + "\ntail without newline\n"
	if out.String() != want {
		t.Errorf("output differs: got %d bytes, want %d", out.Len(), len(want))
	}
	if s.NonJSON != 3 {
		t.Errorf("NonJSON = %d, want 3", s.NonJSON)
	}
	a := find(t, s, "x/p", "TestA")
	if a.Result != Skip || !strings.HasPrefix(a.Reason, "éé") || len(a.Reason) > maxLine+len("…") {
		t.Errorf("TestA: result %q, reason of %d bytes", a.Result, len(a.Reason))
	}
	if s.Failed() {
		t.Errorf("Failed: %v", s.Err())
	}
}

type failingWriter struct{ n int }

func (w *failingWriter) Write(b []byte) (int, error) {
	w.n++
	return 0, errors.New("disk full")
}

// TestParseWriteError: a failing writer is reported, and the stream is
// still read to its end.
func TestParseWriteError(t *testing.T) {
	w := &failingWriter{}
	s, err := Parse(strings.NewReader(stream), w)
	if err == nil || err.Error() != "disk full" || w.n != 1 {
		t.Errorf("err %v after %d writes", err, w.n)
	}
	if len(s.Packages) != 4 {
		t.Errorf("%d packages, want 4", len(s.Packages))
	}
}

func TestParseEmpty(t *testing.T) {
	s, err := Parse(strings.NewReader(""), &bytes.Buffer{})
	if err != nil || s.Failed() {
		t.Fatalf("empty stream: %v, %v", err, s.Err())
	}
	if r := s.String(); !strings.Contains(r, "(no tests ran)") || !strings.HasSuffix(r, "result: ok\n") {
		t.Errorf("summary:\n%s", r)
	}
}

// TestParseBuildFailOnly: a build-fail no package event explains is still
// a failure.
func TestParseBuildFailOnly(t *testing.T) {
	in := `{"ImportPath":"x/q [x/q.test]","Action":"build-output","Output":"# x/q [x/q.test]\n"}
{"ImportPath":"x/q [x/q.test]","Action":"build-output","Output":"q.go:1:1: expected 'package'\n"}
{"ImportPath":"x/q [x/q.test]","Action":"build-fail"}
`
	var out bytes.Buffer
	s, err := Parse(strings.NewReader(in), &out)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "# x/q [x/q.test]\nq.go:1:1: expected 'package'\n" {
		t.Errorf("output %q", out.String())
	}
	if !s.Failed() || !strings.Contains(s.String(), "  x/q [x/q.test]: build failed\n") {
		t.Errorf("summary:\n%s", s)
	}
}
