package elfboot

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/kbuild"
	"github.com/diskless/diskless/pkg/qemu"
)

// slaveKernel builds (or finds up to date in the shared cache) the
// project's slave kernel for name and returns its output directory.
func slaveKernel(t *testing.T, name string) (arch.Arch, string) {
	t.Helper()
	testutil.Slow(t)
	a, err := arch.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	cc, pkg := a.Compiler()
	testutil.NeedTool(t, "make", "make")
	testutil.NeedTool(t, cc, pkg)
	testutil.NeedTool(t, a.QEMU, a.QEMUPackage)
	o, err := kbuild.OptionsFromEnv(func(k string) string {
		if k == "KERNEL_SRC" {
			return os.Getenv(k)
		}
		return ""
	}, "../..", a, kbuild.Slave)
	if err != nil {
		t.Fatal(err)
	}
	o.OutDir = t.TempDir()
	o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if _, err := kbuild.Build(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return a, o.OutDir
}

// bootVmlinuz boots vmlinuz_<arch> (x86) to the test NFS root, either with
// QEMU -kernel or through QEMU's iPXE ROM over slirp TFTP. The NFS
// arguments are embedded in the image, so the iPXE path gets no command
// line from the loader at all.
func bootVmlinuz(t *testing.T, name string, viaIPXE bool) {
	a, dir := slaveKernel(t, name)
	ctx := context.Background()
	srv, err := qemu.ServeTestRoot(ctx, a, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tftp := t.TempDir()
	img := filepath.Join(tftp, "vmlinuz_"+a.Name)
	size, err := WriteFile(filepath.Join(dir, a.ArtifactName()), "", img, "console="+a.Console+" "+srv.NFSRootArgs()+" panic=-1")
	if err != nil {
		t.Fatal(err)
	}
	m := &qemu.Machine{Arch: a, LogPath: filepath.Join(t.TempDir(), "console.log")}
	if viaIPXE {
		m.NetBoot, m.TFTPRoot, m.BootFile = true, tftp, filepath.Base(img)
	} else {
		m.Kernel, m.Append = img, "diskless.loader=qemu"
	}
	s, err := qemu.Start(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if _, err := s.Expect([]string{"IP-Config: Complete"}, nil, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	res, err := s.Expect(qemu.RootMarkers, nil, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.CheckNFSRoot(res.Console); err != nil {
		t.Error(err)
	}
	if !viaIPXE && !strings.Contains(res.Console, "diskless.loader=qemu") {
		t.Error("the loader's command line was not appended")
	}
	t.Logf("vmlinuz_%s (%d bytes) to the NFS root in %s", a.Name, size, res.Elapsed.Round(10*time.Millisecond))
}

func TestIntegrationVmlinuzX86_64Direct(t *testing.T) { bootVmlinuz(t, "x86_64", false) }
func TestIntegrationVmlinuzX86_64IPXE(t *testing.T)   { bootVmlinuz(t, "x86_64", true) }
func TestIntegrationVmlinuzI386Direct(t *testing.T)   { bootVmlinuz(t, "i386", false) }
func TestIntegrationVmlinuzI386IPXE(t *testing.T)     { bootVmlinuz(t, "i386", true) }
