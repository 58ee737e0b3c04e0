package publish

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/diskless/diskless/internal/fsutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/pxe"
)

// DefaultConfigName is the generated PXELINUX configuration.
const DefaultConfigName = "pxelinux.cfg/default"

// Generated says whether a name is one of the boot configurations Publish
// writes anew for the x86 arches of the result: pxelinux.cfg/default,
// boot.ipxe and boot-<arch>.ipxe.
func Generated(name string) bool {
	return name == DefaultConfigName || name == pxe.IPXEScriptName ||
		!strings.Contains(name, "/") && strings.HasPrefix(name, "boot-") && strings.HasSuffix(name, ".ipxe")
}

// group is what a file belongs to when sets are merged: its arch, the x86
// boot loader files (PXELINUX and its default configuration) or the
// per-node PXELINUX files of the inventory.
func group(f File) string {
	switch {
	case f.Arch != "":
		return "arch:" + f.Arch
	case strings.HasPrefix(f.Name, "pxelinux.cfg/") && f.Name != DefaultConfigName,
		strings.HasPrefix(f.Name, pxe.IPXENodeDir+"/"), strings.HasPrefix(f.Name, pxe.NodeCmdlineDir+"/"),
		strings.HasPrefix(f.Name, "overlays/"), strings.HasPrefix(f.Name, "squashfs/"),
		strings.HasPrefix(f.Name, pxe.GRUBDir+"/"), ShimLoader(f.Name):
		return "nodes"
	}
	return "x86-loader"
}

// Shim are Debian's signed shim, its MokManager and netboot GRUB, which
// shim nodes load (boot = "shim"): published with the per-node files of
// an inventory that has such nodes, from the packages unpacked in the
// cache (installed, they would run grub-install on the master).
var Shim = []struct{ Name, Path, Package string }{
	{"shimx64.efi", "usr/lib/shim/shimx64.efi.signed", "shim-signed"},
	{"mmx64.efi", "usr/lib/shim/mmx64.efi.signed", "shim-helpers-amd64-signed"},
	{"grubx64.efi", "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed", "grub-efi-amd64-signed"},
}

// ShimLoader says whether a name is one of Shim's.
func ShimLoader(name string) bool {
	for _, s := range Shim {
		if s.Name == name {
			return true
		}
	}
	return false
}

// Combine makes one file set of several (bundles): a name given by more
// than one with the same content is taken once; with different content it
// is an error naming both, except the generated boot configurations, which
// Publish writes anew for all x86 arches (Options.PXE). from names each set
// in errors.
func Combine(sets [][]File, from []string) ([]File, error) {
	var out []File
	type seen struct{ at, set int }
	first := map[string]seen{}
	for i, set := range sets {
		for _, f := range set {
			p, dup := first[f.Name]
			if !dup {
				first[f.Name] = seen{len(out), i}
				out = append(out, f)
				continue
			}
			if out[p.at].SHA256 == f.SHA256 || Generated(f.Name) {
				continue
			}
			return nil, fmt.Errorf("%s differs between %s and %s: publish them separately, or rebuild one", f.Name, from[p.set], from[i])
		}
	}
	return out, nil
}

// IsNodeFile says whether a name is a per-node boot file (the inventory's:
// pxelinux.cfg/<mac or hex IP>, ipxe/<mac>.ipxe, a stateless node's
// overlays/<ip>.cpio (and an arm64 one's cmdline/<mac>) and the squashfs/
// of the images stateless nodes run), as opposed to the generated pxelinux.cfg/default.
func IsNodeFile(name string) bool {
	return group(File{Name: name}) == "nodes"
}

// Kept is what a merging publish of files into root carries over from its
// live generation (keepLive's additions), each with its Source there.
func Kept(root string, files []File, drop []string, nodes bool) ([]File, error) {
	all, err := keepLive(root, files, drop, nodes)
	if err != nil {
		return nil, err
	}
	return all[len(files):], nil
}

// keepLive adds to files what the live generation of root has of other
// arches: a live file is kept when the new set has nothing of its group
// (its arch, the x86 loaders, the per-node files) and its arch is not in
// drop. The x86 loaders are kept only while an x86 arch is in the result;
// the per-node files never when nodes says the set has them all. A name in
// both drop and files is an error.
func keepLive(root string, files []File, drop []string, nodes bool) ([]File, error) {
	dropped := map[string]bool{}
	for _, d := range drop {
		dropped[d] = true
	}
	groups := map[string]bool{"nodes": nodes}
	for _, f := range files {
		groups[group(f)] = true
		if dropped[f.Arch] {
			return nil, fmt.Errorf("PUBLISH_DROP names %s, which this publish brings (%s)", f.Arch, f.Name)
		}
	}
	live, err := ReadManifest(root)
	if err != nil {
		return files, nil // nothing published yet
	}
	n, err := Current(root)
	if err != nil {
		return files, nil
	}
	dir := filepath.Join(root, genDir, fmt.Sprintf("%06d", n))
	// carried files must hash to what the live SHA256SUMS (the signed
	// list, when signed) says, not only to what manifest.json says
	sums, err := ReadSums(filepath.Join(dir, SumsName))
	if err != nil {
		return nil, fmt.Errorf("the live generation %d: %w", n, err)
	}
	out := append([]File(nil), files...)
	var loaders []File
	for _, lf := range live.Files {
		g := group(lf)
		if groups[g] || dropped[lf.Arch] {
			continue
		}
		want, ok := sums[lf.Name]
		if !ok || want != lf.SHA256 {
			return nil, fmt.Errorf("the live generation %d: %s: manifest.json and %s disagree; run verify", n, lf.Name, SumsName)
		}
		lf.Source, lf.Data = filepath.Join(dir, lf.Name), nil
		if g == "x86-loader" {
			loaders = append(loaders, lf)
			continue
		}
		out = append(out, lf)
	}
	if len(x86Arches(out)) > 0 {
		out = append(out, loaders...)
	}
	return out, nil
}

// x86Arches are the x86 arches (PXELINUX's) that have a kernel in files.
func x86Arches(files []File) []arch.Arch {
	var out []arch.Arch
	seen := map[string]bool{}
	for _, f := range files {
		if f.Kind != "kernel" || seen[f.Arch] {
			continue
		}
		if a, err := arch.Lookup(f.Arch); err == nil && a.SrcArch == "x86" {
			seen[f.Arch] = true
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// BootConfigs renders the boot configurations for the x86 arches in files,
// each with its initramfs when files have one and the command line of st:
// pxelinux.cfg/default (PXELINUX boots the first label: the CPU's choice,
// ifcpu64.c32, with x86_64 and i386; x86_64 first),
// boot-<arch>.ipxe (kernel and initramfs over HTTP) and boot.ipxe, which
// DHCP hands every iPXE client: it chains the node's own script, else its
// arch's. None when files hold no x86 kernel.
func BootConfigs(files []File, st pxe.Settings) ([]File, error) {
	archs := x86Arches(files)
	if len(archs) == 0 {
		return nil, nil
	}
	initrds := map[string]string{}
	for _, f := range files {
		if f.Kind == "initramfs" {
			initrds[f.Arch] = f.Name
		}
	}
	labels := pxe.SlaveLabels(st, archs, initrds)
	cfg, err := pxe.Config("generated by diskless publish: PXELINUX boots the first label; see pxelinux.cfg/01-<mac> for per-node files", labels)
	if err != nil {
		return nil, err
	}
	out := []File{{Name: DefaultConfigName, Data: []byte(cfg), Kind: "pxelinux-config"}}
	for _, a := range archs {
		var l pxe.Label
		for _, cand := range labels {
			if cand.Name == "slave_"+a.Name {
				l = cand
			}
		}
		script, err := pxe.IPXEBoot("generated by diskless publish: the "+a.Name+" slave kernel and initramfs over HTTP", l)
		if err != nil {
			return nil, err
		}
		out = append(out, File{Name: pxe.IPXEArchScriptName(a), Data: []byte(script), Kind: "ipxe-script"})
	}
	disp := pxe.IPXEDispatch("generated by diskless publish: DHCP hands this to iPXE clients; a node's own\nscript (nodes:render) first, else its arch's", archs)
	out = append(out, File{Name: pxe.IPXEScriptName, Data: []byte(disp), Kind: "ipxe-script"})
	return out, nil
}

// withDefaultConfig replaces any generated boot configuration in files
// with those made for all their x86 arches (none when they have no x86
// kernel).
func withDefaultConfig(files []File, st pxe.Settings) ([]File, error) {
	var out []File
	for _, f := range files {
		if !Generated(f.Name) {
			out = append(out, f)
		}
	}
	gen, err := BootConfigs(out, st)
	if err != nil {
		return out, err
	}
	out = append(out, gen...)
	return withCPUModules(out)
}

// withCPUModules adds, when pxelinux.cfg/default chooses the kernel by
// CPU, the COM32 modules that choice loads and files lack (a bundle made
// before they were published), from Debian's syslinux-common; without
// them a node would stop at PXELINUX's prompt.
func withCPUModules(files []File) ([]File, error) {
	uses, have := false, map[string]bool{}
	for _, f := range files {
		have[f.Name] = true
		if f.Name == DefaultConfigName && strings.Contains(string(f.Data), "COM32 "+pxe.CPULabelModules[0]) {
			uses = true
		}
	}
	if !uses {
		return files, nil
	}
	for _, m := range pxe.CPULabelModules {
		if have[m] {
			continue
		}
		for _, p := range PXELinux {
			if p.Name != m {
				continue
			}
			if _, err := os.Stat(p.Path); err != nil {
				return nil, fmt.Errorf("pxelinux.cfg/default chooses the kernel by CPU with %s, which neither the files published nor this machine have (%s): install the Debian package %s", m, p.Path, p.Package)
			}
			files = append(files, File{Name: p.Name, Source: p.Path, Kind: "bootloader"})
		}
	}
	return files, nil
}

// ReadSums reads a SHA256SUMS file into name -> sha256.
func ReadSums(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines, err := ParseSums(data)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, l := range lines {
		out[l.Name] = l.SHA256
	}
	return out, nil
}

// NodesCurrent says whether the live generation of root serves exactly
// these per-node files (names and contents, as Publish would pin them
// there): when it does, a publish of them would change nothing. false
// when nothing is published.
func NodesCurrent(root string, files []File) (bool, error) {
	live, err := ReadManifest(root)
	if err != nil {
		return false, nil
	}
	want := map[string]File{}
	for _, f := range files {
		if !IsNodeFile(f.Name) {
			return false, fmt.Errorf("%s is not a per-node file", f.Name)
		}
		want[f.Name] = f
	}
	tops := map[string]bool{}
	for _, t := range TopLevel(live.Files) {
		tops[t] = true
	}
	dir := filepath.Join(root, GenerationDir(live.Generation))
	n := 0
	for _, lf := range live.Files {
		if !IsNodeFile(lf.Name) {
			continue
		}
		n++
		wf, ok := want[lf.Name]
		if !ok {
			return false, nil
		}
		if wf.Source != "" || !Pinned(lf.Name) {
			// an image's squashfs (by its checksum), an overlay (as it is)
			sum := wf.SHA256
			if sum == "" {
				sum = fsutil.HashBytes(wf.Data)
			}
			if sum != lf.SHA256 || wf.Private != lf.Private {
				return false, nil
			}
			continue
		}
		data := wf.Data
		got, err := os.ReadFile(filepath.Join(dir, lf.Name))
		if err != nil {
			return false, err
		}
		if pinned := pxe.Pin(string(data), GenerationDir(live.Generation), func(top string) bool { return tops[top] }); pinned != string(got) {
			return false, nil
		}
	}
	return n == len(want), nil
}
