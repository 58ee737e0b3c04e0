package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// reader is a daemon that serves DISKLESS_ROOT as an unprivileged user.
type reader struct {
	daemon, user string
	// chroot: the daemon enters the root before it drops privileges, so
	// the directories above the root do not matter to it
	chroot bool
}

// readers are the lab's daemons that read the root as another user:
// tftpd-hpa (-s chroots, then runs as nobody, its default -u) and nginx's
// workers (NginxUser, as its configuration says). NFS-Ganesha reads as
// root.
var readers = []reader{{"tftpd-hpa", "nobody", true}, {"nginx", NginxUser, false}}

// CheckReadable checks, before any node boots, that each daemon can read
// what it serves as the user it runs as: the root, every directory above
// it (for nginx), and file, a published file in it ("" to check the root
// alone). The error names the daemon, the user, the directory that stops
// it and its mode, and what to do: with the root under a 0700 directory
// (as mktemp -d makes) nginx answers every iPXE node 403 and the nodes
// wait out their timeout.
func CheckReadable(root, file string, readers []reader) error {
	var errs []error
	for _, r := range readers {
		u, err := user.Lookup(r.user)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s runs as %s, which this machine does not have: %w", r.daemon, r.user, err))
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		as := func(test, path string) bool {
			cmd := exec.Command("test", test, path)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
			return cmd.Run() == nil
		}
		dirs := []string{}
		for d := root; ; d = filepath.Dir(d) {
			dirs = append([]string{d}, dirs...)
			if d == filepath.Dir(d) {
				break
			}
		}
		if r.chroot {
			// inside its chroot the root is /: only the root and what is
			// below it count, by their modes (the daemon cannot be run
			// there to try)
			as = func(test, path string) bool { return permits(path, uint32(uid), uint32(gid), test) }
			dirs = []string{root}
			if file != "" {
				if real, err := filepath.EvalSymlinks(file); err == nil && strings.HasPrefix(real, root+"/") {
					for d := filepath.Dir(real); d != root && strings.HasPrefix(d, root); d = filepath.Dir(d) {
						dirs = append(dirs, d)
					}
				}
			}
		}
		blocked := ""
		for _, d := range dirs {
			if !as("-x", d) {
				blocked = d
				break
			}
		}
		switch {
		case blocked != "":
			mode := "?"
			if st, err := os.Stat(blocked); err == nil {
				mode = fmt.Sprintf("%v (%04o)", st.Mode().Perm(), st.Mode().Perm())
			}
			errs = append(errs, fmt.Errorf("%s runs as %s, which cannot enter %s (mode %s, owner uid %s): it could serve nothing from DISKLESS_ROOT=%s; chmod o+x %s, or put the root elsewhere", r.daemon, r.user, blocked, mode, owner(blocked), root, blocked))
		case file != "" && !as("-r", file):
			errs = append(errs, fmt.Errorf("%s runs as %s, which cannot read %s: nodes would be refused it; make the published files readable by others (publish writes them 0644)", r.daemon, r.user, file))
		}
	}
	return errors.Join(errs...)
}

// permits says from path's mode bits whether uid (with primary group gid)
// may do what test asks: "-x" (enter a directory) or "-r" (read).
func permits(path string, uid, gid uint32, test string) bool {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false
	}
	st, err := os.Stat(real)
	if err != nil {
		return false
	}
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	bit := uint32(1) // x
	if test == "-r" {
		bit = 4
	}
	perm := uint32(st.Mode().Perm())
	switch {
	case uid == 0:
		return true
	case s.Uid == uid:
		return perm>>6&bit != 0
	case s.Gid == gid:
		return perm>>3&bit != 0
	}
	return perm&bit != 0
}

func owner(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "?"
	}
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return strconv.Itoa(int(s.Uid))
	}
	return "?"
}

// servedFile is a published file of root to check, or "" when nothing
// is published yet.
func servedFile(root string) string {
	for _, name := range []string{"SHA256SUMS", "pxelinux.0", "boot.ipxe"} {
		p := filepath.Join(root, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// checkAccess is CheckReadable for the lab's daemons.
func (l *Lab) checkAccess() error {
	if err := CheckReadable(l.o.Root, servedFile(l.o.Root), readers); err != nil {
		return fmt.Errorf("the lab's daemons cannot serve %s: %w", l.o.Root, err)
	}
	return nil
}
