package kbuild

import (
	"os"
	"path/filepath"

	"github.com/diskless/diskless/pkg/arch"
)

// NewOptions returns the options of a role and arch in a project: the
// fragments in projectDir/kernels, the output in projectDir/artifacts/<arch>
// (or .../master), build trees and sources under cacheDir. Everything else
// keeps its documented default; pkg/settings fills it from the settings.
func NewOptions(projectDir, cacheDir string, a arch.Arch, role Role) Options {
	o := Options{
		Arch: a, Role: role,
		KernelsDir: filepath.Join(projectDir, "kernels"),
		CacheDir:   cacheDir,
		OutDir:     filepath.Join(projectDir, "artifacts", a.Name),
	}
	if role == Master {
		o.OutDir = filepath.Join(o.OutDir, "master")
	}
	return o
}

// CacheDir is the project's cache for a user: $XDG_CACHE_HOME/diskless, or
// ~/.cache/diskless. Deleting it is always safe. The caller passes the two
// variables' values (pkg/settings reads them once).
func CacheDir(xdgCacheHome, home string) string {
	switch {
	case xdgCacheHome != "":
		return filepath.Join(xdgCacheHome, "diskless")
	case home != "":
		return filepath.Join(home, ".cache", "diskless")
	}
	return filepath.Join(os.TempDir(), "diskless-cache")
}
