package lab

import (
	"strings"

	"github.com/diskless/diskless/pkg/qemu"
)

// Stage is one step of a network boot, seen on the console.
type Stage struct {
	Name string
	At   float64 // seconds after QEMU started
}

// stageMarks are the console lines that mark each stage (iPXE, PXELINUX,
// the kernel, the fallback initramfs, systemd), first occurrence each.
var stageMarks = []struct{ name, mark string }{
	{"DHCP lease (firmware)", "Configuring (net0"},
	{"boot file loaded", "ok"},
	{"kernel started", "Linux version"},
	{"IP-Config (kernel DHCP)", "IP-Config: Complete"},
	{"root mounted (NFS)", "diskless-fallback: NFS root|VFS: Mounted root (nfs"},
	{"/usr mounted (image)", "diskless-fallback: /usr:"},
	{"multi-user", "multi-user.target"},
}

// Stages reads a boot's stages from its timed console.
func Stages(lines []qemu.Timed) []Stage {
	var out []Stage
	i := 0
	for _, m := range stageMarks {
		for j := i; j < len(lines); j++ {
			l := lines[j].Line
			ok := false
			for _, mk := range strings.Split(m.mark, "|") {
				ok = ok || strings.Contains(l, mk)
			}
			if m.name == "DHCP lease (firmware)" {
				ok = ok && strings.HasSuffix(strings.TrimSpace(l), "ok")
			}
			if m.name == "boot file loaded" {
				// iPXE: "http://... ok" / "tftp://.../pxelinux.0... ok"
				ok = (strings.Contains(l, "pxelinux.0") || strings.Contains(l, "vmlinuz_")) && strings.HasSuffix(strings.TrimSpace(l), "ok")
			}
			if ok {
				out = append(out, Stage{m.name, lines[j].At.Seconds()})
				i = j
				break
			}
		}
	}
	return out
}
