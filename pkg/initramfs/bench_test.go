package initramfs

import (
	"bytes"
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

func benchArch(b *testing.B) arch.Arch {
	a, _ := arch.Lookup("x86_64")
	testutil.NeedBaseTool(b, "go", "golang-go")
	return a
}

// BenchmarkCold: the Go build of the whole image (fresh cache).
func BenchmarkCold(b *testing.B) {
	a := benchArch(b)
	for i := 0; i < b.N; i++ {
		res, err := Build(context.Background(), Options{Arch: a, ProjectDir: "../..", OutDir: b.TempDir(), CacheDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(res.Size)/1e6, "zstd-MB")
		b.ReportMetric(float64(res.RawSize)/1e6, "cpio-MB")
	}
}

// BenchmarkNoChange: a rebuild with no input changed (Go build skipped).
func BenchmarkNoChange(b *testing.B) {
	a := benchArch(b)
	out, cache := b.TempDir(), b.TempDir()
	if _, err := Build(context.Background(), Options{Arch: a, ProjectDir: "../..", OutDir: out, CacheDir: cache}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := Build(context.Background(), Options{Arch: a, ProjectDir: "../..", OutDir: out, CacheDir: cache})
		if err != nil || !res.Skipped {
			b.Fatalf("rebuild not skipped: %v", err)
		}
	}
}

// BenchmarkCompress: size and time per compressor on the real cpio.
func BenchmarkCompress(b *testing.B) {
	a := benchArch(b)
	// the project's cache (XDG_CACHE_HOME/diskless): the Go build is not
	// what this measures
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = b.TempDir()
	}
	res, err := Build(context.Background(), Options{Arch: a, ProjectDir: "../..", OutDir: b.TempDir(), CacheDir: filepath.Join(cache, "diskless"), Compress: None})
	if err != nil {
		b.Fatal(err)
	}
	raw, _ := os.ReadFile(res.Path)
	for _, c := range []Compressor{Zstd, XZ, Gzip} {
		b.Run(string(c), func(b *testing.B) {
			var n int
			for i := 0; i < b.N; i++ {
				var buf bytes.Buffer
				if err := Compress(&buf, bytes.NewReader(raw), c); err != nil {
					b.Fatal(err)
				}
				n = buf.Len()
			}
			b.ReportMetric(float64(n)/1e6, "MB")
			b.ReportMetric(float64(len(raw))/1e6, "cpio-MB")
		})
	}
}

// BenchmarkURootCLI: the u-root command-line tool building the same command
// set (installed with go install into a temp GOBIN), and its output
// compressed by the zstd and xz tools at the levels users would pick.
func BenchmarkURootCLI(b *testing.B) {
	a := benchArch(b)
	gobin := b.TempDir()
	inst := exec.Command("go", "install", "github.com/u-root/u-root@v0.16.0")
	inst.Env = append(os.Environ(), "GOBIN="+gobin)
	if out, err := inst.CombinedOutput(); err != nil {
		testutil.SkipOrFail(b, fmt.Sprintf("go install u-root@v0.16.0 (needs the network or a module cache that has it): %v\n%s", err, out))
	}
	cmds, err := ReadCommands("../../initramfs/commands.txt", "github.com/diskless/diskless")
	if err != nil {
		b.Fatal(err)
	}
	var pkgs []string
	for _, c := range cmds {
		pkgs = append(pkgs, c.Pkg)
	}
	out := filepath.Join(b.TempDir(), "u-root.cpio")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := exec.Command(filepath.Join(gobin, "u-root"), append([]string{"-o", out, "-defaultsh", "gosh", "-initcmd", "dlinit", "-go-build-tags", strings.Join(BuildTags, ",")}, pkgs...)...)
		c.Dir = "../.."
		c.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+a.GOARCH, "CGO_ENABLED=0")
		if o, err := c.CombinedOutput(); err != nil {
			b.Fatalf("u-root: %v\n%s", err, o)
		}
	}
	b.StopTimer()
	st, _ := os.Stat(out)
	b.ReportMetric(float64(st.Size())/1e6, "cpio-MB")
	for _, tool := range [][]string{{"zstd", "-19", "-q", "-f", "-o", out + ".zst", out}, {"xz", "--check=crc32", "-9", "-k", "-f", out}} {
		if _, err := exec.LookPath(tool[0]); err != nil {
			continue
		}
		start := time.Now()
		if o, err := exec.Command(tool[0], tool[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v\n%s", tool[0], err, o)
		}
		ext := map[string]string{"zstd": ".zst", "xz": ".xz"}[tool[0]]
		st, _ := os.Stat(out + ext)
		b.ReportMetric(float64(st.Size())/1e6, tool[0]+"-MB")
		b.ReportMetric(time.Since(start).Seconds(), tool[0]+"-s")
	}
}
