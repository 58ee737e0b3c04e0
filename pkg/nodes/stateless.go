package nodes

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/diskless/diskless/pkg/arch"
)

// Node modes (mode = in [network] or a [[node]]).
const (
	// ModeNFS is the HOWTO's way: the node's own root over NFS (its etc,
	// var and root copied from the image once), /usr from the image.
	ModeNFS = "nfs"
	// ModeStateless: the fallback initramfs fetches the image as one
	// squashfs file over HTTP into RAM, mounts it under an overlayfs whose
	// upper layer is a tmpfs, applies the node's overlay (its identity)
	// and starts the image's init; the node needs nothing from the master
	// once it runs.
	ModeStateless = "stateless"
)

// Modes lists the node modes, for messages.
var Modes = []string{ModeNFS, ModeStateless}

// DefaultTmpfsSize is a stateless node's tmpfs (its writable layer) when
// the inventory names none: half the node's RAM, the kernel's own default.
const DefaultTmpfsSize = "50%"

// ModeOf is the node's mode: its own, else [network]'s, else nfs.
func (inv *Inventory) ModeOf(nd Node) string {
	return cmp.Or(nd.Mode, inv.Network.Mode, ModeNFS)
}

// Stateless says whether the node runs its image from RAM.
func (inv *Inventory) Stateless(nd Node) bool { return inv.ModeOf(nd) == ModeStateless }

// TmpfsSizeOf is the size of a stateless node's tmpfs (tmpfs's size=).
func (inv *Inventory) TmpfsSizeOf(nd Node) string {
	return cmp.Or(nd.TmpfsSize, inv.Network.TmpfsSize, DefaultTmpfsSize)
}

var tmpfsSizeRe = regexp.MustCompile(`^([0-9]+)([kKmMgG%]?)$`)

// checkTmpfsSize says what is wrong with a tmpfs_size value, or "".
func checkTmpfsSize(v string) string {
	m := tmpfsSizeRe.FindStringSubmatch(v)
	if m == nil {
		return fmt.Sprintf("tmpfs_size = %q: want a size tmpfs takes, like 2G, 512M or 50%% (of the node's RAM)", v)
	}
	n, _ := strconv.Atoi(m[1])
	if n == 0 || (m[2] == "%" && n > 100) {
		return fmt.Sprintf("tmpfs_size = %q: want more than 0 and at most 100%%", v)
	}
	return ""
}

// statelessRefusal says why node nd (arch a, its image img) cannot run
// stateless, or "".
func statelessRefusal(nd Node, a arch.Arch, img string) string {
	if img == "" {
		return `mode = "stateless" runs an image: set image = (here or in [network]) to a published image`
	}
	if nd.Boot == BootEtherboot || (a.SrcArch != "x86" && a.Name != "arm64") {
		// vmlinuz_<arch> carries one command line built in for every node
		// (arm64's, the fallback initramfs too, which fetches the node's
		// own: NodeCmdlineFile)
		return fmt.Sprintf(`mode = "stateless" needs a command line of the node's own (its image and overlay): boot = %q loads vmlinuz_%s, whose command line is built in; boot x86 nodes by pxelinux, ipxe, uefi or http, arm64 nodes by uefi or http`, nd.Boot, a.Name)
	}
	return ""
}

// SquashfsName is the published name of an image's squashfs file.
func SquashfsName(img, archName string) string {
	return path.Join("squashfs", img+"-"+archName+".squashfs")
}

// OverlayName is the published name of a stateless node's overlay: by
// its address, which nginx compares with the client's.
func OverlayName(nd Node) string { return path.Join("overlays", nd.IP+".cpio") }

// StatelessCmdline is a stateless node's kernel command line: no NFS root;
// the fallback initramfs fetches diskless.image and diskless.overlay over
// HTTP from the server it booted from (publish pins both to the
// generation, so they come from the same signed set as the kernel); with
// several masters, diskless.masters= lists them all (primary first), where
// it fetches when that server stops answering.
func (inv *Inventory) StatelessCmdline(nd Node, a arch.Arch) string {
	parts := []string{
		"ip=dhcp", "rw", "console=" + a.Console,
		"diskless.image=/" + SquashfsName(inv.ImageOf(nd), nd.Arch),
		"diskless.overlay=/" + OverlayName(nd),
		"diskless.tmpfs=" + inv.TmpfsSizeOf(nd),
	}
	if len(inv.Masters) > 1 {
		// every master serves the same signed set: when the one that
		// answered is lost midway, the initramfs fetches from another
		var addrs []string
		for _, m := range inv.Masters {
			addrs = append(addrs, m.Address)
		}
		parts = append(parts, "diskless.masters="+strings.Join(addrs, ","))
	}
	if nd.KernelArgs != "" {
		parts = append(parts, nd.KernelArgs)
	}
	return strings.Join(parts, " ")
}

// NodeCmdlineFile says whether the node's command line is published as a
// file of its own (pxe.NodeCmdlineName): a stateless node whose kernel
// (arm64's EFI vmlinuz) has one command line built in for every node; the
// fallback initramfs inside it fetches the node's.
func (inv *Inventory) NodeCmdlineFile(nd Node) bool {
	return inv.Stateless(nd) && nd.Arch == "arm64"
}

// NodeCmdline is the node's command line file (NodeCmdlineFile).
func (inv *Inventory) NodeCmdline(nd Node) (string, error) {
	a, err := arch.Lookup(nd.Arch)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("# %s\n# node %s (boot = %s): its command line, which the fallback initramfs inside vmlinuz_%s fetches and checks against SHA256SUMS\n%s\n",
		fmt.Sprintf(header, path.Base(inv.file)), nd.Name, nd.Boot, a.Name, inv.Cmdline(nd, a)), nil
}

// Cmdline is the node's kernel command line, by its mode.
func (inv *Inventory) Cmdline(nd Node, a arch.Arch) string {
	if inv.Stateless(nd) {
		return inv.StatelessCmdline(nd, a)
	}
	return inv.Settings(nd).Cmdline(a)
}

// StatelessImages are the images (name-arch) stateless nodes run, sorted.
func (inv *Inventory) StatelessImages() [][2]string {
	seen := map[[2]string]bool{}
	var out [][2]string
	for _, nd := range inv.Nodes {
		if inv.Stateless(nd) {
			k := [2]string{inv.ImageOf(nd), nd.Arch}
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0]+out[i][1] < out[j][0]+out[j][1] })
	return out
}

// ErrNotProvisioned is Overlay's error for a node nodes:provision has not
// made an identity for yet.
var ErrNotProvisioned = errors.New("not provisioned")

// Overlay is a stateless node's overlay: its identity directory on the
// master (<root>/<ip>: what provision wrote and kept there, the admin's
// edits included) as a newc cpio that the fallback initramfs unpacks over
// the image. Owners, modes and links are kept; times are zero, so the
// same identity gives the same bytes.
func (inv *Inventory) Overlay(root string, nd Node) ([]byte, error) {
	dir := filepath.Join(root, nd.IP)
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("node %s: %w: no identity under %s (run: go run mage.go nodes:provision)", nd.Name, ErrNotProvisioned, dir)
	}
	// a node that ran with its NFS root has its whole etc, var and root
	// there: not an identity to unpack over a new image
	var state map[string]string
	if data, err := os.ReadFile(filepath.Join(dir, stateFile)); err == nil && json.Unmarshal(data, &state) == nil && state[seedKey] != "" {
		return nil, fmt.Errorf("node %s is stateless now, but %s is its NFS root (its own etc, var and root): move it away and run nodes:provision for a new identity (copy etc/machine-id and etc/ssh/ssh_host_* from it into the new one to keep the old)", nd.Name, dir)
	}
	var recs []cpio.Record
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." || rel == stateFile {
			return nil
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		info := cpio.Info{Name: filepath.ToSlash(rel), Mode: uint64(st.Mode().Perm())}
		if s, ok := st.Sys().(*syscall.Stat_t); ok {
			info.UID, info.GID = uint64(s.Uid), uint64(s.Gid)
			info.Mode = uint64(s.Mode)
		}
		switch {
		case st.IsDir():
			recs = append(recs, cpio.Record{ReaderAt: bytes.NewReader(nil), Info: info})
		case st.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			info.FileSize = uint64(len(t))
			recs = append(recs, cpio.Record{ReaderAt: strings.NewReader(t), Info: info})
		case st.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			info.FileSize = uint64(len(data))
			recs = append(recs, cpio.Record{ReaderAt: bytes.NewReader(data), Info: info})
		default:
			// devices and fifos: an identity has none (dev/ is devtmpfs)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("node %s: reading %s: %w", nd.Name, dir, err)
	}
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	for i := range recs {
		recs[i].Info.Ino = uint64(i + 1)
		recs[i].Info.NLink = 1
	}
	if err := cpio.WriteRecords(w, recs); err != nil {
		return nil, err
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// statelessFiles are a stateless node's identity files (beside machine-id
// and the SSH host keys provision makes): no root on NFS, the shared
// exports, its name, and its interface left to the address the
// initramfs configured.
func (inv *Inventory) statelessFiles(nd Node) Files {
	var fstab strings.Builder
	fstab.WriteString(inv.comment("#"))
	fstab.WriteString("# <fs>\t<mountpoint>\t<type>\t<opts>\t<dump> <pass>\n")
	fmt.Fprintf(&fstab, "# /: the image %s in RAM (squashfs under an overlayfs on tmpfs, set up by the fallback initramfs)\n", inv.ImageOf(nd))
	inv.sharedMounts(&fstab, nd, true, ",nofail")
	return Files{
		"etc/fstab":    fstab.String(),
		"etc/hostname": nd.Name + "\n",
		"etc/hosts":    inv.hosts(nd),
		"etc/systemd/network/00-diskless-boot.network": inv.comment("#") +
			"# The initramfs configured this interface (DHCP, a fixed lease): leave it.\n" +
			"[Match]\nMACAddress=" + nd.MAC + "\n\n[Link]\nUnmanaged=yes\n",
		"etc/NetworkManager/conf.d/00-diskless-boot.conf": inv.comment("#") +
			"# The initramfs configured this interface.\n" +
			"[keyfile]\nunmanaged-devices=mac:" + nd.MAC + "\n",
		"etc/network/interfaces": inv.comment("#") +
			"# ifupdown: only the loopback; the initramfs configured the boot interface.\n" +
			"auto lo\niface lo inet loopback\n",
	}
}
