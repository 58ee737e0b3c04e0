// Package debpkg unpacks a Debian package's files into the project cache
// without installing it (apt-get download + dpkg-deb -x): the lab runs the
// master's daemons from it (isc-dhcp-server's dhcpd, tftpd-hpa, nginx,
// radvd: installed, their packages would start system services and write
// into /etc), and tests take files of packages that are not installed
// from it (Debian's cloud kernel, busybox-static).
package debpkg

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Extract returns a directory holding pkg's files (cacheDir/debian/<pkg>/root),
// downloading and unpacking it on first use.
func Extract(pkg, cacheDir string) (string, error) {
	dir := filepath.Join(cacheDir, "debian", pkg)
	root := filepath.Join(dir, "root")
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return root, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	c := exec.Command("apt-get", "download", pkg)
	c.Dir = dir
	if out, err := c.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s: %w\n%s", pkg, err, strings.TrimSpace(string(out)))
	}
	debs, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(debs) == 0 {
		return "", fmt.Errorf("apt-get download %s left no .deb in %s", pkg, dir)
	}
	os.RemoveAll(root)
	if out, err := exec.Command("dpkg-deb", "-x", debs[len(debs)-1], root).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %w\n%s", debs[0], err, out)
	}
	return root, os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o644)
}
