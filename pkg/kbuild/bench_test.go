package kbuild

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
)

func benchOptions(b *testing.B, name string) Options {
	b.Helper()
	a, err := arch.Lookup(name)
	if err != nil {
		b.Fatal(err)
	}
	testutil.NeedTool(b, "make", "make")
	o := testOptions("../..", a, Slave)
	o.OutDir, o.Log = b.TempDir(), discard()
	return o
}

// BenchmarkSlaveNoOp: build:slave with nothing changed (make skipped) next
// to the kernel's own no-op make on the same tree; reports the ratio and
// the bzImage size.
func BenchmarkSlaveNoOp(b *testing.B) {
	o := benchOptions(b, "x86_64")
	res, err := Build(context.Background(), o) // builds once if needed
	if err != nil {
		b.Fatal(err)
	}
	p, err := Prepare(context.Background(), o)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	cmd := exec.Command("make", append(p.makeArgs(o.Arch.ImageTarget), "-j2", "-s")...)
	cmd.Env = p.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("no-op make: %v\n%s", err, out)
	}
	makeNoOp := time.Since(start)
	// make's no-op may have touched nothing; the next Build must still skip
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := Build(context.Background(), o)
		if err != nil || !r.MakeSkipped {
			b.Fatalf("no-op build ran make (err %v)", err)
		}
	}
	b.StopTimer()
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(makeNoOp.Seconds(), "make-noop-s")
	b.ReportMetric(per.Seconds()/makeNoOp.Seconds(), "ratio")
	b.ReportMetric(float64(res.Artifacts[0].Size)/1e6, "bzImage-MB")
	b.ReportMetric(res.Duration, "last-build-s")
}

// BenchmarkSlaveCold builds the x86_64 slave from scratch (fresh build
// tree, ccache off): minutes. Run with BENCH_COLD=1.
func BenchmarkSlaveCold(b *testing.B) {
	if os.Getenv("BENCH_COLD") != "1" {
		b.Skip("a cold kernel build takes minutes: run with BENCH_COLD=1")
	}
	o := benchOptions(b, "x86_64")
	src, err := ResolveSource(context.Background(), o.KernelSrc, testCacheDir())
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		o.KernelSrc, o.CacheDir, o.NoCcache = src.Dir, b.TempDir(), true
		res, err := Build(context.Background(), o)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(res.Artifacts[0].Size)/1e6, "bzImage-MB")
		os.RemoveAll(filepath.Join(o.CacheDir, "build"))
	}
}

// BenchmarkSlaveOptionGroups measures what each "# --- OS:" group of
// kernels/slave.config costs in bzImage bytes: the x86_64 slave is built
// with no group, then adding one group at a time in file order (in a
// scratch build tree, through ccache), so a group may use the ones above
// it (IPC_NS needs SYSVIPC). Tens of minutes: run with BENCH_GROUPS=1.
func BenchmarkSlaveOptionGroups(b *testing.B) {
	if os.Getenv("BENCH_GROUPS") != "1" {
		b.Skip("builds the slave kernel once per option group: run with BENCH_GROUPS=1")
	}
	o := benchOptions(b, "x86_64")
	groups, err := osGroups("../../kernels/slave.config")
	if err != nil || len(groups) == 0 {
		b.Fatalf("no OS groups in slave.config: %v", err)
	}
	src, err := ResolveSource(context.Background(), o.KernelSrc, testCacheDir())
	if err != nil {
		b.Fatal(err)
	}
	o.KernelSrc, o.CacheDir = src.Dir, b.TempDir()
	var sizes []int64
	for k := 0; k <= len(groups); k++ {
		var off strings.Builder
		for _, g := range groups[k:] {
			for _, opt := range g.options {
				fmt.Fprintf(&off, "# CONFIG_%s is not set\n", opt)
			}
		}
		extra := filepath.Join(b.TempDir(), "off.config")
		os.WriteFile(extra, []byte(off.String()), 0o644)
		o.Extra = []string{extra}
		if k == len(groups) {
			o.Extra = nil
		}
		res, err := Build(context.Background(), o)
		if err != nil {
			b.Fatalf("with %d group(s): %v", k, err)
		}
		sizes = append(sizes, res.Artifacts[0].Size)
		fmt.Fprintf(os.Stderr, "slave with the first %d OS group(s): bzImage %d bytes\n", k, res.Artifacts[0].Size)
	}
	b.Logf("bzImage without the OS groups: %d bytes", sizes[0])
	for i, g := range groups {
		b.Logf("+ %-60s %+8d bytes -> %d", g.name, sizes[i+1]-sizes[i], sizes[i+1])
		b.ReportMetric(float64(sizes[i+1]-sizes[i]), fmt.Sprintf("group%d-bytes", i+1))
	}
	b.ReportMetric(float64(sizes[0]), "without-bytes")
	b.ReportMetric(float64(sizes[len(sizes)-1]), "bzImage-bytes")
}

type optionGroup struct {
	name    string
	options []string
}

// osGroups reads the "# --- OS: name" groups of a fragment and their
// options (to the next "# ---" header).
func osGroups(path string) ([]optionGroup, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []optionGroup
	in := false
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "# ---") {
			name, ok := strings.CutPrefix(l, "# --- OS: ")
			in = ok
			if ok {
				out = append(out, optionGroup{name: name})
			}
			continue
		}
		if in && strings.HasPrefix(l, "CONFIG_") {
			k, _, _ := strings.Cut(strings.TrimPrefix(l, "CONFIG_"), "=")
			out[len(out)-1].options = append(out[len(out)-1].options, k)
		}
	}
	return out, nil
}
