package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/sign"
)

type keyPair struct {
	sec     *sign.SecretKey
	pub     *sign.PublicKey
	pubPath string
}

func keys(t testing.TB, name string) keyPair {
	t.Helper()
	pub, sec, err := sign.WriteKeyPair(t.TempDir(), name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign.ReadSecretKey(sec)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{sec: s, pub: s.Public(), pubPath: pub}
}

func (k keyPair) signer() *Signer { return &Signer{Key: k.sec, PubName: filepath.Base(k.pubPath)} }

// signify-openbsd checks SHA256SUMS.sig in dir with the public key file.
func signifyVerifies(t *testing.T, signify, dir, pubPath string) error {
	t.Helper()
	c := exec.Command(signify, "-V", "-p", pubPath, "-m", SumsName, "-x", SigName)
	c.Dir = dir
	out, err := c.CombinedOutput()
	if err == nil && !strings.Contains(string(out), "Signature Verified") {
		t.Errorf("signify-openbsd said %q", out)
	}
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// goVerifies checks SHA256SUMS.sig in dir against pub with pkg/sign.
func goVerifies(t *testing.T, dir string, pub *sign.PublicKey) error {
	t.Helper()
	sums, err := os.ReadFile(filepath.Join(dir, SumsName))
	if err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(dir, SigName))
	if err != nil {
		return err
	}
	sig, err := sign.ParseSignature(data)
	if err != nil {
		return err
	}
	return sign.Verify(sums, sig, pub)
}

// signedBundle is an x86_64 bundle signed by ci.
func signedBundle(t *testing.T, ci keyPair) string {
	t.Helper()
	files, err := ReadBundle(archBundle(t, "x86_64", "v1"), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	signed := filepath.Join(t.TempDir(), "signed.tar.zst")
	if _, err := WriteBundle(signed, files, ci.signer()); err != nil {
		t.Fatal(err)
	}
	return signed
}

// CI signs its bundle, the master accepts it with the CI key trusted and
// signs what it publishes with its own; the signatures verify (pkg/sign)
// in the unpacked bundle and in the published tree, and verify accepts
// the tree with the master's key trusted.
func TestSignedBundleToSignedTree(t *testing.T) {
	ci, master := keys(t, "ci"), keys(t, "master")
	signed := signedBundle(t, ci)
	unpacked := t.TempDir()
	untarBundle(t, signed, unpacked)
	if err := goVerifies(t, unpacked, ci.pub); err != nil {
		t.Errorf("the unpacked bundle's signature: %v", err)
	}
	if err := goVerifies(t, unpacked, master.pub); !errors.Is(err, sign.ErrOtherKey) {
		t.Errorf("the unpacked bundle's signature against the master's key: %v", err)
	}
	trusted := []*sign.PublicKey{ci.pub, master.pub}
	got, err := ReadBundle(signed, t.TempDir(), trusted)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if _, err := Publish(context.Background(), got, Options{Root: root, Merge: true, PXE: &boot, Sign: master.signer(), Trusted: trusted}); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(root, trusted...); err != nil {
		t.Fatal(err)
	}
	if err := goVerifies(t, filepath.Join(root, ".diskless", "current"), master.pub); err != nil {
		t.Errorf("the published tree's signature: %v", err)
	}
	sig, _ := os.ReadFile(filepath.Join(root, SigName))
	if !strings.HasPrefix(string(sig), "untrusted comment: verify with master.pub\n") {
		t.Errorf("signature comment: %q", sig)
	}
	// a second signed publish (arm64) keeps x86_64 and still verifies
	arm := archBundle(t, "arm64", "v1")
	af, _ := ReadBundle(arm, t.TempDir(), nil)
	armSigned := filepath.Join(t.TempDir(), "arm.tar.zst")
	WriteBundle(armSigned, af, ci.signer())
	got, err = ReadBundle(armSigned, t.TempDir(), trusted)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Publish(context.Background(), got, Options{Root: root, Merge: true, PXE: &boot, Sign: master.signer(), Trusted: trusted}); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(root, trusted...); err != nil {
		t.Fatal(err)
	}
	if liveArches(t, root) != "arm64,x86_64" {
		t.Errorf("arches %s", liveArches(t, root))
	}
}

// The independent check: GNU tar with zstd unpacks a signed bundle and
// signify-openbsd verifies its signature, and the signature of the tree
// the master publishes from it.
func TestSignifyVerifiesBundleAndTree(t *testing.T) {
	signify := testutil.NeedTool(t, "signify-openbsd", "signify-openbsd")
	testutil.NeedTool(t, "zstd", "zstd") // tar --zstd runs it
	ci, master := keys(t, "ci"), keys(t, "master")
	signed := signedBundle(t, ci)
	unpacked := t.TempDir()
	if out, err := exec.Command(testutil.NeedBaseTool(t, "tar", "tar"), "--zstd", "-xf", signed, "-C", unpacked).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	if err := signifyVerifies(t, signify, unpacked, ci.pubPath); err != nil {
		t.Errorf("signify-openbsd in the unpacked bundle: %v", err)
	}
	if err := signifyVerifies(t, signify, unpacked, master.pubPath); err == nil {
		t.Error("signify-openbsd verified the bundle with the master's key")
	}
	trusted := []*sign.PublicKey{ci.pub, master.pub}
	got, err := ReadBundle(signed, t.TempDir(), trusted)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if _, err := Publish(context.Background(), got, Options{Root: root, Merge: true, PXE: &boot, Sign: master.signer(), Trusted: trusted}); err != nil {
		t.Fatal(err)
	}
	// signify opens its files with O_NOFOLLOW: in the published tree it
	// is run in the live generation (.diskless/current), where SHA256SUMS
	// is a file, not the top-level link
	if err := signifyVerifies(t, signify, filepath.Join(root, ".diskless", "current"), master.pubPath); err != nil {
		t.Errorf("signify-openbsd in the published tree: %v", err)
	}
}

// Every way a bundle can fail its signature is refused, naming what
// failed, and nothing is published.
func TestSignatureRefusals(t *testing.T) {
	ci, other := keys(t, "ci"), keys(t, "other")
	trusted := []*sign.PublicKey{ci.pub}
	files, err := ReadBundle(archBundle(t, "x86_64", "v1"), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tar.zst")
	if _, err := WriteBundle(good, files, ci.signer()); err != nil {
		t.Fatal(err)
	}
	byOther := filepath.Join(dir, "other.tar.zst")
	WriteBundle(byOther, files, other.signer())
	unsigned := filepath.Join(dir, "unsigned.tar.zst")
	WriteBundle(unsigned, files, nil)
	changedFile := filepath.Join(dir, "changed-file.tar.zst")
	rewrite(t, good, changedFile, "bzImage_x86_64", func(b []byte) []byte { return append(b, 'x') })
	// a changed file with SHA256SUMS changed to match: only the signature
	// catches it
	changedSums := filepath.Join(dir, "changed-sums.tar.zst")
	var newSum string
	rewrite(t, good, filepath.Join(dir, "tmp.tar.zst"), "bzImage_x86_64", func(b []byte) []byte {
		b = append(b, 'x')
		newSum = sha(b)
		return b
	})
	rewrite(t, filepath.Join(dir, "tmp.tar.zst"), changedSums, SumsName, func(b []byte) []byte {
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if strings.HasSuffix(l, "  bzImage_x86_64") {
				l = newSum + "  bzImage_x86_64"
			}
			out = append(out, l)
		}
		return []byte(strings.Join(out, "\n") + "\n")
	})
	missingSig := filepath.Join(dir, "missing-sig.tar.zst")
	rewrite(t, good, missingSig, SigName, func([]byte) []byte { return nil })
	badSig := filepath.Join(dir, "bad-sig.tar.zst")
	rewrite(t, good, badSig, SigName, func(b []byte) []byte { return bytes.Replace(b, []byte("\n"), []byte("\nXX"), 1) })

	if _, err := ReadBundle(good, t.TempDir(), trusted); err != nil {
		t.Fatalf("the good bundle: %v", err)
	}
	for path, want := range map[string]string{
		byOther:     "signed by another key",
		unsigned:    "no SHA256SUMS.sig",
		missingSig:  "no SHA256SUMS.sig",
		changedFile: "bzImage_x86_64: sha256",
		changedSums: "SHA256SUMS.sig does not verify: the signature does not match the signed file",
		badSig:      "SHA256SUMS.sig: signature",
	} {
		_, err := ReadBundle(path, t.TempDir(), trusted)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), filepath.Base(path)) {
			t.Errorf("%s: %v (want %q)", filepath.Base(path), err, want)
		}
	}
}

// verify and rollback with TRUSTED_KEY refuse a tree or a generation whose
// signature does not verify.
func TestVerifyAndRollbackCheckTheSignature(t *testing.T) {
	master, other := keys(t, "master"), keys(t, "other")
	trusted := []*sign.PublicKey{master.pub}
	root := t.TempDir()
	files, _ := ReadBundle(archBundle(t, "x86_64", "v1"), t.TempDir(), nil)
	// generation 1 unsigned, 2 signed
	if _, err := Publish(context.Background(), files, Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(root, trusted...); err == nil || !strings.Contains(err.Error(), "no SHA256SUMS.sig") {
		t.Errorf("unsigned tree with TRUSTED_KEY: %v", err)
	}
	if _, err := Publish(context.Background(), files, Options{Root: root, Sign: master.signer()}); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(root, trusted...); err != nil {
		t.Fatalf("signed tree: %v", err)
	}
	if _, _, err := Rollback(root, false, nil, trusted...); err == nil || !strings.Contains(err.Error(), "not rolling back to generation 1") {
		t.Errorf("rollback to an unsigned generation: %v", err)
	}
	if n, _ := Current(root); n != 2 {
		t.Errorf("generation %d live after a refused rollback", n)
	}
	// the live signature replaced by another key's
	live := filepath.Join(root, genDir, "000002", SigName)
	sums, _ := os.ReadFile(filepath.Join(root, SumsName))
	os.WriteFile(live, other.sec.Sign(sums, "other.pub").Marshal(), 0o644)
	if _, err := Verify(root, trusted...); err == nil || !strings.Contains(err.Error(), "signed by another key") {
		t.Errorf("signature by another key: %v", err)
	}
	// and a publish that keeps the live generation's arches refuses it
	arm, _ := ReadBundle(archBundle(t, "arm64", "v1"), t.TempDir(), nil)
	if _, err := Publish(context.Background(), arm, Options{Root: root, Merge: true, Sign: master.signer(), Trusted: trusted}); err == nil || !strings.Contains(err.Error(), "the live generation 2") {
		t.Errorf("merging from a live generation whose signature fails: %v", err)
	}
	if n, _ := Current(root); n != 2 {
		t.Errorf("generation %d live after a refused publish", n)
	}
}

func sha(b []byte) string { return sum(b) }
