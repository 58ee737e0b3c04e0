// Package debkernel fetches Debian's cloud kernel image (a kernel this
// project did not build) for tests: apt-get download of the package the
// linux-image-cloud-amd64 metapackage depends on, unpacked with dpkg-deb,
// cached under the project cache. It never installs anything.
package debkernel

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// Meta is the metapackage that names the current cloud kernel.
const Meta = "linux-image-cloud-amd64"

// CloudAMD64 returns the path of the cloud kernel's vmlinuz, downloading
// and unpacking it into cacheDir/debian once.
func CloudAMD64(cacheDir string) (string, error) {
	out, err := exec.Command("apt-cache", "depends", Meta).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w (run apt-get update)", Meta, err)
	}
	m := regexp.MustCompile(`Depends: (linux-image-[0-9][^\s]*-cloud-amd64)`).FindStringSubmatch(string(out))
	if m == nil {
		return "", fmt.Errorf("%s depends on no linux-image-*-cloud-amd64:\n%s", Meta, out)
	}
	pkg := m[1]
	dir := filepath.Join(cacheDir, "debian", pkg)
	if found, _ := filepath.Glob(filepath.Join(dir, "root", "boot", "vmlinuz-*")); len(found) == 1 {
		return found[0], nil
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
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], filepath.Join(dir, "root")).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %w\n%s", debs[0], err, out)
	}
	found, _ := filepath.Glob(filepath.Join(dir, "root", "boot", "vmlinuz-*"))
	if len(found) != 1 {
		return "", fmt.Errorf("%s has %d boot/vmlinuz-* files", debs[0], len(found))
	}
	return found[0], nil
}
