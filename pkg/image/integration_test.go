package image

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
)

// A package that does not exist stops debootstrap; the error names the
// package and the definition's file and line, and no tree is left.
func TestIntegrationUnknownPackage(t *testing.T) {
	testutil.Slow(t)
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "debootstrap needs root")
	}
	testutil.NeedTool(t, "debootstrap", "debootstrap")
	mirror := HostMirror()
	if mirror == "" {
		testutil.SkipOrFail(t, "no Debian mirror in /etc/apt")
	}
	project := t.TempDir()
	os.MkdirAll(filepath.Join(project, DefinitionsDir), 0o755)
	def := filepath.Join(project, DefinitionsDir, "broken.packages")
	os.WriteFile(def, []byte("suite: bookworm\nprocps\nno-such-package-diskless\n"), 0o644)
	x86, _ := arch.Lookup("x86_64")
	cache := t.TempDir()
	_, err := Build(context.Background(), Options{Name: "broken", Arch: x86, ProjectDir: project, CacheDir: cache, Mirror: mirror})
	want := "no such package in bookworm: no-such-package-diskless (" + def + ":3)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
	for _, d := range []string{"tree", "tree.new"} {
		if _, err := os.Stat(filepath.Join(CacheDir(cache, "broken", x86), d)); err == nil {
			t.Errorf("%s left behind", d)
		}
	}
}
