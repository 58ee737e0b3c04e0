package nodes

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/diskless/diskless/internal/fsutil"
	"github.com/diskless/diskless/pkg/image"
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
	var authorized []byte
	if p := inv.AuthorizedKeysPath(); p != "" {
		if authorized, err = readAuthorizedKeys(p); err != nil {
			return nil, fmt.Errorf("%s: authorized_keys: %w", inv.file, err)
		}
	}
	// every image must be published before any node is touched
	lives := map[string]string{}
	for _, nd := range inv.Nodes {
		if img := inv.ImageOf(nd); img != "" && inv.ProvisionedHere(nd) {
			live, err := image.Live(root, img, nd.Arch)
			if err != nil {
				return nil, fmt.Errorf("node %s: %w", nd.Name, err)
			}
			lives[nd.Name] = live
		}
	}
	r := &Report{}
	for _, nd := range inv.Sorted() {
		if !inv.ProvisionedHere(nd) {
			continue // another master keeps its files
		}
		dir := filepath.Join(root, nd.IP)
		state := map[string]string{}
		oldState, _ := os.ReadFile(filepath.Join(dir, stateFile))
		json.Unmarshal(oldState, &state)
		dirs := SkeletonDirs
		seeded := false
		stateless := inv.Stateless(nd)
		if stateless {
			// its identity only (the overlay publish makes of it): the
			// rest is the image, in the node's RAM
			if err := statelessDirs(dir); err != nil {
				return r, fmt.Errorf("node %s: %w", nd.Name, err)
			}
			dirs = nil
		} else if live := lives[nd.Name]; live != "" {
			dirs = ImageDirs
			if state[seedKey] == "" {
				if err := seed(live, dir); err != nil {
					return r, fmt.Errorf("node %s: %w", nd.Name, err)
				}
				r.Created = append(r.Created, dir+"/{etc,var,root} from "+live)
				state[seedKey] = filepath.Base(filepath.Dir(live)) + "/" + filepath.Base(live)
				seeded = true
			}
		}
		for _, d := range dirs {
			p := filepath.Join(dir, d)
			if _, err := os.Lstat(p); os.IsNotExist(err) {
				if err := os.MkdirAll(p, 0o755); err != nil {
					return r, err
				}
				r.Created = append(r.Created, p+"/")
			}
		}
		console := filepath.Join(dir, "dev", "console")
		if stateless {
			// no tmp, no dev: the node's are in its RAM
		} else if err := os.Chmod(filepath.Join(dir, "tmp"), os.ModeSticky|0o777); err != nil {
			return r, err
		} else if _, err := os.Lstat(console); os.IsNotExist(err) {
			if os.Geteuid() == 0 {
				if err := unix.Mknod(console, unix.S_IFCHR|0o600, int(unix.Mkdev(5, 1))); err != nil {
					return r, fmt.Errorf("mknod %s: %w", console, err)
				}
				r.Created = append(r.Created, console)
			} else {
				r.Notes = append(r.Notes, fmt.Sprintf("%s not created: mknod needs root (run: sudo mknod -m 600 %s c 5 1)", console, console))
			}
		}
		if live := lives[nd.Name]; live != "" {
			sshd := filepath.Join(dir, "etc", "ssh", "sshd_config")
			if stateless {
				sshd = filepath.Join(live, "etc", "ssh", "sshd_config")
			}
			_, serr := os.Stat(sshd)
			made, err := identity(dir, nd.Name, serr == nil)
			if err != nil {
				return r, fmt.Errorf("node %s: %w", nd.Name, err)
			}
			r.Created = append(r.Created, made...)
		}
		files := inv.SlaveFiles(nd)
		if authorized != nil && lives[nd.Name] != "" {
			files["root/.ssh/authorized_keys"] = string(authorized)
		}
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
			case seeded:
				// the image's file, copied a moment ago: provision's to replace
				if err := fsutil.WriteAtomic(p, want); err != nil {
					return r, err
				}
				r.Created = append(r.Created, p)
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

// seedKey records in the state file which image generation a node's
// etc, var and root were copied from (once: they are the node's own after).
const seedKey = "(seeded from)"

// seed copies the image's per-node trees (etc, var, root and the top-level
// links of merged /usr) into a new node root, keeping owners, modes and
// links (cp -a).
func seed(live, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(live)
	if err != nil {
		return err
	}
	args := []string{"-a", "--reflink=auto"}
	for _, e := range ents {
		name := e.Name()
		if e.Type()&os.ModeSymlink != 0 || name == "etc" || name == "var" || name == "root" {
			if _, err := os.Lstat(filepath.Join(dir, name)); err == nil && e.Type()&os.ModeSymlink != 0 {
				continue
			}
			args = append(args, filepath.Join(live, name))
		}
	}
	out, err := exec.Command("cp", append(args, dir+"/")...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("copying the image's etc, var and root: %v: %s", err, out)
	}
	return nil
}

// identity makes what must be unique per node, once: /etc/machine-id and
// SSH host keys (an image carries neither). Existing ones are kept, so a
// re-provisioned node keeps its identity.
func identity(dir, name string, ssh bool) ([]string, error) {
	var made []string
	mid := filepath.Join(dir, "etc", "machine-id")
	cur, _ := os.ReadFile(mid)
	if s := strings.TrimSpace(string(cur)); s == "" || s == "uninitialized" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		if err := fsutil.WriteAtomic(mid, []byte(hex.EncodeToString(b[:])+"\n")); err != nil {
			return nil, err
		}
		made = append(made, mid)
	}
	sshDir := filepath.Join(dir, "etc", "ssh")
	if !ssh {
		return made, nil // no SSH server in the image
	}
	for _, t := range []string{"rsa", "ecdsa", "ed25519"} {
		key := filepath.Join(sshDir, "ssh_host_"+t+"_key")
		if _, err := os.Stat(key); err == nil {
			continue
		}
		out, err := exec.Command("ssh-keygen", "-q", "-N", "", "-t", t, "-C", "root@"+name, "-f", key).CombinedOutput()
		if err != nil {
			return made, fmt.Errorf("ssh-keygen for %s: %v: %s (apt-get install openssh-client)", key, err, out)
		}
		made = append(made, key)
	}
	return made, nil
}

// statelessDirs makes a stateless node's identity directory: its etc,
// etc/ssh and root/.ssh (root's 0700, as the image has it).
func statelessDirs(dir string) error {
	for _, d := range []struct {
		name string
		mode os.FileMode
	}{{"", 0o755}, {"etc", 0o755}, {"etc/ssh", 0o755}, {"root", 0o700}, {"root/.ssh", 0o700}} {
		p := filepath.Join(dir, d.name)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := os.Mkdir(p, d.mode); err != nil {
			return err
		}
		if err := os.Chmod(p, d.mode); err != nil {
			return err
		}
	}
	return nil
}

// readAuthorizedKeys reads an authorized_keys file and checks each line
// looks like a public key.
func readAuthorizedKeys(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	n := 0
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if !strings.Contains(l, "ssh-") && !strings.Contains(l, "ecdsa-") && !strings.Contains(l, "sk-") {
			return nil, fmt.Errorf("%s:%d: not an SSH public key (want a line like ssh-ed25519 AAAA... you@host)", path, i+1)
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: no public key in it", path)
	}
	return data, nil
}

// WriteFiles writes rendered files under dir (artifacts/master).
func WriteFiles(dir string, files Files) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return fsutil.WriteMany(dir, files.Names(), func(name string) []byte { return []byte(files[name]) })
}

// Summary is the report as lines for a terminal: each kept file, each
// note, then the counts.
func (r *Report) Summary(nodes int, root string) string {
	var b strings.Builder
	for _, k := range r.Kept {
		fmt.Fprintf(&b, "kept (changed by an admin): %s\n", k)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	fmt.Fprintf(&b, "%d nodes provisioned in %s: %d created, %d updated, %d kept\n", nodes, root, len(r.Created), len(r.Updated), len(r.Kept))
	return b.String()
}

// RenderInto makes dir (artifacts/master; with [[master]] each master's files
// in dir/<name>, ForMaster) hold exactly what Render makes:
// the files whose content changed are written, the per-node files of an
// earlier render that Render no longer makes are removed, the others are
// left alone (re-rendering 10,000 nodes writes only what changed). It
// returns how many files Render made and how many it wrote.
func (inv *Inventory) RenderInto(dir string) (total, written int, err error) {
	if len(inv.Masters) > 0 && inv.self == "" {
		// every master's files, each in its own directory
		for _, name := range inv.MasterNames() {
			v, err := inv.ForMaster(name)
			if err != nil {
				return 0, 0, err
			}
			t, w, err := v.RenderInto(MasterDir(dir, name))
			if err != nil {
				return total, written, err
			}
			total, written = total+t, written+w
		}
		return total, written, nil
	}
	files, err := inv.Render()
	if err != nil {
		return 0, 0, err
	}
	for _, sub := range []string{"pxelinux.cfg", "ipxe", "nodes"} {
		if err := removeStale(dir, sub, files); err != nil {
			return 0, 0, err
		}
	}
	var changed []string
	for _, name := range files.Names() {
		if old, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name))); err == nil && string(old) == files[name] {
			continue
		}
		changed = append(changed, name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, 0, err
	}
	return len(files), len(changed), fsutil.WriteMany(dir, changed, func(name string) []byte { return []byte(files[name]) })
}

// removeStale removes the files under dir/sub that files does not have,
// and the directories that leaves empty.
func removeStale(dir, sub string, files Files) error {
	top := filepath.Join(dir, sub)
	var dirs []string
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if _, ok := files[filepath.ToSlash(rel)]; !ok {
			return os.Remove(p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		os.Remove(dirs[i]) // only when empty
	}
	return err
}
