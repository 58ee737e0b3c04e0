package sign

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/testutil"
)

func newKey(t testing.TB, comment string) *SecretKey {
	t.Helper()
	k, err := GenerateKey(nil, comment)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRoundTripAndVerify(t *testing.T) {
	k := newKey(t, "ci")
	pub, err := ParsePublicKey(k.Public().Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if pub.Comment != "ci public key" || pub.KeyNum != k.KeyNum || !pub.Key.Equal(k.Public().Key) {
		t.Errorf("public key round trip: %+v", pub)
	}
	sec, err := ParseSecretKey(k.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if !sec.Key.Equal(k.Key) || sec.Comment != "ci secret key" {
		t.Error("secret key round trip")
	}
	msg := []byte("abc  bzImage_x86_64\n")
	sig, err := ParseSignature(sec.Sign(msg, "ci.pub").Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if sig.Comment != "verify with ci.pub" {
		t.Errorf("signature comment %q", sig.Comment)
	}
	if err := Verify(msg, sig, pub); err != nil {
		t.Errorf("good signature: %v", err)
	}
	if err := Verify(append(msg, 'x'), sig, pub); err == nil || !strings.Contains(err.Error(), "does not match the signed file") {
		t.Errorf("changed message: %v", err)
	}
	other := newKey(t, "other")
	if err := Verify(msg, sig, other.Public()); !errors.Is(err, ErrOtherKey) {
		t.Errorf("another key: %v", err)
	}
	// several trusted keys (a rotation): the one with the key number is used
	if err := Verify(msg, sig, other.Public(), pub); err != nil {
		t.Errorf("two trusted keys: %v", err)
	}
	// a forged signature with the right key number
	forged := other.Sign(msg, "ci.pub")
	forged.KeyNum = pub.KeyNum
	if err := Verify(msg, forged, pub); err == nil {
		t.Error("a signature by another key under the trusted key's number verified")
	}
}

func TestBadFiles(t *testing.T) {
	k := newKey(t, "ci")
	good := string(k.Public().Marshal())
	for name, c := range map[string]struct {
		data, want string
	}{
		"no comment":    {strings.SplitN(good, "\n", 2)[1], "not a signify file"},
		"not base64":    {"untrusted comment: x\n!!!\n", "not base64"},
		"short":         {"untrusted comment: x\nRWQ=\n", "2 bytes"},
		"third line":    {good + "junk\n", "more than two lines"},
		"wrong alg":     {"untrusted comment: x\n" + strings.Replace(strings.SplitN(good, "\n", 3)[1], "RW", "QW", 1) + "\n", "algorithm"},
		"secret as pub": {string(k.Marshal()), "bytes, a signify public key has 42"},
	} {
		if _, err := ParsePublicKey([]byte(c.data)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v (want %q)", name, err, c.want)
		}
	}
	sec := k.Marshal()
	lines := strings.Split(string(sec), "\n")
	damaged := []byte(lines[1])
	damaged[60] ^= 1 // inside the key: checksum fails
	if _, err := ParseSecretKey([]byte(lines[0] + "\n" + string(damaged) + "\n")); err == nil {
		t.Error("a damaged secret key parsed")
	}
}

// Debian's signify-openbsd verifies what diskless signs, and diskless reads
// the keys and signatures it makes.
func TestInteropWithSignifyOpenBSD(t *testing.T) {
	signify := testutil.NeedTool(t, "signify-openbsd", "signify-openbsd")
	dir := t.TempDir()
	msg := filepath.Join(dir, "SHA256SUMS")
	os.WriteFile(msg, []byte("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  empty\n"), 0o644)
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(signify, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("signify-openbsd %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	// ours -> signify
	k := newKey(t, "ci")
	os.WriteFile(filepath.Join(dir, "ci.pub"), k.Public().Marshal(), 0o644)
	data, _ := os.ReadFile(msg)
	os.WriteFile(msg+".sig", k.Sign(data, "ci.pub").Marshal(), 0o644)
	if out := run("-V", "-p", filepath.Join(dir, "ci.pub"), "-m", msg, "-x", msg+".sig"); !strings.Contains(out, "Signature Verified") {
		t.Errorf("signify says %q", out)
	}
	// signify signs with our secret key file
	os.WriteFile(filepath.Join(dir, "ci.sec"), k.Marshal(), 0o600)
	run("-S", "-s", filepath.Join(dir, "ci.sec"), "-m", msg, "-x", msg+".sig2")
	sig2, _ := os.ReadFile(msg + ".sig2")
	g, err := ParseSignature(sig2)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(data, g, k.Public()); err != nil {
		t.Errorf("signify's signature with our key: %v", err)
	}
	// signify's own keys -> ours
	run("-G", "-n", "-c", "signify", "-p", filepath.Join(dir, "s.pub"), "-s", filepath.Join(dir, "s.sec"))
	spub, _ := os.ReadFile(filepath.Join(dir, "s.pub"))
	ssec, _ := os.ReadFile(filepath.Join(dir, "s.sec"))
	p, err := ParsePublicKey(spub)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSecretKey(ssec)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(msg+".sig3", s.Sign(data, "s.pub").Marshal(), 0o644)
	run("-V", "-p", filepath.Join(dir, "s.pub"), "-m", msg, "-x", msg+".sig3")
	if err := Verify(data, s.Sign(data, "s.pub"), p); err != nil {
		t.Error(err)
	}
	// a changed file fails signify too (the oracle agrees with us)
	os.WriteFile(msg, append(data, '\n'), 0o644)
	if out, err := exec.Command(signify, "-V", "-p", filepath.Join(dir, "ci.pub"), "-m", msg, "-x", msg+".sig").CombinedOutput(); err == nil {
		t.Errorf("signify verified a changed file: %s", out)
	}
}

// A passphrase-protected signify key is refused with what to do.
func TestEncryptedKeyRefused(t *testing.T) {
	k := newKey(t, "ci")
	data := k.Marshal()
	lines := strings.Split(string(data), "\n")
	blob, _ := decodeB64(lines[1])
	blob[7] = 42 // rounds
	enc := lines[0] + "\n" + encodeB64(blob) + "\n"
	if _, err := ParseSecretKey([]byte(enc)); err == nil || !strings.Contains(err.Error(), "passphrase") {
		t.Errorf("encrypted key: %v", err)
	}
}

func FuzzParsePublicKey(f *testing.F) {
	k, _ := GenerateKey(rand.Reader, "fuzz")
	f.Add(k.Public().Marshal())
	f.Add([]byte("untrusted comment: \n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePublicKey(data)
		if err != nil {
			return
		}
		again, err := ParsePublicKey(p.Marshal())
		if err != nil || again.KeyNum != p.KeyNum || !again.Key.Equal(p.Key) {
			t.Fatalf("round trip of a parsed key: %v", err)
		}
	})
}

func FuzzParseSecretKey(f *testing.F) {
	k, _ := GenerateKey(rand.Reader, "fuzz")
	f.Add(k.Marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSecretKey(data)
		if err != nil {
			return
		}
		if _, err := ParseSecretKey(s.Marshal()); err != nil {
			t.Fatalf("round trip of a parsed key: %v", err)
		}
		msg := []byte("m")
		if err := Verify(msg, s.Sign(msg, "k.pub"), s.Public()); err != nil {
			t.Fatalf("a parsed key's signature does not verify: %v", err)
		}
	})
}

// fixedReader is a deterministic source for a fuzz target's key: the seed
// corpus and any saved failing input then mean the same thing in every run.
type fixedReader byte

func (r *fixedReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(*r)
		*r++
	}
	return len(p), nil
}

func FuzzParseSignature(f *testing.F) {
	seed := fixedReader(1)
	k, err := GenerateKey(&seed, "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	pub := k.Public()
	msg := []byte("SHA256SUMS")
	genuine := k.Sign(msg, "k.pub")
	f.Add(genuine.Marshal())
	// the genuine signature under another comment, another key number,
	// with a flipped bit, with a trailing empty line
	f.Add((&Signature{Comment: "anything", KeyNum: genuine.KeyNum, Sig: genuine.Sig}).Marshal())
	f.Add((&Signature{Comment: genuine.Comment, KeyNum: KeyNum{1}, Sig: genuine.Sig}).Marshal())
	flipped := bytes.Clone(genuine.Sig)
	flipped[5] ^= 1
	f.Add((&Signature{Comment: genuine.Comment, KeyNum: genuine.KeyNum, Sig: flipped}).Marshal())
	f.Add(append(genuine.Marshal(), '\n'))
	f.Add([]byte("untrusted comment: \n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := ParseSignature(data)
		if err != nil {
			return
		}
		// a parsed signature survives marshal and parse unchanged, and
		// its marshalled form is a fixed point
		out := g.Marshal()
		again, err := ParseSignature(out)
		if err != nil {
			t.Fatalf("a parsed signature's own file does not parse: %v\n%q", err, out)
		}
		if again.Comment != g.Comment || again.KeyNum != g.KeyNum || !bytes.Equal(again.Sig, g.Sig) {
			t.Fatalf("round trip changed the signature: %+v, then %+v", g, again)
		}
		if !bytes.Equal(again.Marshal(), out) {
			t.Fatalf("marshal is not stable: %q, then %q", out, again.Marshal())
		}
		if len(g.Sig) != len(genuine.Sig) {
			t.Fatalf("parsed a %d-byte signature", len(g.Sig))
		}
		// against the fixed message and key: only the genuine signature
		// (the comment is untrusted and free) verifies, and every refusal
		// says why
		err = Verify(msg, g, pub)
		switch {
		case g.KeyNum != pub.KeyNum:
			if !errors.Is(err, ErrOtherKey) {
				t.Fatalf("key number %s, trusted %s: %v", g.KeyNum, pub.KeyNum, err)
			}
		case bytes.Equal(g.Sig, genuine.Sig):
			if err != nil {
				t.Fatalf("the genuine signature (comment %q) does not verify: %v", g.Comment, err)
			}
		default:
			if err == nil {
				t.Fatalf("a signature that is not the genuine one verified: %x", g.Sig)
			}
			if errors.Is(err, ErrOtherKey) || !strings.Contains(err.Error(), "does not match the signed file") {
				t.Fatalf("a wrong signature under the trusted key number: %v", err)
			}
		}
		// and it never verifies another message
		if Verify(append(bytes.Clone(msg), 'x'), g, pub) == nil {
			t.Fatal("a signature of SHA256SUMS verified SHA256SUMSx")
		}
	})
}

func decodeB64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
func encodeB64(b []byte) string          { return base64.StdEncoding.EncodeToString(b) }

func TestWriteKeyPair(t *testing.T) {
	dir := t.TempDir()
	pub, sec, err := WriteKeyPair(dir, "ci")
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(sec)
	if st.Mode().Perm() != 0o600 || filepath.Base(pub) != "ci.pub" || PubName(sec) != "ci.pub" {
		t.Errorf("sec mode %v, pub %s", st.Mode(), pub)
	}
	k, err := ReadSecretKey(sec)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ReadPublicKey(pub)
	if err != nil || p.KeyNum != k.KeyNum || p.Comment != "ci public key" {
		t.Fatalf("pair: %v %+v", err, p)
	}
	before, _ := os.ReadFile(sec)
	if _, _, err := WriteKeyPair(dir, "ci"); err == nil || !strings.Contains(err.Error(), "not overwriting") {
		t.Errorf("second keygen: %v", err)
	}
	if after, _ := os.ReadFile(sec); !bytes.Equal(before, after) {
		t.Error("the existing secret key was changed")
	}
	if _, _, err := WriteKeyPair(dir, "../x"); err == nil {
		t.Error("a name with a path was taken")
	}
}
