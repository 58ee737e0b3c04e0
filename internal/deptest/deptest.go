// Package deptest checks, in tests, that every program a stage runs is
// installed by that stage's Debian packages, with dpkg as the oracle: the
// package that owns the program on this machine must be the one the
// project names, and that package must be in the stage's list.
package deptest

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/deps"
)

// Owner is the Debian package that owns the program at path (dpkg -S),
// trying the path without /usr for merged-/usr systems whose dpkg
// database says /bin.
func Owner(path string) (string, error) {
	var err error
	for _, p := range []string{path, strings.TrimPrefix(path, "/usr")} {
		var out []byte
		if out, err = exec.Command("dpkg", "-S", p).Output(); err == nil {
			pkg, _, _ := strings.Cut(strings.TrimSpace(string(out)), ":")
			return pkg, nil
		}
	}
	return "", err
}

// CheckPrograms checks each program: owned by its declared package, which
// is one of stage's packages (an integration test: the programs must be
// installed, as CI installs them; missing ones fail in CI and are noted
// locally).
func CheckPrograms(t *testing.T, stage string, programs []deps.Program, packages []string) {
	t.Helper()
	testutil.Integration(t, "the installed programs of every stage")
	testutil.NeedBaseTool(t, "dpkg", "dpkg")
	for _, p := range programs {
		if !slices.Contains(packages, p.Package) {
			t.Errorf("%s: runs %s (package %s), which its packages do not install: %v", stage, p.Name, p.Package, packages)
			continue
		}
		path, err := exec.LookPath(p.Name)
		if err != nil {
			if testutil.InCI() {
				t.Errorf("%s: %s not installed although CI installs %s", stage, p.Name, p.Package)
			} else {
				t.Logf("%s: %s not installed here (package %s): its owner is not checked", stage, p.Name, p.Package)
			}
			continue
		}
		owner, err := Owner(path)
		if err != nil {
			t.Errorf("%s: dpkg -S %s: %v (installed by hand?)", stage, path, err)
			continue
		}
		if owner != p.Package {
			t.Errorf("%s: %s is %s from package %s, but the project says %s", stage, p.Name, filepath.Clean(path), owner, p.Package)
		}
	}
}
