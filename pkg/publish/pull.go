package publish

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/diskless/diskless/internal/fsutil"
	"github.com/diskless/diskless/pkg/sign"
)

// pullDir keeps what an interrupted pull already fetched and verified,
// by checksum: the next pull takes it from there instead of the network.
const pullDir = ".diskless/pull"

// PullOptions for Pull.
type PullOptions struct {
	// Root is this master's DISKLESS_ROOT.
	Root string
	// Trusted are the keys the set must be signed with (TRUSTED_KEY): a
	// replica serves only what the primary signed.
	Trusted []*sign.PublicKey
	Keep    int
	NoWait  bool
	// Older accepts a primary's live generation older than the one live
	// here (the primary rolled back); without it that is refused, as an
	// old signed set replayed would be.
	Older bool
	// Client fetches (nil: one with a 30 s wait for each response's
	// headers; a body may take long, but not stall: see stall).
	Client *http.Client
	Log    *slog.Logger
}

// PullResult says what a pull did.
type PullResult struct {
	Generation int
	// Unchanged: the live generation here already is the primary's (only
	// SHA256SUMS.sig was fetched).
	Unchanged bool
	// Fetched files (and their bytes) came over the network; Reused ones
	// from this master's generations or an interrupted pull.
	Fetched, Reused int
	FetchedBytes    int64
	Seconds         float64
}

// Pull makes the primary's live generation (from, its HTTP root:
// http://192.168.1.1/) the live generation of o.Root, byte for byte and
// under the same number (its boot configurations are pinned to it):
// SHA256SUMS.sig first (when it is the live one's here, nothing else is
// fetched), then the generation's SHA256SUMS, checked against the trusted
// keys, then every file it lists that this master has not (checked
// against it as it arrives), then the switch, as Publish does. Nothing is
// published on any error; what was verified is kept for the next pull.
func Pull(ctx context.Context, from string, o PullOptions) (*PullResult, error) {
	start := time.Now()
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base, err := pullBase(from)
	if err != nil {
		return nil, err
	}
	if len(o.Trusted) == 0 {
		return nil, errors.New("publish:pull needs TRUSTED_KEY (the primary's public key, keygen's .pub): a replica serves only what the primary signed")
	}
	client := o.Client
	if client == nil {
		client = &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 30 * time.Second}}
	}
	if err := EnsureRoot(o.Root); err != nil {
		return nil, err
	}
	unlock, err := Lock(o.Root, o.NoWait, log)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cleanTemp(o.Root)
	get := func(name string, max int64) ([]byte, error) {
		return fetchSmall(ctx, client, base+name, max)
	}
	sig, err := get(SigName, 4096)
	if errors.Is(err, errNotFound) {
		return nil, fmt.Errorf("%s%s: not found: the primary's set is not signed (publish there with SIGNING_KEY); nothing published", base, SigName)
	}
	if err != nil {
		return nil, fmt.Errorf("%s%s: %w; nothing published", base, SigName, err)
	}
	res := &PullResult{}
	if cur, err := Current(o.Root); err == nil {
		dir := filepath.Join(o.Root, GenerationDir(cur))
		if mine, err := os.ReadFile(filepath.Join(dir, SigName)); err == nil && bytes.Equal(mine, sig) {
			if err := checkDirSignature(dir, o.Trusted); err == nil {
				res.Generation, res.Unchanged = cur, true
				os.RemoveAll(filepath.Join(o.Root, pullDir)) // an interrupted pull's, now moot
				res.Seconds = time.Since(start).Seconds()
				log.Info("pull: the live generation is the primary's already", "generation", cur)
				return res, nil
			}
		}
	}
	// which generation: manifest.json is not signed, but the generation
	// it names must be the one the signed files are pinned to, and its
	// files exactly those SHA256SUMS lists
	mdata, err := get(ManifestName, 64<<20)
	if err != nil {
		return nil, fmt.Errorf("%s%s: %w; nothing published", base, ManifestName, err)
	}
	var m Manifest
	if err := json.Unmarshal(mdata, &m); err != nil || m.Generation <= 0 {
		return nil, fmt.Errorf("%s%s: not a manifest (%v); nothing published", base, ManifestName, err)
	}
	gen := GenerationDir(m.Generation) + "/"
	if sig, err = get(gen+SigName, 4096); err != nil {
		return nil, fmt.Errorf("%s%s%s: %w; nothing published", base, gen, SigName, err)
	}
	sums, err := get(gen+SumsName, 16<<20)
	if err != nil {
		return nil, fmt.Errorf("%s%s%s: %w; nothing published", base, gen, SumsName, err)
	}
	if err := CheckSignature(base+gen+SumsName, sums, sig, o.Trusted); err != nil {
		return nil, fmt.Errorf("%w; refused, nothing published", err)
	}
	if string(sums) != Sums(m.Files) {
		return nil, fmt.Errorf("%s%s does not list what the signed %s%s does; refused, nothing published", base, ManifestName, gen, SumsName)
	}
	if !m.Signed {
		// it would go live without its signature's top-level name
		return nil, fmt.Errorf("%s%s says the set is not signed, though it is; refused, nothing published", base, ManifestName)
	}
	if err := checkNames(m.Files); err != nil {
		return nil, fmt.Errorf("%s%s: %w; refused, nothing published", base, gen+SumsName, err)
	}
	for _, f := range m.Files {
		if len(f.SHA256) != 64 || strings.Trim(f.SHA256, "0123456789abcdef") != "" {
			return nil, fmt.Errorf("%s%s: %s: bad checksum %q; refused, nothing published", base, gen+SumsName, f.Name, f.SHA256)
		}
	}
	if err := checkTopLevel(o.Root, m.Files); err != nil {
		return nil, fmt.Errorf("%w; nothing published", err)
	}
	res.Generation = m.Generation
	if cur, err := Current(o.Root); err == nil && m.Generation < cur && !o.Older {
		return nil, fmt.Errorf("the primary's live generation %d is older than this master's %d: a rollback there (then pull with older=1), or an old signed set replayed; refused, nothing published", m.Generation, cur)
	}
	final := filepath.Join(o.Root, genDir, fmt.Sprintf("%06d", m.Generation))
	if _, err := os.Stat(final); err == nil {
		if checkDir(final, &m) != nil || checkDirSignature(final, o.Trusted) != nil {
			return nil, fmt.Errorf("%s is a generation %d that is not the primary's (published here?): a replica's generations are pulled ones only; move that directory away (it is not live) and pull again", final, m.Generation)
		}
	}
	var need int64
	for _, f := range m.Files {
		need += f.Size
	}
	if free, err := freeBytes(o.Root); err == nil && need > free {
		return nil, fmt.Errorf("the primary's set is %d MB, %s has %d MB free; nothing published", need>>20, o.Root, free>>20)
	}
	stage := filepath.Join(o.Root, pullDir)
	if err := os.MkdirAll(stage, 0o700); err != nil {
		return nil, err
	}
	have := localFiles(o.Root)
	for _, f := range m.Files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		staged := filepath.Join(stage, f.SHA256)
		// what an interrupted pull verified, or a file of a generation
		// here, is hashed again before it is taken: never a damaged one
		if fsutil.Matches(staged, f.Size, f.SHA256) {
			res.Reused++
			continue
		}
		os.Remove(staged)
		if src, ok := have[f.SHA256]; ok && fsutil.Matches(src, f.Size, f.SHA256) && os.Link(src, staged) == nil {
			res.Reused++
			continue
		}
		n, err := fetchChecked(ctx, client, base+gen+f.Name, staged, f.SHA256, f.Size)
		if err != nil {
			return nil, fmt.Errorf("%w; nothing published (what was verified is kept for the next pull)", err)
		}
		res.Fetched++
		res.FetchedBytes += n
	}
	for _, f := range m.Files {
		if err := checkPinnedTo(f, m.Generation, stage); err != nil {
			return nil, err
		}
	}
	if err := installPulled(o.Root, stage, &m, sums, sig, mdata); err != nil {
		return nil, err
	}
	os.RemoveAll(stage)
	prune(o.Root, m.Generation, o.Keep, log)
	res.Seconds = time.Since(start).Seconds()
	log.Info("pulled", "from", base, "generation", m.Generation, "fetched", res.Fetched, "bytes", res.FetchedBytes, "reused", res.Reused, "seconds", res.Seconds)
	return res, nil
}

// pullBase checks from (the primary's HTTP root) and ends it with "/".
func pullBase(from string) (string, error) {
	u, err := url.Parse(from)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("from=%s: want the primary's HTTP root, like http://192.168.1.1/", from)
	}
	if !strings.HasSuffix(from, "/") {
		from += "/"
	}
	return from, nil
}

var errNotFound = errors.New("404 not found")

func fetchSmall(ctx context.Context, c *http.Client, u string, max int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, errNotFound
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err == nil && int64(len(data)) > max {
		err = fmt.Errorf("larger than %d bytes", max)
	}
	return data, err
}

// fetchChecked downloads u to dst (through dst.part), refusing it unless
// it hashes to want; it returns the bytes fetched.
func fetchChecked(ctx context.Context, c *http.Client, u, dst, want string, size int64) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchdog := time.AfterFunc(stall, cancel)
	defer watchdog.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: HTTP %s", u, resp.Status)
	}
	part := dst + ".part"
	out, err := os.OpenFile(part, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	h := sha256.New()
	// no more than the signed size (one byte more tells it was more)
	body := io.LimitReader(&progressReader{r: resp.Body, seen: func() { watchdog.Reset(stall) }}, size+1)
	n, err := io.CopyBuffer(io.MultiWriter(out, h), body, make([]byte, 1<<20))
	if err == nil && n > size {
		err = fmt.Errorf("longer than the %d bytes the signed set says", size)
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("no byte for %s: %w", stall, err)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(part)
		return n, fmt.Errorf("%s: %w after %d bytes", u, err, n)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		os.Remove(part)
		return n, fmt.Errorf("%s: sha256 %s, the signed SHA256SUMS says %s: tampered with or torn; refused", u, got, want)
	}
	return n, os.Rename(part, dst)
}

// stall is how long a file's download may go without a byte.
const stall = 60 * time.Second

// progressReader tells seen of every read that brought bytes.
type progressReader struct {
	r    io.Reader
	seen func()
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.seen()
	}
	return n, err
}

// freeBytes is the space left for root's files.
func freeBytes(root string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(root, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// localFiles maps the checksum of every file of this master's generations
// (by their manifests) to its path: a pull links what it already has.
func localFiles(root string) map[string]string {
	out := map[string]string{}
	gens, _ := generations(root)
	for _, g := range gens {
		dir := filepath.Join(root, GenerationDir(g))
		data, err := os.ReadFile(filepath.Join(dir, ManifestName))
		if err != nil {
			continue
		}
		var m Manifest
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		for _, f := range m.Files {
			p := filepath.Join(dir, f.Name)
			if st, err := os.Stat(p); err == nil && st.Size() == f.Size {
				out[f.SHA256] = p
			}
		}
	}
	return out
}

var pinnedGeneration = regexp.MustCompile(`\.diskless/generations/([0-9]+)/`)

// checkPinnedTo refuses a set whose manifest names another generation
// than the one its signed boot configurations (staged, checked) are
// pinned to.
func checkPinnedTo(f File, n int, stage string) error {
	if !Pinned(f.Name) {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(stage, f.SHA256))
	if err != nil {
		return err
	}
	for _, m := range pinnedGeneration.FindAllStringSubmatch(string(data), -1) {
		if m[1] != fmt.Sprintf("%06d", n) {
			return fmt.Errorf("%s names generation %s, the manifest %d: refused, nothing published", f.Name, m[1], n)
		}
	}
	return nil
}

// privateName says whether a published file is private by its name: a
// stateless node's overlay.
func privateName(name string) bool { return strings.HasPrefix(name, "overlays/") }

// placePulled puts the staged file src at dst with perm (and group gid,
// unless -1): a hard link when src is the staged copy alone or already has
// them, a copy when another generation shares it with other ones (a link
// must never change a file a live generation serves).
func placePulled(src, dst string, perm os.FileMode, gid int) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	shared := sys == nil || sys.Nlink > 1
	same := st.Mode().Perm() == perm && sys != nil && int(sys.Uid) == os.Geteuid() && (gid < 0 || int(sys.Gid) == gid)
	if !shared || same {
		if err := os.Link(src, dst); err != nil {
			return err
		}
		if same {
			return nil
		}
	} else if err := copyPrivately(src, dst); err != nil {
		return err
	}
	if gid >= 0 {
		if err := os.Chown(dst, os.Geteuid(), gid); err != nil {
			return fmt.Errorf("%w (a private file needs the pull to run as root)", err)
		}
	}
	return os.Chmod(dst, perm)
}

// copyPrivately copies src to a new file dst, streamed, readable by its
// owner alone until the caller gives it its mode (a private file must
// never be world-readable, not even while it is written).
func copyPrivately(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// installPulled writes generation m.Generation from the staged files (hard
// links: a pulled file is never changed) and the set's own SHA256SUMS,
// signature and manifest, checks it, and makes it live.
func installPulled(root, stage string, m *Manifest, sums, sig, manifest []byte) error {
	n := m.Generation
	tmp := filepath.Join(root, genDir, fmt.Sprintf(".tmp-%06d", n))
	os.RemoveAll(tmp)
	fail := func(err error) error {
		os.RemoveAll(tmp)
		return fmt.Errorf("%w; nothing published", err)
	}
	gid := -1
	files := append([]File(nil), m.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	for _, f := range files {
		dst := filepath.Join(tmp, f.Name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fail(err)
		}
		// as Publish writes them: 0644, a private one (an overlay: its
		// SSH host keys) 0640 for nginx's group; by its name, not by the
		// manifest, which is not signed
		perm, owner := os.FileMode(0o644), -1
		if privateName(f.Name) {
			if gid < 0 {
				var err error
				if gid, err = privateGID(); err != nil {
					return fail(fmt.Errorf("%s: %w", f.Name, err))
				}
			}
			perm, owner = 0o640, gid
		}
		if err := placePulled(filepath.Join(stage, f.SHA256), dst, perm, owner); err != nil {
			return fail(fmt.Errorf("%s: %w", f.Name, err))
		}
	}
	for name, data := range map[string][]byte{SumsName: sums, SigName: sig, ManifestName: manifest} {
		if err := writeBytes(filepath.Join(tmp, name), data); err != nil {
			return fail(err)
		}
	}
	if err := checkDir(tmp, m); err != nil {
		return fail(fmt.Errorf("generation %d failed its check before going live: %w", n, err))
	}
	if err := syncTree(tmp); err != nil {
		return fail(err)
	}
	final := filepath.Join(root, genDir, fmt.Sprintf("%06d", n))
	if _, err := os.Stat(final); err == nil {
		// the same generation, kept from an earlier pull (it was checked):
		// made live again
		os.RemoveAll(tmp)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fail(err)
	} else if err := os.Rename(tmp, final); err != nil {
		return fail(err)
	}
	syncDir(filepath.Join(root, genDir))
	return activate(root, n, m)
}
