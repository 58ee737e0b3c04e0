// Package asm assembles the 32-bit stub with GNU binutils; used by
// go generate and by the test that checks the committed bytes.
package asm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Assemble runs `as --32` and `objcopy -O binary -j .text` on src and
// returns the raw bytes.
func Assemble(src string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "elfboot-stub-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	obj, bin := filepath.Join(dir, "stub.o"), filepath.Join(dir, "stub.bin")
	if out, err := exec.Command("as", "--32", "-o", obj, src).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("as --32 %s: %w\n%s", src, err, out)
	}
	if out, err := exec.Command("objcopy", "-O", "binary", "-j", ".text", obj, bin).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("objcopy: %w\n%s", err, out)
	}
	return os.ReadFile(bin)
}
