package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/qemu/testroot"
)

// GuestIP is the address slirp's DHCP server gives the first guest, and
// HostIP the address the guest reaches the host's loopback at.
const (
	GuestIP = "10.0.2.15"
	HostIP  = "10.0.2.2"
)

// TestExport is the export the test root is served as: the HOWTO's
// per-slave root /diskless/<ip>.
const TestExport = "/diskless/" + GuestIP

// ServeTestRoot builds the tiny test root for a's GOARCH under dir and
// serves it over NFS as TestExport.
func ServeTestRoot(ctx context.Context, a arch.Arch, dir string) (*NFSServer, error) {
	root := filepath.Join(dir, "root-"+a.Name)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	if err := testroot.Build(ctx, root, a.GOARCH); err != nil {
		return nil, err
	}
	return StartNFS(root, TestExport)
}

// NFSRootArgs are the kernel arguments that mount this server's export as
// the root through the kernel's own IP autoconfiguration.
func (s *NFSServer) NFSRootArgs() string {
	return fmt.Sprintf("ip=dhcp root=/dev/nfs nfsroot=%s:%s,%s rw", HostIP, s.Export, s.GuestOptions())
}

// RootMarkers are what a boot to the test root waits for.
var RootMarkers = []string{testroot.Marker}

// CheckNFSRoot checks the console of a boot that reached the test root: the
// root's /proc/mounts line is NFS from HostIP and this export, and the root
// was writable.
func (s *NFSServer) CheckNFSRoot(console string) error {
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
	want := HostIP + ":" + s.Export
	if len(f) < 3 || !strings.HasPrefix(f[2], "nfs") || f[0] != want {
		return fmt.Errorf("root is %q, want an nfs mount of %s", line, want)
	}
	if !strings.Contains(console, "diskless-testinit: write ok") {
		return fmt.Errorf("the NFS root was not writable")
	}
	return nil
}
