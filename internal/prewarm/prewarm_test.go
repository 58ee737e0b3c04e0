package prewarm

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/testenv"
	"github.com/diskless/diskless/internal/testutil"
)

// waitFor polls path until it holds want.
func waitFor(t *testing.T, path, want string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never said %q: %q", path, want, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The child runs under SCHED_IDLE, and Stop ends it with everything it
// started, even a grandchild that would outlive it.
func TestStartIdleAndStopEndsTheGroup(t *testing.T) {
	testutil.NeedBaseTool(t, "chrt", "util-linux")
	log := filepath.Join(t.TempDir(), "prewarm.log")
	b, err := Start([]string{"sh", "-c", `chrt -p $$; sleep 300 & echo "grandchild $!"; wait`}, log)
	if err != nil {
		t.Fatal(err)
	}
	out := waitFor(t, log, "grandchild ")
	if !strings.Contains(out, "SCHED_IDLE") {
		t.Errorf("the child is not under SCHED_IDLE: %q", out)
	}
	f := strings.Fields(out[strings.Index(out, "grandchild "):])
	pid, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatal(err)
	}
	report := b.Stop()
	if !strings.Contains(report, "stopped (the tests ended first)") || !strings.Contains(report, "grandchild") {
		t.Errorf("report: %q", report)
	}
	// the grandchild is gone (or a zombie of init's on its way out)
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		st, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if fields := strings.Fields(string(st)); len(fields) > 2 && fields[2] == "Z" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the grandchild %d outlived Stop", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if again := b.Stop(); again != report {
		t.Errorf("a second Stop said %q, the first %q", again, report)
	}
}

func TestStopAfterTheChildFinished(t *testing.T) {
	testutil.NeedBaseTool(t, "chrt", "util-linux")
	log := filepath.Join(t.TempDir(), "prewarm.log")
	b, err := Start([]string{"sh", "-c", "echo built"}, log)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the child did not finish")
	}
	if r := b.Stop(); !strings.Contains(r, "prewarm: finished after") || !strings.Contains(r, "built") {
		t.Errorf("report: %q", r)
	}
}

func TestStartNeedsTheLogDirectory(t *testing.T) {
	if _, err := Start([]string{"true"}, filepath.Join(t.TempDir(), "no", "such", "prewarm.log")); err == nil {
		t.Error("Start with a log in a missing directory succeeded")
	}
}

// Without the tools a job needs, Run skips it saying which Debian package
// is missing, as the test would; an unknown arch is an error, and the
// next job still runs.
func TestRunSkipsWhatCannotBeBuiltHere(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	jobs := append([]Job{{Name: "vax kernel", Arch: "vax"}}, Jobs()...)
	err := Run(context.Background(), testenv.ProjectDir, jobs, log)
	if err == nil || !strings.Contains(err.Error(), "vax kernel") {
		t.Errorf("Run = %v, want the vax kernel's error", err)
	}
	out := buf.String()
	for _, want := range []string{
		`job="arm64 kernel" why="no aarch64-linux-gnu-gcc (Debian package gcc-aarch64-linux-gnu)"`,
		`job="riscv64 kernel" why="no riscv64-linux-gnu-gcc (Debian package gcc-riscv64-linux-gnu)"`,
		`job="x86_64 Debian image" why=`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "prewarm: skipped"); n != len(Jobs()) {
		t.Errorf("%d jobs skipped, want %d:\n%s", n, len(Jobs()), out)
	}
}

// Every arch's kernel is built once, before the Debian images of the
// arches that have one, and the arm64 kernel (pkg/elfboot, the first
// package to boot one) comes first.
func TestJobsCoverEveryArchOnce(t *testing.T) {
	seen := map[Job]bool{}
	for _, j := range Jobs() {
		if seen[j] {
			t.Errorf("%s twice", j.Name)
		}
		seen[j] = true
	}
	for _, a := range []string{"x86_64", "i386", "arm64", "riscv64"} {
		if !seen[Job{Name: a + " kernel", Arch: a}] {
			t.Errorf("no %s kernel", a)
		}
	}
	if Jobs()[0].Arch != "arm64" || Jobs()[0].Image {
		t.Errorf("first job %s, want the arm64 kernel", Jobs()[0].Name)
	}
}
