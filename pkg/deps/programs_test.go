package deps_test

import (
	"slices"
	"testing"

	"github.com/diskless/diskless/internal/deptest"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/deps"
)

// stage is a stage's programs and the packages it installs.
type stage struct {
	name     string
	programs []deps.Program
	packages []string
}

func stages() []stage {
	var all []stage
	for _, a := range arch.All() {
		all = append(all, stage{"boot " + a.Name, deps.BootPrograms(a), deps.Boot(a)})
	}
	x86, _ := arch.Lookup("x86_64")
	return append(all,
		stage{"nodes", deps.NodesPrograms(), deps.Nodes()},
		stage{"distcc", deps.DistccPrograms(), deps.Distcc()},
		stage{"sign", deps.SignPrograms(), deps.Sign()},
		stage{"image", deps.ImagePrograms(), deps.Image(x86, "amd64")},
		stage{"node OS", deps.NodeOSPrograms(), deps.NodeOS()},
		stage{"lab", deps.LabPrograms(), deps.Lab()},
		stage{"workflow lint", deps.WorkflowPrograms(), deps.All()},
	)
}

// Each program a stage runs is declared with a package the stage installs
// (the declarations alone; the next test asks dpkg).
func TestStageProgramsAreInStagePackages(t *testing.T) {
	for _, s := range stages() {
		if len(s.programs) == 0 {
			t.Errorf("%s: no programs", s.name)
		}
		for _, p := range s.programs {
			if p.Name == "" || p.Package == "" {
				t.Errorf("%s: program %+v", s.name, p)
			}
			if !slices.Contains(s.packages, p.Package) {
				t.Errorf("%s: runs %s (package %s), which its packages do not install: %v", s.name, p.Name, p.Package, s.packages)
			}
		}
	}
}

// Each program the boot tests, the inventory checks and distcc run comes
// from a package their stage installs (dpkg -S as the oracle): every
// stage's programs must be installed, as in the integration stage.
func TestStageProgramsComeFromStagePackages(t *testing.T) {
	testutil.Integration(t, "every stage's programs installed (dpkg -S says which package owns each)")
	for _, s := range stages() {
		deptest.CheckPrograms(t, s.name, s.programs, s.packages)
	}
}
