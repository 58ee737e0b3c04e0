package kbuild

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/diskless/diskless/pkg/arch"
)

func benchOptions(b *testing.B, name string) Options {
	b.Helper()
	a, err := arch.Lookup(name)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := exec.LookPath("make"); err != nil {
		b.Skip("make not found (Debian package make)")
	}
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
