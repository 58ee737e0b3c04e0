// Package elfboot writes vmlinuz_<arch> for x86: an ELF32 Multiboot image
// that carries a Linux bzImage's protected-mode kernel, its command line and
// optionally an initramfs, with a small 32-bit stub (stub.asm) that performs
// the Linux 32-bit boot protocol. QEMU -kernel, iPXE (over TFTP), GRUB's
// multiboot and other Multiboot v1 loaders boot it.
//
// The writer is pure Go and runs no external tool; the stub's bytes are
// generated from stub.asm with GNU binutils (go generate) and committed.
// It reads the bzImage setup header and writes files; it does not build
// kernels or talk to loaders.
package elfboot

//go:generate go run gen_stub.go
