// Package sign reads and writes OpenBSD signify's Ed25519 keys and
// signatures, so what diskless signs (a SHA256SUMS file) is checked by
// Debian's signify-openbsd as well as by diskless itself:
//
//	signify-openbsd -V -p ci.pub -m SHA256SUMS -x SHA256SUMS.sig
//
// The formats (signify.c): each file is an "untrusted comment: ..." line and
// one base64 line. A public key is "Ed" + an 8-byte key number + the 32-byte
// key; a secret key is "Ed" + "BK" (bcrypt_pbkdf) + rounds (uint32, big
// endian) + 16 bytes of salt + 8 bytes of checksum (the first bytes of the
// SHA-512 of the key) + the key number + the 64-byte key; a signature is
// "Ed" + the key number + the 64-byte Ed25519 signature of the message.
// Only unencrypted secret keys (rounds 0, signify -G -n) are read: a key
// that CI uses from a repository secret has no passphrase to type.
//
// It makes keys, signs and verifies bytes; it does not decide what is
// trusted.
package sign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

const (
	commentPrefix = "untrusted comment: "
	algEd         = "Ed"
	kdfBcrypt     = "BK"
	// maxComment is signify's COMMENTMAXLEN less the prefix.
	maxComment = 1024 - len(commentPrefix)
)

// KeyNum is the random number that ties a signature to its key.
type KeyNum [8]byte

func (k KeyNum) String() string { return hex.EncodeToString(k[:]) }

// PublicKey is a signify public key.
type PublicKey struct {
	Comment string
	KeyNum  KeyNum
	Key     ed25519.PublicKey
}

// SecretKey is an unencrypted signify secret key.
type SecretKey struct {
	Comment string
	KeyNum  KeyNum
	Key     ed25519.PrivateKey
}

// Public is the public half.
func (s *SecretKey) Public() *PublicKey {
	comment := strings.TrimSuffix(s.Comment, " secret key") + " public key"
	return &PublicKey{Comment: comment, KeyNum: s.KeyNum, Key: s.Key.Public().(ed25519.PublicKey)}
}

// Signature is a signify signature.
type Signature struct {
	Comment string
	KeyNum  KeyNum
	Sig     []byte
}

// GenerateKey makes a new key pair with random from r (crypto/rand when
// nil); comment names it ("ci" gives "ci public key", "ci secret key").
func GenerateKey(r io.Reader, comment string) (*SecretKey, error) {
	if r == nil {
		r = rand.Reader
	}
	if err := checkComment(comment); err != nil {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, err
	}
	s := &SecretKey{Comment: comment + " secret key", Key: priv}
	if _, err := io.ReadFull(r, s.KeyNum[:]); err != nil {
		return nil, err
	}
	return s, nil
}

func checkComment(c string) error {
	if strings.ContainsAny(c, "\r\n") || len(c) > maxComment-len(" secret key") {
		return fmt.Errorf("key comment %q: one line of at most %d bytes", c, maxComment-len(" secret key"))
	}
	return nil
}

// encode writes the two lines of a signify file.
func encode(comment string, blob []byte) []byte {
	return []byte(commentPrefix + comment + "\n" + base64.StdEncoding.EncodeToString(blob) + "\n")
}

// decode reads the two lines of a signify file: the comment and the blob,
// which must be n bytes and start with "Ed". what names the file in errors.
func decode(data []byte, n int, what string) (comment string, blob []byte, err error) {
	first, rest, ok := bytes.Cut(data, []byte("\n"))
	if !ok || !bytes.HasPrefix(first, []byte(commentPrefix)) {
		return "", nil, fmt.Errorf("%s: not a signify file (the first line must start with %q)", what, commentPrefix)
	}
	comment = string(first[len(commentPrefix):])
	line, tail, _ := bytes.Cut(rest, []byte("\n"))
	if len(bytes.TrimSpace(tail)) != 0 {
		return "", nil, fmt.Errorf("%s: more than two lines", what)
	}
	blob, err = base64.StdEncoding.Strict().DecodeString(string(line))
	if err != nil {
		return "", nil, fmt.Errorf("%s: the second line is not base64: %w", what, err)
	}
	if len(blob) != n {
		return "", nil, fmt.Errorf("%s: %d bytes, a signify %s has %d", what, len(blob), what, n)
	}
	if string(blob[:2]) != algEd {
		return "", nil, fmt.Errorf("%s: algorithm %q, want %q (Ed25519)", what, blob[:2], algEd)
	}
	return comment, blob, nil
}

// Marshal is the public key file.
func (p *PublicKey) Marshal() []byte {
	blob := append([]byte(algEd), p.KeyNum[:]...)
	return encode(p.Comment, append(blob, p.Key...))
}

// ParsePublicKey reads a public key file.
func ParsePublicKey(data []byte) (*PublicKey, error) {
	c, blob, err := decode(data, 2+8+ed25519.PublicKeySize, "public key")
	if err != nil {
		return nil, err
	}
	p := &PublicKey{Comment: c, Key: ed25519.PublicKey(bytes.Clone(blob[10:]))}
	copy(p.KeyNum[:], blob[2:10])
	return p, nil
}

const secretSize = 2 + 2 + 4 + 16 + 8 + 8 + ed25519.PrivateKeySize

// Marshal is the secret key file (unencrypted: rounds 0, as signify -G -n).
func (s *SecretKey) Marshal() []byte {
	blob := make([]byte, 0, secretSize)
	blob = append(blob, algEd...)
	blob = append(blob, kdfBcrypt...)
	blob = binary.BigEndian.AppendUint32(blob, 0)
	blob = append(blob, make([]byte, 16)...) // salt: unused with 0 rounds
	sum := sha512.Sum512(s.Key)
	blob = append(blob, sum[:8]...)
	blob = append(blob, s.KeyNum[:]...)
	return encode(s.Comment, append(blob, s.Key...))
}

// ParseSecretKey reads an unencrypted secret key file.
func ParseSecretKey(data []byte) (*SecretKey, error) {
	c, blob, err := decode(data, secretSize, "secret key")
	if err != nil {
		return nil, err
	}
	if string(blob[2:4]) != kdfBcrypt {
		return nil, fmt.Errorf("secret key: key derivation %q, want %q", blob[2:4], kdfBcrypt)
	}
	if rounds := binary.BigEndian.Uint32(blob[4:8]); rounds != 0 {
		return nil, errors.New("secret key: protected by a passphrase; diskless reads only keys without one (signify-openbsd -G -n, or mage keygen)")
	}
	key := ed25519.PrivateKey(bytes.Clone(blob[40:]))
	sum := sha512.Sum512(key)
	if subtle.ConstantTimeCompare(sum[:8], blob[24:32]) != 1 {
		return nil, errors.New("secret key: its checksum does not match (a damaged file)")
	}
	// the second half of an Ed25519 private key is its public key
	if !bytes.Equal(ed25519.NewKeyFromSeed(key.Seed()), key) {
		return nil, errors.New("secret key: the key's halves do not belong together (a damaged file)")
	}
	s := &SecretKey{Comment: c, Key: key}
	copy(s.KeyNum[:], blob[32:40])
	return s, nil
}

// Sign signs msg; pubName is the public key file's name, for the comment
// ("verify with ci.pub"), as signify writes it.
func (s *SecretKey) Sign(msg []byte, pubName string) *Signature {
	return &Signature{Comment: "verify with " + pubName, KeyNum: s.KeyNum, Sig: ed25519.Sign(s.Key, msg)}
}

// Marshal is the signature file.
func (g *Signature) Marshal() []byte {
	blob := append([]byte(algEd), g.KeyNum[:]...)
	return encode(g.Comment, append(blob, g.Sig...))
}

// ParseSignature reads a signature file.
func ParseSignature(data []byte) (*Signature, error) {
	c, blob, err := decode(data, 2+8+ed25519.SignatureSize, "signature")
	if err != nil {
		return nil, err
	}
	g := &Signature{Comment: c, Sig: bytes.Clone(blob[10:])}
	copy(g.KeyNum[:], blob[2:10])
	return g, nil
}

// ErrOtherKey is Verify's error for a signature made by a key it was not
// given.
var ErrOtherKey = errors.New("signed by another key")

// Verify checks sig over msg against the first of keys with the
// signature's key number; the error says which check failed.
func Verify(msg []byte, sig *Signature, keys ...*PublicKey) error {
	for _, k := range keys {
		if k.KeyNum != sig.KeyNum {
			continue
		}
		if !ed25519.Verify(k.Key, msg, sig.Sig) {
			return fmt.Errorf("the signature does not match the signed file (key %s): the file or its signature was changed", k.KeyNum)
		}
		return nil
	}
	var have []string
	for _, k := range keys {
		have = append(have, k.KeyNum.String())
	}
	return fmt.Errorf("%w: the signature's key %s is not one of the trusted keys (%s)", ErrOtherKey, sig.KeyNum, strings.Join(have, ", "))
}

// WriteKeyPair writes a new key pair as dir/name.pub and dir/name.sec (mode
// 0600), as signify-openbsd -G -n would; it refuses to overwrite either.
func WriteKeyPair(dir, name string) (pubPath, secPath string, err error) {
	if name == "" || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" || strings.HasPrefix(name, ".") {
		return "", "", fmt.Errorf("key name %q: letters, digits, '.', '_' and '-' only (e.g. ci)", name)
	}
	pubPath, secPath = filepath.Join(dir, name+".pub"), filepath.Join(dir, name+".sec")
	for _, p := range []string{pubPath, secPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("%s exists: not overwriting a key (move it away to make a new one)", p)
		}
	}
	k, err := GenerateKey(nil, name)
	if err != nil {
		return "", "", err
	}
	if err := WriteKeyFile(secPath, k.Marshal(), 0o600); err != nil {
		return "", "", err
	}
	if err := WriteKeyFile(pubPath, k.Public().Marshal(), 0o644); err != nil {
		os.Remove(secPath)
		return "", "", err
	}
	return pubPath, secPath, nil
}

// WriteKeyFile creates a key file path, which must not exist, with data
// and mode, synced; removed when it could not be written whole.
func WriteKeyFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// ReadSecretKey reads a secret key file; errors name the file, never its
// contents.
func ReadSecretKey(path string) (*SecretKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseSecretKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ReadPublicKey reads a public key file.
func ReadPublicKey(path string) (*PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// PubName is the public key file name signify's comment names for a
// secret key file: ci.sec -> ci.pub.
func PubName(secPath string) string {
	return strings.TrimSuffix(filepath.Base(secPath), ".sec") + ".pub"
}
