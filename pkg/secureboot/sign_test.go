package secureboot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/testutil"
)

// snponly is Debian's iPXE for UEFI: an unsigned EFI application.
const snponly = "/usr/lib/ipxe/snponly.efi"

// What the firmware loads is told from what it does not.
func TestIsEFI(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "pxelinux.cfg")
	os.WriteFile(text, []byte("DEFAULT linux\n"), 0o644)
	mz := filepath.Join(dir, "mz")
	os.WriteFile(mz, append([]byte("MZ"), make([]byte, 200)...), 0o644)
	self, _ := os.Executable() // an ELF
	for _, p := range []string{text, mz, self} {
		if ok, err := IsEFI(p); ok || err != nil {
			t.Errorf("%s: EFI %v, %v; want false, nil", p, ok, err)
		}
	}
	if _, err := IsEFI(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file is not an error")
	}
	testutil.NeedFile(t, snponly, "ipxe")
	if ok, err := IsEFI(snponly); !ok || err != nil {
		t.Errorf("%s: EFI %v, %v; want true", snponly, ok, err)
	}
	if ok, _ := IsEFI("/usr/lib/ipxe/undionly.kpxe"); ok {
		t.Error("undionly.kpxe (BIOS) taken for an EFI image")
	}
}

// Signing writes a signature sbverify accepts for this key and no other,
// once: the same input signs to the same bytes (a publish that changes
// nothing stays a no-op); a signed image is taken as it is; one byte
// changed after signing fails verification.
func TestSigned(t *testing.T) {
	testutil.NeedTool(t, SignProgram, Package)
	testutil.NeedFile(t, snponly, "ipxe")
	ctx := context.Background()
	dir := t.TempDir()
	keyPath, crt, cer, err := WriteKeyPair(dir, "db", now)
	if err != nil {
		t.Fatal(err)
	}
	// the DER certificate (name.cer) signs as well as the PEM one
	k, err := Load(keyPath, cer, now)
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	signed, err := k.Signed(ctx, snponly, cache)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, crt, signed); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, crt, snponly); err == nil {
		t.Errorf("sbverify accepts the unsigned %s", snponly)
	}
	first, _ := os.ReadFile(signed)
	again, err := k.Signed(ctx, snponly, cache)
	if b, _ := os.ReadFile(again); err != nil || !bytes.Equal(b, first) {
		t.Errorf("signing again gave other bytes (%s, %v)", again, err)
	}
	if same, err := k.Signed(ctx, signed, cache); err != nil || same != signed {
		t.Errorf("an image signed by the key is signed again: %s, %v", same, err)
	}
	if ok, err := IsEFI(signed); !ok || err != nil {
		t.Errorf("the signed image is no longer an EFI image: %v %v", ok, err)
	}

	other := t.TempDir()
	_, otherCrt, _, err := WriteKeyPair(other, "db", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, otherCrt, signed); err == nil {
		t.Error("sbverify accepts the signature for another certificate")
	}

	tampered := filepath.Join(dir, "tampered.efi")
	b := bytes.Clone(first)
	b[len(b)/3] ^= 0x01
	os.WriteFile(tampered, b, 0o644)
	if err := Verify(ctx, crt, tampered); err == nil {
		t.Error("sbverify accepts an image with one byte changed after signing")
	}
	// a damaged cache entry is signed again, not served
	os.WriteFile(signed, b, 0o644)
	if again, err := k.Signed(ctx, snponly, cache); err != nil || Verify(ctx, crt, again) != nil {
		t.Errorf("a damaged cache entry: %s, %v", again, err)
	}

	// an image signed by another key only (Debian's shim is signed by
	// Microsoft) gets this key's signature too
	shim := filepath.Join(dir, "shim.efi")
	otherKey, _, _, _ := WriteKeyPair(other, "other", now)
	ok2, err := Load(otherKey, filepath.Join(other, "other.crt"), now)
	if err != nil {
		t.Fatal(err)
	}
	byOther, err := ok2.Signed(ctx, snponly, filepath.Join(dir, "cache2"))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(byOther)
	os.WriteFile(shim, data, 0o644)
	both, err := k.Signed(ctx, shim, cache)
	if err != nil || both == shim {
		t.Fatalf("an image signed by another key was taken as signed by this one: %s, %v", both, err)
	}
	if !k.SignedBy(ctx, both) || !ok2.SignedBy(ctx, both) {
		t.Error("the image does not carry both signatures")
	}

	// sbsign's refusal names the input
	notEFI := filepath.Join(dir, "not.efi")
	os.WriteFile(notEFI, []byte("plain text"), 0o644)
	if _, err := k.Signed(ctx, notEFI, cache); err == nil || !strings.Contains(err.Error(), notEFI) {
		t.Errorf("signing a text file: %v", err)
	}
}
