package kbuild

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/diskless/diskless/pkg/arch"
)

// imageMagic is where the kernel's Image header carries its magic, per
// arch (Documentation/arch/arm64/booting.rst, riscv/boot-image-header.rst).
var imageMagic = map[string]struct {
	off   int
	magic string
}{
	"arm64":   {0x38, "ARM\x64"},
	"riscv64": {0x38, "RSC\x05"},
}

// CheckZboot checks an EFI zboot application (vmlinuz.efi): the "zimg"
// header (drivers/firmware/efi/libstub/zboot-header.S) names a payload
// inside the file, and a gzip payload decompresses to the arch's Image
// (its header magic). A build that compressed a half-written Image makes
// a small PE file that starts and then fails in the firmware; this finds
// it at build time.
func CheckZboot(path string, a arch.Arch) error {
	img, err := ZbootPayload(path)
	if err != nil || img == nil {
		return err
	}
	m, ok := imageMagic[a.Name]
	if !ok {
		return nil
	}
	if len(img) < m.off+len(m.magic) || string(img[m.off:m.off+len(m.magic)]) != m.magic {
		return fmt.Errorf("%s: the payload (%d bytes decompressed) is not a %s kernel Image (no %q at %#x): the build compressed a broken Image; rebuild", path, len(img), a.Name, m.magic, m.off)
	}
	return nil
}

// ZbootPayload is the payload of the EFI zboot image at path (the arch's
// Image) decompressed, when it is gzip (the kernel's default); nil for
// another compressor, whose payload is only checked for size.
func ZbootPayload(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) < 64 || string(data[:2]) != "MZ" || string(data[4:8]) != "zimg" {
		return nil, fmt.Errorf("%s: not an EFI zboot image (no MZ/zimg header)", path)
	}
	off := binary.LittleEndian.Uint32(data[8:12])
	size := binary.LittleEndian.Uint32(data[12:16])
	comp := string(bytes.TrimRight(data[24:32], "\x00"))
	if uint64(off)+uint64(size) > uint64(len(data)) {
		return nil, fmt.Errorf("%s: payload at %d+%d runs past the end of the file (%d bytes)", path, off, size, len(data))
	}
	payload := data[off : off+size]
	if comp != "gzip" {
		if size < 1024 {
			return nil, fmt.Errorf("%s: %s payload of %d bytes is too small for a kernel", path, comp, size)
		}
		return nil, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("%s: gzip payload: %w", path, err)
	}
	img, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("%s: gzip payload: %w", path, err)
	}
	return img, nil
}
