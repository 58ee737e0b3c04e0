package kbuild

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/testutil"
)

// A fresh machine: the default kernel source is extracted into a new, empty
// cache (XDG_CACHE_HOME) and compiled through ccache with an empty
// CCACHE_DIR; then the same build again hits the cache it just filled.
// (A partial build: a few objects, enough to run Kbuild, gcc and ccache.)
func TestIntegrationColdCaches(t *testing.T) {
	a := mustArch(t, "x86_64")
	needKernelTools(t, a)
	ccache := testutil.NeedTool(t, "ccache", "ccache")
	needDefaultSource(t) // extracted anew, whatever KERNEL_SRC says
	cacheDir := filepath.Join(t.TempDir(), "xdg", "diskless")
	ccacheDir := t.TempDir()
	t.Setenv("CCACHE_DIR", ccacheDir)
	o := realOptions(t, a, Slave, false)
	o.KernelSrc, o.CacheDir = "", cacheDir
	o.Targets = distccObjects
	res, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Ccache {
		t.Fatal("ccache was not used")
	}
	if m, _ := filepath.Glob(filepath.Join(cacheDir, "src", "*", "*", "Makefile")); len(m) == 0 {
		t.Errorf("the source was not extracted into the new cache %s", cacheDir)
	}
	for _, obj := range distccObjects {
		if _, err := os.Stat(filepath.Join(res.BuildDir, obj)); err != nil {
			t.Errorf("%s not built: %v", obj, err)
		}
		os.Remove(filepath.Join(res.BuildDir, obj))
	}
	// rebuilt: every object now comes from the cache the first build filled
	if _, err := Build(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ccache, "--print-stats").Output()
	if err != nil {
		t.Fatalf("ccache --print-stats: %v", err)
	}
	stats := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "\t"); ok {
			stats[k] = v
		}
	}
	if stats["direct_cache_hit"] == "0" && stats["preprocessed_cache_hit"] == "0" || stats["cache_miss"] == "0" {
		t.Errorf("ccache in %s: want misses on the first build and hits on the second: %v", ccacheDir, stats)
	}
}
