package nodeos

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/lab"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/publish"
	"github.com/diskless/diskless/pkg/qemu"
)

// Stateless nodes: the Debian image from RAM, by iPXE (slave31), by
// UEFI HTTP boot (slave32), and an arm64 node by UEFI PXE (slave33), whose
// EFI kernel has one command line for every node built in: the fallback
// initramfs inside it fetches the node's own (cmdline/<mac>, signed).
const statelessTemplate = `[network]
master = "192.168.1.1"
subnet = "192.168.1.0/24"
root = "{root}"
nfs_opts = "vers=3,tcp"
image = "debian-12"
home = "{home}"
shared_ro = ["{opt}:/opt"]
authorized_keys = "admin.pub"
mode = "stateless"

[[node]]
name = "slave31"
mac = "00:02:A5:04:3B:71"
ip = "192.168.1.31"
arch = "x86_64"
boot = "ipxe"
tmpfs_size = "128M"

[[node]]
name = "slave32"
mac = "00:02:A5:04:3B:72"
ip = "192.168.1.32"
arch = "x86_64"
boot = "http"

[[node]]
name = "slave33"
mac = "00:02:A5:04:3B:73"
ip = "192.168.1.33"
arch = "arm64"
boot = "uefi"
`

// TestIntegrationStatelessNodes: stateless nodes fetch the signed Debian
// squashfs and their own overlay over HTTP through the lab's real
// daemons, run it from RAM under a tmpfs overlay to multi-user, answer SSH
// with their own name and host key, do not notice a new image publish,
// and keep running when the master's NFS and HTTP servers are gone. A
// node whose overlay no longer matches the signed SHA256SUMS is refused
// with the file named, and gets the rescue shell.
func TestIntegrationStatelessNodes(t *testing.T) {
	l := newLabMaster(t, statelessTemplate, true, "x86_64", "arm64")
	all := l.bootAll(t, "slave31", "slave32", "slave33")
	a, b, arm := all[0], all[1], all[2]
	m, err := publish.ReadManifest(l.Root)
	if err != nil {
		t.Fatal(err)
	}
	gen := publish.GenerationDir(m.Generation)
	for _, c := range []struct {
		n       *Node
		name    string
		ip      string
		console []string
		tmpfs   string
	}{
		{a, "slave31", "192.168.1.31", []string{"/boot.ipxe... ok", "diskless.image=/" + gen + "/squashfs/debian-12-x86_64.squashfs", "fetching squashfs/debian-12-x86_64.squashfs: 100%"}, "131072"},
		{b, "slave32", "192.168.1.32", []string{"snponly.efi", "fetching squashfs/debian-12-x86_64.squashfs: 100%"}, ""},
		{arm, "slave33", "192.168.1.33", []string{"EFI stub: Booting Linux Kernel", "command line of 00:02:a5:04:3b:73 from 192.168.1.1:/cmdline/00-02-a5-04-3b-73 (signed)", "fetching squashfs/debian-12-arm64.squashfs: 100%"}, ""},
	} {
		for _, w := range append(c.console, "overlay /"+gen+"/overlays/"+c.ip+".cpio") {
			if !strings.Contains(c.n.Console(), w) {
				t.Errorf("%s: no %q on the console", c.name, w)
			}
		}
		l.checkIdentity(t, c.n, c.name, c.ip)
		if got := run(t, c.n, "findmnt -n -o FSTYPE /"); got != "overlay" {
			t.Errorf("%s: / is %q, want overlay", c.name, got)
		}
		if c.tmpfs != "" {
			if got := run(t, c.n, "df --output=size -k /run/diskless/rw | tail -1"); strings.TrimSpace(got) != c.tmpfs {
				t.Errorf("%s: tmpfs of %s KiB, want %s (tmpfs_size = 128M)", c.name, got, c.tmpfs)
			}
		}
		// what a stateless node keeps to itself: nothing of it on the
		// master but its identity
		run(t, c.n, "echo "+c.name+" > /var/tmp/mine")
		if got := run(t, c.n, "cat /opt/from-master"); got != "opt" {
			t.Errorf("%s: /opt: %q", c.name, got)
		}
	}
	if _, err := os.Stat(filepath.Join(l.Root, "192.168.1.31", "var")); err == nil {
		t.Error("slave31 has a /var on the master")
	}
	// nothing secret in the shared image: no host key, no machine-id
	sq := filepath.Join(l.Root, gen, "squashfs/debian-12-x86_64.squashfs")
	list, err := exec.Command("unsquashfs", "-lls", sq).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -lls %s: %v\n%s", sq, err, list)
	}
	if !strings.Contains(string(list), "/usr/lib/systemd/systemd") || strings.Contains(string(list), "ssh_host_") {
		t.Errorf("the shared squashfs: systemd %v, an SSH host key %v", strings.Contains(string(list), "/usr/lib/systemd/systemd"), strings.Contains(string(list), "ssh_host_"))
	}
	if mid, _ := exec.Command("unsquashfs", "-cat", sq, "etc/machine-id").Output(); len(strings.TrimSpace(string(mid))) == 32 {
		t.Errorf("the shared squashfs has a machine-id: %s", mid)
	}
	// the set says which image generation a node boots next
	for _, f := range m.Files {
		if f.Name == "squashfs/debian-12-x86_64.squashfs" && imageGeneration(f.Build) != "gen-0001" {
			t.Errorf("manifest.json: %s build %s, want image generation gen-0001", f.Name, f.Build)
		}
	}

	// a new image publish while they run: the signed set changes, they
	// keep theirs (in RAM)
	l.publishImageGen2(t)
	m2, err := publish.ReadManifest(l.Root)
	if err != nil || m2.Generation == m.Generation {
		t.Fatalf("the image publish did not publish the set: %v (generation %d)", err, m.Generation)
	}
	for _, f := range m2.Files {
		if f.Name == "squashfs/debian-12-x86_64.squashfs" && imageGeneration(f.Build) != "gen-0002" {
			t.Errorf("manifest.json after the image publish: %s build %s, want gen-0002", f.Name, f.Build)
		}
	}
	for _, n := range all {
		if out, err := n.Run("cat /usr/share/diskless-gen2"); err == nil {
			t.Errorf("%s sees the new image: %q", n.acc.Name, out)
		}
		// every file of /usr/bin read back from the squashfs in RAM
		if out, err := n.Run("cat /usr/bin/* > /dev/null && echo read"); err != nil || strings.TrimSpace(out) != "read" {
			t.Errorf("%s: reading /usr/bin after the publish: %v %s", n.acc.Name, err, out)
		}
	}

	// the master's NFS and HTTP servers gone: they keep running
	for _, d := range []string{lab.NFS, lab.HTTP} {
		if err := l.l.Kill(d); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range all {
		if got := run(t, n, "systemctl is-system-running"); got != "running" {
			t.Errorf("%s without the master's NFS and HTTP: %q", n.acc.Name, got)
		}
		if got := run(t, n, "echo written > /tmp/after && cat /tmp/after /var/tmp/mine"); got != "written\n"+n.acc.Name {
			t.Errorf("%s: /tmp and /var/tmp without the master: %q", n.acc.Name, got)
		}
	}
	for _, n := range all {
		n.Stop()
	}
	for _, d := range []string{lab.NFS, lab.HTTP} {
		if err := l.l.Restart(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}

	// slave31's overlay no longer what the signed SHA256SUMS says: refused,
	// named, the rescue shell
	nd := l.Node("slave31")
	ov := filepath.Join(l.Root, publish.GenerationDir(m2.Generation), nodes.OverlayName(nd))
	if err := os.WriteFile(ov, []byte("not slave31's identity"), 0o640); err != nil {
		t.Fatal(err)
	}
	mc, remove, err := l.l.Machine(nd, nd.MAC, filepath.Join(l.logs, "slave31-tampered.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	mc.Accel = l.S.QEMUAccel
	sess, err := qemu.Start(context.Background(), mc)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Stop()
	if _, err := sess.Expect([]string{"starting a rescue shell"}, nil, 3*time.Minute); err != nil {
		t.Fatalf("tampered overlay: %v (console: %s)", err, mc.LogPath)
	}
	want := fmt.Sprintf("diskless-fallback: verify failed: server=192.168.1.1 export=/%s/%s: sha256 ", publish.GenerationDir(m2.Generation), nodes.OverlayName(nd))
	if !strings.Contains(sess.Console(), want) || !strings.Contains(sess.Console(), "refused") {
		t.Errorf("no %q on the console", want)
	}
	if strings.Contains(sess.Console(), boot.MultiUser) {
		t.Error("the node booted with a tampered overlay")
	}
}

// imageGeneration is the image generation a squashfs entry of
// manifest.json names.
func imageGeneration(build json.RawMessage) string {
	var b struct{ Generation string }
	json.Unmarshal(build, &b)
	return b.Generation
}
