package secureboot

import (
	"bytes"
	"context"
	"debug/pe"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/diskless/diskless/internal/fsutil"
)

// Programs: sbsigntool's sbsign writes the Authenticode signature into a
// PE image as the firmware checks it (the same tool Debian signs its own
// EFI binaries with, and the one the firmware refusal was measured
// against); sbverify checks one offline.
const (
	SignProgram   = "sbsign"
	VerifyProgram = "sbverify"
	Package       = "sbsigntool"
)

// imageSubsystemEFIApplication is a PE optional header's Subsystem of an
// EFI application (the kernels' EFI stub and zboot, iPXE's snponly.efi).
const imageSubsystemEFIApplication = 10

// IsEFI says whether the file at path is an EFI application, a PE/COFF
// image the firmware's loader runs: the x86-64 EFI-stub bzImage, the
// arm64 and riscv64 Image and zboot kernels, snponly.efi. Anything else
// (an ELF, pxelinux.0, undionly.kpxe, a cpio) is not, and is not an error.
func IsEFI(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var mz [2]byte
	if _, err := io.ReadFull(f, mz[:]); err != nil || string(mz[:]) != "MZ" {
		return false, nil
	}
	p, err := pe.NewFile(f)
	if err != nil {
		return false, nil
	}
	defer p.Close()
	subsystem, _ := optionalHeader(p)
	return subsystem == imageSubsystemEFIApplication, nil
}

// optionalHeader is a PE image's subsystem and data directories, for its
// 32- or 64-bit optional header (none: 0, nil).
func optionalHeader(p *pe.File) (subsystem uint16, dirs []pe.DataDirectory) {
	switch h := p.OptionalHeader.(type) {
	case *pe.OptionalHeader64:
		return h.Subsystem, h.DataDirectory[:min(h.NumberOfRvaAndSizes, 16)]
	case *pe.OptionalHeader32:
		return h.Subsystem, h.DataDirectory[:min(h.NumberOfRvaAndSizes, 16)]
	}
	return 0, nil
}

// Signed is the copy of the EFI image in at signed with k: made once by
// sbsign and kept in cacheDir under the hash of the input and of the
// certificate, so that publishing the same build again publishes the same
// bytes (sbsign puts the signing time into each signature: two runs
// differ), and a replica or a bundle of it carries the same hashes. An image
// already signed by k is returned as it is. Each signed copy is checked
// with sbverify against k's certificate before it is used.
func (k *Key) Signed(ctx context.Context, in, cacheDir string) (string, error) {
	if k.SignedBy(ctx, in) {
		return in, nil
	}
	inSum, _, err := fsutil.HashFile(in)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cacheDir, "secureboot", k.Fingerprint()[:16])
	out := filepath.Join(dir, inSum+".efi")
	if _, err := os.Stat(out); err == nil {
		if k.SignedBy(ctx, out) {
			return out, nil
		}
		os.Remove(out) // a damaged cache entry: sign again
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	cert, done, err := k.certPEM()
	if err != nil {
		return "", err
	}
	defer done()
	t, err := os.CreateTemp(dir, inSum+"-*.tmp")
	if err != nil {
		return "", err
	}
	tmp := t.Name()
	t.Close()
	defer os.Remove(tmp)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, SignProgram, "--key", k.KeyPath, "--cert", cert, "--output", tmp, in)
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", fmt.Errorf("%s not found: install the Debian package %s", SignProgram, Package)
		}
		return "", fmt.Errorf("%s %s: %v: %s", SignProgram, in, err, strings.TrimSpace(stderr.String()))
	}
	if sum, _, err := fsutil.HashFile(in); err != nil || sum != inSum {
		return "", fmt.Errorf("%s changed while it was being signed", in)
	}
	if !k.SignedBy(ctx, tmp) {
		return "", fmt.Errorf("%s signed by %s does not carry a signature by %s that sbverify accepts", in, SignProgram, k.CertPath)
	}
	// another process may have signed the same file meanwhile: the first
	// copy stays (its bytes may already be hashed for a publish)
	if err := os.Link(tmp, out); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	return out, nil
}

// SignedBy says whether the image at path carries a signature made with
// k (its certificate among the signatures' certificates) and verifies.
// sbverify alone cannot tell: given a certificate, it also accepts an
// image signed only by a chain it cannot complete (Debian's shim, signed
// by Microsoft, "verifies" against any certificate).
func (k *Key) SignedBy(ctx context.Context, path string) bool {
	sigs, err := signatures(path)
	if err != nil || !bytes.Contains(sigs, k.Cert.Raw) {
		return false
	}
	return k.verify(ctx, path) == nil
}

// signatures is the attribute certificate table of a PE image (its
// Authenticode signatures, PKCS #7), empty when it has none.
func signatures(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := pe.NewFile(f)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	_, dirs := optionalHeader(p)
	const security = 4 // IMAGE_DIRECTORY_ENTRY_SECURITY: a file offset, not an RVA
	if len(dirs) <= security || dirs[security].Size == 0 {
		return nil, nil
	}
	d := dirs[security]
	if st, err := f.Stat(); err != nil || int64(d.VirtualAddress)+int64(d.Size) > st.Size() {
		return nil, fmt.Errorf("%s: its signature table runs past the end of the file", path)
	}
	buf := make([]byte, d.Size)
	if _, err := f.ReadAt(buf, int64(d.VirtualAddress)); err != nil {
		return nil, fmt.Errorf("%s: its signature table: %w", path, err)
	}
	return buf, nil
}

// verify checks path's signature against k's certificate (sbverify).
func (k *Key) verify(ctx context.Context, path string) error {
	cert, done, err := k.certPEM()
	if err != nil {
		return err
	}
	defer done()
	return Verify(ctx, cert, path)
}

// certPEM is a PEM file of k's certificate for sbsign and sbverify, which
// read no DER (SECUREBOOT_CERT may be name.cer): SECUREBOOT_CERT itself
// when it is PEM, else a temporary copy that done removes.
func (k *Key) certPEM() (path string, done func(), err error) {
	if k.certIsPEM {
		return k.CertPath, func() {}, nil
	}
	f, err := os.CreateTemp("", "diskless-cert-*.pem")
	if err != nil {
		return "", nil, err
	}
	done = func() { os.Remove(f.Name()) }
	err = pem.Encode(f, &pem.Block{Type: "CERTIFICATE", Bytes: k.Cert.Raw})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		done()
		return "", nil, err
	}
	return f.Name(), done, nil
}

// Verify runs sbverify --cert certPath on the image at path: nil when a
// signature verifies and the image's hash matches (as an admin checks a
// published file by hand). It is lenient with a chain it cannot complete
// (see SignedBy), so it proves a signature by certPath only on an image
// that had no other.
func Verify(ctx context.Context, certPath, path string) error {
	out, err := exec.CommandContext(ctx, VerifyProgram, "--cert", certPath, path).CombinedOutput()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("%s not found: install the Debian package %s", VerifyProgram, Package)
		}
		return fmt.Errorf("%s --cert %s %s: %v: %s", VerifyProgram, certPath, path, err, strings.TrimSpace(string(out)))
	}
	return nil
}
