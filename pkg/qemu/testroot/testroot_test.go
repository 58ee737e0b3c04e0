package testroot

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/diskless/diskless/internal/testutil"
)

// The root has a sticky, world-writable /tmp and a static init for the
// guest's arch.
func TestBuildWritesStickyTmpAndInit(t *testing.T) {
	testutil.NeedTool(t, "go", "golang-go")
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
// Build must still work (this test runs itself that way once).
func TestBuildFromTrimpathBinary(t *testing.T) {
	testutil.Slow(t)
	if os.Getenv("DISKLESS_TESTROOT_INNER") == "1" {
		t.Skip("inner run")
	}
	c := exec.Command("go", "test", "-trimpath", "-count=1", "-run", "^TestBuildWritesStickyTmpAndInit$", ".")
	c.Env = append(os.Environ(), "DISKLESS_TESTROOT_INNER=1")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("go test -trimpath: %v\n%s", err, out)
	}
}
