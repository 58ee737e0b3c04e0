package publish

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/diskless/diskless/pkg/sign"
)

// SigName is the signify signature of SHA256SUMS, beside it.
const SigName = SumsName + ".sig"

// Signer signs the SHA256SUMS of what is published or bundled
// (SIGNING_KEY).
type Signer struct {
	Key *sign.SecretKey
	// PubName is the public key file's name, for the signature's comment.
	PubName string
}

func (s *Signer) signature(sums []byte) []byte {
	return s.Key.Sign(sums, s.PubName).Marshal()
}

// CheckSignature verifies sig (SHA256SUMS.sig) over sums (SHA256SUMS)
// against the trusted keys; where names the set in the error. A missing
// signature (sig nil) is an error too.
func CheckSignature(where string, sums, sig []byte, trusted []*sign.PublicKey) error {
	if sig == nil {
		return fmt.Errorf("%s: no %s: it is not signed, and TRUSTED_KEY asks for a signature", where, SigName)
	}
	g, err := sign.ParseSignature(sig)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", where, SigName, err)
	}
	if err := sign.Verify(sums, g, trusted...); err != nil {
		return fmt.Errorf("%s: %s does not verify: %w", where, SigName, err)
	}
	return nil
}

// checkDirSignature is CheckSignature for the SHA256SUMS and
// SHA256SUMS.sig in dir (a generation, or the root through its links).
func checkDirSignature(dir string, trusted []*sign.PublicKey) error {
	sums, err := os.ReadFile(filepath.Join(dir, SumsName))
	if err != nil {
		return fmt.Errorf("%s: %w", dir, unwrap(err))
	}
	sig, err := os.ReadFile(filepath.Join(dir, SigName))
	if errors.Is(err, fs.ErrNotExist) {
		sig = nil
	} else if err != nil {
		return fmt.Errorf("%s: %w", dir, unwrap(err))
	}
	return CheckSignature(dir, sums, sig, trusted)
}
