package lab_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/labtest"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/lab"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/qemu"
)

// Two x86-64 nodes whose firmware enforces Secure Boot, one by UEFI PXE
// and one by UEFI HTTP, one by UEFI PXE without Secure Boot, and an arm64
// node by UEFI PXE with Secure Boot (AAVMF).
const secureBootInv = `[network]
master = "192.168.1.1"
subnet = "192.168.1.0/24"
root = "{root}"
nfs_opts = "vers=3,tcp"
home = "{home}"
shared_ro = []

[[node]]
name = "sb41"
mac = "00:02:A5:04:3B:41"
ip = "192.168.1.41"
arch = "x86_64"
boot = "uefi"
secure_boot = true

[[node]]
name = "sb42"
mac = "00:02:A5:04:3B:42"
ip = "192.168.1.42"
arch = "x86_64"
boot = "http"
secure_boot = true

[[node]]
name = "nb43"
mac = "00:02:A5:04:3B:43"
ip = "192.168.1.43"
arch = "x86_64"
boot = "uefi"

[[node]]
name = "sb45"
mac = "00:02:A5:04:3B:45"
ip = "192.168.1.45"
arch = "x86_64"
boot = "shim"
secure_boot = true

[[node]]
name = "sb44"
mac = "00:02:A5:04:3B:44"
ip = "192.168.1.44"
arch = "arm64"
boot = "uefi"
secure_boot = true
`

// The kernel's and its EFI stub's words for a firmware that enforces
// Secure Boot.
const (
	kernelSecureBoot = "secureboot: Secure boot enabled"
	stubSecureBoot   = "EFI stub: UEFI Secure Boot is enabled."
	// stubRan is the start of every line the kernel's EFI stub prints
	// (on x86_64: the Secure Boot line, the initrd it loaded)
	stubRan = "EFI stub: "
	// shim fetching its second stage, and GRUB started
	shimToGRUB = "Welcome to GRUB!"
)

// Secure Boot enforcing (OVMF's Secure Boot build and AAVMF, the snakeoil
// key in db): the published chain, signed by publish, boots by UEFI PXE
// and by UEFI HTTP to the NFS root, on x86_64 and arm64; the firmware
// refuses a kernel changed by one byte after signing, an unsigned kernel
// and an unsigned snponly.efi (and arm64's an unsigned zboot kernel), and
// no kernel starts.
func TestIntegrationSecureBoot(t *testing.T) {
	testutil.NeedFile(t, qemu.OVMFSecureCode, "ovmf")
	testutil.NeedFile(t, qemu.AAVMFSnakeoilVars, "qemu-efi-aarch64")
	f := &labFixture{labtest.New(t, labtest.Options{Inventory: secureBootInv, Arches: []string{"x86_64", "arm64"}, SecureBoot: true})}
	l := f.up(t, "dhcpd")
	logs := testutil.LogDir(t)
	for _, name := range []string{"sb41", "sb42", "nb43", "sb44", "sb45"} {
		console, ok := f.bootToRoot(t, l, name, logs)
		if !ok {
			continue
		}
		// the same signed chain boots where Secure Boot is off; arm64's
		// kernel does not print its own line, its EFI stub does
		lines := []string{stubSecureBoot, kernelSecureBoot}
		if f.Node(name).Arch == "arm64" {
			lines = lines[:1]
		}
		if f.Node(name).Boot == nodes.BootShim {
			// GRUB starts the kernel by the EFI handover: the stub's
			// lines are not checked, shim's and GRUB's are
			lines = lines[1:]
			if !strings.Contains(console, shimToGRUB) {
				t.Errorf("%s: no %q on the console", name, shimToGRUB)
			}
		}
		for _, want := range lines {
			if got := strings.Contains(console, want); got != f.Inv.SecureBootOf(f.Node(name)) {
				t.Errorf("%s (secure_boot %v): %q on the console: %v", name, f.Inv.SecureBootOf(f.Node(name)), want, got)
			}
		}
	}

	// shim's chain where the firmware has only Microsoft's keys, as most
	// servers ship: shim (Microsoft's signature) starts GRUB (Debian's,
	// which shim carries), and shim refuses the kernel, whose key is in
	// neither db nor the MOK list. Enrolling it (mokutil --import, then
	// MokManager at the next boot) needs someone at the console: the test
	// stops here.
	t.Run("shim-microsoft-keys-only", func(t *testing.T) {
		testutil.NeedFile(t, qemu.OVMFMicrosoftVars, "ovmf")
		sess := start(t, l, f, "sb45", filepath.Join(logs, "shim-ms.log"), qemu.OVMFMicrosoftVars)
		if _, err := sess.Expect([]string{"bad shim signature"}, boot.Markers(boot.Kernel), 3*time.Minute); err != nil {
			t.Fatalf("shim did not refuse the kernel: %v", err)
		}
		if !strings.Contains(sess.Console(), shimToGRUB) {
			t.Errorf("GRUB did not start:\n%s", tail(sess.Console(), 30))
		}
		if testing.Verbose() {
			t.Logf("console:\n%s", tail(sess.Console(), 12))
		}
	})

	kernel := filepath.Join(f.Root, "bzImage_x86_64")
	signed, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	unsigned, err := os.ReadFile(f.Kernel["x86_64"])
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), signed...)
	tampered[len(unsigned)/2] ^= 0x01
	snponly, err := os.ReadFile(filepath.Join(f.Root, "snponly.efi"))
	if err != nil {
		t.Fatal(err)
	}
	debianSnponly, err := os.ReadFile("/usr/lib/ipxe/snponly.efi")
	if err != nil {
		t.Fatal(err)
	}
	arm := filepath.Join(f.Root, "vmlinuz_arm64")
	armSigned, err := os.ReadFile(arm)
	if err != nil {
		t.Fatal(err)
	}
	armUnsigned, err := os.ReadFile(filepath.Join(f.S.Artifacts, "arm64", "vmlinuz_arm64"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, node, file string
		data             []byte
	}{
		{"kernel-one-byte-changed", "sb41", kernel, tampered},
		{"unsigned-kernel", "sb41", kernel, unsigned},
		{"unsigned-snponly", "sb41", filepath.Join(f.Root, "snponly.efi"), debianSnponly},
		{"arm64-unsigned-kernel", "sb44", arm, armUnsigned},
	} {
		t.Run(c.name, func(t *testing.T) {
			orig := map[string][]byte{kernel: signed, filepath.Join(f.Root, "snponly.efi"): snponly, arm: armSigned}[c.file]
			overwrite(t, c.file, c.data)
			defer overwrite(t, c.file, orig)
			console := refusedBoot(t, l, f, c.node, filepath.Join(logs, c.name+".log"))
			if strings.Contains(console, "Linux version") || strings.Contains(console, stubRan) {
				t.Errorf("a kernel started:\n%s", tail(console, 30))
			}
			if c.file != kernel {
				return
			}
			// the control: the same kernel starts where Secure Boot is
			// off, so the refusal was the signature's
			started(t, l, f, "nb43", filepath.Join(logs, c.name+"-nb43.log"))
		})
	}
}

// overwrite writes data over the published file path (the generation's
// copy, in the test's own root).
func overwrite(t *testing.T, path string, data []byte) {
	t.Helper()
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(real, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// start powers a node on (its firmware's variable store from vars, ""
// for the lab's default) and stops it, and removes its tap, when t ends.
func start(t *testing.T, l *lab.Lab, f *labFixture, name, logPath, vars string) *qemu.Session {
	t.Helper()
	nd := f.Node(name)
	m, remove, err := l.MachineWithVars(nd, nd.MAC, logPath, vars)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(remove)
	m.Accel = f.S.QEMUAccel
	sess, err := qemu.Start(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Stop() })
	return sess
}

// refusedBoot boots a node whose firmware is expected to refuse what it
// loads, and returns the console once a refusal appeared.
func refusedBoot(t *testing.T, l *lab.Lab, f *labFixture, name, logPath string) string {
	t.Helper()
	sess := start(t, l, f, name, logPath, "")
	res, err := sess.Expect(boot.SecureBootRefusals, append(boot.Markers(boot.Kernel), stubRan), 3*time.Minute)
	if err != nil {
		t.Errorf("no refusal by the firmware: %v\n%s", err, tail(sess.Console(), 30))
		return sess.Console()
	}
	for _, l := range sess.Timeline() {
		if strings.Contains(l.Text, res.Matched) {
			t.Logf("refused at %.1f s: %s", l.At.Seconds(), strings.TrimSpace(l.Text))
			break
		}
	}
	if testing.Verbose() {
		t.Logf("console:\n%s", tail(sess.Console(), 25))
	}
	return sess.Console()
}

// started boots a node until its kernel's EFI stub runs.
func started(t *testing.T, l *lab.Lab, f *labFixture, name, logPath string) {
	t.Helper()
	sess := start(t, l, f, name, logPath, "")
	if _, err := sess.Expect([]string{stubRan}, boot.SecureBootRefusals, 2*time.Minute); err != nil {
		t.Errorf("%s (secure_boot off): the kernel's EFI stub did not start: %v", name, err)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
