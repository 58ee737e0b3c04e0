package pipeline

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/arch"
	"github.com/diskless/diskless/pkg/publish"
	"github.com/diskless/diskless/pkg/secureboot"
)

const invSecureBoot = `[network]
master = "192.168.1.1"
subnet = "192.168.1.0/24"
root = "%s"

[[node]]
name = "slave21"
mac = "00:02:A5:04:3B:66"
ip = "192.168.1.21"
arch = "x86_64"
boot = "uefi"
secure_boot = true

[[node]]
name = "slave22"
mac = "00:02:A5:04:3B:67"
ip = "192.168.1.22"
arch = "x86_64"
boot = "ipxe"
`

// Publishing for a secure_boot node without SECUREBOOT_KEY is refused
// before anything is written, naming the node; with the key, every EFI
// binary published (the kernel, snponly.efi) carries a signature sbverify
// accepts for the certificate, SHA256SUMS covers the signed bytes, and
// the next publish of the same build publishes the same bytes.
func TestPublishSignsForSecureBoot(t *testing.T) {
	testutil.NeedTool(t, secureboot.SignProgram, secureboot.Package)
	efi := testutil.NeedFile(t, "/usr/lib/ipxe/snponly.efi", "ipxe")
	ctx := context.Background()
	x86, _ := arch.Lookup("x86_64")
	data, err := os.ReadFile(efi)
	if err != nil {
		t.Fatal(err)
	}
	artifacts := t.TempDir()
	fakeBuild(t, artifacts, string(data)) // bzImage_x86_64 and Image_arm64: EFI applications
	root := t.TempDir()
	s := inventorySettings(t, artifacts, invSecureBoot, root)
	if _, err := Publish(ctx, s, nil); err == nil || !strings.Contains(err.Error(), "node 1 (slave21, line 6)") || !strings.Contains(err.Error(), "SECUREBOOT_KEY") {
		t.Fatalf("publishing without the key: %v", err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("the refused publish wrote %d entries into the root", len(entries))
	}
	// a kernel source that does not exist: a build would fail on it, not
	// name the node
	s.KernelSrc = filepath.Join(t.TempDir(), "no-such-linux.tar.xz")
	if _, err := All(ctx, Options{Arch: x86, Settings: s}); err == nil || !strings.Contains(err.Error(), "slave21") {
		t.Errorf("build:all without the key is not refused before the build: %v", err)
	}
	s.KernelSrc = ""

	keys := t.TempDir()
	key, crt, _, err := secureboot.WriteKeyPair(keys, "db", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if s.SecureBoot, err = secureboot.Load(key, crt, time.Now()); err != nil {
		t.Fatal(err)
	}
	m, err := Publish(ctx, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	signed := map[string]bool{}
	for _, f := range m.Files {
		if f.SecureBoot != "" {
			signed[f.Name] = true
		}
	}
	for _, name := range []string{"bzImage_x86_64", "Image_arm64", "snponly.efi"} {
		if !signed[name] {
			t.Errorf("%s is not marked signed in the manifest", name)
		}
		if err := secureboot.Verify(ctx, crt, filepath.Join(root, name)); err != nil {
			t.Errorf("published %s: %v", name, err)
		}
	}
	for _, name := range []string{"undionly.kpxe", "pxelinux.0", "ldlinux.c32"} {
		if signed[name] {
			t.Errorf("%s is not an EFI binary, yet marked signed", name)
		}
	}
	if _, err := publish.Verify(root); err != nil {
		t.Errorf("SHA256SUMS does not cover the signed files: %v", err)
	}
	first, _ := os.ReadFile(filepath.Join(root, "bzImage_x86_64"))
	if _, err := Publish(ctx, s, nil); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(filepath.Join(root, "bzImage_x86_64")); string(again) != string(first) {
		t.Error("publishing the same build again signed it to other bytes")
	}
	// one byte changed in artifacts since its build: refused, not signed
	os.WriteFile(filepath.Join(artifacts, "x86_64", "bzImage_x86_64"), append(data[:len(data):len(data)], 0), 0o644)
	if _, err := Publish(ctx, s, nil); err == nil || !strings.Contains(err.Error(), "changed since it was built") {
		t.Errorf("a kernel changed after its build: %v", err)
	}
}

// With secure_boot nodes, what a publish would carry over from the live
// generation unsigned is refused, naming it: a publish of one arch keeps
// the other arches' files; the per-node republish (lab:up, nodes:provision)
// keeps everything else. Publishing every arch with the key mends it.
func TestSecureBootRefusesUnsignedLiveFiles(t *testing.T) {
	testutil.NeedTool(t, secureboot.SignProgram, secureboot.Package)
	efi := testutil.NeedFile(t, "/usr/lib/ipxe/snponly.efi", "ipxe")
	ctx := context.Background()
	data, _ := os.ReadFile(efi)
	artifacts, root := t.TempDir(), t.TempDir()
	fakeBuild(t, artifacts, string(data))
	plain := inventorySettings(t, artifacts, invA, root)
	if _, err := Publish(ctx, plain, nil); err != nil {
		t.Fatal(err)
	}
	s := inventorySettings(t, artifacts, invSecureBoot, root)
	keys := t.TempDir()
	key, crt, _, _ := secureboot.WriteKeyPair(keys, "db", time.Now())
	var err error
	if s.SecureBoot, err = secureboot.Load(key, crt, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := PublishNodes(ctx, s, nil); err == nil || !strings.Contains(err.Error(), "bzImage_x86_64 (kept from the live generation)") {
		t.Errorf("republishing the nodes' files over an unsigned live kernel: %v", err)
	}
	x86, _ := arch.Lookup("x86_64")
	if _, err := Publish(ctx, s, nil, x86); err == nil || !strings.Contains(err.Error(), "Image_arm64 (kept from the live generation)") || strings.Contains(err.Error(), "bzImage_x86_64") {
		t.Errorf("publishing x86_64 alone over an unsigned arm64: %v", err)
	}
	if _, err := Publish(ctx, s, nil); err != nil {
		t.Fatalf("publishing every arch with the key: %v", err)
	}
	if _, _, err := PublishNodes(ctx, s, nil); err != nil {
		t.Errorf("republishing the nodes' files over a signed set: %v", err)
	}
}

// A zboot kernel whose payload (the kernel its decompressor hands to the
// firmware) was built unsigned is refused, not signed outside only.
func TestSecureBootRefusesUnsignedZbootPayload(t *testing.T) {
	testutil.NeedTool(t, secureboot.SignProgram, secureboot.Package)
	efi := testutil.NeedFile(t, "/usr/lib/ipxe/snponly.efi", "ipxe")
	ctx := context.Background()
	keys := t.TempDir()
	key, crt, _, _ := secureboot.WriteKeyPair(keys, "db", time.Now())
	k, err := secureboot.Load(key, crt, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := testSettings(t, nil)
	s.SecureBoot = k
	signedPayload, err := k.Signed(ctx, efi, s.CacheDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		payload string
		ok      bool
	}{{efi, false}, {signedPayload, true}} {
		zboot := fakeZboot(t, efi, c.payload)
		_, err := SignEFI(ctx, s, nil, []publish.File{{Name: "vmlinuz_arm64", Source: zboot, Arch: "arm64", Kind: "netboot"}})
		if c.ok != (err == nil) || !c.ok && !strings.Contains(err.Error(), "the kernel inside it is not signed") {
			t.Errorf("payload %s: %v", c.payload, err)
		}
	}
}

// fakeZboot is an EFI application (outer) carrying payload gzip-compressed
// as an EFI zboot image says (drivers/firmware/efi/libstub/zboot-header.S:
// "zimg" at 4, the payload's offset and size at 8 and 12, "gzip" at 24).
func fakeZboot(t *testing.T, outer, payload string) string {
	t.Helper()
	img, _ := os.ReadFile(outer)
	pl, _ := os.ReadFile(payload)
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	w.Write(pl)
	w.Close()
	out := append([]byte(nil), img...)
	copy(out[4:8], "zimg")
	binary.LittleEndian.PutUint32(out[8:12], uint32(len(img)))
	binary.LittleEndian.PutUint32(out[12:16], uint32(z.Len()))
	copy(out[24:32], "gzip\x00\x00\x00\x00")
	out = append(out, z.Bytes()...)
	p := filepath.Join(t.TempDir(), "vmlinuz_arm64")
	os.WriteFile(p, out, 0o644)
	return p
}
