package kbuild

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/pxe"
)

// CacheDir is $XDG_CACHE_HOME/diskless, default ~/.cache/diskless. Deleting
// it is always safe.
func CacheDir() string {
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		return filepath.Join(x, "diskless")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "diskless")
	}
	return filepath.Join(os.TempDir(), "diskless-cache")
}

// Getenv is how settings are read; tests replace it.
type Getenv func(string) string

// OptionsFromEnv builds Options for a role and arch from the documented
// environment variables (KERNEL_SRC, KCONFIG_EXTRA, JOBS, CONFIG_ONLY,
// NO_CCACHE, and for slaves the boot settings of pkg/pxe: NFS_SERVER,
// NFS_ROOT, NFS_OPTS, KERNEL_ARGS), with project-relative paths: kernels/ for fragments and
// artifacts/<arch> (or artifacts/<arch>/master) for output. Every value is
// checked here, before any expensive step.
func OptionsFromEnv(getenv Getenv, projectDir string, a arch.Arch, role Role) (Options, error) {
	o := Options{
		Arch: a, Role: role,
		KernelsDir: filepath.Join(projectDir, "kernels"),
		KernelSrc:  getenv("KERNEL_SRC"),
		CacheDir:   CacheDir(),
		OutDir:     filepath.Join(projectDir, "artifacts", a.Name),
	}
	if role == Master {
		o.OutDir = filepath.Join(o.OutDir, "master")
	}
	if x := strings.TrimSpace(getenv("KCONFIG_EXTRA")); x != "" {
		for _, f := range strings.Split(x, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			if !filepath.IsAbs(f) {
				f = filepath.Join(projectDir, f)
			}
			if _, err := os.Stat(f); err != nil {
				return o, fmt.Errorf("KCONFIG_EXTRA: fragment %s: %w", f, unwrapPathErr(err))
			}
			o.Extra = append(o.Extra, f)
		}
	}
	for _, f := range o.Fragments() {
		if _, err := os.Stat(f); err != nil {
			return o, fmt.Errorf("config fragment %s: %w", f, unwrapPathErr(err))
		}
	}
	if j := strings.TrimSpace(getenv("JOBS")); j != "" {
		n, err := strconv.Atoi(j)
		if err != nil || n < 1 || n > 1024 {
			return o, fmt.Errorf("JOBS=%q: want a whole number of parallel jobs from 1 to 1024", j)
		}
		o.Jobs = n
	}
	var err error
	if o.ConfigOnly, err = boolEnv(getenv, "CONFIG_ONLY"); err != nil {
		return o, err
	}
	o.DistccHosts = strings.TrimSpace(getenv("DISTCC_HOSTS"))
	if o.DistccHosts != "" {
		if _, err := ParseDistccHosts(o.DistccHosts); err != nil {
			return o, err
		}
	}
	noCcache, err := boolEnv(getenv, "NO_CCACHE")
	if err != nil {
		return o, err
	}
	o.NoCcache = noCcache
	if role == Slave {
		st, err := pxe.SettingsFromEnv(getenv)
		if err != nil {
			return o, err
		}
		o.Cmdline = st.Cmdline(a)
		o.Checks = append(o.Checks, st.CheckKernel)
	}
	return o, nil
}

func boolEnv(getenv Getenv, name string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(getenv(name))) {
	case "", "0", "false", "no":
		return false, nil
	case "1", "true", "yes":
		return true, nil
	default:
		return false, fmt.Errorf("%s=%q: want 1 or 0", name, getenv(name))
	}
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
