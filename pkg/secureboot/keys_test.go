package secureboot

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)

// keygen writes the key (0600), the certificate in PEM and DER, all of
// one key; the pair loads; nothing is overwritten.
func TestWriteKeyPair(t *testing.T) {
	dir := t.TempDir()
	key, crt, cer, err := WriteKeyPair(dir, "db", now)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v %v, want 0600", key, st.Mode(), err)
	}
	k, err := Load(key, crt, now)
	if err != nil {
		t.Fatal(err)
	}
	if k.Signer.N.BitLen() != 2048 || k.Cert.Subject.CommonName != "diskless Secure Boot db" || !k.Cert.NotAfter.After(now.Add(9*365*24*time.Hour)) {
		t.Errorf("RSA-%d, %q until %s", k.Signer.N.BitLen(), k.Cert.Subject.CommonName, k.Cert.NotAfter)
	}
	der, _ := os.ReadFile(cer)
	if !k.Cert.Equal(mustParse(t, der)) {
		t.Error("name.cer is not name.crt in DER")
	}
	// the DER file loads as the certificate too
	if _, err := Load(key, cer, now); err != nil {
		t.Error(err)
	}
	if _, _, _, err := WriteKeyPair(dir, "db", now); err == nil || !strings.Contains(err.Error(), "exists: not overwriting") {
		t.Errorf("second keygen: %v", err)
	}
	for _, bad := range []string{"", "../db", ".db", "d b"} {
		if _, _, _, err := WriteKeyPair(dir, bad, now); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	// OpenSSL (what sbsign reads them with) agrees
	if _, err := exec.LookPath("openssl"); err == nil {
		out, err := exec.Command("openssl", "x509", "-in", crt, "-noout", "-text").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Code Signing") || !strings.Contains(string(out), "2048 bit") {
			t.Errorf("openssl x509: %v\n%s", err, out)
		}
		if out, err := exec.Command("openssl", "rsa", "-in", key, "-check", "-noout").CombinedOutput(); err != nil {
			t.Errorf("openssl rsa -check: %v\n%s", err, out)
		}
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Every bad pair is refused before any work, naming the setting and
// what to do.
func TestLoadRefuses(t *testing.T) {
	dir := t.TempDir()
	key, crt, _, err := WriteKeyPair(dir, "db", now)
	if err != nil {
		t.Fatal(err)
	}
	_, crt2, _, err := WriteKeyPair(dir, "other", now)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	signerOf := func(t *testing.T) *rsa.PrivateKey {
		k, err := Load(key, crt, now)
		if err != nil {
			t.Fatal(err)
		}
		return k.Signer
	}
	server, err := selfSigned(signerOf(t), "tls", now, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})
	if err != nil {
		t.Fatal(err)
	}
	old, err := selfSigned(signerOf(t), "old", now.Add(-20*365*24*time.Hour), []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning})
	if err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "garbage")
	os.WriteFile(notPEM, []byte("not a key\n"), 0o600)
	for _, c := range []struct{ key, crt, want string }{
		{filepath.Join(dir, "missing.key"), crt, "SECUREBOOT_KEY=" + filepath.Join(dir, "missing.key")},
		{key, filepath.Join(dir, "missing.crt"), "SECUREBOOT_CERT=" + filepath.Join(dir, "missing.crt")},
		{key, crt2, "do not match: the certificate is for another key"},
		{key, write("tls.crt", server), "not a code-signing certificate"},
		{key, write("old.crt", old), "not now (2026-12-02): make a new one"},
		{notPEM, crt, "want an RSA private key in PEM"},
		{key, notPEM, "want an X.509 certificate"},
		{crt, crt, `a PEM "CERTIFICATE" block`},
	} {
		if _, err := Load(c.key, c.crt, now); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Load(%s, %s): %v, want %q", filepath.Base(c.key), filepath.Base(c.crt), err, c.want)
		}
	}
}
