package nodes

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/diskless/diskless/internal/fsutil"
)

// stateFile records, per slave root, the hash of each file provision wrote,
// so a later run can tell its own (updatable) files from an admin's edits.
const stateFile = ".diskless-provision.json"

// Report says what provisioning did.
type Report struct {
	Created, Updated, Kept, Notes []string
}

func hashOf(data []byte) string {
	return fsutil.HashBytes(data)
}

// Provision creates or updates each node's root skeleton under root
// (DISKLESS_ROOT): the HOWTO's directories (tmp 1777), dev/console (c 5 1,
// only as root) and the files of SlaveFiles. A file that exists and is not
// exactly what provision wrote last time is an admin's: it is kept and
// reported. Running it again changes nothing.
func (inv *Inventory) Provision(root string) (*Report, error) {
	st, err := os.Stat(root)
	if err != nil || !st.IsDir() {
		return nil, fmt.Errorf("DISKLESS_ROOT=%s: not a directory (create it first)", root)
	}
	r := &Report{}
	for _, nd := range inv.Sorted() {
		dir := filepath.Join(root, nd.IP)
		for _, d := range SkeletonDirs {
			p := filepath.Join(dir, d)
			if _, err := os.Lstat(p); os.IsNotExist(err) {
				if err := os.MkdirAll(p, 0o755); err != nil {
					return r, err
				}
				r.Created = append(r.Created, p+"/")
			}
		}
		if err := os.Chmod(filepath.Join(dir, "tmp"), os.ModeSticky|0o777); err != nil {
			return r, err
		}
		console := filepath.Join(dir, "dev", "console")
		if _, err := os.Lstat(console); os.IsNotExist(err) {
			if os.Geteuid() == 0 {
				if err := unix.Mknod(console, unix.S_IFCHR|0o600, int(unix.Mkdev(5, 1))); err != nil {
					return r, fmt.Errorf("mknod %s: %w", console, err)
				}
				r.Created = append(r.Created, console)
			} else {
				r.Notes = append(r.Notes, fmt.Sprintf("%s not created: mknod needs root (run: sudo mknod -m 600 %s c 5 1)", console, console))
			}
		}
		state := map[string]string{}
		oldState, _ := os.ReadFile(filepath.Join(dir, stateFile))
		json.Unmarshal(oldState, &state)
		files := inv.SlaveFiles(nd)
		var names []string
		for n := range files {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, name := range names {
			p := filepath.Join(dir, name)
			want := []byte(files[name])
			cur, err := os.ReadFile(p)
			switch {
			case os.IsNotExist(err):
				if err := fsutil.WriteAtomic(p, want); err != nil {
					return r, err
				}
				r.Created = append(r.Created, p)
			case err != nil:
				return r, err
			case hashOf(cur) == hashOf(want):
				// already what we would write
			case state[name] == hashOf(cur):
				if err := fsutil.WriteAtomic(p, want); err != nil {
					return r, err
				}
				r.Updated = append(r.Updated, p)
			default:
				r.Kept = append(r.Kept, p)
				continue
			}
			state[name] = hashOf(want)
		}
		data, _ := json.MarshalIndent(state, "", "  ")
		if data = append(data, '\n'); string(data) != string(oldState) {
			if err := fsutil.WriteAtomic(filepath.Join(dir, stateFile), data); err != nil {
				return r, err
			}
		}
	}
	return r, nil
}

// WriteFiles writes rendered files under dir (artifacts/master).
func WriteFiles(dir string, files Files) error {
	for _, name := range files.Names() {
		if err := fsutil.WriteAtomic(filepath.Join(dir, name), []byte(files[name])); err != nil {
			return err
		}
	}
	return nil
}
