package elfboot

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/diskless/diskless/internal/fsutil"

	"github.com/diskless/diskless/pkg/arch"
)

// WriteFile builds the image from the bzImage at bzPath (and the initramfs
// at initrdPath, when not empty) with cmdline, and writes it to outPath
// through a temporary file and a rename: an existing outPath is replaced
// whole or not at all. It returns the image's size.
func WriteFile(bzPath, initrdPath, outPath, cmdline string) (int, error) {
	bz, err := os.ReadFile(bzPath)
	if err != nil {
		return 0, fmt.Errorf("kernel: %w", err)
	}
	o := Options{Cmdline: cmdline}
	if initrdPath != "" {
		if o.Initrd, err = os.ReadFile(initrdPath); err != nil {
			return 0, fmt.Errorf("initramfs: %w", err)
		}
	}
	img, err := Build(bz, o)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", bzPath, err)
	}
	return len(img), fsutil.WriteAtomic(outPath, img)
}

// Artifact makes dir/vmlinuz_<arch>, the arch's netboot image: on x86 the
// ELF Multiboot image of dir/bzImage_<arch> with cmdline embedded (and the
// initramfs at initrd, when given); on EFI arches the kernel build already
// wrote it (the EFI zboot application with CONFIG_CMDLINE), and Artifact
// checks it is there. It returns the image's path.
func Artifact(a arch.Arch, dir, cmdline, initrd string) (string, error) {
	out := filepath.Join(dir, "vmlinuz_"+a.Name)
	if a.SrcArch != "x86" {
		if initrd != "" {
			return "", fmt.Errorf("%s: the EFI netboot image cannot carry an initramfs; the firmware loads it (initrd= or the boot manager)", a.Name)
		}
		if _, err := os.Stat(out); err != nil {
			return "", fmt.Errorf("%s is made by the slave kernel build (EFI zboot): run build:slave arch=%s: %w", out, a.Name, err)
		}
		return out, nil
	}
	bz := filepath.Join(dir, a.ArtifactName())
	if _, err := os.Stat(bz); err != nil {
		return "", fmt.Errorf("no kernel to wrap: run build:slave arch=%s first: %w", a.Name, err)
	}
	if _, err := WriteFile(bz, initrd, out, cmdline); err != nil {
		return "", err
	}
	return out, writeMeta(dir, a, out, bz, initrd, cmdline)
}

// NetbootMeta is netboot_<arch>.json: what went into vmlinuz_<arch>.
type NetbootMeta struct {
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
	Cmdline   string `json:"cmdline"`
	Kernel    string `json:"kernel"`
	KernelSHA string `json:"kernel_sha256"`
	Initramfs string `json:"initramfs,omitempty"`
	StubBytes int    `json:"stub_bytes"`
}

func writeMeta(dir string, a arch.Arch, out, bz, initrd, cmdline string) error {
	sum := func(p string) (string, int64) {
		data, err := os.ReadFile(p)
		if err != nil {
			return "", 0
		}
		return fsutil.HashBytes(data), int64(len(data))
	}
	m := NetbootMeta{Name: filepath.Base(out), Cmdline: cmdline, Kernel: filepath.Base(bz), StubBytes: len(stubCode)}
	m.SHA256, m.Size = sum(out)
	m.KernelSHA, _ = sum(bz)
	if initrd != "" {
		m.Initramfs = filepath.Base(initrd)
	}
	data, _ := json.MarshalIndent(m, "", "  ")
	return fsutil.WriteAtomic(filepath.Join(dir, "netboot_"+a.Name+".json"), append(data, '\n'))
}
