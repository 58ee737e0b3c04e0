package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/diskless/diskless/internal/fsutil"
	"github.com/diskless/diskless/internal/textutil"
)

// ImagesDir is where published images live under the master's root.
const ImagesDir = "images"

// DefaultKeep is how many generations of an image stay on the master (the
// live one included): a node keeps the generation it booted until it
// reboots, so an older one must not vanish under it too soon.
const DefaultKeep = 3

// Published is an image's directory on the master: <root>/images/<name>-<arch>.
func Published(root, name, archName string) string {
	return filepath.Join(root, ImagesDir, name+"-"+archName)
}

// Generation is one published generation.
type Generation struct {
	N        int
	Dir      string
	Manifest *Manifest
	Live     bool
}

// TreeHash hashes a tree: every path with its type, mode, owner, size, and
// the content of files or the target of links, in path order.
func TreeHash(dir string) (sum string, files int, bytes int64, err error) {
	var paths []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return "", 0, 0, err
	}
	sort.Strings(paths)
	h := sha256.New()
	for _, p := range paths {
		st, err := os.Lstat(p)
		if err != nil {
			return "", 0, 0, err
		}
		rel, _ := filepath.Rel(dir, p)
		var uid, gid uint32
		var rdev uint64
		if s, ok := st.Sys().(*syscall.Stat_t); ok {
			uid, gid, rdev = s.Uid, s.Gid, s.Rdev
		}
		fmt.Fprintf(h, "%s\x00%o\x00%d:%d\x00", rel, st.Mode(), uid, gid)
		switch {
		case st.Mode().IsRegular():
			files++
			bytes += st.Size()
			sum, _, err := fsutil.HashFile(p)
			if err != nil {
				return "", 0, 0, err
			}
			fmt.Fprintf(h, "%d\x00%s\n", st.Size(), sum)
		case st.Mode()&fs.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			fmt.Fprintf(h, "->%s\n", t)
		case st.Mode()&(fs.ModeDevice|fs.ModeCharDevice) != 0:
			fmt.Fprintf(h, "dev %d\n", rdev)
		default:
			io.WriteString(h, "\n")
		}
	}
	return hex.EncodeToString(h.Sum(nil)), files, bytes, nil
}

// Generations lists an image's published generations, oldest first.
func Generations(imageDir string) ([]Generation, error) {
	ents, err := os.ReadDir(imageDir)
	if err != nil {
		return nil, err
	}
	live, _ := os.Readlink(filepath.Join(imageDir, "current"))
	var out []Generation
	for _, e := range ents {
		n, ok := genNumber(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		g := Generation{N: n, Dir: filepath.Join(imageDir, e.Name()), Live: e.Name() == live}
		g.Manifest, _ = ReadManifest(g.Dir + ".json")
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].N < out[j].N })
	return out, nil
}

func genNumber(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "gen-")
	if !ok || len(s) != 4 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

func genName(n int) string { return fmt.Sprintf("gen-%04d", n) }

// PublishOptions say where and how to publish.
type PublishOptions struct {
	Root   string // DISKLESS_ROOT
	Keep   int    // generations kept (DefaultKeep when 0)
	NoWait bool
	Log    *slog.Logger
}

// Publish copies a built image into a new generation under the master's
// root and switches "current" to it with one rename. An image whose tree
// is already the live one is no work. A node mounts current/usr only after
// the switch, so it never sees half an image; older generations beyond
// Keep are removed (never the live one).
func Publish(ctx context.Context, res *Result, o PublishOptions) (*Generation, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if st, err := os.Stat(o.Root); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("DISKLESS_ROOT=%s: not a directory (create it first)", o.Root)
	}
	dir := Published(o.Root, res.Manifest.Name, res.Manifest.Arch)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := fsutil.Lock(filepath.Join(dir, ".lock"), o.NoWait, func() {
		log.Info("waiting for another publish of this image", "dir", dir)
	})
	if err != nil {
		return nil, fmt.Errorf("publishing %s: %w", dir, err)
	}
	defer unlock()
	gens, err := Generations(dir)
	if err != nil {
		return nil, err
	}
	next := 1
	for _, g := range gens {
		if g.Live && g.Manifest != nil && g.Manifest.TreeSHA256 == res.Manifest.TreeSHA256 {
			if err := ensureSquashfs(ctx, dir, &g, res.Manifest.Built.Unix()); err != nil {
				return nil, fmt.Errorf("the live generation %s as squashfs: %w", g.Dir, err)
			}
			log.Info("image already live", "image", filepath.Base(dir), "generation", filepath.Base(g.Dir))
			return &g, nil
		}
		next = g.N + 1
	}
	name := genName(next)
	tmp := filepath.Join(dir, ".incoming-"+name)
	os.RemoveAll(tmp)
	log.Info("publishing image", "image", filepath.Base(dir), "generation", name, "bytes", res.Manifest.Bytes)
	cp := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", res.Tree, tmp)
	if out, err := cp.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("copying the image: %v\n%s", err, textutil.Tail(string(out), 10))
	}
	// the same tree as one file, for stateless nodes
	sq, err := MakeSquashfs(ctx, tmp, SquashfsPath(filepath.Join(dir, name)), res.Manifest.Built.Unix())
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	log.Info("image squashfs written", "image", filepath.Base(dir), "generation", name, "bytes", sq.Bytes, "seconds", fmt.Sprintf("%.1f", sq.Seconds))
	m := res.Manifest
	m.Squashfs = sq
	if err := WriteManifest(filepath.Join(dir, name+".json"), &m); err != nil {
		os.RemoveAll(tmp)
		os.Remove(SquashfsPath(filepath.Join(dir, name)))
		return nil, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return nil, err
	}
	if err := switchTo(dir, name); err != nil {
		return nil, err
	}
	g := &Generation{N: next, Dir: filepath.Join(dir, name), Manifest: &m, Live: true}
	prune(dir, o.Keep, log)
	return g, nil
}

// switchTo points current at a generation with one rename.
func switchTo(dir, name string) error {
	tmp := filepath.Join(dir, ".current.new")
	os.Remove(tmp)
	if err := os.Symlink(name, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "current"))
}

func prune(dir string, keep int, log *slog.Logger) {
	if keep <= 0 {
		keep = DefaultKeep
	}
	gens, err := Generations(dir)
	if err != nil {
		return
	}
	for i := 0; i < len(gens)-keep; i++ {
		if gens[i].Live {
			continue
		}
		log.Info("removing old image generation", "dir", gens[i].Dir)
		os.RemoveAll(gens[i].Dir)
		os.Remove(gens[i].Dir + ".json")
		os.Remove(SquashfsPath(gens[i].Dir))
	}
}

// Rollback makes the generation before the live one live again. Nodes get
// it at their next boot.
func Rollback(root, name, archName string, log *slog.Logger) (*Generation, error) {
	dir := Published(root, name, archName)
	unlock, err := fsutil.Lock(filepath.Join(dir, ".lock"), false, nil)
	if err != nil {
		return nil, fmt.Errorf("image %s-%s: %w", name, archName, err)
	}
	defer unlock()
	gens, err := Generations(dir)
	if err != nil {
		return nil, fmt.Errorf("image %s-%s is not published under %s", name, archName, root)
	}
	for i, g := range gens {
		if g.Live {
			if i == 0 {
				return nil, fmt.Errorf("image %s-%s: %s is the oldest generation kept: nothing to roll back to", name, archName, filepath.Base(g.Dir))
			}
			prev := gens[i-1]
			if err := switchTo(dir, filepath.Base(prev.Dir)); err != nil {
				return nil, err
			}
			if log != nil {
				log.Info("image rolled back", "image", name+"-"+archName, "from", filepath.Base(g.Dir), "to", filepath.Base(prev.Dir))
			}
			prev.Live = true
			return &prev, nil
		}
	}
	return nil, errors.New("no live generation (no current symlink)")
}

// Live returns the live generation's directory.
func Live(root, name, archName string) (string, error) {
	dir := Published(root, name, archName)
	t, err := os.Readlink(filepath.Join(dir, "current"))
	if err != nil {
		return "", fmt.Errorf("image %s-%s is not published under %s (run: go run mage.go image:publish arch=%s)", name, archName, root, archName)
	}
	return filepath.Join(dir, t), nil
}
