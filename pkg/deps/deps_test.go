package deps

import (
	"context"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
)

func TestKernelBuildPackages(t *testing.T) {
	x, _ := arch.Lookup("x86_64")
	a, _ := arch.Lookup("arm64")
	xp := strings.Join(KernelBuild(x, true, true), " ")
	if !strings.Contains(xp, "linux-source-6.1") || !strings.Contains(xp, "libelf-dev") {
		t.Errorf("x86_64 packages %s", xp)
	}
	if ap := strings.Join(KernelBuild(a, false, false), " "); !strings.Contains(ap, "gcc-aarch64-linux-gnu") || strings.Contains(ap, "linux-source") {
		t.Errorf("arm64 packages %s", ap)
	}
	all := All()
	for _, want := range []string{"qemu-system-x86", "qemu-system-arm", "qemu-system-misc", "qemu-efi-aarch64", "pxelinux", "gcc-riscv64-linux-gnu"} {
		found := false
		for _, p := range all {
			found = found || p == want
		}
		if !found {
			t.Errorf("All() lacks %s", want)
		}
	}
}

func TestUnique(t *testing.T) {
	if got := strings.Join(Unique([]string{"b", "a", "b", "", "c"}), ","); got != "a,b,c" {
		t.Errorf("Unique = %s", got)
	}
}

func TestMissingAgainstDpkg(t *testing.T) {
	// dpkg is Essential: every Debian machine, and so the unit suite, has it
	testutil.NeedBaseTool(t, "dpkg-query", "dpkg")
	missing, err := Missing(context.Background(), []string{"dpkg", "no-such-package-diskless-test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 1 || missing[0] != "no-such-package-diskless-test" {
		t.Errorf("Missing = %v", missing)
	}
}

func TestLookToolNamesPackage(t *testing.T) {
	_, err := LookTool("no-such-tool-diskless", "some-package")
	if err == nil || !strings.Contains(err.Error(), "some-package") || !strings.Contains(err.Error(), "apt-get install") {
		t.Errorf("LookTool error %v", err)
	}
}
