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
		signed, err := k.Signed(ctx, f.Source, s.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("signing %s for Secure Boot: %w", f.Name, err)
		}
		sum, _, err := fsutil.HashFile(signed)
		if err != nil {
			return nil, err
		}
		out[i].Source, out[i].SHA256, out[i].SecureBoot = signed, sum, k.Cert.Subject.String()
		n++
	}
	if log != nil && n > 0 {
		log.Info("signed for Secure Boot", "files", n, "cert", k.CertPath)
	}
	return out, nil
}

// warnLabSecureBoot says, when the lab is to boot secure_boot nodes, that
// its firmware trusts only Debian's snakeoil test key (the only key a
// variable store Debian ships has in db): what another SECUREBOOT_CERT
// signed is refused there.
func warnLabSecureBoot(s *settings.Settings, log *slog.Logger) {
	if s.Inventory == nil || len(s.Inventory.SecureBootNodes()) == 0 {
		return
	}
	if s.SecureBoot != nil {
		if data, err := os.ReadFile(qemu.OVMFSnakeoilCert); err == nil {
			if b, _ := pem.Decode(data); b != nil && bytes.Equal(b.Bytes, s.SecureBoot.Cert.Raw) {
				return
			}
		}
	}
	if log == nil {
		return
	}
	log.Warn("the lab's Secure Boot firmware has Debian's snakeoil test key in db, not SECUREBOOT_CERT: its secure_boot nodes will refuse what this publish signs; for the lab, sign with the snakeoil key (README: Secure Boot)", "nodes", strings.Join(s.Inventory.SecureBootNodes(), ", "), "cert", qemu.OVMFSnakeoilCert)
}
