package pipeline

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/diskless/diskless/internal/fsutil"
	"github.com/diskless/diskless/pkg/deps"
	"github.com/diskless/diskless/pkg/kbuild"
	"github.com/diskless/diskless/pkg/publish"
	"github.com/diskless/diskless/pkg/qemu"
	"github.com/diskless/diskless/pkg/secureboot"
	"github.com/diskless/diskless/pkg/settings"
)

// CheckSecureBoot refuses, before any work, to publish for nodes whose
// firmware enforces Secure Boot (secure_boot = true) without the key that
// signs what their firmware loads: their firmware would refuse every
// unsigned EFI binary. It names the nodes.
func CheckSecureBoot(s *settings.Settings) error {
	if s.SecureBoot != nil || s.Inventory == nil {
		return nil
	}
	names := s.Inventory.SecureBootNodes()
	if len(names) == 0 {
		return nil
	}
	more := ""
	if len(names) > 3 {
		more = fmt.Sprintf(" and %d more", len(names)-3)
		names = names[:3]
	}
	return fmt.Errorf("%s: %s%s: secure_boot = true, but SECUREBOOT_KEY and SECUREBOOT_CERT are not set, and their firmware refuses unsigned EFI binaries: make a key (secureboot:keygen name=db), enroll db.cer in their firmware (README: Secure Boot) and set both", s.Inventory.File(), strings.Join(names, ", "), more)
}

// SignEFI replaces each EFI application among files (the x86-64 EFI-stub
// kernel, the arm64 and riscv64 Image and zboot kernels, snponly.efi) by
// its copy signed with SECUREBOOT_KEY (secureboot.Key.Signed, cached
// under CacheDir), so the signature sits inside the published file and
// SHA256SUMS covers it. Without the key, files are returned as they are.
// A file changed since its build (its recorded SHA256) is refused before
// it is signed, as publish would refuse it unsigned.
func SignEFI(ctx context.Context, s *settings.Settings, log *slog.Logger, files []publish.File) ([]publish.File, error) {
	k := s.SecureBoot
	if k == nil {
		return files, nil
	}
	if err := deps.Ensure(ctx, log, deps.SecureBoot()); err != nil {
		return nil, err
	}
	out := make([]publish.File, len(files))
	copy(out, files)
	n := 0
	for i, f := range out {
		if f.Source == "" {
			continue
		}
		efi, err := secureboot.IsEFI(f.Source)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		if !efi {
			continue
		}
		if f.SHA256 != "" {
			if sum, _, err := fsutil.HashFile(f.Source); err != nil {
				return nil, err
			} else if sum != f.SHA256 {
				return nil, fmt.Errorf("%s (%s) changed since it was built: its build recorded sha256 %s, it now hashes to %s; rebuild it", f.Name, f.Source, f.SHA256, sum)
			}
		}
		if err := payloadSigned(ctx, k, f); err != nil {
			return nil, err
		}
		signed, err := k.Signed(ctx, f.Source, s.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("signing %s for Secure Boot: %w", f.Name, err)
		}
		sum, _, err := fsutil.HashFile(signed)
		if err != nil {
			return nil, err
		}
		out[i].Source, out[i].SHA256, out[i].SecureBoot = signed, sum, SignedByLabel(k)
		n++
	}
	if log != nil && n > 0 {
		log.Info("signed for Secure Boot", "files", n, "cert", k.CertPath)
	}
	return out, nil
}

// SignedByLabel is what the manifest records of the key that signed a
// file for Secure Boot (secure_boot_signed_by): the certificate's subject
// and fingerprint (keygen's certificates share their subject's form).
func SignedByLabel(k *secureboot.Key) string {
	return k.Cert.Subject.String() + " sha256:" + k.Fingerprint()
}

// payloadSigned refuses an EFI zboot kernel (vmlinuz_<arch> of arm64 and
// riscv64) whose payload, the kernel its decompressor hands to the
// firmware's LoadImage, is not signed by k: that kernel was built without
// SECUREBOOT_KEY (or with another), and signing the outer file alone
// would make a kernel the firmware starts and then refuses.
func payloadSigned(ctx context.Context, k *secureboot.Key, f publish.File) error {
	img, err := kbuild.ZbootPayload(f.Source)
	if err != nil || img == nil {
		return nil // not a zboot image, or a payload only its size tells
	}
	tmp, err := os.CreateTemp("", "diskless-payload-*.efi")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(img)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if !k.SignedBy(ctx, tmp.Name()) {
		return fmt.Errorf("%s: the kernel inside it is not signed by SECUREBOOT_CERT (%s): it was built without SECUREBOOT_KEY or with another key, and its decompressor hands that kernel to the firmware, which would refuse it: build it again with the key (build:slave arch=%s, or build:all), then publish", f.Name, k.CertPath, f.Arch)
	}
	return nil
}

// checkSignedForNodes refuses, when the inventory has secure_boot nodes,
// files a publish would serve them unsigned: the EFI binaries it carries
// over from the live generation (kept) not signed by SECUREBOOT_KEY, and,
// without the key (bundles CI signed: PUBLISH_FROM), the EFI binaries of
// files that no signature is recorded for.
func checkSignedForNodes(ctx context.Context, s *settings.Settings, files, kept []publish.File) error {
	if s.Inventory == nil || len(s.Inventory.SecureBootNodes()) == 0 {
		return nil
	}
	var bad []string
	check := func(list []publish.File, live bool) error {
		for _, f := range list {
			if f.Source == "" {
				continue
			}
			efi, err := secureboot.IsEFI(f.Source)
			if err != nil {
				return fmt.Errorf("%s: %w", f.Name, err)
			}
			switch {
			case !efi:
			case s.SecureBoot != nil && live && !s.SecureBoot.SignedBy(ctx, f.Source):
				bad = append(bad, f.Name+" (kept from the live generation)")
			case s.SecureBoot == nil && f.SecureBoot == "" && !publish.ShimLoader(f.Name):
				// (shim and GRUB carry Microsoft's and Debian's signatures)
				bad = append(bad, f.Name)
			}
		}
		return nil
	}
	if err := check(kept, true); err != nil {
		return err
	}
	if err := check(files, false); err != nil {
		return err
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("%s has secure_boot nodes (%s), whose firmware would refuse %s: not signed for Secure Boot (by SECUREBOOT_CERT). Publish every arch again with SECUREBOOT_KEY and SECUREBOOT_CERT set (publish, or build:all for each arch), or bundles ci:artifacts signed with them", s.Inventory.File(), strings.Join(s.Inventory.SecureBootNodes(), ", "), strings.Join(bad, ", "))
}

// preflightSecureBoot is what republishing the per-node files
// (PublishNodes, and nodes:provision and image:publish, which end with
// it) checks before any work: with secure_boot nodes, every EFI binary of
// the live generation, which it carries over, must be signed (by
// SECUREBOOT_KEY when set, else recorded as signed: sets CI signed); with
// nothing published yet, the key must be set.
func preflightSecureBoot(ctx context.Context, s *settings.Settings) error {
	if s.Inventory == nil || len(s.Inventory.SecureBootNodes()) == 0 {
		return nil
	}
	if _, err := publish.Current(s.Root); err != nil {
		return CheckSecureBoot(s)
	}
	live, err := publish.Kept(s.Root, nil, nil, false)
	if err != nil {
		return err
	}
	return checkSignedForNodes(ctx, s, nil, live)
}

// warnLabSecureBoot says, when the lab is to boot secure_boot nodes, that
// its firmware trusts only Debian's snakeoil test key (the only key a
// variable store Debian ships has in db): what another SECUREBOOT_CERT
// signed is refused there.
func warnLabSecureBoot(s *settings.Settings, log *slog.Logger) {
	// without a key, publishing refuses what the nodes could not boot
	if s.Inventory == nil || len(s.Inventory.SecureBootNodes()) == 0 || s.SecureBoot == nil {
		return
	}
	if data, err := os.ReadFile(qemu.OVMFSnakeoilCert); err == nil {
		if b, _ := pem.Decode(data); b != nil && bytes.Equal(b.Bytes, s.SecureBoot.Cert.Raw) {
			return
		}
	}
	if log == nil {
		return
	}
	log.Warn("the lab's Secure Boot firmware has Debian's snakeoil test key in db, not SECUREBOOT_CERT: its secure_boot nodes will refuse what this publish signs; for the lab, sign with the snakeoil key (README: Secure Boot)", "nodes", strings.Join(s.Inventory.SecureBootNodes(), ", "), "cert", qemu.OVMFSnakeoilCert)
}
