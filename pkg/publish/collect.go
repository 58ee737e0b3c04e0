package publish

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/pxe"
)

// Debian's PXELINUX files (packages pxelinux and syslinux-common).
var (
	PXELinux = []struct{ Name, Path, Package string }{
		{"pxelinux.0", "/usr/lib/PXELINUX/pxelinux.0", "pxelinux"},
		{"ldlinux.c32", "/usr/lib/syslinux/modules/bios/ldlinux.c32", "syslinux-common"},
		// pxelinux.cfg/default's CPU choice (pxe.CPULabel) when x86_64
		// and i386 are both live
		{"ifcpu64.c32", "/usr/lib/syslinux/modules/bios/ifcpu64.c32", "syslinux-common"},
		{"libcom32.c32", "/usr/lib/syslinux/modules/bios/libcom32.c32", "syslinux-common"},
		{"libutil.c32", "/usr/lib/syslinux/modules/bios/libutil.c32", "syslinux-common"},
	}
	// IPXE are Debian's iPXE builds a node's firmware loads by TFTP before
	// everything else comes over HTTP: snponly.efi for x86-64 UEFI (on the
	// firmware's own network driver), undionly.kpxe for BIOS PXE.
	IPXE = []struct{ Name, Path, Package string }{
		{"snponly.efi", "/usr/lib/ipxe/snponly.efi", "ipxe"},
		{"undionly.kpxe", "/usr/lib/ipxe/undionly.kpxe", "ipxe"},
	}
)

// artifactMeta is the part of build_<arch>.json, initramfs_<arch>.json and
// netboot_<arch>.json that names files and their checksums.
type artifactMeta struct {
	Artifacts []struct {
		Name   string `json:"name"`
		SHA256 string `json:"sha256"`
	} `json:"artifacts"`
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	// Cmdline is what a netboot image carries built in.
	Cmdline string `json:"cmdline"`
}

func kindOfArtifact(a arch.Arch, name string) string {
	switch {
	case name == a.ArtifactName():
		return "kernel"
	case name == "vmlinuz_"+a.Name:
		return "netboot"
	case name == "config_"+a.Name:
		return "config"
	}
	return "initramfs"
}

// Collect lists what the artifacts directory holds for publishing: per
// built arch its kernel, netboot image, initramfs and config (each with the
// checksum its build recorded), PXELINUX (pxelinux.0, ldlinux.c32 and the
// COM32 modules of the CPU choice), iPXE (snponly.efi, undionly.kpxe) and
// the generated boot configurations (BootConfigs) when an x86 arch is
// there. Only the arches named are taken (all when none is), whatever else
// lies in artifacts: ci:artifacts arch=i386 bundles i386 alone. The
// per-node files are not artifacts: the caller renders them from the
// inventory it loaded (NodeFiles). The master's kernel
// (artifacts/<arch>/master) is never published.
func Collect(artifacts string, st pxe.Settings, only ...arch.Arch) ([]File, error) {
	var files []File
	var x86 []arch.Arch
	want := map[string]bool{}
	for _, a := range only {
		want[a.Name] = true
	}
	for _, a := range arch.All() {
		if len(want) > 0 && !want[a.Name] {
			continue
		}
		dir := filepath.Join(artifacts, a.Name)
		n0 := len(files)
		for _, metaName := range []string{"build_" + a.Name + ".json", "netboot_" + a.Name + ".json", "initramfs_" + a.Name + ".json"} {
			raw, err := os.ReadFile(filepath.Join(dir, metaName))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
			var m artifactMeta
			if err := json.Unmarshal(raw, &m); err != nil {
				return nil, fmt.Errorf("%s: %w", filepath.Join(dir, metaName), err)
			}
			if strings.HasPrefix(metaName, "netboot_") && m.Cmdline != "" && m.Cmdline != st.Cmdline(a) {
				return nil, staleCmdline(a, m.Name, m.Cmdline, st, "build:netboot")
			}
			type pair struct{ name, sum string }
			var ps []pair
			for _, art := range m.Artifacts {
				ps = append(ps, pair{art.Name, art.SHA256})
			}
			if m.Name != "" {
				ps = append(ps, pair{m.Name, m.SHA256})
			}
			for _, p := range ps {
				src := filepath.Join(dir, p.name)
				if _, err := os.Stat(src); err != nil {
					return nil, fmt.Errorf("%s lists %s, which is missing: rebuild it", filepath.Join(dir, metaName), src)
				}
				kind := kindOfArtifact(a, p.name)
				files = append(files, File{Name: p.name, Source: src, Arch: a.Name, Kind: kind, SHA256: p.sum, Build: raw})
			}
		}
		if len(files) > n0 && a.SrcArch == "x86" {
			x86 = append(x86, a)
		}
		if len(files) > n0 && a.EFIImagePath != "" {
			// the EFI kernel carries the command line as CONFIG_CMDLINE
			if cfg, err := os.ReadFile(filepath.Join(dir, "config_"+a.Name)); err == nil {
				if got, ok := configCmdline(string(cfg)); ok && got != st.Cmdline(a) {
					return nil, staleCmdline(a, "vmlinuz_"+a.Name, got, st, "build:slave")
				}
			}
		}
	}
	if len(files) == 0 {
		what := ""
		if len(only) > 0 {
			var names []string
			for _, a := range only {
				names = append(names, a.Name)
			}
			what = " for " + strings.Join(names, ", ")
		}
		return nil, fmt.Errorf("nothing to publish%s in %s: run build:slave (and build:netboot, build:initramfs) first", what, artifacts)
	}
	if len(x86) > 0 {
		for _, p := range append(PXELinux[:len(PXELinux):len(PXELinux)], IPXE...) {
			if _, err := os.Stat(p.Path); err != nil {
				return nil, fmt.Errorf("%s not found: install the Debian package %s", p.Path, p.Package)
			}
			files = append(files, File{Name: p.Name, Source: p.Path, Kind: "bootloader"})
		}
		gen, err := BootConfigs(files, st)
		if err != nil {
			return nil, err
		}
		files = append(files, gen...)
	}
	return files, nil
}

// NodeFiles makes publishable files of the per-node boot files an
// inventory renders (pxelinux.cfg/01-<mac>, ipxe/<mac>.ipxe: names and
// contents), kind by directory.
func NodeFiles(rendered map[string]string) []File {
	var names []string
	for n := range rendered {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []File
	for _, n := range names {
		kind := "pxelinux-config"
		switch {
		case strings.HasPrefix(n, pxe.IPXENodeDir+"/"):
			kind = "ipxe-script"
		case strings.HasPrefix(n, pxe.NodeCmdlineDir+"/"):
			kind = "node-cmdline"
		case strings.HasPrefix(n, pxe.GRUBDir+"/"):
			kind = "grub-config"
		}
		out = append(out, File{Name: n, Data: []byte(rendered[n]), Kind: kind})
	}
	return out
}

// configCmdline is a kernel config's CONFIG_CMDLINE.
func configCmdline(cfg string) (string, bool) {
	for _, l := range strings.Split(cfg, "\n") {
		if v, ok := strings.CutPrefix(l, "CONFIG_CMDLINE="); ok {
			if u, err := strconv.Unquote(v); err == nil {
				return u, true
			}
		}
	}
	return "", false
}

// staleCmdline refuses an image whose built-in command line is not what
// the node settings (the inventory loaded now) say: its nodes would mount
// another root.
func staleCmdline(a arch.Arch, name, built string, st pxe.Settings, target string) error {
	return fmt.Errorf("%s carries the command line %q, but the node settings now say %q: run %s arch=%s (or build:all) before publishing it", name, built, st.Cmdline(a), target, a.Name)
}
