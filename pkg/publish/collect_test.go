package publish

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskless/diskless/pkg/arch"
)

// Collect takes the arches asked for, whatever else lies in artifacts/,
// and never the per-node files nodes:render leaves there.
func TestCollectOnlyTheArchesAsked(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"arm64", "riscv64"} {
		a, _ := arch.Lookup(name)
		os.MkdirAll(filepath.Join(dir, name), 0o755)
		data := []byte("kernel " + name)
		os.WriteFile(filepath.Join(dir, name, a.ArtifactName()), data, 0o644)
		meta, _ := json.Marshal(map[string]any{"artifacts": []map[string]string{{"name": a.ArtifactName(), "sha256": sum(data)}}})
		os.WriteFile(filepath.Join(dir, name, "build_"+name+".json"), meta, 0o644)
	}
	os.MkdirAll(filepath.Join(dir, "master", "pxelinux.cfg"), 0o755)
	os.WriteFile(filepath.Join(dir, "master", "pxelinux.cfg", "01-00-02-a5-04-3b-66"), []byte("DEFAULT stale\n"), 0o644)
	arm, _ := arch.Lookup("arm64")
	names := func(files []File) string {
		var n []string
		for _, f := range files {
			n = append(n, f.Name)
		}
		return strings.Join(n, " ")
	}
	files, err := Collect(dir, boot, arm)
	if err != nil || names(files) != "Image_arm64" {
		t.Errorf("arm64 only: %q %v", names(files), err)
	}
	files, err = Collect(dir, boot)
	if err != nil || names(files) != "Image_arm64 Image_riscv64" {
		t.Errorf("all: %q %v", names(files), err)
	}
	x, _ := arch.Lookup("x86_64")
	if _, err := Collect(dir, boot, x); err == nil || !strings.Contains(err.Error(), "nothing to publish for x86_64") {
		t.Errorf("x86_64 not built: %v", err)
	}
}
