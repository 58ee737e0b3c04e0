package image

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/diskless/diskless/internal/fsutil"
	"github.com/diskless/diskless/internal/textutil"
)

// Squashfs describes a generation's image as one file (stateless nodes
// fetch it over HTTP and run it from RAM).
type Squashfs struct {
	SHA256  string  `json:"sha256"`
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"build_seconds"`
}

// SquashfsPath is generation dir's squashfs file: <dir>.squashfs, beside
// the tree and its manifest.
func SquashfsPath(genDir string) string { return genDir + ".squashfs" }

// SquashfsArgs are mksquashfs's options: zstd (the slave kernel reads
// it: CONFIG_SQUASHFS_ZSTD), 128 KiB blocks (1 MiB saves 6 MB of the
// Debian image but decompresses a whole MiB per small read: measured 3-6 s
// slower to multi-user under TCG), no xattrs
// (the slave kernel has no SQUASHFS_XATTR), every time set to the epoch
// so the same tree gives the same bytes.
func SquashfsArgs(epoch int64) []string {
	e := strconv.FormatInt(epoch, 10)
	return []string{"-noappend", "-no-progress", "-quiet", "-comp", "zstd", "-Xcompression-level", "19", "-b", "128K", "-no-xattrs", "-mkfs-time", e, "-all-time", e}
}

// MakeSquashfs writes tree as a squashfs file at out (through a
// temporary file: out is complete or absent).
func MakeSquashfs(ctx context.Context, tree, out string, epoch int64) (*Squashfs, error) {
	start := time.Now()
	tmp := out + ".tmp"
	os.Remove(tmp)
	cmd := exec.CommandContext(ctx, "mksquashfs", append([]string{tree, tmp}, SquashfsArgs(epoch)...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		if _, lerr := exec.LookPath("mksquashfs"); lerr != nil {
			return nil, fmt.Errorf("mksquashfs not found: apt-get install squashfs-tools")
		}
		return nil, fmt.Errorf("mksquashfs %s: %v\n%s", tree, err, textutil.Tail(string(b), 10))
	}
	sum, n, err := fsutil.HashFile(tmp)
	if err != nil {
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	return &Squashfs{SHA256: sum, Bytes: n, Seconds: time.Since(start).Seconds()}, nil
}

// ensureSquashfs makes generation g's squashfs when it has none or its
// manifest does not describe it (a generation published before images
// had one), and records it in the manifest.
func ensureSquashfs(ctx context.Context, dir string, g *Generation, epoch int64) error {
	p := SquashfsPath(g.Dir)
	if m := g.Manifest; m != nil && m.Squashfs != nil && fsutil.Matches(p, m.Squashfs.Bytes, m.Squashfs.SHA256) {
		return nil
	}
	sq, err := MakeSquashfs(ctx, g.Dir, p, epoch)
	if err != nil {
		return err
	}
	if g.Manifest == nil {
		return fmt.Errorf("%s: no manifest", g.Dir)
	}
	g.Manifest.Squashfs = sq
	return WriteManifest(filepath.Join(dir, filepath.Base(g.Dir)+".json"), g.Manifest)
}
