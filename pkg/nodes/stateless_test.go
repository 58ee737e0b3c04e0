package nodes

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/diskless/diskless/internal/debpkg"
	"github.com/diskless/diskless/internal/testutil"
)

// statelessInv is imageInv with slave21 stateless and an NFS node beside it.
func statelessInv(t *testing.T, dir, root, extra string) *Inventory {
	t.Helper()
	p := filepath.Join(dir, "nodes.toml")
	text := strings.ReplaceAll(imageInv, "%ROOT%", root) + "boot = \"ipxe\"\nmode = \"stateless\"\n" + extra +
		"\n[[node]]\nname = \"slave22\"\nmac = \"00:02:a5:04:3b:67\"\nip = \"192.168.1.22\"\narch = \"x86_64\"\n"
	os.WriteFile(p, []byte(text), 0o644)
	inv, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestStatelessValidation(t *testing.T) {
	for _, c := range []struct{ extra, network, want string }{
		{`tmpfs_size = "2G"`, "", ""},
		{`tmpfs_size = "75%"`, "", ""},
		{`tmpfs_size = "lots"`, "", `tmpfs_size = "lots": want a size tmpfs takes`},
		{`tmpfs_size = "150%"`, "", `tmpfs_size = "150%": want more than 0 and at most 100%`},
		{`mode = "ram"`, "", `mode = "ram": want one of nfs, stateless`},
		{`boot = "etherboot"`, "", `boot = "etherboot" loads vmlinuz_x86_64, whose command line is built in`},
		{"", `mode = "diskful"`, `[network]: mode = "diskful": want one of nfs, stateless`},
		{"", `tmpfs_size = "0"`, `[network]: tmpfs_size = "0"`},
	} {
		dir := t.TempDir()
		mode := "mode = \"stateless\"\n"
		if strings.HasPrefix(c.extra, "mode") {
			mode = ""
		}
		text := strings.Replace(strings.ReplaceAll(imageInv, "%ROOT%", "/diskless"), "[network]\n", "[network]\n"+c.network+"\n", 1) +
			mode + c.extra + "\n"
		p := filepath.Join(dir, "nodes.toml")
		os.WriteFile(p, []byte(text), 0o644)
		_, err := Load(p)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.extra, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %s: error %v, want %q", c.extra, c.network, err, c.want)
		}
	}
	// a stateless node runs an image
	dir := t.TempDir()
	p := filepath.Join(dir, "nodes.toml")
	os.WriteFile(p, []byte(strings.Replace(strings.ReplaceAll(imageInv, "%ROOT%", "/diskless"), "image = \"debian-12\"\n", "", 1)+"mode = \"stateless\"\n"), 0o644)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), `mode = "stateless" runs an image`) {
		t.Errorf("stateless without an image: %v", err)
	}
	// mode in [network] makes every node stateless
	os.WriteFile(p, []byte(strings.Replace(strings.ReplaceAll(imageInv, "%ROOT%", "/diskless"), "[network]\n", "[network]\nmode = \"stateless\"\n", 1)+"boot = \"ipxe\"\n"), 0o644)
	inv, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if nd, _ := inv.Node("slave21"); !inv.Stateless(nd) || inv.TmpfsSizeOf(nd) != DefaultTmpfsSize {
		t.Errorf("[network] mode: stateless %v, tmpfs %s", inv.Stateless(nd), inv.TmpfsSizeOf(nd))
	}
}

func TestRenderStateless(t *testing.T) {
	dir := t.TempDir()
	inv := statelessInv(t, dir, "/diskless", `tmpfs_size = "1G"`+"\n")
	inv.Initrd = map[string]string{"x86_64": "initramfs_x86_64.cpio.zst"}
	files, err := inv.Render()
	if err != nil {
		t.Fatal(err)
	}
	script := files["ipxe/00-02-a5-04-3b-66.ipxe"]
	for _, want := range []string{"diskless.image=/squashfs/debian-12-x86_64.squashfs", "diskless.overlay=/overlays/192.168.1.21.cpio", "diskless.tmpfs=1G", "ip=dhcp"} {
		if !strings.Contains(script, want) {
			t.Errorf("slave21's iPXE script lacks %q:\n%s", want, script)
		}
	}
	if strings.Contains(script, "nfsroot") {
		t.Errorf("a stateless node's command line names an NFS root:\n%s", script)
	}
	// no NFS root for it anywhere; slave22 (nfs) keeps its own
	for name, content := range map[string]string{"exports": files["exports"], "ganesha.conf": files["ganesha.conf"], "dhcpd.conf": files["dhcpd.conf"], "dnsmasq": files["dnsmasq.d/diskless.conf"]} {
		if strings.Contains(content, "/diskless/192.168.1.21") {
			t.Errorf("%s serves slave21 an NFS root:\n%s", name, content)
		}
		if !strings.Contains(content, "/diskless/192.168.1.22") {
			t.Errorf("%s lost slave22's NFS root", name)
		}
	}
	fstab := files["nodes/192.168.1.21/etc/fstab"]
	if strings.Contains(fstab, "\t/\tnfs") || strings.Contains(fstab, "\t/usr\t") || !strings.Contains(fstab, "/home\tnfs") {
		t.Errorf("stateless fstab:\n%s", fstab)
	}
	if _, ok := files["nodes/192.168.1.21/"+NodeConf]; ok {
		t.Error("a stateless node has a node.conf (its /usr is the image in RAM)")
	}
	if !strings.Contains(files["nginx/diskless.conf"], "overlays/(?<overlay_ip>") {
		t.Errorf("nginx has no overlay rule:\n%s", files["nginx/diskless.conf"])
	}
	if got := inv.StatelessImages(); len(got) != 1 || got[0] != [2]string{"debian-12", "x86_64"} {
		t.Errorf("stateless images %v", got)
	}
}

// readOverlay lists a cpio overlay as name -> mode, owner and content.
func readOverlay(t *testing.T, data []byte) map[string]string {
	t.Helper()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(data)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range recs {
		b, _ := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		out[r.Name] = fmt.Sprintf("%o %d:%d %s", r.Mode, r.UID, r.GID, b)
	}
	return out
}

func TestProvisionStatelessOverlay(t *testing.T) {
	testutil.NeedTool(t, "ssh-keygen", "openssh-client")
	dir := t.TempDir()
	root := filepath.Join(dir, "diskless")
	os.MkdirAll(root, 0o755)
	os.WriteFile(filepath.Join(dir, "admin.pub"), []byte(adminKey), 0o644)
	fakePublished(t, root)
	inv := statelessInv(t, dir, root, "")
	if _, err := inv.Provision(root); err != nil {
		t.Fatal(err)
	}
	node := filepath.Join(root, "192.168.1.21")
	// its identity only: no copy of the image's etc, var or root
	for _, p := range []string{"var", "usr", "tmp", "etc/diskless", "etc/machine-id.orig", "var/lib/dpkg/status"} {
		if _, err := os.Lstat(filepath.Join(node, p)); err == nil {
			t.Errorf("a stateless node's directory has %s", p)
		}
	}
	nd, _ := inv.Node("slave21")
	data, err := inv.Overlay(root, nd)
	if err != nil {
		t.Fatal(err)
	}
	ov := readOverlay(t, data)
	for name, want := range map[string]string{
		"etc/hostname":              "100644 0:0 slave21\n",
		"root/.ssh/authorized_keys": "100644 0:0 " + adminKey,
		"root":                      "40700 0:0 ",
		"root/.ssh":                 "40700 0:0 ",
	} {
		if ov[name] != want {
			t.Errorf("overlay %s: %q, want %q", name, ov[name], want)
		}
	}
	key := ov["etc/ssh/ssh_host_ed25519_key"]
	if !strings.HasPrefix(key, "100600 0:0 -----BEGIN OPENSSH PRIVATE KEY-----") {
		t.Errorf("host key in the overlay: %.40q", key)
	}
	if mid := ov["etc/machine-id"]; len(mid) != len("100444 0:0 ")+33 && len(mid) != len("100644 0:0 ")+33 {
		t.Errorf("machine-id %q", mid)
	}
	if _, ok := ov[stateFile]; ok {
		t.Error("provision's state file is in the overlay")
	}
	// the same identity, the same bytes; re-provisioning keeps the keys
	if _, err := inv.Provision(root); err != nil {
		t.Fatal(err)
	}
	again, _ := inv.Overlay(root, nd)
	if !bytes.Equal(again, data) {
		t.Error("re-provisioning changed the overlay (the node's identity)")
	}
	// the NFS node beside it is provisioned as before
	if _, err := os.Stat(filepath.Join(root, "192.168.1.22", NodeConf)); err != nil {
		t.Errorf("slave22 (nfs): %v", err)
	}
	other, _ := inv.Node("slave22")
	if _, err := inv.Overlay(filepath.Join(dir, "nowhere"), other); err == nil || !strings.Contains(err.Error(), "nodes:provision") {
		t.Errorf("overlay of an unprovisioned node: %v", err)
	}
	// slave22 made stateless: its directory is its NFS root, not an
	// identity to unpack over the image
	if _, err := inv.Overlay(root, other); err == nil || !strings.Contains(err.Error(), "is its NFS root") {
		t.Errorf("overlay of a former NFS root: %v", err)
	}
}

// nginx serves a stateless node's overlay to that node's address only,
// under its top-level name and pinned to a generation; another address
// gets 403, and so does a client asking for any other node's overlay.
func TestNginxServesAnOverlayOnlyToItsNode(t *testing.T) {
	t.Run("one master", func(t *testing.T) { nginxOverlays(t, false) })
	// with [[master]], the other masters pull every overlay (publish:pull)
	t.Run("two masters", func(t *testing.T) { nginxOverlays(t, true) })
}

func nginxOverlays(t *testing.T, masters bool) {
	testutil.Slow(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network namespace with the master's and two nodes' addresses")
	}
	curl := testutil.NeedTool(t, "curl", "curl")
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	nginx, err := debpkg.Extract("nginx", cache)
	if err != nil {
		testutil.SkipOrFail(t, fmt.Sprintf("nginx not available (offline?): %v", err))
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755) // the test's directory: nginx's workers are www-data
	g, err := user.LookupGroup("www-data")
	if err != nil {
		t.Fatalf("www-data: %v (Debian's base-passwd has it)", err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	root := filepath.Join(dir, "root")
	extra := ""
	if masters {
		extra = "\n[[master]]\nname = \"m1\"\naddress = \"192.168.1.1\"\n\n[[master]]\nname = \"m2\"\naddress = \"192.168.1.2\"\n"
	}
	inv := statelessInv(t, dir, root, extra)
	if masters {
		if inv, err = inv.ForMaster("m1"); err != nil {
			t.Fatal(err)
		}
	}
	files, err := inv.Render()
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(dir, files); err != nil {
		t.Fatal(err)
	}
	gen := filepath.Join(root, ".diskless/generations/000003")
	os.MkdirAll(filepath.Join(gen, "overlays"), 0o755)
	for _, ip := range []string{"192.168.1.21", "192.168.1.22"} {
		p := filepath.Join(gen, "overlays", ip+".cpio")
		os.WriteFile(p, []byte("identity of "+ip), 0o640)
		if err := os.Chown(p, 0, gid); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink(".diskless/generations/000003/overlays", filepath.Join(root, "overlays"))
	os.Symlink("generations/000003", filepath.Join(root, ".diskless/current"))
	os.MkdirAll(filepath.Join(gen, "squashfs"), 0o755)
	os.WriteFile(filepath.Join(gen, "squashfs/debian-12-x86_64.squashfs"), []byte("image"), 0o644)
	os.Symlink(".diskless/generations/000003/squashfs", filepath.Join(root, "squashfs"))
	conf := filepath.Join(dir, "nginx-test.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("user www-data;\ndaemon off;\npid %[1]s/nginx.pid;\nerror_log %[1]s/nginx-error.log;\ninclude %[1]s/nginx/diskless-main.conf;\nhttp {\n\taccess_log off;\n\tclient_body_temp_path %[1]s/tmp;\n\tproxy_temp_path %[1]s/tmp;\n\tfastcgi_temp_path %[1]s/tmp;\n\tuwsgi_temp_path %[1]s/tmp;\n\tscgi_temp_path %[1]s/tmp;\n\tinclude %[1]s/nginx/diskless.conf;\n}\n", dir)), 0o644)
	script := `ip link set lo up
ip addr add 192.168.1.1/24 dev lo
ip addr add 192.168.1.21/24 dev lo
ip addr add 192.168.1.22/24 dev lo
ip addr add 192.168.1.2/24 dev lo
ip addr add 10.9.9.9/8 dev lo
"$1" -c "$2" -e "$3" &
pid=$!
trap 'kill $pid' EXIT
for i in $(seq 50); do "$4" -s -o /dev/null http://192.168.1.1/ && break; sleep 0.1; done
for from in 192.168.1.21 192.168.1.22; do
  for path in overlays/192.168.1.21.cpio .diskless/generations/000003/overlays/192.168.1.21.cpio .diskless/current/overlays/192.168.1.21.cpio .diskless/generations/000003/overlays/ squashfs/debian-12-x86_64.squashfs; do
    echo "$from $path $("$4" -s -o /dev/null -w '%{http_code}' --interface $from http://192.168.1.1/$path)"
  done
done
echo "body $("$4" -s --interface 192.168.1.21 http://192.168.1.1/overlays/192.168.1.21.cpio)"
echo "outside squashfs $("$4" -s -o /dev/null -w '%{http_code}' --interface 10.9.9.9 http://192.168.1.1/squashfs/debian-12-x86_64.squashfs)"
echo "master m2 $("$4" -s -o /dev/null -w '%{http_code}' --interface 192.168.1.2 http://192.168.1.1/overlays/192.168.1.21.cpio)"
`
	out, err := exec.Command("unshare", "--net", "sh", "-c", script, "sh", filepath.Join(nginx, "usr/sbin/nginx"), conf, filepath.Join(dir, "nginx-error.log"), curl).CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "nginx-error.log"))
		t.Fatalf("%v\n%s\n%s", err, out, log)
	}
	// .diskless/current (nginx follows links) is refused to everyone; a
	// generation's overlays/ listing shows names only; the image goes to
	// the subnet
	want := "192.168.1.21 overlays/192.168.1.21.cpio 200\n192.168.1.21 .diskless/generations/000003/overlays/192.168.1.21.cpio 200\n" +
		"192.168.1.21 .diskless/current/overlays/192.168.1.21.cpio 403\n192.168.1.21 .diskless/generations/000003/overlays/ 200\n192.168.1.21 squashfs/debian-12-x86_64.squashfs 200\n" +
		"192.168.1.22 overlays/192.168.1.21.cpio 403\n192.168.1.22 .diskless/generations/000003/overlays/192.168.1.21.cpio 403\n" +
		"192.168.1.22 .diskless/current/overlays/192.168.1.21.cpio 403\n192.168.1.22 .diskless/generations/000003/overlays/ 200\n192.168.1.22 squashfs/debian-12-x86_64.squashfs 200\n" +
		"body identity of 192.168.1.21\noutside squashfs 403\n"
	if masters {
		want += "master m2 200\n"
	} else {
		want += "master m2 403\n"
	}
	if string(out) != want {
		log, _ := os.ReadFile(filepath.Join(dir, "nginx-error.log"))
		t.Errorf("got\n%s\nwant\n%s\nnginx's log:\n%s", out, want, log)
	}
	// tftpd-hpa serves only files anyone may read: the overlay is not
	st, _ := os.Stat(filepath.Join(gen, "overlays", "192.168.1.21.cpio"))
	if st.Mode().Perm()&0o004 != 0 || int(st.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Errorf("overlay mode %v", st.Mode())
	}
}

// An arm64 node boots vmlinuz_arm64, whose command line is everyone's:
// stateless, it gets a command line file of its own (cmdline/<mac>), which
// the fallback initramfs inside that kernel fetches; an NFS arm64 node and
// x86 nodes get none. riscv64's kernel carries no initramfs: refused.
func TestStatelessArm64(t *testing.T) {
	base := strings.ReplaceAll(imageInv, "%ROOT%", "/diskless") + `mode = "stateless"
boot = "ipxe"

[[node]]
name = "arm1"
mac = "52:54:00:aa:00:01"
ip = "192.168.1.41"
arch = "arm64"
boot = "uefi"
mode = "stateless"
tmpfs_size = "1G"

[[node]]
name = "arm2"
mac = "52:54:00:aa:00:02"
ip = "192.168.1.42"
arch = "arm64"
boot = "http"
`
	dir := t.TempDir()
	p := filepath.Join(dir, "nodes.toml")
	os.WriteFile(p, []byte(base), 0o644)
	inv, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	files, err := inv.BootFiles()
	if err != nil {
		t.Fatal(err)
	}
	var cmdlines []string
	for name := range files {
		if strings.HasPrefix(name, "cmdline/") {
			cmdlines = append(cmdlines, name)
		}
	}
	if len(cmdlines) != 1 || cmdlines[0] != "cmdline/52-54-00-aa-00-01" {
		t.Fatalf("command line files %v, want arm1's alone", cmdlines)
	}
	text := files["cmdline/52-54-00-aa-00-01"]
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		if !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	want := "ip=dhcp rw console=ttyAMA0 diskless.image=/squashfs/debian-12-arm64.squashfs diskless.overlay=/overlays/192.168.1.41.cpio diskless.tmpfs=1G"
	if len(lines) != 1 || lines[0] != want {
		t.Errorf("arm1's command line file:\n%s\nwant the line %q", text, want)
	}
	if got := inv.StatelessImages(); len(got) != 2 || got[0] != [2]string{"debian-12", "arm64"} {
		t.Errorf("stateless images %v", got)
	}
	// riscv64 and etherboot: one command line built in, no initramfs to
	// fetch the node's
	for _, c := range []struct{ arch, boot string }{{"riscv64", "uefi"}, {"x86_64", "etherboot"}} {
		text := strings.Replace(base, "arch = \"arm64\"\nboot = \"uefi\"", fmt.Sprintf("arch = %q\nboot = %q", c.arch, c.boot), 1)
		os.WriteFile(p, []byte(text), 0o644)
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), "whose command line is built in") || !strings.Contains(err.Error(), "nodes.toml") {
			t.Errorf("stateless %s by %s: %v", c.arch, c.boot, err)
		}
	}
}
