package elfboot_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/testenv"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/elfboot"
	"github.com/diskless/diskless/pkg/kbuild"
	"github.com/diskless/diskless/pkg/pipeline"
	"github.com/diskless/diskless/pkg/qemu"
)

// vmlinuz_arm64 is the EFI zboot kernel: under real UEFI firmware it boots
// with its built-in command line (CONFIG_CMDLINE from the settings) when the
// loader passes none (the smoke suite passes the test server's), and runs
// the fallback initramfs built into it (no loader hands it one).
func TestIntegrationVmlinuzArm64BuiltinCmdline(t *testing.T) {
	s := testenv.Settings(t, nil)
	a := testenv.Arch(t, "arm64")
	testutil.NeedFile(t, qemu.AAVMFCode, "qemu-efi-aarch64")
	ctx := context.Background()
	o := pipeline.Options{Arch: a, Settings: s, Log: testenv.Quiet()}
	if _, _, err := pipeline.Kernel(ctx, o, kbuild.Slave); err != nil {
		t.Fatal(err)
	}
	img, err := elfboot.Artifact(a, filepath.Join(s.Artifacts, a.Name), "", "")
	if err != nil {
		t.Fatal(err)
	}
	m := &qemu.Machine{Arch: a, Kernel: img, LogPath: filepath.Join(t.TempDir(), "console.log")}
	if _, err := m.UseFirmware(qemu.AAVMF, qemu.FirmwareOptions{}); err != nil {
		t.Fatal(err)
	}
	dlinit := "diskless-fallback: dlinit: looking for this node's own command line (a stateless node), else the NFS root"
	res, err := qemu.Boot(ctx, m, []string{dlinit}, nil, 120*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"EFI stub: Booting Linux Kernel", "Kernel command line: " + s.Boot.Cmdline(a), dlinit} {
		if !strings.Contains(res.Console, want) {
			t.Errorf("console lacks %q", want)
		}
	}
}
