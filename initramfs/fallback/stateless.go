package fallback

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/diskless/diskless/pkg/sign"
)

// Steps of a stateless boot.
const (
	StepFetch  Step = "fetch"  // the squashfs, the overlay or SHA256SUMS over HTTP
	StepVerify Step = "verify" // the signature or a checksum
	StepImage  Step = "image"  // loop, squashfs, tmpfs, overlayfs
)

// Stateless is what a stateless node's command line asks for: the image
// (a squashfs file) and its overlay, as paths on the boot server's HTTP
// root, and the size of its tmpfs.
type Stateless struct {
	Image   string // diskless.image=/…/squashfs/<image>-<arch>.squashfs
	Overlay string // diskless.overlay=/…/overlays/<ip>.cpio
	Tmpfs   string // diskless.tmpfs= (tmpfs size=), default 50%
	// Masters are every master's address (diskless.masters=a,b): each
	// serves the same signed set, so another one is asked when the boot
	// server stops answering.
	Masters []string
}

// Servers are the servers to fetch from, in order: the boot server (the
// one DHCP named), then the other masters as listed.
func (s Stateless) Servers(boot string) []string {
	var out []string
	seen := map[string]bool{"": true}
	for _, a := range append([]string{boot}, s.Masters...) {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// ParseStateless reads diskless.image=, diskless.overlay= and
// diskless.tmpfs=; ok is false when the node is not stateless.
func ParseStateless(c Cmdline) (s Stateless, ok bool, err error) {
	s.Image, ok = c["diskless.image"]
	if !ok {
		return s, false, nil
	}
	s.Overlay, s.Tmpfs = c["diskless.overlay"], c["diskless.tmpfs"]
	if s.Tmpfs == "" {
		s.Tmpfs = "50%"
	}
	for _, p := range []struct{ k, v string }{{"diskless.image", s.Image}, {"diskless.overlay", s.Overlay}} {
		if p.v == "" && p.k == "diskless.overlay" {
			continue // a node without an identity of its own
		}
		if !strings.HasPrefix(p.v, "/") || strings.Contains(p.v, "..") {
			return s, true, fmt.Errorf("%s=%s: want an absolute path on the boot server", p.k, p.v)
		}
		if SetDir(p.v) != SetDir(s.Image) {
			// publish pins what its generation has: the one left as it
			// was is not in the set
			missing := p.k + "=" + p.v
			if SetDir(p.v) != "/" {
				missing = "diskless.image=" + s.Image
			}
			return s, true, fmt.Errorf("%s is not in the published set the node booted from (is the image published? image:publish; the node provisioned? nodes:provision)", missing)
		}
	}
	if v, ok := c["diskless.masters"]; ok {
		for _, a := range strings.Split(v, ",") {
			if ip, err := netip.ParseAddr(a); err != nil || !ip.Is4() {
				return s, true, fmt.Errorf("diskless.masters=%s: %q is not an IPv4 address (want the masters' addresses, comma-separated)", v, a)
			}
			s.Masters = append(s.Masters, a)
		}
	}
	if strings.ContainsAny(s.Tmpfs, ",\"") {
		return s, true, fmt.Errorf("diskless.tmpfs=%s: want a tmpfs size like 2G or 50%%", s.Tmpfs)
	}
	return s, true, nil
}

// NodeCmdline reads a node's command line file (pxe.NodeCmdlineName: one
// line, "#" comments) over the kernel's own command line: its arguments
// win. It must make the node stateless (diskless.image=): that is what
// such a file is for.
func NodeCmdline(kernel Cmdline, file []byte, name string) (Cmdline, error) {
	var line string
	for _, l := range strings.Split(string(file), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if line != "" {
			return nil, fmt.Errorf("%s: more than one command line", name)
		}
		line = l
	}
	out := Cmdline{}
	for k, v := range kernel {
		out[k] = v
	}
	for k, v := range ParseCmdline(line) {
		out[k] = v
	}
	if _, ok := out["diskless.image"]; !ok {
		return nil, fmt.Errorf("%s: names no diskless.image", name)
	}
	return out, nil
}

var generationDir = regexp.MustCompile(`^/\.diskless/generations/[0-9]+/`)

// SetDir is the published set a path belongs to: its generation's
// directory when publish pinned it, else the root ("/"). SHA256SUMS and
// its signature are there.
func SetDir(p string) string {
	if m := generationDir.FindString(p); m != "" {
		return m
	}
	return "/"
}

// SetName is p's name in its set's SHA256SUMS.
func SetName(p string) string { return strings.TrimPrefix(p, SetDir(p)) }

// VerifySums checks SHA256SUMS against its signature with the trusted
// keys (signify public keys, one after another, as TrustedKeys holds
// them) and returns name -> sha256.
func VerifySums(sums, sig []byte, trusted string) (map[string]string, error) {
	keys, err := ParseTrusted(trusted)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("this initramfs trusts no key (build it with SIGNING_KEY or TRUSTED_KEY set): a stateless node boots only a signed set")
	}
	if len(sig) == 0 {
		return nil, errors.New("SHA256SUMS.sig: the set is not signed; refused")
	}
	s, err := sign.ParseSignature(sig)
	if err != nil {
		return nil, fmt.Errorf("SHA256SUMS.sig: %w", err)
	}
	if err := sign.Verify(sums, s, keys...); err != nil {
		return nil, fmt.Errorf("SHA256SUMS: %w; refused", err)
	}
	lines, err := sign.ParseSums(sums)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, l := range lines {
		if len(l.SHA256) != 64 {
			return nil, fmt.Errorf("SHA256SUMS: bad checksum for %s: %q", l.Name, l.SHA256)
		}
		out[l.Name] = l.SHA256
	}
	return out, nil
}

// ParseTrusted reads signify public keys written one after another.
func ParseTrusted(trusted string) ([]*sign.PublicKey, error) {
	var keys []*sign.PublicKey
	lines := strings.Split(strings.TrimSpace(trusted), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		k, err := sign.ParsePublicKey([]byte(lines[i] + "\n" + lines[i+1] + "\n"))
		if err != nil {
			return nil, fmt.Errorf("trusted key %d: %w", i/2+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// CheckedCopy copies r to w, hashing it, and fails unless it hashes to
// want; progress, when set, is told the bytes so far.
func CheckedCopy(w io.Writer, r io.Reader, name, want string, progress func(int64)) (int64, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := r.Read(buf)
		if k > 0 {
			h.Write(buf[:k])
			if _, werr := w.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
			if progress != nil {
				progress(n)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return n, &Failure{Step: StepVerify, Export: name, Err: fmt.Errorf("sha256 %s, SHA256SUMS says %s: tampered with or torn; refused", got, want)}
	}
	return n, nil
}

// Progress is the console's progress line for a download: throttled to
// one line per step.
type Progress struct {
	Name  string
	Total int64
	Every time.Duration
	Say   func(string)
	last  time.Time
	start time.Time
}

// Update reports n bytes so far (and always the last).
func (p *Progress) Update(n int64) {
	now := time.Now()
	if p.start.IsZero() {
		p.start = now
	}
	if n < p.Total && now.Sub(p.last) < p.Every {
		return
	}
	p.last = now
	pct := 100
	if p.Total > 0 {
		pct = int(n * 100 / p.Total)
	}
	secs := now.Sub(p.start).Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(n) / secs / 1e6
	}
	p.Say(fmt.Sprintf("%s fetching %s: %d%% (%d of %d bytes, %.1f MB/s)", Prefix, p.Name, pct, n, p.Total, rate))
}
