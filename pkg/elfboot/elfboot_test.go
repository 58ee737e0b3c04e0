package elfboot

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/elfboot/internal/asm"
)

var le = binary.LittleEndian

// fakeBzImage builds a file with a real-looking setup header (protocol
// 2.15, like Linux 6.1) and pmSize bytes of "kernel".
func fakeBzImage(pmSize int) []byte {
	setupSects := 27
	img := make([]byte, (setupSects+1)*512+pmSize)
	img[hSetupSects] = byte(setupSects)
	le.PutUint32(img[0x1f4:], uint32(pmSize/16))
	le.PutUint16(img[hBootFlag:], 0xAA55)
	img[hJump] = 0xeb
	img[hJump+1] = 0x6a // header ends at 0x26c
	copy(img[hHeader:], "HdrS")
	le.PutUint16(img[hVersion:], 0x020f)
	img[hLoadFlags] = loadedHigh | canUseHeap | keepSegments
	le.PutUint32(img[hCode32Start:], 0x100000)
	le.PutUint32(img[hInitrdAddrMax:], 0x7fffffff)
	le.PutUint32(img[hKernelAlign:], 0x200000)
	img[hRelocatable] = 1
	le.PutUint16(img[hXLoadFlags:], 0x7f)
	le.PutUint32(img[hCmdlineSize:], 2047)
	le.PutUint64(img[hPrefAddress:], 0x1000000)
	le.PutUint32(img[hInitSize:], 0x800000)
	pm := img[(setupSects+1)*512:]
	for i := range pm {
		pm[i] = byte(i*7 + 3)
	}
	return img
}

func TestStubMatchesAssemblySource(t *testing.T) {
	testutil.NeedBaseTool(t, "as", "binutils") // binutils comes with gcc, which the unit suite has
	testutil.NeedBaseTool(t, "objcopy", "binutils")
	got, err := asm.Assemble("stub.asm")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, stubCode) {
		t.Fatalf("stub_generated.go is stale: stub.asm assembles to %d bytes that differ from the committed %d; run go generate ./pkg/elfboot", len(got), len(stubCode))
	}
}

// The Go constants mirror stub.asm: check them against the bytes.
func TestStubLayout(t *testing.T) {
	if le.Uint32(stubCode[0:]) != mbMagic || le.Uint32(stubCode[4:]) != mbFlags || le.Uint32(stubCode[0:])+le.Uint32(stubCode[4:])+le.Uint32(stubCode[8:]) != 0 {
		t.Error("Multiboot header at stub offset 0 is wrong")
	}
	if stubCode[entryOffset] != 0xfa { // cli
		t.Errorf("entry at %#x is %#x, not cli", entryOffset, stubCode[entryOffset])
	}
	gdtDesc := stubCode[0xd8:]
	if le.Uint16(gdtDesc) != 31 || le.Uint32(gdtDesc[2:]) != StubBase+0xb8 {
		t.Errorf("GDT descriptor %x does not match StubBase %#x", gdtDesc[:6], StubBase)
	}
	if le.Uint64(stubCode[0xb8+0x10:]) != 0x00cf9a000000ffff || le.Uint64(stubCode[0xb8+0x18:]) != 0x00cf92000000ffff {
		t.Error("GDT selectors 0x10/0x18 are not flat code/data")
	}
	if len(stubCode)%4 != 0 || len(stubCode) > 1024 {
		t.Errorf("stub size %d", len(stubCode))
	}
}

func TestParseKernel(t *testing.T) {
	k, err := ParseKernel(fakeBzImage(64 << 10))
	if err != nil {
		t.Fatal(err)
	}
	if k.Protocol != 0x020f || k.SetupSects != 27 || k.PrefAddress != 0x1000000 || k.InitSize != 0x800000 || len(k.PM) != 64<<10 || k.CmdlineSize != 2047 {
		t.Errorf("parsed %+v", k)
	}
	if k.InitrdAddress() != 0x1800000 || k.LoadAddress() != 0x1000000 {
		t.Errorf("addresses: initrd %#x load %#x", k.InitrdAddress(), k.LoadAddress())
	}
}

func TestParseKernelRejectsBadInput(t *testing.T) {
	mutate := func(f func([]byte) []byte) []byte { return f(fakeBzImage(4096)) }
	cases := map[string]struct {
		img  []byte
		want string
	}{
		"empty":       {nil, "not a Linux bzImage"},
		"ELF":         {mutate(func(b []byte) []byte { copy(b, "\x7fELF"); b[hBootFlag] = 0; return b }), "no boot flag"},
		"no HdrS":     {mutate(func(b []byte) []byte { copy(b[hHeader:], "XXXX"); return b }), "HdrS"},
		"old":         {mutate(func(b []byte) []byte { le.PutUint16(b[hVersion:], 0x0204); return b }), "too old"},
		"zImage":      {mutate(func(b []byte) []byte { b[hLoadFlags] = 0; return b }), "zImage"},
		"truncated":   {mutate(func(b []byte) []byte { return b[:len(b)-100] }), "truncated"},
		"setup only":  {mutate(func(b []byte) []byte { return b[:28*512] }), "past the end"},
		"init_size 0": {mutate(func(b []byte) []byte { le.PutUint32(b[hInitSize:], 0); return b }), "init_size"},
		"above 4G":    {mutate(func(b []byte) []byte { le.PutUint64(b[hPrefAddress:], 1<<33); return b }), "4 GiB"},
	}
	for name, c := range cases {
		_, err := ParseKernel(c.img)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, c.want)
		}
	}
	if _, err := ParseKernel(nil); !errors.Is(err, ErrNotBzImage) {
		t.Errorf("empty input not ErrNotBzImage: %v", err)
	}
}

func TestPlanRejects(t *testing.T) {
	k, _ := ParseKernel(fakeBzImage(4096))
	if _, err := k.Plan(Options{Cmdline: strings.Repeat("x", 2048)}); err == nil || !strings.Contains(err.Error(), "cmdline_size") {
		t.Errorf("long cmdline: %v", err)
	}
	if _, err := k.Plan(Options{Cmdline: "a\x00b"}); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("NUL in cmdline: %v", err)
	}
	k.InitrdAddrMax = 0x1800000 + 1000
	if _, err := k.Plan(Options{Initrd: make([]byte, 2000)}); err == nil || !strings.Contains(err.Error(), "initrd_addr_max") {
		t.Errorf("initrd above initrd_addr_max: %v", err)
	}
	if _, err := k.Plan(Options{Initrd: []byte{}}); err == nil {
		t.Error("empty initrd accepted")
	}
}

func TestBuildReadsBackWithDebugELF(t *testing.T) {
	bz := fakeBzImage(200 << 10)
	initrd := bytes.Repeat([]byte("initramfs!"), 5000)
	cmdline := "ip=dhcp root=/dev/nfs nfsroot=192.168.1.1:/diskless/%s console=ttyS0"
	img, err := Build(bz, Options{Cmdline: cmdline, Initrd: initrd})
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	if f.Class != elf.ELFCLASS32 || f.Machine != elf.EM_386 || f.Type != elf.ET_EXEC || f.Entry != StubBase+entryOffset {
		t.Errorf("header: %v %v %v entry %#x", f.Class, f.Machine, f.Type, f.Entry)
	}
	if len(f.Progs) != 3 {
		t.Fatalf("%d program headers", len(f.Progs))
	}
	k, _ := ParseKernel(bz)
	want := []struct {
		addr  uint64
		data  []byte
		memsz uint64
	}{
		{StubBase, nil, stubMemSize},
		{0x1000000, k.PM, uint64(k.InitSize)},
		{uint64(k.InitrdAddress()), initrd, uint64(len(initrd))},
	}
	for i, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Paddr != want[i].addr || p.Vaddr != want[i].addr || p.Memsz != want[i].memsz {
			t.Errorf("segment %d: %+v", i, p.ProgHeader)
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			t.Fatal(err)
		}
		if want[i].data != nil && !bytes.Equal(data, want[i].data) {
			t.Errorf("segment %d content differs", i)
		}
		if i == 0 {
			checkStubSegment(t, data, cmdline, k, len(initrd))
		}
	}
	// Multiboot: header in the first 8 KiB, 4-byte aligned, checksum 0.
	found := false
	for off := 0; off+12 <= 8192 && off+12 <= len(img); off += 4 {
		if le.Uint32(img[off:]) == mbMagic {
			found = le.Uint32(img[off:])+le.Uint32(img[off+4:])+le.Uint32(img[off+8:]) == 0
			break
		}
	}
	if !found {
		t.Error("no valid Multiboot header in the first 8 KiB")
	}
	// Size overhead over kernel + initramfs.
	over := len(img) - len(k.PM) - len(initrd)
	if over > 8<<10 {
		t.Errorf("overhead %d bytes", over)
	}
	t.Logf("image %d bytes, overhead over protected-mode kernel + initramfs: %d bytes", len(img), over)
}

func checkStubSegment(t *testing.T, seg []byte, cmdline string, k *Kernel, initrdLen int) {
	t.Helper()
	if le.Uint32(seg[offKernelEntry:]) != k.LoadAddress() || int(le.Uint32(seg[offEmbLen:])) != len(cmdline) || int(le.Uint32(seg[offCmdMax:])) != 2047 {
		t.Errorf("params block: entry %#x len %d max %d", le.Uint32(seg[offKernelEntry:]), le.Uint32(seg[offEmbLen:]), le.Uint32(seg[offCmdMax:]))
	}
	if got := string(seg[len(stubCode):]); got != cmdline {
		t.Errorf("embedded command line %q", got)
	}
	zp := func(off int) []byte { return seg[offTemplate+off-templateStart:] }
	if zp(hTypeOfLoader)[0] != 0xff {
		t.Error("type_of_loader not 0xff")
	}
	if lf := zp(hLoadFlags)[0]; lf&loadedHigh == 0 || lf&(keepSegments|canUseHeap) != 0 {
		t.Errorf("loadflags %#x", lf)
	}
	if le.Uint32(zp(hCmdLinePtr)) != StubBase+cmdlineOffset || le.Uint32(zp(hCode32Start)) != k.LoadAddress() {
		t.Error("cmd_line_ptr or code32_start wrong")
	}
	if le.Uint32(zp(hRamdiskImage)) != k.InitrdAddress() || int(le.Uint32(zp(hRamdiskSize))) != initrdLen {
		t.Error("ramdisk_image/size wrong")
	}
	if string(zp(hHeader)[:4]) != "HdrS" {
		t.Error("setup header not copied")
	}
}

func TestBuildWithoutInitrdHasTwoSegments(t *testing.T) {
	img, err := Build(fakeBzImage(4096), Options{Cmdline: "console=ttyS0"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Progs) != 2 {
		t.Errorf("%d segments", len(f.Progs))
	}
	seg := make([]byte, f.Progs[0].Filesz)
	f.Progs[0].ReadAt(seg, 0)
	if le.Uint32(seg[offTemplate+hRamdiskSize-templateStart:]) != 0 {
		t.Error("ramdisk_size set without an initrd")
	}
}

func TestReadelfAcceptsImage(t *testing.T) {
	readelf := testutil.NeedBaseTool(t, "readelf", "binutils")
	img, err := Build(fakeBzImage(4096), Options{Cmdline: "x", Initrd: []byte("y")})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "vmlinuz")
	os.WriteFile(p, img, 0o644)
	out, err := exec.Command(readelf, "-W", "-h", "-l", p).CombinedOutput()
	if err != nil || strings.Contains(string(out), "Warning") || strings.Contains(string(out), "Error") {
		t.Fatalf("readelf: %v\n%s", err, out)
	}
	for _, s := range []string{"ELF32", "Intel 80386", "EXEC", "0x00100000", "0x01000000", "0x01800000"} {
		if !strings.Contains(string(out), s) {
			t.Errorf("readelf output lacks %q:\n%s", s, out)
		}
	}
}

func FuzzBuild(f *testing.F) {
	f.Add(fakeBzImage(1024), "console=ttyS0", []byte("initrd"))
	f.Add([]byte{}, "", []byte(nil))
	f.Fuzz(func(t *testing.T, bz []byte, cmdline string, initrd []byte) {
		img, err := Build(bz, Options{Cmdline: cmdline, Initrd: initrd})
		if err != nil {
			return
		}
		if _, err := elf.NewFile(bytes.NewReader(img)); err != nil {
			t.Fatalf("Build produced an image debug/elf cannot read: %v", err)
		}
	})
}

func BenchmarkBuild2MKernel5MInitramfs(b *testing.B) {
	bz := fakeBzImage(2 << 20)
	initrd := bytes.Repeat([]byte{1, 2, 3, 4}, 5<<20/4)
	b.SetBytes(int64(len(bz) + len(initrd)))
	var size int
	for i := 0; i < b.N; i++ {
		img, err := Build(bz, Options{Cmdline: "ip=dhcp root=/dev/nfs console=ttyS0", Initrd: initrd})
		if err != nil {
			b.Fatal(err)
		}
		size = len(img)
	}
	k, _ := ParseKernel(bz)
	b.ReportMetric(float64(size-len(k.PM)-len(initrd)), "overhead-bytes")
}
