// Package gotest turns the event stream of `go test -json` (the test2json
// format) into what a CI log needs: the plain test output, live, and at the
// end a summary of the run (the slowest tests, the time per package, the
// counts, the skipped and the failed tests).
//
// It owns two things and nothing else:
//
//   - Parse consumes a `go test -json` stream from a reader. The Output of
//     every event is written to the writer as the event arrives, unchanged,
//     so the console shows what `go test -v` would print (=== RUN, t.Log
//     lines, --- FAIL, "ok pkg 12.3s", the compiler's errors of a build
//     failure). A line that is not a test2json event is passed through as
//     it is. Parse records every test's result and elapsed time, each
//     package's result and time, and returns a Summary.
//   - Run starts `go test -json <args>` in the current directory with the
//     caller's environment, parses its standard output with Parse and passes
//     its standard error through to the same writer. It decides nothing
//     about which tests run: the args are the caller's.
//
// How the stream is read:
//
//   - Tests and subtests are recorded alike (Test.Name is "TestX" or
//     "TestX/sub"). The ranking of the slowest tests is over top-level tests,
//     the unit a developer can act on; under a ranked test its subtests that
//     would have made the list on their own (at least as slow as the last
//     ranked test, and 0.1 s) are shown, marked "subtest", at most three.
//   - A skipped test's Reason is the first line of its last log entry
//     ("x_test.go:12: needs root": t.Skip logs its message last), else its
//     last other output line, else its "--- SKIP" line. Under CI nothing
//     should skip, so the summary lists every skipped test with its reason.
//     A package without test files (package-level "skip") is counted, not
//     listed.
//   - A build failure (build-output and build-fail events, then a package
//     "fail" carrying FailedBuild) fails the package; its first compiler
//     error becomes the package's Note. A setup failure ("[setup failed]")
//     the same.
//   - A test that started but has no result when its package ends (the
//     test binary crashed or timed out) or when the stream ends, and a
//     package without a final result when the stream ends, count as
//     failures: Result None, with the package's first "panic:" line as the
//     reason when there is one.
//   - Events of different packages may interleave (go test -p N); tests are
//     tracked per package. Lines of any length are accepted; a line that is
//     not JSON, or JSON that is not a test2json event, is counted in
//     Summary.NonJSON and passed through.
package gotest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/diskless/diskless/internal/spawn"
)

// Result is the outcome of a test or package.
type Result string

// The results. None is a test or package that has no result: its test
// binary died, or the stream ended, before it finished.
const (
	Pass  Result = "pass"
	Fail  Result = "fail"
	Skip  Result = "skip"
	Bench Result = "bench" // a benchmark that logged output
	None  Result = ""
)

// Test is one test or subtest run.
type Test struct {
	Package string
	Name    string // "TestX", or "TestX/sub" for a subtest
	Result  Result
	Elapsed time.Duration
	// Reason says why a test was skipped (its last log entry) or why it
	// has no result.
	Reason string

	top *Test // the top-level test this subtest ran under, or nil
}

// Subtest reports whether t is a subtest (its name has a "/").
func (t *Test) Subtest() bool { return strings.Contains(t.Name, "/") }

// Package is one package's test run.
type Package struct {
	Path    string // import path, as go test names it
	Result  Result // Skip: the package has no test files
	Elapsed time.Duration
	// FailedBuild is the package (go list ImportPath) whose failed build
	// made this one fail.
	FailedBuild string
	// Note says why a package failed without a failed test: its first
	// compiler error, "setup failed", its first "panic:" line.
	Note  string
	Tests int // top-level tests that ran
}

// Summary is what a `go test -json` stream reported.
type Summary struct {
	Packages []*Package // in the order they first appeared
	Tests    []*Test    // tests and subtests, in the order they started
	// BuildFailed lists the packages whose build failed (build-fail).
	BuildFailed []string
	NonJSON     int       // lines that were not test2json events
	Start, End  time.Time // first and last event time (zero if none)
}

// Counts counts test results.
type Counts struct {
	Passed, Failed, Skipped, NoResult int
}

// Counts returns the counts of top-level tests and of subtests.
// Benchmarks are not counted.
func (s *Summary) Counts() (top, sub Counts) {
	for _, t := range s.Tests {
		c := &top
		if t.Subtest() {
			c = &sub
		}
		switch t.Result {
		case Pass:
			c.Passed++
		case Fail:
			c.Failed++
		case Skip:
			c.Skipped++
		case None:
			c.NoResult++
		}
	}
	return top, sub
}

// Failed reports whether anything failed: a test or package failed or has
// no result, or a build failed. An empty stream did not fail (Run reports
// go test's exit status).
func (s *Summary) Failed() bool { return s.Err() != nil }

// Err describes the failures, or is nil when nothing failed.
func (s *Summary) Err() error {
	var tf, tn, pf, pn int
	for _, t := range s.Tests {
		switch t.Result {
		case Fail:
			tf++
		case None:
			tn++
		}
	}
	for _, p := range s.Packages {
		switch p.Result {
		case Fail:
			pf++
		case None:
			pn++
		}
	}
	var parts []string
	add := func(n int, one, many string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, plural(n, one, many)))
		}
	}
	add(tf, "failed test", "failed tests")
	add(tn, "test without a result", "tests without a result")
	add(pf, "failed package", "failed packages")
	add(pn, "package without a result", "packages without a result")
	if pf == 0 && len(s.BuildFailed) > 0 {
		parts = append(parts, "build of "+strings.Join(s.BuildFailed, ", ")+" failed")
	}
	if len(parts) == 0 {
		return nil
	}
	return errors.New(strings.Join(parts, ", "))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Slowest returns the n slowest top-level tests (benchmarks excluded),
// slowest first; ties in the order they ran.
func (s *Summary) Slowest(n int) []*Test {
	var top []*Test
	for _, t := range s.Tests {
		if !t.Subtest() && t.Result != Bench {
			top = append(top, t)
		}
	}
	slices.SortStableFunc(top, func(a, b *Test) int { return cmpDur(b.Elapsed, a.Elapsed) })
	return top[:min(n, len(top))]
}

func cmpDur(a, b time.Duration) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// minSubtest is the least time of a subtest Render shows.
const minSubtest = 100 * time.Millisecond

// slowSubtests are t's subtests at least as slow as cutoff and minSubtest,
// slowest first, at most max.
func (s *Summary) slowSubtests(t *Test, cutoff time.Duration, max int) []*Test {
	var subs []*Test
	for _, u := range s.Tests {
		if u.top == t && u.Elapsed >= cutoff && u.Elapsed >= minSubtest {
			subs = append(subs, u)
		}
	}
	slices.SortStableFunc(subs, func(a, b *Test) int { return cmpDur(b.Elapsed, a.Elapsed) })
	return subs[:min(max, len(subs))]
}

// SlowestN is how many tests Render ranks.
const SlowestN = 10

// String is the rendered summary.
func (s *Summary) String() string {
	var b strings.Builder
	s.Render(&b)
	return b.String()
}

// Render writes the summary: the ten slowest tests, the packages by time,
// the counts, the skipped tests with their reasons, the failures, and a
// final "result:" line.
func (s *Summary) Render(w io.Writer) error {
	var b strings.Builder
	secs := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) }
	// One width for every seconds column.
	width := 1
	widen := func(d time.Duration) { width = max(width, len(secs(d))) }
	slow := s.Slowest(SlowestN)
	var cutoff time.Duration
	if len(slow) > 0 {
		cutoff = slow[len(slow)-1].Elapsed
	}
	subs := map[*Test][]*Test{}
	for _, t := range slow {
		widen(t.Elapsed)
		subs[t] = s.slowSubtests(t, cutoff, 3)
		for _, u := range subs[t] {
			widen(u.Elapsed)
		}
	}
	var pkgs []*Package
	var pOK, pFail, pNone, pNoTests, pNoFiles int
	var sum time.Duration
	for _, p := range s.Packages {
		sum += p.Elapsed
		switch {
		case p.Result == Skip:
			pNoFiles++
			continue
		case p.Result == Pass && p.Tests == 0:
			pNoTests++
			continue
		case p.Result == Pass:
			pOK++
		case p.Result == None:
			pNone++
		default:
			pFail++
		}
		pkgs = append(pkgs, p)
		widen(p.Elapsed)
	}
	slices.SortStableFunc(pkgs, func(a, b *Package) int { return cmpDur(b.Elapsed, a.Elapsed) })
	col := func(d time.Duration) string { return fmt.Sprintf("  %*s s  ", width, secs(d)) }

	b.WriteString("\ntest summary\n")
	b.WriteString("slowest tests:\n")
	if len(slow) == 0 {
		b.WriteString("  (no tests ran)\n")
	}
	for _, t := range slow {
		note := ""
		if t.Result == None {
			note = "  (no result)"
		}
		fmt.Fprintf(&b, "%s%s %s%s\n", col(t.Elapsed), t.Package, t.Name, note)
		for _, u := range subs[t] {
			fmt.Fprintf(&b, "%s  subtest %s\n", col(u.Elapsed), u.Name)
		}
	}

	wall := ""
	if !s.Start.IsZero() && s.End.After(s.Start) {
		wall = ", wall " + secs(s.End.Sub(s.Start)) + " s"
	}
	fmt.Fprintf(&b, "packages by time (sum %s s%s):\n", secs(sum), wall)
	renderPackages(&b, pkgs, col)

	top, sub := s.Counts()
	fmt.Fprintf(&b, "tests: %s; subtests: %s\n", top, sub)
	fmt.Fprintf(&b, "packages: %d ok, %d failed", pOK, pFail)
	if pNone > 0 {
		fmt.Fprintf(&b, ", %d without a result", pNone)
	}
	fmt.Fprintf(&b, ", %d with no tests to run, %d without test files\n", pNoTests, pNoFiles)
	if s.NonJSON > 0 {
		fmt.Fprintf(&b, "lines that were not test events: %d\n", s.NonJSON)
	}

	s.renderSkipped(&b)
	failed := s.failures(secs)
	if len(failed) > 0 {
		fmt.Fprintf(&b, "failed (%d):\n", len(failed))
		for _, f := range failed {
			fmt.Fprintf(&b, "  %s\n", f)
		}
	}
	if err := s.Err(); err != nil {
		fmt.Fprintf(&b, "result: FAIL (%v)\n", err)
	} else {
		b.WriteString("result: ok\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// renderPackages is the table of packages by time.
func renderPackages(b *strings.Builder, pkgs []*Package, col func(time.Duration) string) {
	if len(pkgs) == 0 {
		b.WriteString("  (no package ran a test)\n")
	}
	for _, p := range pkgs {
		res := "ok  "
		switch p.Result {
		case Fail:
			res = "FAIL"
		case None:
			res = "NONE"
		}
		extra := fmt.Sprintf("(%d %s)", p.Tests, plural(p.Tests, "test", "tests"))
		if p.Result == None {
			extra = "(no result)"
		} else if p.Tests == 0 && p.Note != "" {
			extra = "(" + p.Note + ")"
		}
		fmt.Fprintf(b, "%s%s  %s  %s\n", col(p.Elapsed), res, p.Path, extra)
	}
}

// renderSkipped lists the skipped tests with their reasons.
func (s *Summary) renderSkipped(b *strings.Builder) {
	var skipped []*Test
	for _, t := range s.Tests {
		if t.Result == Skip {
			skipped = append(skipped, t)
		}
	}
	if len(skipped) > 0 {
		fmt.Fprintf(b, "skipped (%d):\n", len(skipped))
		for _, t := range skipped {
			fmt.Fprintf(b, "  %s %s: %s\n", t.Package, t.Name, t.Reason)
		}
	}
}

// failures are the lines of what failed: tests grouped by package, in the
// order the packages appeared, then packages that failed without a test
// to blame, and builds that failed.
func (s *Summary) failures(secs func(time.Duration) string) []string {
	var failed []string
	byPkg := map[string][]*Test{}
	for _, t := range s.Tests {
		if t.Result == Fail || t.Result == None {
			byPkg[t.Package] = append(byPkg[t.Package], t)
		}
	}
	explained := map[string]bool{}
	for _, p := range s.Packages {
		explained[p.FailedBuild] = true
		for _, t := range byPkg[p.Path] {
			if t.Result == Fail {
				failed = append(failed, fmt.Sprintf("%s %s (%s s)", t.Package, t.Name, secs(t.Elapsed)))
			} else {
				failed = append(failed, fmt.Sprintf("%s %s: no result after %s s: %s", t.Package, t.Name, secs(t.Elapsed), t.Reason))
			}
		}
		if len(byPkg[p.Path]) > 0 || (p.Result != Fail && p.Result != None) {
			continue
		}
		why := "failed"
		if p.Note != "" {
			why = p.Note
		}
		if p.Result == None {
			why = "no result: " + p.Note
		}
		failed = append(failed, fmt.Sprintf("%s: %s", p.Path, why))
	}
	for _, ip := range s.BuildFailed {
		if !explained[ip] {
			failed = append(failed, ip+": build failed")
		}
	}
	return failed
}

// String renders counts as "3 passed, 1 failed, 0 skipped" (and "n
// without a result" when there are such).
func (c Counts) String() string {
	s := fmt.Sprintf("%d passed, %d failed, %d skipped", c.Passed, c.Failed, c.Skipped)
	if c.NoResult > 0 {
		s += fmt.Sprintf(", %d without a result", c.NoResult)
	}
	return s
}

// event is one test2json event (cmd/test2json), or a build event of
// `go test -json` (Action build-output or build-fail, with ImportPath).
type event struct {
	Time        time.Time
	Action      string
	Package     string
	Test        string
	Elapsed     float64
	Output      string
	FailedBuild string
	ImportPath  string
}

const (
	maxLine  = 300      // a remembered line (reason, note) is cut here
	maxEvent = 16 << 20 // a longer line is not taken for an event
	readBuf  = 64 << 10
)

// lineBuf splits a stream of output chunks into lines, keeping at most
// maxLine bytes of each.
type lineBuf struct{ b []byte }

func (l *lineBuf) feed(s string, fn func(string)) {
	for s != "" {
		chunk, rest, nl := strings.Cut(s, "\n")
		if room := maxLine - len(l.b); room > 0 {
			l.b = append(l.b, chunk[:min(room, len(chunk))]...)
		}
		if !nl {
			return
		}
		l.flush(fn)
		s = rest
	}
}

func (l *lineBuf) flush(fn func(string)) {
	if len(l.b) > 0 {
		fn(strings.ToValidUTF8(string(l.b), string(utf8.RuneError)))
	}
	l.b = l.b[:0]
}

type pkgState struct {
	p           *Package
	done        bool
	start, last time.Time
	running     map[string]*testState
	line        lineBuf
	panic       string // first "panic:" line
	failLine    string // bracketed note of the final "FAIL\tpkg [...]" line
}

type testState struct {
	t         *Test
	start     time.Time
	line      lineBuf
	lastLog   string // last "file.go:N: ..." line
	lastOther string // last other line that is not framing
	skipLine  string // the "--- SKIP" line
}

// logLine matches a t.Log line, indentation trimmed: "x_test.go:12: msg".
var logLine = regexp.MustCompile(`^[^\s:]+\.go:\d+: `)

type parser struct {
	w        io.Writer
	werr     error
	nl       bool // nothing written yet, or the last write ended a line
	s        *Summary
	pkgs     map[string]*pkgState
	buildErr map[string]string // ImportPath -> first compiler error line
}

// Parse reads a `go test -json` stream from r to its end, writing each
// event's Output (and each line that is not an event) to w as it arrives.
// It returns the Summary (never nil) and the first error reading r or
// writing w; after a write error it still reads r to the end, so that a
// producer never blocks.
func Parse(r io.Reader, w io.Writer) (*Summary, error) {
	p := &parser{w: w, nl: true, s: &Summary{}, pkgs: map[string]*pkgState{}, buildErr: map[string]string{}}
	br := bufio.NewReaderSize(r, readBuf)
	var acc []byte
	pass := false // passing a long non-event line through
	var rerr error
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case pass:
			p.write(chunk)
			pass = err == bufio.ErrBufferFull
		case err == bufio.ErrBufferFull:
			if len(acc) == 0 && !maybeEvent(chunk) || len(acc)+len(chunk) > maxEvent {
				p.s.NonJSON++
				p.write(acc)
				p.write(chunk)
				acc = acc[:0]
				pass = true
				continue
			}
			acc = append(acc, chunk...)
		default:
			line := chunk
			if len(acc) > 0 {
				acc = append(acc, chunk...)
				line = acc
			}
			if len(line) > 0 {
				p.line(line)
			}
			acc = acc[:0]
		}
		if err == io.EOF {
			break
		}
		if err != nil && err != bufio.ErrBufferFull {
			rerr = err
			break
		}
	}
	p.finish()
	if !p.nl {
		// End the last line, for what the caller prints next.
		p.write([]byte("\n"))
	}
	if rerr != nil {
		return p.s, rerr
	}
	return p.s, p.werr
}

// maybeEvent reports whether a line starting with b may be a JSON event.
func maybeEvent(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r")
	return len(b) == 0 || b[0] == '{'
}

func (p *parser) write(b []byte) {
	if p.werr != nil || len(b) == 0 {
		return
	}
	p.nl = b[len(b)-1] == '\n'
	_, p.werr = p.w.Write(b)
}

// line handles one whole input line (with its newline, if any).
func (p *parser) line(line []byte) {
	if t := bytes.TrimSpace(line); len(t) > 0 && t[0] == '{' {
		var e event
		if json.Unmarshal(t, &e) == nil && e.Action != "" {
			p.event(&e)
			return
		}
	}
	p.s.NonJSON++
	p.write(line)
}

func (p *parser) event(e *event) {
	s := p.s
	if !e.Time.IsZero() {
		if s.Start.IsZero() || e.Time.Before(s.Start) {
			s.Start = e.Time
		}
		if e.Time.After(s.End) {
			s.End = e.Time
		}
	}
	p.write([]byte(e.Output))
	switch e.Action {
	case "build-output":
		// "# pkg" header, then the compiler's lines; keep the first error.
		l := strings.TrimSpace(e.Output)
		if _, ok := p.buildErr[e.ImportPath]; !ok && l != "" && !strings.HasPrefix(l, "#") {
			p.buildErr[e.ImportPath] = cut(l)
		}
		return
	case "build-fail":
		if !slices.Contains(s.BuildFailed, e.ImportPath) {
			s.BuildFailed = append(s.BuildFailed, e.ImportPath)
		}
		return
	}
	if e.Package == "" {
		return
	}
	ps := p.pkgs[e.Package]
	if ps == nil {
		ps = &pkgState{p: &Package{Path: e.Package}, running: map[string]*testState{}}
		p.pkgs[e.Package] = ps
		s.Packages = append(s.Packages, ps.p)
	}
	if !e.Time.IsZero() {
		if ps.start.IsZero() {
			ps.start = e.Time
		}
		ps.last = e.Time
	}
	if e.Test == "" {
		p.pkgEvent(ps, e)
	} else {
		p.testEvent(ps, e)
	}
}

func (p *parser) pkgEvent(ps *pkgState, e *event) {
	switch e.Action {
	case "output":
		ps.line.feed(e.Output, func(l string) { p.pkgLine(ps, l) })
	case "pass", "fail", "skip":
		if ps.done {
			return
		}
		ps.line.flush(func(l string) { p.pkgLine(ps, l) })
		ps.done = true
		pk := ps.p
		pk.Result = Result(e.Action)
		pk.Elapsed = seconds(e.Elapsed)
		pk.FailedBuild = e.FailedBuild
		switch {
		case e.FailedBuild != "":
			pk.Note = "build failed"
			if ps.failLine != "" {
				pk.Note = ps.failLine
			}
			if msg := p.buildErr[e.FailedBuild]; msg != "" {
				pk.Note += ": " + msg
			}
			// "pkg [pkg.test]" is the package's own test build.
			if ip, _, _ := strings.Cut(e.FailedBuild, " "); ip != pk.Path {
				pk.Note += " (in " + ip + ")"
			}
		case ps.panic != "":
			pk.Note = ps.panic
		case ps.failLine != "":
			pk.Note = ps.failLine
		}
		p.endRunning(ps, e.Time, "still running when the package ended")
	}
}

// pkgLine looks at one output line of a package (its own or a test's).
func (p *parser) pkgLine(ps *pkgState, l string) {
	if ps.panic == "" && strings.HasPrefix(l, "panic: ") {
		ps.panic = cut(strings.TrimSpace(l))
	}
	// "FAIL\tpkg [build failed]", "FAIL\tpkg [setup failed]"
	if rest, ok := strings.CutPrefix(l, "FAIL\t"); ok {
		if i := strings.LastIndex(rest, " ["); i >= 0 && strings.HasSuffix(rest, "]") {
			ps.failLine = rest[i+2 : len(rest)-1]
		}
	}
}

func (p *parser) testEvent(ps *pkgState, e *event) {
	ts := ps.running[e.Test]
	if e.Action == "run" || ts == nil && e.Action != "output" {
		ts = p.newTest(ps, e)
	}
	switch e.Action {
	case "output":
		fn := func(l string) { p.pkgLine(ps, l) }
		if ts != nil {
			fn = func(l string) { p.pkgLine(ps, l); ts.see(l) }
			ts.line.feed(e.Output, fn)
		} else {
			ps.line.feed(e.Output, fn)
		}
	case "pass", "fail", "skip", "bench":
		ts.line.flush(func(l string) { p.pkgLine(ps, l); ts.see(l) })
		t := ts.t
		t.Result = Result(e.Action)
		t.Elapsed = seconds(e.Elapsed)
		if t.Result == Skip {
			t.Reason = ts.reason()
		}
		delete(ps.running, e.Test)
	}
}

func (p *parser) newTest(ps *pkgState, e *event) *testState {
	t := &Test{Package: ps.p.Path, Name: e.Test}
	if name, _, sub := strings.Cut(e.Test, "/"); sub {
		if parent := ps.running[name]; parent != nil {
			t.top = parent.t
		} else {
			// Its parent's run event was lost: the latest run of it.
			for _, u := range slices.Backward(p.s.Tests) {
				if u.Package == t.Package && u.Name == name {
					t.top = u
					break
				}
			}
		}
	} else {
		ps.p.Tests++
	}
	ts := &testState{t: t, start: e.Time}
	ps.running[e.Test] = ts
	p.s.Tests = append(p.s.Tests, t)
	return ts
}

// endRunning gives the tests still running in ps no result.
func (p *parser) endRunning(ps *pkgState, at time.Time, why string) {
	if ps.panic != "" {
		why = ps.panic
	}
	for _, t := range p.s.Tests {
		ts := ps.running[t.Name]
		if ts == nil || ts.t != t {
			continue
		}
		t.Result = None
		t.Reason = why
		if !at.IsZero() && !ts.start.IsZero() && at.After(ts.start) {
			t.Elapsed = at.Sub(ts.start)
		}
		delete(ps.running, t.Name)
	}
}

// finish ends what the stream left open.
func (p *parser) finish() {
	for _, pk := range p.s.Packages {
		ps := p.pkgs[pk.Path]
		if ps.done {
			continue
		}
		ps.line.flush(func(l string) { p.pkgLine(ps, l) })
		pk.Result = None
		pk.Note = "the stream ended before the package finished"
		if ps.panic != "" {
			pk.Note = ps.panic
		}
		if !ps.start.IsZero() {
			pk.Elapsed = ps.last.Sub(ps.start)
		}
		p.endRunning(ps, ps.last, "the stream ended while it ran")
	}
}

// see looks at one output line of the test, for the skip reason.
func (ts *testState) see(l string) {
	t := strings.TrimSpace(l)
	switch {
	case t == "":
	case strings.HasPrefix(t, "--- SKIP"):
		ts.skipLine = cut(t)
	case strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- "):
	case logLine.MatchString(t):
		ts.lastLog = cut(t)
	default:
		ts.lastOther = cut(t)
	}
}

func (ts *testState) reason() string {
	for _, r := range []string{ts.lastLog, ts.lastOther, ts.skipLine} {
		if r != "" {
			return r
		}
	}
	return "(no output)"
}

// cut shortens a remembered line.
func cut(s string) string {
	if len(s) <= maxLine {
		return s
	}
	s = s[:maxLine]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// lockedWriter serializes the writes of the parser and of go test's
// standard error.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// interruptGrace is how long go test has to stop after an interrupt when
// ctx is done, before it is killed (mage waits 5 s for a cancelled
// target).
const interruptGrace = 3 * time.Second

// Run runs `go test -json <args>` (the go command from PATH, in the current
// directory, with this process's environment), streams its output to stdout
// as it runs (its standard error too), and returns the Summary of the
// stream (never nil). The error is non-nil when go test exited non-zero,
// when the stream reported a failure, or when ctx ended.
//
// go test runs in its own process group, so a terminal's Ctrl-C reaches it
// only through ctx: pass the context that ends on an interrupt (mage's
// target context). When ctx ends the group (go test, the test binaries and
// what they started) gets SIGINT; go test is killed interruptGrace later if
// still running, and what is left of the group once it has exited. go test
// is also killed if this process dies.
//
// Run does not print the summary; call Summary.Render.
func Run(ctx context.Context, stdout io.Writer, args []string) (*Summary, error) {
	cmd := exec.CommandContext(ctx, "go", append([]string{"test", "-json"}, args...)...)
	out := &lockedWriter{w: stdout}
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = out
	// Its own process group, so that an interrupt reaches the test binaries
	// (and what they started) too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) }
	cmd.WaitDelay = interruptGrace

	type parsed struct {
		s   *Summary
		err error
	}
	done := make(chan parsed, 1)
	go func() {
		s, err := Parse(pr, out)
		done <- parsed{s, err}
	}()
	runErr := spawn.Start(cmd)
	if runErr == nil {
		pid := cmd.Process.Pid
		runErr = cmd.Wait()
		if ctx.Err() != nil {
			// What is left of the group after go test's exit.
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	pw.Close()
	res := <-done
	s := res.s

	sumErr := s.Err()
	switch {
	case ctx.Err() != nil:
		return s, fmt.Errorf("go test: %w", ctx.Err())
	case runErr != nil && sumErr != nil:
		return s, fmt.Errorf("go test: %v: %w", sumErr, runErr)
	case runErr != nil:
		return s, fmt.Errorf("go test: %w", runErr)
	case sumErr != nil:
		return s, fmt.Errorf("go test: %w", sumErr)
	case res.err != nil:
		return s, fmt.Errorf("go test output: %w", res.err)
	}
	return s, nil
}
