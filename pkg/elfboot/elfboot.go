package elfboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Stub layout, mirrored from stub.asm (a test checks the assembled bytes).
const (
	StubBase       = 0x100000
	stubMemSize    = 0x4000 // code+data, zero page, cmdline buffer, stack
	zeroPageOffset = 0x1000
	cmdlineOffset  = 0x2000
	cmdlineBufMax  = 0x1800 // leaves 2 KiB of stack below BASE+0x4000
	offKernelEntry = 0x0c
	offEmbLen      = 0x10
	offCmdMax      = 0x14
	offTemplate    = 0x18
	templateStart  = 0x1f0 // zero-page offset of the template's first byte
	templateLen    = 0xa0
	entryOffset    = 0xe0

	mbMagic = 0x1BADB002
	mbFlags = 0x00000003
)

// Setup header field offsets (Documentation/x86/boot.rst, zero-page.rst).
const (
	hSetupSects    = 0x1f1
	hBootFlag      = 0x1fe
	hJump          = 0x200
	hHeader        = 0x202
	hVersion       = 0x206
	hTypeOfLoader  = 0x210
	hLoadFlags     = 0x211
	hCode32Start   = 0x214
	hRamdiskImage  = 0x218
	hRamdiskSize   = 0x21c
	hCmdLinePtr    = 0x228
	hInitrdAddrMax = 0x22c
	hKernelAlign   = 0x230
	hRelocatable   = 0x234
	hXLoadFlags    = 0x236
	hCmdlineSize   = 0x238
	hPrefAddress   = 0x258
	hInitSize      = 0x260

	loadedHigh   = 1 << 0
	keepSegments = 1 << 6
	canUseHeap   = 1 << 7

	minProtocol = 0x020a // pref_address and init_size
)

// Kernel is a parsed bzImage.
type Kernel struct {
	// Protocol is the boot protocol version (0x020f for Linux 6.1).
	Protocol uint16
	// SetupSects is the number of 512-byte setup sectors after the boot
	// sector; the protected-mode kernel starts at (SetupSects+1)*512.
	SetupSects    int
	LoadFlags     uint8
	Code32Start   uint32
	InitrdAddrMax uint32
	Relocatable   bool
	XLoadFlags    uint16
	CmdlineSize   uint32
	PrefAddress   uint64
	InitSize      uint32
	// PM is the protected-mode kernel (what is loaded at LoadAddress).
	PM []byte
	// header holds zero-page bytes 0x1f0..0x290 as found in the file, up to
	// the end of the setup header; the rest is zero.
	header [templateLen]byte
}

// ErrNotBzImage is wrapped by ParseKernel when the file is not a bzImage.
var ErrNotBzImage = errors.New("not a Linux bzImage")

// ParseKernel reads a bzImage's setup header and checks it can be booted
// through the 32-bit protocol by this package.
func ParseKernel(img []byte) (*Kernel, error) {
	if len(img) < 0x264 {
		return nil, fmt.Errorf("%w: only %d bytes", ErrNotBzImage, len(img))
	}
	le := binary.LittleEndian
	if le.Uint16(img[hBootFlag:]) != 0xAA55 {
		return nil, fmt.Errorf("%w: no boot flag 0xAA55 at 0x1fe", ErrNotBzImage)
	}
	if string(img[hHeader:hHeader+4]) != "HdrS" {
		return nil, fmt.Errorf("%w: no \"HdrS\" signature at 0x202 (a kernel older than 1.3.73, or not a kernel)", ErrNotBzImage)
	}
	k := &Kernel{Protocol: le.Uint16(img[hVersion:])}
	if k.Protocol < minProtocol {
		return nil, fmt.Errorf("boot protocol %d.%02d is too old: need 2.10 or later (Linux 2.6.31+) for pref_address and init_size", k.Protocol>>8, k.Protocol&0xff)
	}
	k.SetupSects = int(img[hSetupSects])
	if k.SetupSects == 0 {
		k.SetupSects = 4
	}
	k.LoadFlags = img[hLoadFlags]
	if k.LoadFlags&loadedHigh == 0 {
		return nil, fmt.Errorf("%w: LOADED_HIGH is not set: a zImage (loads below 1 MiB); build a bzImage", ErrNotBzImage)
	}
	k.Code32Start = le.Uint32(img[hCode32Start:])
	k.InitrdAddrMax = le.Uint32(img[hInitrdAddrMax:])
	k.Relocatable = img[hRelocatable] != 0
	k.XLoadFlags = le.Uint16(img[hXLoadFlags:])
	k.CmdlineSize = le.Uint32(img[hCmdlineSize:])
	k.PrefAddress = le.Uint64(img[hPrefAddress:])
	k.InitSize = le.Uint32(img[hInitSize:])
	if k.PrefAddress < 0x100000 || k.PrefAddress+uint64(k.InitSize) > 0xFFFFFFFF {
		return nil, fmt.Errorf("pref_address %#x + init_size %#x is not between 1 MiB and 4 GiB: a 32-bit Multiboot image cannot load this kernel", k.PrefAddress, k.InitSize)
	}
	if k.InitSize == 0 {
		return nil, fmt.Errorf("init_size is 0 in the setup header: cannot place the kernel safely")
	}
	pmStart := (k.SetupSects + 1) * 512
	if pmStart >= len(img) {
		return nil, fmt.Errorf("%w: setup_sects %d points past the end of the file (%d bytes): truncated?", ErrNotBzImage, k.SetupSects, len(img))
	}
	// syssize (0x1f4) is the protected-mode size in 16-byte units.
	if sys := int(le.Uint32(img[0x1f4:])) * 16; sys > len(img)-pmStart {
		return nil, fmt.Errorf("bzImage truncated: the setup header says %d bytes of kernel after the setup code, the file has %d", sys, len(img)-pmStart)
	}
	k.PM = img[pmStart:]
	if uint64(len(k.PM)) > uint64(k.InitSize) {
		return nil, fmt.Errorf("protected-mode kernel (%d bytes) larger than init_size (%d)", len(k.PM), k.InitSize)
	}
	end := hHeader + int(img[hJump+1]) // the jump at 0x200 skips the header
	if end > 0x290 || end < hInitSize+4 {
		return nil, fmt.Errorf("setup header end %#x out of range", end)
	}
	copy(k.header[:], img[templateStart:end])
	return k, nil
}

// Options for an image.
type Options struct {
	// Cmdline is embedded; a loader's command line is appended to it.
	Cmdline string
	// Initrd, when not nil, is loaded with the kernel (ramdisk_image/size).
	Initrd []byte
}

// Segment is one PT_LOAD segment of the image.
type Segment struct {
	Name   string
	Addr   uint32
	Offset uint32
	Data   []byte
	MemSz  uint32
}

// Layout is where each part of the image goes in memory.
type Layout struct {
	Segments   []Segment
	Entry      uint32
	InitrdAddr uint32
}

// LoadAddress is where the protected-mode kernel goes: pref_address.
func (k *Kernel) LoadAddress() uint32 { return uint32(k.PrefAddress) }

// InitrdAddress is where an initramfs goes: page-aligned above the memory
// the kernel needs (load address + init_size).
func (k *Kernel) InitrdAddress() uint32 {
	return uint32((k.PrefAddress + uint64(k.InitSize) + 0xfff) &^ 0xfff)
}

// MaxCmdline is the longest command line the kernel accepts (cmdline_size,
// capped by the stub's buffer).
func (k *Kernel) MaxCmdline() int {
	n := int(k.CmdlineSize)
	if n > cmdlineBufMax-1 {
		n = cmdlineBufMax - 1
	}
	return n
}

// Plan lays the image out and validates it without writing anything.
func (k *Kernel) Plan(o Options) (*Layout, error) {
	if len(o.Cmdline) > k.MaxCmdline() {
		return nil, fmt.Errorf("command line is %d bytes, the kernel accepts at most %d (cmdline_size)", len(o.Cmdline), k.MaxCmdline())
	}
	if i := bytes.IndexByte([]byte(o.Cmdline), 0); i >= 0 {
		return nil, fmt.Errorf("command line contains a NUL byte at %d", i)
	}
	if len(stubCode)+len(o.Cmdline) > zeroPageOffset {
		return nil, fmt.Errorf("command line of %d bytes does not fit the stub (max %d)", len(o.Cmdline), zeroPageOffset-len(stubCode))
	}
	zp := k.header
	le := binary.LittleEndian
	zp[hTypeOfLoader-templateStart] = 0xFF
	zp[hLoadFlags-templateStart] = (k.LoadFlags | loadedHigh) &^ (keepSegments | canUseHeap)
	le.PutUint32(zp[hCode32Start-templateStart:], k.LoadAddress())
	le.PutUint32(zp[hCmdLinePtr-templateStart:], StubBase+cmdlineOffset)
	lay := &Layout{Entry: StubBase + entryOffset}
	if o.Initrd != nil {
		addr := uint64(k.InitrdAddress())
		end := addr + uint64(len(o.Initrd)) - 1
		if len(o.Initrd) == 0 {
			return nil, fmt.Errorf("initramfs is empty")
		}
		if end > uint64(k.InitrdAddrMax) {
			return nil, fmt.Errorf("initramfs of %d bytes at %#x would end at %#x, above initrd_addr_max %#x: it does not fit under the kernel's limit", len(o.Initrd), addr, end, k.InitrdAddrMax)
		}
		le.PutUint32(zp[hRamdiskImage-templateStart:], uint32(addr))
		le.PutUint32(zp[hRamdiskSize-templateStart:], uint32(len(o.Initrd)))
		lay.InitrdAddr = uint32(addr)
	}
	stub := make([]byte, len(stubCode), len(stubCode)+len(o.Cmdline))
	copy(stub, stubCode)
	le.PutUint32(stub[offKernelEntry:], k.LoadAddress())
	le.PutUint32(stub[offEmbLen:], uint32(len(o.Cmdline)))
	le.PutUint32(stub[offCmdMax:], uint32(k.MaxCmdline()))
	copy(stub[offTemplate:offTemplate+templateLen], zp[:])
	stub = append(stub, o.Cmdline...)
	lay.Segments = append(lay.Segments,
		Segment{Name: "stub", Addr: StubBase, Data: stub, MemSz: stubMemSize},
		Segment{Name: "kernel", Addr: k.LoadAddress(), Data: k.PM, MemSz: k.InitSize},
	)
	if o.Initrd != nil {
		lay.Segments = append(lay.Segments, Segment{Name: "initramfs", Addr: lay.InitrdAddr, Data: o.Initrd, MemSz: uint32(len(o.Initrd))})
	}
	return lay, nil
}

const (
	ehdrSize = 52
	phdrSize = 32
	segAlign = 16
)

// Write writes the ELF32 image for kernel with o to w.
func Write(w io.Writer, bzImage []byte, o Options) error {
	k, err := ParseKernel(bzImage)
	if err != nil {
		return err
	}
	lay, err := k.Plan(o)
	if err != nil {
		return err
	}
	return lay.WriteELF(w)
}

// Build returns the ELF32 image for kernel with o.
func Build(bzImage []byte, o Options) ([]byte, error) {
	var buf bytes.Buffer
	if err := Write(&buf, bzImage, o); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteELF writes the layout as an ELF32 EXEC file: header, program headers,
// then each segment's bytes (16-byte aligned, the Multiboot header first in
// the stub segment, well inside the first 8 KiB).
func (l *Layout) WriteELF(w io.Writer) error {
	le := binary.LittleEndian
	off := uint32(ehdrSize + phdrSize*len(l.Segments))
	for i := range l.Segments {
		off = (off + segAlign - 1) &^ (segAlign - 1)
		l.Segments[i].Offset = off
		off += uint32(len(l.Segments[i].Data))
	}
	hdr := make([]byte, ehdrSize+phdrSize*len(l.Segments))
	copy(hdr, []byte{0x7f, 'E', 'L', 'F', 1 /* 32-bit */, 1 /* LSB */, 1 /* version */})
	le.PutUint16(hdr[16:], 2) // ET_EXEC
	le.PutUint16(hdr[18:], 3) // EM_386
	le.PutUint32(hdr[20:], 1) // EV_CURRENT
	le.PutUint32(hdr[24:], l.Entry)
	le.PutUint32(hdr[28:], ehdrSize) // e_phoff
	le.PutUint16(hdr[40:], ehdrSize)
	le.PutUint16(hdr[42:], phdrSize)
	le.PutUint16(hdr[44:], uint16(len(l.Segments)))
	for i, s := range l.Segments {
		p := hdr[ehdrSize+phdrSize*i:]
		le.PutUint32(p[0:], 1) // PT_LOAD
		le.PutUint32(p[4:], s.Offset)
		le.PutUint32(p[8:], s.Addr)  // p_vaddr
		le.PutUint32(p[12:], s.Addr) // p_paddr
		le.PutUint32(p[16:], uint32(len(s.Data)))
		le.PutUint32(p[20:], s.MemSz)
		le.PutUint32(p[24:], 7) // RWX
		le.PutUint32(p[28:], segAlign)
	}
	written := uint32(0)
	write := func(b []byte) error {
		n, err := w.Write(b)
		written += uint32(n)
		return err
	}
	if err := write(hdr); err != nil {
		return err
	}
	var pad [segAlign]byte
	for _, s := range l.Segments {
		if err := write(pad[:s.Offset-written]); err != nil {
			return err
		}
		if err := write(s.Data); err != nil {
			return err
		}
	}
	return nil
}
