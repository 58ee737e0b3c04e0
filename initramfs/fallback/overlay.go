package fallback

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// ApplyOverlay unpacks the node's overlay (newc cpio) over root: files
// and links replace the image's, directories are made when missing (an
// existing one keeps its mode), owners and modes as recorded.
func ApplyOverlay(r io.ReaderAt, root string) (int, error) {
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(r))
	if err != nil {
		return 0, err
	}
	for _, rec := range recs {
		name := cpio.Normalize(rec.Name)
		if name == "" || name == "." || !filepath.IsLocal(name) {
			return 0, fmt.Errorf("entry %q: not a path inside the root", rec.Name)
		}
		p := filepath.Join(root, name)
		if err := noLinkAbove(root, name); err != nil {
			return 0, fmt.Errorf("entry %q: %w", rec.Name, err)
		}
		perm := os.FileMode(rec.Mode & 0o7777)
		switch rec.Mode & cpio.S_IFMT {
		case cpio.S_IFDIR:
			if _, err := os.Lstat(p); err == nil {
				continue
			}
			if err := os.Mkdir(p, perm); err != nil {
				return 0, err
			}
		case cpio.S_IFLNK:
			t, err := io.ReadAll(io.NewSectionReader(rec.ReaderAt, 0, int64(rec.FileSize)))
			if err != nil {
				return 0, err
			}
			os.Remove(p)
			if err := os.Symlink(string(t), p); err != nil {
				return 0, err
			}
		case cpio.S_IFREG:
			os.Remove(p) // a link in the image is replaced, not followed
			out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
			if err != nil {
				return 0, err
			}
			_, err = io.Copy(out, io.NewSectionReader(rec.ReaderAt, 0, int64(rec.FileSize)))
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return 0, err
			}
		default:
			continue
		}
		if err := os.Lchown(p, int(rec.UID), int(rec.GID)); err != nil {
			return 0, err
		}
		if rec.Mode&cpio.S_IFMT != cpio.S_IFLNK {
			if err := os.Chmod(p, perm); err != nil {
				return 0, err
			}
		}
	}
	return len(recs), nil
}

// noLinkAbove refuses a path whose parent directories in root include a
// symbolic link: an absolute link (Debian's /var/run -> /run) would be
// followed out of root, into the initramfs.
func noLinkAbove(root, name string) error {
	dir := root
	parts := strings.Split(filepath.Dir(name), string(filepath.Separator))
	for _, c := range parts {
		if c == "." || c == "" {
			continue
		}
		dir = filepath.Join(dir, c)
		st, err := os.Lstat(dir)
		if err != nil {
			return nil // made by an earlier entry, or missing (Mkdir says so)
		}
		if st.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symbolic link in the image: not followed", strings.TrimPrefix(dir, root))
		}
	}
	return nil
}
