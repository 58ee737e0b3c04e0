package testroot

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/testutil"
)

// The root has a sticky, world-writable /tmp and a static init for the
// guest's arch.
func TestBuildWritesStickyTmpAndInit(t *testing.T) {
	testutil.NeedBaseTool(t, "go", "golang-go")
	dir := t.TempDir()
	if err := Build(context.Background(), dir, "arm64"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSticky == 0 || st.Mode().Perm() != 0o777 {
		t.Errorf("tmp mode %v, want drwxrwxrwt", st.Mode())
	}
	f, err := elf.Open(filepath.Join(dir, "sbin", "init"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("init is for %v, want EM_AARCH64", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("init is dynamically linked")
		}
	}
}

// A binary built with -trimpath has no source paths to find testinit by:
// Build must still work (this test runs the build test that way).
func TestBuildFromTrimpathBinary(t *testing.T) {
	testutil.Slow(t)
	c := exec.Command("go", "test", "-trimpath", "-count=1", "-v", "-run", "^TestBuildWritesStickyTmpAndInit$", ".")
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("go test -trimpath: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestBuildWritesStickyTmpAndInit") {
		t.Fatalf("the build test did not pass under -trimpath:\n%s", out)
	}
}

// What testinit prints is the marker the boot judgement waits for.
func TestInitPrintsTheMarker(t *testing.T) {
	if !strings.Contains(string(initSource), `"diskless-testinit: DISKLESS-ROOT-OK\n"`) || Marker != "diskless-testinit: DISKLESS-ROOT-OK" {
		t.Errorf("testinit's marker and boot.TestInitMarker (%q) differ", Marker)
	}
}
