package lab

import (
	"strings"

	"github.com/diskless/diskless/pkg/qemu"
)

// Stage is one step of a network boot, seen on the console.
type Stage struct {
	Name string  `json:"stage"`
	At   float64 `json:"seconds"` // after QEMU started
}

// stageMarks are the console lines that mark each stage (SeaBIOS's iPXE
// ROM, OVMF, PXELINUX, iPXE, the kernel, the fallback initramfs, systemd),
// first occurrence each, in order.
var stageMarks = []struct {
	name string
	is   func(line string) bool
}{
	{"DHCP lease (firmware)", func(l string) bool {
		// iPXE: "Configuring (net0 ...)...... ok"; OVMF: "Station IP address is"
		return strings.HasPrefix(l, "Configuring (net0") && strings.HasSuffix(l, "ok") || strings.HasPrefix(l, "Station IP address is")
	}},
	{"first file loaded", func(l string) bool {
		// iPXE: "tftp://.../pxelinux.0... ok", "http://.../boot.ipxe... ok";
		// OVMF PXE and HTTP boot: their own words
		return strings.Contains(l, "://") && strings.HasSuffix(l, "... ok") ||
			strings.Contains(l, "NBP file downloaded successfully") || strings.Contains(l, "Downloading...100%")
	}},
	{"iPXE script loaded", func(l string) bool {
		return strings.Contains(l, "/boot.ipxe") && strings.HasSuffix(l, "... ok")
	}},
	{"kernel and initramfs fetched", func(l string) bool {
		// iPXE: "http://.../initramfs_x86_64.cpio.zst... ok"; PXELINUX:
		// "Loading initramfs_x86_64.cpio.zst...ok"; vmlinuz_ carries both
		return (strings.Contains(l, "initramfs_") || strings.Contains(l, "vmlinuz_")) && strings.HasSuffix(l, "ok")
	}},
	{"kernel started", func(l string) bool { return strings.Contains(l, "Linux version") }},
	{"IP-Config (kernel DHCP)", func(l string) bool { return strings.Contains(l, "IP-Config: Complete") }},
	{"root mounted (NFS)", func(l string) bool {
		return strings.Contains(l, "diskless-fallback: NFS root") || strings.Contains(l, "VFS: Mounted root (nfs")
	}},
	{"/usr mounted (image)", func(l string) bool { return strings.Contains(l, "diskless-fallback: /usr:") }},
	{"multi-user", func(l string) bool { return strings.Contains(l, "multi-user.target") }},
}

// Stages reads a boot's stages from its timed console.
func Stages(lines []qemu.Timed) []Stage {
	var out []Stage
	i := 0
	for _, m := range stageMarks {
		for j := i; j < len(lines); j++ {
			if m.is(strings.TrimSpace(lines[j].Line)) {
				out = append(out, Stage{m.name, lines[j].At.Seconds()})
				i = j
				break
			}
		}
	}
	return out
}

// StageIndex is a stage's place in a boot (-1 for an unknown name).
func StageIndex(name string) int {
	for i, m := range stageMarks {
		if m.name == name {
			return i
		}
	}
	return len(stageMarks)
}

// NextStage names the first stage a boot did not reach after the last one
// it did ("DHCP lease (firmware)" when it reached none): where a failed
// node stopped. Stages a boot method skips (an iPXE script for PXELINUX)
// are passed over.
func NextStage(reached []Stage) string {
	if len(reached) == 0 {
		return stageMarks[0].name
	}
	i := StageIndex(reached[len(reached)-1].Name) + 1
	if i >= len(stageMarks) {
		return "up"
	}
	return stageMarks[i].name
}
