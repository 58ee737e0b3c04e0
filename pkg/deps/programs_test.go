package deps_test

import (
	"testing"

	"github.com/diskless/diskless/internal/deptest"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/deps"
)

// Each program the boot tests, the inventory checks and distcc run comes
// from a package their stage installs (dpkg -S as the oracle).
func TestStageProgramsComeFromStagePackages(t *testing.T) {
	for _, a := range arch.All() {
		deptest.CheckPrograms(t, "boot "+a.Name, deps.BootPrograms(a), deps.Boot(a))
	}
	deptest.CheckPrograms(t, "nodes", deps.NodesPrograms(), deps.Nodes())
	deptest.CheckPrograms(t, "distcc", deps.DistccPrograms(), deps.Distcc())
	deptest.CheckPrograms(t, "sign", deps.SignPrograms(), deps.Sign())
	x86, _ := arch.Lookup("x86_64")
	deptest.CheckPrograms(t, "image", deps.ImagePrograms(), deps.Image(x86, "amd64"))
	deptest.CheckPrograms(t, "node OS", deps.NodeOSPrograms(), deps.NodeOS())
	deptest.CheckPrograms(t, "lab", deps.LabPrograms(), deps.Lab())
	deptest.CheckPrograms(t, "workflow lint", deps.WorkflowPrograms(), deps.All())
}
