// Package fsutil holds the file helpers the stages share: atomic writes,
// hashing, the up-to-date check of a recorded artifact, and the flock.
package fsutil

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// WriteAtomic writes data to path through a temporary file in the same
// directory, fsynced, mode 0644, then renamed over path: readers see the
// old file or the new one, never a part.
func WriteAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return writeRename(path, data, true)
}

// WriteMany writes many files under dir as WriteAtomic does, each a rename
// of a whole file, but without a sync each: one sync of dir's file system
// at the end (50,000 fsyncs took 38 s; the files are there, or the
// error says which was not). names are slash paths relative to dir.
func WriteMany(dir string, names []string, content func(name string) []byte) error {
	made := map[string]bool{}
	for _, name := range names {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if d := filepath.Dir(p); !made[d] {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			made[d] = true
		}
		if err := writeRename(p, content(name), false); err != nil {
			return err
		}
	}
	return SyncFS(dir)
}

// SyncFS flushes the file system that holds dir (syncfs(2)).
func SyncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}

func writeRename(path string, data []byte, sync bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if sync {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// HashBytes is the hex SHA-256 of data.
func HashBytes(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// HashFile returns the hex SHA-256 and the size of the file at path.
func HashFile(path string) (sum string, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, make([]byte, 1<<20))
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// Matches reports whether the file at path has the size and SHA-256 a
// build recorded for it (the "is the artifact still what we made" check of
// every up-to-date test).
func Matches(path string, size int64, sum string) bool {
	st, err := os.Stat(path)
	if err != nil || st.Size() != size {
		return false
	}
	got, n, err := HashFile(path)
	return err == nil && n == size && got == sum
}

// Lock takes an exclusive flock on the file at path (created if missing).
// When another process holds it: with noWait it fails at once, else it
// calls waiting (to say so) and blocks. The returned function unlocks.
func Lock(path string, noWait bool, waiting func()) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if noWait {
			f.Close()
			return nil, ErrLocked
		}
		if waiting != nil {
			waiting()
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// ErrLocked is Lock's error with noWait when the lock is held.
var ErrLocked = errors.New("held by another process")

// WriteReport puts v as indented JSON into dir as <name>-<started>.json
// and <name>.json (the latest), and returns the first's path: the reports
// of lab:storm and lab:load.
func WriteReport(dir, name string, started time.Time, v any) (string, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	data = append(data, '\n')
	p := filepath.Join(dir, name+"-"+started.Format("20060102T150405Z")+".json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return "", err
	}
	return p, os.WriteFile(filepath.Join(dir, name+".json"), data, 0o644)
}
