# diskless ELF netboot stub: a Multiboot v1 entry that boots a Linux bzImage
# through the 32-bit boot protocol (Documentation/x86/boot.rst).
#
# Assembled with GNU as (--32) and cut to raw bytes with objcopy by
# `go generate` (gen_stub.go); the bytes are committed in stub_generated.go
# and a test re-assembles this file and compares. The Go writer (elfboot.go)
# patches the params block and appends the embedded command line at
# stub_end. The stub is loaded at BASE (its own PT_LOAD segment); the zero
# page, the command line buffer and the stack follow in that segment's
# zero-filled memory (p_memsz > p_filesz).
#
# BASE is 1 MiB, on the same side of the ISA hole (0xA0000-0xFFFFF) as the
# kernel: QEMU's Multiboot loader copies everything from the lowest to the
# highest segment as one blob, and a stub below 640 KiB made that copy wipe
# the option ROM doing it. The kernel sits at pref_address (16 MiB), so
# 1 MiB + 16 KiB is free on every loader.
#
# Memory layout (physical = virtual, paging off):
#   BASE + 0x0000  this code and data, then the embedded command line
#   BASE + 0x1000  struct boot_params ("zero page")
#   BASE + 0x2000  command line buffer (cmdline_size + 1 bytes, < 4 KiB)
#   BASE + 0x4000  top of the stub's stack
#
# Entry state (Multiboot): 32-bit protected mode, paging off, interrupts
# off, EAX = 0x2BADB002, EBX = physical address of the Multiboot info. No
# usable stack, no GDT we may rely on.

	.set BASE,          0x100000
	.set ZP,            BASE + 0x1000
	.set CMDLINE,       BASE + 0x2000
	.set STACK_TOP,     BASE + 0x4000
	.set MB_MAGIC,      0x1BADB002
	.set MB_FLAGS,      0x00000003        # page-align modules, memory info
	.set MB_BOOTED,     0x2BADB002
	.set E820_MAX,      128

	.code32
	.text
	.globl _start
_base:
# --- 0x00: Multiboot v1 header (must be in the first 8 KiB of the file)
mb_header:
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

# --- 0x0c: params, patched by the Go writer
	.org 0x0c
kernel_entry:	.long 0               # 32-bit entry: where the kernel was loaded
emb_len:	.long 0               # bytes of embedded command line at stub_end
cmd_max:	.long 0               # cmdline_size from the setup header

# --- 0x18: zero-page bytes 0x1f0..0x290 (setup header as prepared by Go)
	.org 0x18
tmpl:	.fill 0xa0, 1, 0

# --- 0xb8: GDT: 0x10 flat 4 GiB code, 0x18 flat 4 GiB data (__BOOT_CS/DS)
	.org 0xb8
gdt:
	.quad 0
	.quad 0
	.quad 0x00cf9a000000ffff
	.quad 0x00cf92000000ffff
gdt_desc:
	.word gdt_desc - gdt - 1
	.long BASE + (gdt - _base)

# --- code
	.org 0xe0
_start:
	cli
	cld
	cmpl $MB_BOOTED, %eax
	je 1f
	xorl %ebx, %ebx               # not booted by Multiboot: no info to read
1:
	lgdt (BASE + (gdt_desc - _base))
	ljmp $0x10, $(BASE + (2f - _base))
2:
	movl $0x18, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs
	movl $STACK_TOP, %esp

	# zero the zero page
	movl $ZP, %edi
	xorl %eax, %eax
	movl $1024, %ecx
	rep stosl

	# zero page 0x1f0..0x290 from the template
	movl $(BASE + (tmpl - _base)), %esi
	movl $(ZP + 0x1f0), %edi
	movl $0xa0, %ecx
	rep movsb

	# command line: the embedded part first
	movl $(BASE + (stub_end - _base)), %esi
	movl $CMDLINE, %edi
	movl (BASE + (emb_len - _base)), %ecx
	rep movsb

	# then the loader's command line (Multiboot flag bit 2), without its
	# first word: QEMU, iPXE and GRUB put the image's name there
	testl %ebx, %ebx
	jz cmd_done
	testl $4, (%ebx)
	jz cmd_done
	movl 16(%ebx), %esi
	movl $CMDLINE, %edx
	addl (BASE + (cmd_max - _base)), %edx   # edx = end of the buffer
skip_lead:
	movb (%esi), %al
	cmpb $' ', %al
	jne skip_word
	incl %esi
	jmp skip_lead
skip_word:
	movb (%esi), %al
	testb %al, %al
	jz cmd_done
	cmpb $' ', %al
	je skip_gap
	incl %esi
	jmp skip_word
skip_gap:
	movb (%esi), %al
	cmpb $' ', %al
	jne have_args
	incl %esi
	jmp skip_gap
have_args:
	testb %al, %al
	jz cmd_done
	cmpl $CMDLINE, %edi               # a separator after the embedded part
	je copy_args
	cmpl %edx, %edi
	jae cmd_done
	movb $' ', (%edi)
	incl %edi
copy_args:
	cmpl %edx, %edi
	jae cmd_done
	movb (%esi), %al
	testb %al, %al
	jz cmd_done
	movb %al, (%edi)
	incl %esi
	incl %edi
	jmp copy_args
cmd_done:
	movb $0, (%edi)

	# memory map: e820_table (0x2d0) from the Multiboot mmap (flag bit 6),
	# else from mem_lower/mem_upper (flag bit 0)
	movl $(ZP + 0x2d0), %edi
	xorl %edx, %edx                   # entries
	testl %ebx, %ebx
	jz e820_done
	testl $1, (%ebx)
	jz 3f
	movl 8(%ebx), %eax                # mem_upper (KiB above 1 MiB)
	movl %eax, (ZP + 0x1e0)           # alt_mem_k
3:
	testl $0x40, (%ebx)
	jz e820_basic
	movl 48(%ebx), %esi               # mmap_addr
	movl 44(%ebx), %ecx               # mmap_length
	addl %esi, %ecx                   # ecx = end of the map
e820_loop:
	cmpl %ecx, %esi
	jae e820_done
	cmpl $E820_MAX, %edx
	jae e820_done
	movl 4(%esi), %eax                # base_addr (u64)
	movl %eax, 0(%edi)
	movl 8(%esi), %eax
	movl %eax, 4(%edi)
	movl 12(%esi), %eax               # length (u64)
	movl %eax, 8(%edi)
	movl 16(%esi), %eax
	movl %eax, 12(%edi)
	movl 20(%esi), %eax               # type: Multiboot and e820 agree
	movl %eax, 16(%edi)
	addl $20, %edi
	incl %edx
	movl (%esi), %eax                 # size of the rest of this entry
	leal 4(%esi,%eax), %esi
	jmp e820_loop
e820_basic:
	testl $1, (%ebx)
	jz e820_done
	movl $0, 0(%edi)                  # [0, mem_lower KiB) usable
	movl $0, 4(%edi)
	movl 4(%ebx), %eax
	shll $10, %eax
	movl %eax, 8(%edi)
	movl $0, 12(%edi)
	movl $1, 16(%edi)
	movl $0x100000, 20(%edi)          # [1 MiB, 1 MiB + mem_upper KiB) usable
	movl $0, 24(%edi)
	movl 8(%ebx), %eax
	shll $10, %eax
	movl %eax, 28(%edi)
	movl $0, 32(%edi)
	movl $1, 36(%edi)
	movl $2, %edx
e820_done:
	movb %dl, (ZP + 0x1e8)            # e820_entries

	# enter the kernel: ESI = boot_params, EBP = EDI = EBX = 0, flat
	# segments, interrupts off
	movl $ZP, %esi
	xorl %ebp, %ebp
	xorl %edi, %edi
	xorl %ebx, %ebx
	jmp *(BASE + (kernel_entry - _base))

	.balign 4
stub_end:
