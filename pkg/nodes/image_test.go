package nodes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/testutil"
)

const imageInv = `[network]
master = "192.168.1.1"
subnet = "192.168.1.0/24"
root = "%ROOT%"
nfs_opts = "vers=4,tcp"
image = "debian-12"
shared_ro = ["/usr", "/srv/opt:/opt"]
authorized_keys = "admin.pub"

[[node]]
name = "slave21"
mac = "00:02:a5:04:3b:66"
ip = "192.168.1.21"
arch = "x86_64"
`

// fakePublished lays out a published image the way pkg/image does.
func fakePublished(t *testing.T, root string) string {
	t.Helper()
	gen := filepath.Join(root, "images", "debian-12-x86_64", "gen-0001")
	for _, d := range []string{"etc/ssh", "var/lib/dpkg", "root", "usr/bin", "usr/sbin"} {
		os.MkdirAll(filepath.Join(gen, d), 0o755)
	}
	os.WriteFile(filepath.Join(gen, "etc/ssh/sshd_config"), []byte("# sshd\n"), 0o644)
	os.WriteFile(filepath.Join(gen, "etc/machine-id"), nil, 0o444)
	os.WriteFile(filepath.Join(gen, "etc/hostname"), []byte("debian\n"), 0o644)
	os.WriteFile(filepath.Join(gen, "var/lib/dpkg/status"), []byte("Package: x\n"), 0o644)
	os.Symlink("usr/bin", filepath.Join(gen, "bin"))
	os.Symlink("usr/sbin", filepath.Join(gen, "sbin"))
	os.Symlink("gen-0001", filepath.Join(root, "images", "debian-12-x86_64", "current"))
	return gen
}

func loadImageInv(t *testing.T, dir, root string) *Inventory {
	t.Helper()
	p := filepath.Join(dir, "nodes.toml")
	os.WriteFile(p, []byte(strings.ReplaceAll(imageInv, "%ROOT%", root)), 0o644)
	inv, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestRenderWithImage(t *testing.T) {
	dir := t.TempDir()
	inv := loadImageInv(t, dir, "/diskless")
	inv.Initrd = map[string]string{"x86_64": "initramfs_x86_64.cpio.zst"}
	files, err := inv.Render()
	if err != nil {
		t.Fatal(err)
	}
	fstab := files["nodes/192.168.1.21/etc/fstab"]
	if strings.Contains(fstab, "\t/usr\t") {
		t.Errorf("fstab mounts the master's /usr over the image's:\n%s", fstab)
	}
	for _, want := range []string{"192.168.1.1:/diskless/192.168.1.21\t/\tnfs\tdefaults", "192.168.1.1:/srv/opt\t/opt\tnfs\thard,vers=4,tcp,addr=192.168.1.1,ro", "192.168.1.1:/home\t/home\tnfs\thard,vers=4,tcp,addr=192.168.1.1,rw"} {
		if !strings.Contains(fstab, want) {
			t.Errorf("fstab lacks %q:\n%s", want, fstab)
		}
	}
	if got := files["nodes/192.168.1.21/"+NodeConf]; !strings.Contains(got, "\nimage=/diskless/images/debian-12-x86_64\n") {
		t.Errorf("node.conf:\n%s", got)
	}
	if got := files["nodes/192.168.1.21/etc/systemd/network/00-diskless-root.network"]; !strings.Contains(got, "MACAddress=00:02:a5:04:3b:66") || !strings.Contains(got, "Unmanaged=yes") {
		t.Errorf("networkd file:\n%s", got)
	}
	ex := files["exports"]
	if !strings.Contains(ex, "/diskless/images\t192.168.1.0/24(ro,sync,no_root_squash") || strings.Contains(ex, "\n/usr\t") || !strings.Contains(ex, "/srv/opt\t192.168.1.0/24(ro") {
		t.Errorf("exports:\n%s", ex)
	}
	g := files["ganesha.conf"]
	for _, want := range []string{"Path = \"/diskless/192.168.1.21\";", "Clients = 192.168.1.21;", "Path = \"/diskless/images\";", "Path = \"/srv/opt\";", "Path = \"/home\";"} {
		if !strings.Contains(g, want) {
			t.Errorf("ganesha.conf lacks %q", want)
		}
	}
	if strings.Count(g, "EXPORT {") != 4 {
		t.Errorf("ganesha.conf has %d exports", strings.Count(g, "EXPORT {"))
	}
	// the kernel's nfsroot %s is its nodename: the node's IP only if DHCP
	// names no host (found booting an arm64 node by UEFI in the lab)
	if strings.Contains(files["dhcpd.conf"], "host-name") || strings.Contains(files["dnsmasq.d/diskless.conf"], ",slave21") {
		t.Error("DHCP names the host: the kernel then puts the host name, not the IP, in nfsroot paths")
	}
	if cfg := files["pxelinux.cfg/01-00-02-a5-04-3b-66"]; !strings.Contains(cfg, "INITRD initramfs_x86_64.cpio.zst") {
		t.Errorf("per-node PXELINUX file boots no initramfs:\n%s", cfg)
	}
}

const adminKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDiskless admin@host\n"

// Provision refuses before it makes anything (and before ssh-keygen): no
// published image, authorized_keys that are not keys.
func TestProvisionFromImageRefusals(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "diskless")
	os.MkdirAll(root, 0o755)
	inv := loadImageInv(t, dir, root)
	os.WriteFile(filepath.Join(dir, "admin.pub"), []byte(adminKey), 0o644)
	// no image published yet: an error, nothing made
	if _, err := inv.Provision(root); err == nil || !strings.Contains(err.Error(), "image:publish") {
		t.Errorf("provision without an image: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "192.168.1.21")); err == nil {
		t.Error("a node root was made without its image")
	}
	fakePublished(t, root)
	// authorized_keys must look like keys
	os.WriteFile(filepath.Join(dir, "admin.pub"), []byte("not a key\n"), 0o644)
	if _, err := inv.Provision(root); err == nil || !strings.Contains(err.Error(), "admin.pub:1: not an SSH public key") {
		t.Errorf("bad authorized_keys: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "192.168.1.21")); err == nil {
		t.Error("a node root was made with bad authorized_keys")
	}
}

// Provisioning makes each node's identity (machine-id, SSH host keys by
// ssh-keygen) from the published image, and keeps it and /var after.
func TestProvisionFromImage(t *testing.T) {
	testutil.NeedTool(t, "ssh-keygen", "openssh-client")
	dir := t.TempDir()
	root := filepath.Join(dir, "diskless")
	os.MkdirAll(root, 0o755)
	inv := loadImageInv(t, dir, root)
	key := adminKey
	os.WriteFile(filepath.Join(dir, "admin.pub"), []byte(key), 0o644)
	fakePublished(t, root)
	if _, err := inv.Provision(root); err != nil {
		t.Fatal(err)
	}
	node := filepath.Join(root, "192.168.1.21")
	read := func(p string) string { b, _ := os.ReadFile(filepath.Join(node, p)); return string(b) }
	if read("etc/hostname") != "slave21\n" || read("root/.ssh/authorized_keys") != key || read("var/lib/dpkg/status") != "Package: x\n" {
		t.Errorf("hostname %q, authorized_keys %q, dpkg status %q", read("etc/hostname"), read("root/.ssh/authorized_keys"), read("var/lib/dpkg/status"))
	}
	if l, _ := os.Readlink(filepath.Join(node, "sbin")); l != "usr/sbin" {
		t.Errorf("sbin -> %q", l)
	}
	for _, d := range []string{"usr", "proc", "sys", "dev", "run", "home", "opt"} {
		if st, err := os.Stat(filepath.Join(node, d)); err != nil || !st.IsDir() {
			t.Errorf("no %s/", d)
		}
	}
	if st, _ := os.Stat(filepath.Join(node, "tmp")); st == nil || st.Mode()&os.ModeSticky == 0 {
		t.Error("tmp is not sticky")
	}
	mid := read("etc/machine-id")
	hostKey := read("etc/ssh/ssh_host_ed25519_key.pub")
	if len(strings.TrimSpace(mid)) != 32 || !strings.HasPrefix(hostKey, "ssh-ed25519 ") || !strings.Contains(hostKey, "root@slave21") {
		t.Errorf("machine-id %q, host key %q", mid, hostKey)
	}
	for _, t2 := range []string{"rsa", "ecdsa"} {
		if read("etc/ssh/ssh_host_"+t2+"_key") == "" {
			t.Errorf("no %s host key", t2)
		}
	}
	if !strings.Contains(read(NodeConf), "image="+root+"/images/debian-12-x86_64") {
		t.Errorf("node.conf %q", read(NodeConf))
	}
	// the node writes to its /var; re-provisioning keeps that and the identity
	os.WriteFile(filepath.Join(node, "var/state"), []byte("mine"), 0o644)
	if _, err := inv.Provision(root); err != nil {
		t.Fatal(err)
	}
	if read("etc/machine-id") != mid || read("etc/ssh/ssh_host_ed25519_key.pub") != hostKey || read("var/state") != "mine" {
		t.Error("re-provisioning changed the node's identity or state")
	}
	// a second node gets its own identity
	p := filepath.Join(dir, "nodes.toml")
	data, _ := os.ReadFile(p)
	os.WriteFile(p, append(data, []byte("\n[[node]]\nname = \"slave22\"\nmac = \"00:02:a5:04:3b:67\"\nip = \"192.168.1.22\"\narch = \"x86_64\"\n")...), 0o644)
	inv2, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inv2.Provision(root); err != nil {
		t.Fatal(err)
	}
	mid2, _ := os.ReadFile(filepath.Join(root, "192.168.1.22", "etc/machine-id"))
	if string(mid2) == mid || len(strings.TrimSpace(string(mid2))) != 32 {
		t.Errorf("second node's machine-id %q (first %q)", mid2, mid)
	}
}
