// Package secureboot holds the UEFI Secure Boot signing key of a site:
// an RSA-2048 key and its X.509 certificate (what a firmware's db, a
// BMC or shim's MOK list enrolls), made by secureboot:keygen and read
// from SECUREBOOT_KEY and SECUREBOOT_CERT, checked before any work.
package secureboot

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/diskless/diskless/pkg/sign"
)

// Validity of a certificate keygen makes: firmware does not check
// expiry at boot (UEFI has no trusted clock), but sbsign's tools and
// auditors read it.
const Validity = 10 * 365 * 24 * time.Hour

// Key is a site's Secure Boot signing key with its certificate.
type Key struct {
	KeyPath, CertPath string
	Signer            *rsa.PrivateKey
	Cert              *x509.Certificate
	// certIsPEM: CertPath is PEM, which sbsign and sbverify read as it is
	certIsPEM bool
}

// Fingerprint is the hex SHA-256 of the certificate (DER).
func (k *Key) Fingerprint() string {
	sum := sha256.Sum256(k.Cert.Raw)
	return hex.EncodeToString(sum[:])
}

// WriteKeyPair makes name.key (PEM, PKCS #8, mode 0600), name.crt (PEM)
// and name.cer (DER, for firmware menus and BMCs) in dir: an RSA-2048 key
// and a self-signed code-signing certificate valid from now for Validity.
// It never overwrites a file.
func WriteKeyPair(dir, name string, now time.Time) (keyPath, crtPath, cerPath string, err error) {
	if name == "" || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" || strings.HasPrefix(name, ".") {
		return "", "", "", fmt.Errorf("key name %q: letters, digits, '.', '_' and '-' only (e.g. db)", name)
	}
	keyPath, crtPath, cerPath = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".cer")
	for _, p := range []string{keyPath, crtPath, cerPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", "", fmt.Errorf("%s exists: not overwriting a key (move it away to make a new one)", p)
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", "", err
	}
	der, err := selfSigned(key, name, now, []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning})
	if err != nil {
		return "", "", "", err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", "", err
	}
	written := []string{}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600},
		{crtPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644},
		{cerPath, der, 0o644},
	} {
		if err := sign.WriteKeyFile(f.path, f.data, f.mode); err != nil {
			for _, p := range written {
				os.Remove(p)
			}
			return "", "", "", err
		}
		written = append(written, f.path)
	}
	return keyPath, crtPath, cerPath, nil
}

// selfSigned is a certificate for key, named "diskless Secure Boot
// <name>", with the extended key usages given.
func selfSigned(key *rsa.PrivateKey, name string, now time.Time, usage []x509.ExtKeyUsage) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "diskless Secure Boot " + name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           usage,
		BasicConstraintsValid: true,
	}
	return x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
}

// Load reads SECUREBOOT_KEY (keyPath) and SECUREBOOT_CERT (certPath) and
// checks they can sign what a firmware will load: an RSA key (UEFI
// requires RSA-2048 in db), the certificate's own public key, valid at
// now, usable for code signing. Each error names the setting and the file.
func Load(keyPath, certPath string, now time.Time) (*Key, error) {
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("SECUREBOOT_KEY=%s: %w", keyPath, err)
	}
	certData, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("SECUREBOOT_CERT=%s: %w", certPath, err)
	}
	signer, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("SECUREBOOT_KEY=%s: %w (want an RSA private key in PEM, as secureboot:keygen writes)", keyPath, err)
	}
	cert, err := parseCert(certData)
	if err != nil {
		return nil, fmt.Errorf("SECUREBOOT_CERT=%s: %w (want an X.509 certificate, PEM or DER)", certPath, err)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(&signer.PublicKey) {
		return nil, fmt.Errorf("SECUREBOOT_KEY=%s and SECUREBOOT_CERT=%s do not match: the certificate is for another key", keyPath, certPath)
	}
	if pub.N.BitLen() < 2048 {
		return nil, fmt.Errorf("SECUREBOOT_KEY=%s: RSA-%d; firmware wants RSA-2048 or more", keyPath, pub.N.BitLen())
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, fmt.Errorf("SECUREBOOT_CERT=%s: valid from %s to %s, not now (%s): make a new one (secureboot:keygen) and enroll it", certPath, cert.NotBefore.Format(time.DateOnly), cert.NotAfter.Format(time.DateOnly), now.Format(time.DateOnly))
	}
	if !codeSigning(cert) {
		return nil, fmt.Errorf("SECUREBOOT_CERT=%s: not a code-signing certificate (its key usage or extended key usage leaves out signing code): secureboot:keygen makes one", certPath)
	}
	return &Key{KeyPath: keyPath, CertPath: certPath, Signer: signer, Cert: cert, certIsPEM: bytes.HasPrefix(bytes.TrimSpace(certData), []byte("-----BEGIN CERTIFICATE-----"))}, nil
}

// codeSigning says whether the certificate may sign code: a key usage,
// when given, with digital signatures; an extended key usage, when given,
// with code signing (or any).
func codeSigning(c *x509.Certificate) bool {
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return false
	}
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	return slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageCodeSigning) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

func parseKey(data []byte) (*rsa.PrivateKey, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("no PEM block")
	}
	var k crypto.PrivateKey
	var err error
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("a PEM %q block", b.Type)
	}
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T key, not RSA", k)
	}
	return rk, nil
}

func parseCert(data []byte) (*x509.Certificate, error) {
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a PEM %q block", b.Type)
		}
		data = b.Bytes
	} else if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----")) {
		return nil, errors.New("a PEM file without a certificate")
	}
	return x509.ParseCertificate(data)
}
