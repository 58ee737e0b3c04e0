package fallback

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

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
