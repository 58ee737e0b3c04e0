// Package debkernel fetches Debian's cloud kernel image (a kernel this
// project did not build) for tests, through internal/debpkg: the package
// the linux-image-cloud-amd64 metapackage depends on, unpacked into the
// cache. It never installs anything.
package debkernel

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"

	"github.com/diskless/diskless/internal/debpkg"
)

// Meta is the metapackage that names the current cloud kernel.
const Meta = "linux-image-cloud-amd64"

// CloudAMD64 returns the path of the cloud kernel's vmlinuz.
func CloudAMD64(cacheDir string) (string, error) {
	out, err := exec.Command("apt-cache", "depends", Meta).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w (run apt-get update)", Meta, err)
	}
	m := regexp.MustCompile(`Depends: (linux-image-[0-9][^\s]*-cloud-amd64)`).FindStringSubmatch(string(out))
	if m == nil {
		return "", fmt.Errorf("%s depends on no linux-image-*-cloud-amd64:\n%s", Meta, out)
	}
	root, err := debpkg.Extract(m[1], cacheDir)
	if err != nil {
		return "", err
	}
	found, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(found) != 1 {
		return "", fmt.Errorf("%s has %d boot/vmlinuz-* files", m[1], len(found))
	}
	return found[0], nil
}
