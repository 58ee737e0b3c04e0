package nodeos

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/testenv"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/image"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/pipeline"
)

// diskUsage is what du reports: allocated blocks, hard links counted once.
func diskUsage(dir string) int64 {
	var total int64
	seen := map[uint64]bool{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		st, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		if s, ok := st.Sys().(*syscall.Stat_t); ok && !seen[s.Ino] {
			seen[s.Ino] = true
			total += s.Blocks * 512
		}
		return nil
	})
	return total
}

// BenchmarkImage: the Debian 12 image's build with nothing changed, its
// size, and with BENCH_COLD=1 a cold build (debootstrap) in a new cache.
func BenchmarkImage(b *testing.B) {
	needImage(b)
	s := testenv.Settings(b, nil)
	a := testenv.Arch(b, "x86_64")
	var coldSeconds float64
	if os.Getenv("BENCH_COLD") == "1" {
		cold := *s
		cold.CacheDir = b.TempDir()
		start := time.Now()
		if _, err := pipeline.BuildImage(context.Background(), &cold, a, testenv.Quiet()); err != nil {
			b.Fatal(err)
		}
		coldSeconds = time.Since(start).Seconds()
	}
	res, err := pipeline.BuildImage(context.Background(), s, a, testenv.Quiet())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := pipeline.BuildImage(context.Background(), s, a, testenv.Quiet())
		if err != nil || !r.Cached {
			b.Fatalf("no-op image build did work: %v", err)
		}
	}
	b.StopTimer()
	if coldSeconds > 0 { // ResetTimer drops metrics reported before it
		b.ReportMetric(coldSeconds, "cold-s")
	}
	b.ReportMetric(float64(res.Manifest.Bytes)/1e6, "image-MB")
	b.ReportMetric(float64(len(res.Manifest.Packages)), "packages")
	b.ReportMetric(res.Manifest.Seconds, "last-build-s")
}

// BenchmarkTenthNode: provisioning ten nodes from the published image;
// reports the disk the tenth node's own root uses and the image's.
func BenchmarkTenthNode(b *testing.B) {
	needImage(b)
	s := testenv.Settings(b, nil)
	a := testenv.Arch(b, "x86_64")
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		tmp := b.TempDir()
		root := filepath.Join(tmp, "diskless")
		os.MkdirAll(root, 0o755)
		s.Root = root
		if _, _, err := pipeline.PublishImage(context.Background(), s, a, testenv.Quiet()); err != nil {
			b.Fatal(err)
		}
		text := fmt.Sprintf("[network]\nmaster = \"10.0.2.2\"\nsubnet = \"10.0.2.0/24\"\nroot = %q\nnfs_opts = \"vers=4,tcp\"\nimage = \"debian-12\"\n", root)
		for n := 1; n <= 10; n++ {
			text += fmt.Sprintf("\n[[node]]\nname = \"node%d\"\nmac = \"52:54:00:00:01:%02x\"\nip = \"10.0.2.%d\"\narch = \"x86_64\"\n", n, n, 100+n)
		}
		p := filepath.Join(tmp, "nodes.toml")
		os.WriteFile(p, []byte(text), 0o644)
		inv, err := nodes.Load(p)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := inv.Provision(root); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		live, _ := image.Live(root, "debian-12", "x86_64")
		b.ReportMetric(float64(diskUsage(filepath.Join(root, "10.0.2.110")))/1e6, "tenth-node-MB")
		b.ReportMetric(float64(diskUsage(live))/1e6, "image-MB")
	}
}

// BenchmarkDebianBoot: a Debian 12 node from power-on (QEMU, TCG) to
// systemd's multi-user target and to the first SSH command answered.
func BenchmarkDebianBoot(b *testing.B) {
	l := newMaster(b, "debian-12", "")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n, err := l.boot(b, "node-a", 2221)
		if err != nil {
			b.Fatal(err)
		}
		n.Stop()
		b.ReportMetric(n.MultiUser.Seconds(), "multi-user-s")
		b.ReportMetric(n.SSH.Seconds(), "ssh-s")
	}
}

// BenchmarkImageARM64: the Debian 12 image for arm64 through
// qemu-user-static and binfmt_misc (minutes): BENCH_ARM64=1.
func BenchmarkImageARM64(b *testing.B) {
	if os.Getenv("BENCH_ARM64") != "1" {
		b.Skip("builds the arm64 image under qemu-user-static: run with BENCH_ARM64=1")
	}
	needImage(b)
	s := testenv.Settings(b, nil)
	a, err := arch.Lookup("arm64")
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		res, err := pipeline.BuildImage(context.Background(), s, a, testenv.Quiet())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.Manifest.Seconds, "build-s")
		b.ReportMetric(float64(res.Manifest.Bytes)/1e6, "image-MB")
		b.ReportMetric(float64(len(res.Manifest.Packages)), "packages")
	}
}

// needImage checks what building an image needs: root, debootstrap.
func needImage(b *testing.B) {
	testutil.Slow(b)
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(b, "building an image needs root (debootstrap)")
	}
	testutil.NeedTool(b, "debootstrap", "debootstrap")
}
