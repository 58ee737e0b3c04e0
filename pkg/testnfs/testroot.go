package testnfs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/qemu"
	"github.com/diskless/diskless/pkg/testroot"
)

// TestExport is the export the test root is served as: the HOWTO's
// per-slave root /diskless/<ip> of slirp's first guest.
const TestExport = "/diskless/" + qemu.GuestIP

// ServeTestRoot builds the tiny test root for a's GOARCH under dir and
// serves it over NFS as TestExport.
func ServeTestRoot(ctx context.Context, a arch.Arch, dir string) (*Server, error) {
	root := TestRootDir(a, dir)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	if err := testroot.Build(ctx, root, a.GOARCH); err != nil {
		return nil, err
	}
	return Start(root, TestExport)
}

// TestRootDir is where ServeTestRoot builds a's root under dir.
func TestRootDir(a arch.Arch, dir string) string { return filepath.Join(dir, "root-"+a.Name) }

// NFSRootArgs are the kernel arguments that mount this server's export as
// the root of a slirp guest through the kernel's own IP autoconfiguration.
func (s *Server) NFSRootArgs() string {
	return fmt.Sprintf("ip=dhcp root=/dev/nfs nfsroot=%s:%s,%s rw", qemu.HostIP, s.Export, s.GuestOptions())
}

// CheckNFSRoot checks the console of a boot that reached the test root: the
// root's /proc/mounts line is NFS from the host and this export, and the
// root was writable.
func (s *Server) CheckNFSRoot(console string) error {
	var line string
	for _, l := range strings.Split(console, "\n") {
		if i := strings.Index(l, testroot.RootLine); i >= 0 {
			line = strings.TrimSpace(l[i+len(testroot.RootLine):])
		}
	}
	if line == "" {
		return fmt.Errorf("the test init printed no root mount line")
	}
	f := strings.Fields(line)
	want := qemu.HostIP + ":" + s.Export
	if len(f) < 3 || !strings.HasPrefix(f[2], "nfs") || f[0] != want {
		return fmt.Errorf("root is %q, want an nfs mount of %s", line, want)
	}
	if !strings.Contains(console, "diskless-testinit: write ok") {
		return fmt.Errorf("the NFS root was not writable")
	}
	return nil
}
