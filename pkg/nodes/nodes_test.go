package nodes

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/debpkg"
	"github.com/diskless/diskless/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestHOWTOExampleGolden(t *testing.T) {
	inv, err := Load("testdata/howto.toml")
	if err != nil {
		t.Fatal(err)
	}
	files, err := inv.Render()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"default/tftpd-hpa", "dhcpd.conf", "dnsmasq.d/diskless.conf", "exports", "ganesha.conf", "nginx/diskless-main.conf", "nginx/diskless.conf", "nodes/192.168.1.21/etc/conf.d/hostname", "nodes/192.168.1.21/etc/conf.d/net", "nodes/192.168.1.21/etc/fstab", "nodes/192.168.1.21/etc/hostname", "pxelinux.cfg/01-00-02-a5-04-3b-66", "radvd.conf", "sysctl.d/60-diskless.conf"}
	if got := strings.Join(files.Names(), " "); got != strings.Join(want, " ") {
		t.Fatalf("files %s", got)
	}
	for _, name := range files.Names() {
		golden := filepath.Join("testdata", "howto", strings.ReplaceAll(name, "/", "_"))
		if *update {
			os.WriteFile(golden, []byte(files[name]), 0o644)
			continue
		}
		data, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test -update once)", err)
		}
		if string(data) != files[name] {
			t.Errorf("%s differs from %s:\n%s", name, golden, files[name])
		}
	}
	// the HOWTO's essentials
	for name, s := range map[string]string{
		"dhcpd.conf":                             "host slave21 {\n  hardware ethernet 00:02:a5:04:3b:66;\n  fixed-address 192.168.1.21;",
		"exports":                                "/diskless/192.168.1.21\t192.168.1.21(rw,sync,no_root_squash,no_subtree_check)",
		"nodes/192.168.1.21/etc/conf.d/net":      `config_eth0="noop"`,
		"nodes/192.168.1.21/etc/fstab":           "192.168.1.1:/diskless/192.168.1.21\t/\tnfs\thard,vers=3,tcp,addr=192.168.1.1,nolock,rw",
		"pxelinux.cfg/01-00-02-a5-04-3b-66":      "APPEND ip=dhcp root=/dev/nfs nfsroot=192.168.1.1:/diskless/192.168.1.21,vers=3,tcp rw console=ttyS0",
		"nodes/192.168.1.21/etc/conf.d/hostname": `hostname="slave21"`,
	} {
		if !strings.Contains(files[name], s) {
			t.Errorf("%s lacks %q", name, s)
		}
	}
	// no_root_squash only on the per-slave root, never on /home
	for _, l := range strings.Split(files["exports"], "\n") {
		if strings.Contains(l, "no_root_squash") && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "/diskless/") {
			t.Errorf("no_root_squash on %q", l)
		}
	}
}

// checkWithDaemons runs the real programs on rendered files.
func checkWithDaemons(t *testing.T, files Files) {
	t.Helper()
	testutil.NeedTool(t, "apt-get", "apt")
	dir := t.TempDir()
	if err := WriteFiles(dir, files); err != nil {
		t.Fatal(err)
	}
	cache, err := os.UserCacheDir() // $XDG_CACHE_HOME, else ~/.cache: the project's cache is below it
	if err != nil {
		t.Fatal(err)
	}
	cache = filepath.Join(cache, "diskless")
	root, err := debpkg.Extract("isc-dhcp-server", cache)
	if err != nil {
		testutil.SkipOrFail(t, fmt.Sprintf("isc-dhcp-server not available (offline?): %v", err))
	}
	if out, err := exec.Command(filepath.Join(root, "usr/sbin/dhcpd"), "-t", "-cf", filepath.Join(dir, "dhcpd.conf"), "-lf", "/dev/null").CombinedOutput(); err != nil {
		t.Errorf("dhcpd -t: %v\n%s", err, out)
	}
	radvd, err := debpkg.Extract("radvd", cache)
	if err != nil {
		testutil.SkipOrFail(t, fmt.Sprintf("radvd not available (offline?): %v", err))
	}
	// radvd checks that its configuration is root's and not writable by others
	os.Chmod(filepath.Join(dir, "radvd.conf"), 0o644)
	if out, err := exec.Command(filepath.Join(radvd, "usr/sbin/radvd"), "--configtest", "-C", filepath.Join(dir, "radvd.conf")).CombinedOutput(); err != nil {
		t.Errorf("radvd --configtest: %v\n%s", err, out)
	}
	dnsmasq := testutil.NeedTool(t, "dnsmasq", "dnsmasq-base")
	if out, err := exec.Command(dnsmasq, "--test", "--conf-file="+filepath.Join(dir, "dnsmasq.d/diskless.conf")).CombinedOutput(); err != nil || !strings.Contains(string(out), "syntax check OK") {
		t.Errorf("dnsmasq --test: %v\n%s", err, out)
	}
	nginx, err := debpkg.Extract("nginx", cache)
	if err != nil {
		testutil.SkipOrFail(t, fmt.Sprintf("nginx not available (offline?): %v", err))
	}
	// the rendered site and main-context settings in a main configuration
	// as an admin's nginx.conf includes them
	conf := filepath.Join(dir, "nginx-test.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("pid %[1]s/nginx.pid;\nerror_log %[1]s/nginx-error.log;\ninclude %[1]s/nginx/diskless-main.conf;\nhttp {\n\taccess_log off;\n\tclient_body_temp_path %[1]s/tmp;\n\tproxy_temp_path %[1]s/tmp;\n\tfastcgi_temp_path %[1]s/tmp;\n\tuwsgi_temp_path %[1]s/tmp;\n\tscgi_temp_path %[1]s/tmp;\n\tinclude %[1]s/nginx/diskless.conf;\n}\n", dir)), 0o644)
	// nginx -t binds the site's address: in a network namespace of its
	// own (gone when it exits) that has it
	m := regexp.MustCompile(`listen ([0-9.]+):80;`).FindStringSubmatch(files["nginx/diskless.conf"])
	if m == nil {
		t.Fatalf("no listen address in nginx/diskless.conf:\n%s", files["nginx/diskless.conf"])
	}
	if os.Geteuid() != 0 {
		t.Log("nginx -t: not root, cannot make a network namespace with the master's address: not checked")
	} else if out, err := exec.Command("unshare", "--net", "sh", "-ec", `ip link set lo up; ip addr add "$1"/32 dev lo; shift; exec "$@"`, "sh", m[1],
		filepath.Join(nginx, "usr/sbin/nginx"), "-t", "-q", "-c", conf, "-e", filepath.Join(dir, "nginx-error.log")).CombinedOutput(); err != nil {
		t.Errorf("nginx -t: %v\n%s", err, out)
	}
	// sysctl.d: every key one the kernel has, every value a number
	for i, l := range strings.Split(files["sysctl.d/60-diskless.conf"], "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, " = ")
		if _, err := os.Stat(filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/"))); !ok || err != nil {
			t.Errorf("sysctl.d/60-diskless.conf line %d: %q: %v", i+1, l, err)
		}
		if _, err := strconv.Atoi(v); err != nil {
			t.Errorf("sysctl.d/60-diskless.conf line %d: %q: %v", i+1, l, err)
		}
	}
	findmnt := testutil.NeedTool(t, "findmnt", "util-linux")
	fstabs, _ := filepath.Glob(filepath.Join(dir, "nodes", "*", "etc", "fstab"))
	if len(fstabs) > 20 {
		fstabs = fstabs[:20] // one program run each: the first 20 of thousands
	}
	for _, f := range fstabs {
		out, err := exec.Command(findmnt, "--verify", "--tab-file", f).CombinedOutput()
		// The one warning, root passno 0, is right for an NFS root (there
		// is nothing to fsck); errors and parse errors must be 0.
		// (a stateless node's, without a root line, has not even that)
		m := regexp.MustCompile(`(\d+) parse errors, (\d+) errors`).FindStringSubmatch(string(out))
		clean := strings.Contains(string(out), "Success, no errors or warnings detected")
		if err != nil || !clean && (m == nil || m[1] != "0" || m[2] != "0") {
			t.Errorf("findmnt --verify %s: %v\n%s", f, err, out)
		}
	}
	checkExportsSyntax(t, files["exports"])
}

// exports(5): path, then host(options) items; options from the manual.
var exportsItem = regexp.MustCompile(`^[0-9./]+\(([a-z_,]+)\)$`)
var exportsOpts = map[string]bool{"rw": true, "ro": true, "sync": true, "async": true, "no_root_squash": true, "root_squash": true, "no_subtree_check": true, "subtree_check": true, "all_squash": true, "secure": true, "insecure": true}

func checkExportsSyntax(t *testing.T, exports string) {
	t.Helper()
	for i, l := range strings.Split(exports, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Fields(l)
		if len(f) < 2 || !strings.HasPrefix(f[0], "/") {
			t.Errorf("exports line %d: %q", i+1, l)
			continue
		}
		for _, item := range f[1:] {
			m := exportsItem.FindStringSubmatch(item)
			if m == nil {
				t.Errorf("exports line %d: bad client %q", i+1, item)
				continue
			}
			for _, o := range strings.Split(m[1], ",") {
				if !exportsOpts[o] {
					t.Errorf("exports line %d: unknown option %q", i+1, o)
				}
			}
		}
	}
}

// 10,000 nodes: the inventory validates, and the daemons take what it
// renders (dhcpd -t with 10,000 hosts, dnsmasq --test, radvd).
func TestManyNodesDaemons(t *testing.T) {
	inv, err := Parse([]byte(manyNodes(10000)), "many.toml")
	if err != nil {
		t.Fatal(err)
	}
	files, err := inv.Render()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(files["dhcpd.conf"], "\nhost "); n != 10000 {
		t.Errorf("dhcpd.conf has %d hosts", n)
	}
	checkWithDaemons(t, files)
}

// Among 10,000 nodes, a duplicate MAC (in another case) and a duplicate
// address are named with both nodes' names and the lines of their
// [[node]].
func TestManyNodesDuplicates(t *testing.T) {
	text := manyNodes(10000)
	text += "\n[[node]]\nname = \"late\"\nmac = \"52:54:00:00:26:0F\"\nip = \"10.20.200.9\"\narch = \"x86_64\"\n"
	text += "\n[[node]]\nname = \"later\"\nmac = \"52:54:00:aa:aa:aa\"\nip = \"10.20.1.2\"\narch = \"x86_64\"\n"
	_, err := Parse([]byte(text), "many.toml")
	if err == nil {
		t.Fatal("duplicates accepted")
	}
	// node 9744 is 52:54:00:00:26:0f; node 1 is 10.20.1.2; a node's
	// [[node]] is 7 lines after the one before, from line 7
	for _, want := range []string{
		"node 10001 (late, line 70007): mac 52:54:00:00:26:0f is also that of node 9744 (node9743, line 68208)",
		"node 10002 (later, line 70013): ip 10.20.1.2 is also that of node 1 (node000, line 7)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
}

func TestHOWTOExampleDaemons(t *testing.T) {
	inv, err := Load("testdata/howto.toml")
	if err != nil {
		t.Fatal(err)
	}
	files, _ := inv.Render()
	checkWithDaemons(t, files)
}

func manyNodes(n int) string {
	var b strings.Builder
	b.WriteString("[network]\nmaster = \"10.20.0.1\"\nsubnet = \"10.20.0.0/16\"\nhex_ip_files = true\nshared_log = \"/var/log/slaves\"\n")
	archs := []string{"x86_64", "i386", "arm64"}
	for i := 0; i < n; i++ {
		boot := []string{"pxelinux", "etherboot", "ipxe", "uefi", "http"}[i%5]
		if archs[i%3] == "arm64" {
			boot = []string{"uefi", "http"}[i%2]
		} else if archs[i%3] == "i386" && (boot == "uefi" || boot == "http") {
			boot = "ipxe"
		}
		fmt.Fprintf(&b, "\n[[node]]\nname = \"node%03d\"\nmac = \"52:54:00:00:%02x:%02x\"\nip = \"10.20.%d.%d\"\narch = \"%s\"\nboot = \"%s\"\n", i, i/256, i%256, 1+i/200, 2+i%200, archs[i%3], boot)
	}
	return b.String()
}

func render200(t *testing.T) Files {
	start := time.Now()
	inv, err := Parse([]byte(manyNodes(200)), "many.toml")
	if err != nil {
		t.Fatal(err)
	}
	files, err := inv.Render()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("200 nodes: %d files rendered in %s", len(files), time.Since(start))
	return files
}

func Test200NodesRender(t *testing.T) {
	files := render200(t)
	if strings.Count(files["dhcpd.conf"], "\nhost ") != 200 {
		t.Error("not 200 host blocks")
	}
}

func Test200NodesPassDaemons(t *testing.T) {
	testutil.Integration(t, "the daemons' own configuration checks")
	checkWithDaemons(t, render200(t))
}

func BenchmarkRender200(b *testing.B) {
	text := []byte(manyNodes(200))
	for i := 0; i < b.N; i++ {
		inv, err := Parse(text, "many.toml")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := inv.Render(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBadInventories(t *testing.T) {
	base := "[network]\nmaster = \"192.168.1.1\"\nsubnet = \"192.168.1.0/24\"\n"
	node := func(name, mac, ip, arch string) string {
		return fmt.Sprintf("\n[[node]]\nname = %q\nmac = %q\nip = %q\narch = %q\n", name, mac, ip, arch)
	}
	ok := node("a", "00:00:00:00:00:01", "192.168.1.2", "x86_64")
	cases := map[string]struct{ text, want string }{
		"mac syntax":    {base + node("a", "00:00:00:00:01", "192.168.1.2", "x86_64"), `node 1 (a, line 5): mac "00:00:00:00:01"`},
		"ip syntax":     {base + node("a", "00:00:00:00:00:01", "192.168.1.300", "x86_64"), `ip "192.168.1.300": not an IPv4`},
		"outside":       {base + node("a", "00:00:00:00:00:01", "10.0.0.2", "x86_64"), "outside subnet 192.168.1.0/24"},
		"dup mac":       {base + ok + node("b", "00:00:00:00:00:01", "192.168.1.3", "x86_64"), "node 2 (b, line 11): mac 00:00:00:00:00:01 is also that of node 1 (a, line 5)"},
		"dup ip":        {base + ok + node("b", "00:00:00:00:00:02", "192.168.1.2", "x86_64"), "ip 192.168.1.2 is also that of node 1 (a, line 5)"},
		"dup mac case":  {base + node("a", "02:00:00:00:00:AB", "192.168.1.2", "x86_64") + node("b", "02:00:00:00:00:ab", "192.168.1.3", "x86_64"), "node 2 (b, line 11): mac 02:00:00:00:00:ab is also that of node 1 (a, line 5)"},
		"dup name":      {base + ok + node("a", "00:00:00:00:00:02", "192.168.1.3", "x86_64"), "name a is also that of node 1 (a, line 5)"},
		"arch":          {base + node("a", "00:00:00:00:00:01", "192.168.1.2", "sparc"), `unknown arch "sparc"`},
		"hostname":      {base + node("Bad_Name", "00:00:00:00:00:01", "192.168.1.2", "x86_64"), `name "Bad_Name"`},
		"escape":        {base + node("../../etc", "00:00:00:00:00:01", "192.168.1.2", "x86_64"), `name "../../etc"`},
		"master":        {"[network]\nmaster = \"x\"\nsubnet = \"192.168.1.0/24\"\n" + ok, `master = "x"`},
		"unknown key":   {base + ok + "colour = \"red\"\n", "unknown key(s) node.colour"},
		"no nodes":      {base, "no nodes"},
		"boot":          {base + ok + "boot = \"floppy\"\n", `boot = "floppy": want one of pxelinux, etherboot, ipxe, uefi, http`},
		"pxe on arm64":  {base + node("a", "00:00:00:00:00:01", "192.168.1.2", "arm64") + "boot = \"pxelinux\"\n", `node 1 (a, line 5): boot = "pxelinux" is for BIOS x86 nodes; arm64 boots by uefi or http`},
		"ipxe on riscv": {base + node("a", "00:00:00:00:00:01", "192.168.1.2", "riscv64") + "boot = \"ipxe\"\n", `boot = "ipxe" is for BIOS x86 nodes`},
		"uefi on i386":  {base + node("a", "00:00:00:00:00:01", "192.168.1.2", "i386") + "boot = \"uefi\"\n", `node 1 (a, line 5): boot = "uefi": no EFI kernel is built for i386`},
		"http on i386":  {base + node("a", "00:00:00:00:00:01", "192.168.1.2", "i386") + "boot = \"http\"\n", `boot = "http": no EFI kernel`},
		"toml syntax":   {base + "[[node]\n", "howto-bad.toml"},
		"is the master": {base + node("a", "00:00:00:00:00:01", "192.168.1.1", "x86_64"), "is the master's"},
	}
	for name, c := range cases {
		_, err := Parse([]byte(c.text), "howto-bad.toml")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "howto-bad.toml") {
			t.Errorf("%s: %v\nwant %q", name, err, c.want)
		}
	}
}

func TestAddNodeWritesNothingOnError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nodes.toml")
	net := Network{Master: "192.168.1.1", Subnet: "192.168.1.0/24"}
	if err := AddNode(p, Node{Name: "slave21", MAC: "00:02:A5:04:3B:66", IP: "192.168.1.21", Arch: "x86_64"}, net); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(p)
	if err := AddNode(p, Node{Name: "slave22", MAC: "00:02:A5:04:3B:66", IP: "192.168.1.22", Arch: "x86_64"}, net); err == nil || !strings.Contains(err.Error(), "is also that of node 1 (slave21, line 6)") {
		t.Errorf("duplicate MAC added: %v", err)
	}
	after, _ := os.ReadFile(p)
	if string(before) != string(after) {
		t.Error("a refused node changed the inventory")
	}
	if err := AddNode(p, Node{Name: "slave22", MAC: "00:02:A5:04:3B:67", IP: "192.168.1.22", Arch: "arm64", Boot: "uefi"}, net); err != nil {
		t.Fatal(err)
	}
	inv, err := Load(p)
	if err != nil || len(inv.Nodes) != 2 || inv.Nodes[1].Boot != "uefi" {
		t.Fatalf("inventory after two adds: %+v %v", inv, err)
	}
}

func TestProvisionIdempotentKeepsAdminEdits(t *testing.T) {
	inv, err := Load("testdata/howto.toml")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	r, err := inv.Provision(root)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "192.168.1.21")
	for _, d := range SkeletonDirs {
		if st, err := os.Stat(filepath.Join(dir, d)); err != nil || !st.IsDir() {
			t.Errorf("%s missing", d)
		}
	}
	if st, _ := os.Stat(filepath.Join(dir, "tmp")); st.Mode()&os.ModeSticky == 0 || st.Mode().Perm() != 0o777 {
		t.Errorf("tmp mode %v", st.Mode())
	}
	if os.Geteuid() == 0 {
		st, err := os.Stat(filepath.Join(dir, "dev", "console"))
		if err != nil || st.Mode()&os.ModeCharDevice == 0 {
			t.Errorf("dev/console: %v %v", err, st)
		}
	} else if len(r.Notes) == 0 {
		t.Error("no note about dev/console without root")
	}
	snap := func() string {
		var b strings.Builder
		filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
			var data []byte
			if info.Mode().IsRegular() { // never read dev/console
				data, _ = os.ReadFile(p)
			}
			fmt.Fprintf(&b, "%s %v %s %d\n", p, info.Mode(), hashOf(data), info.ModTime().UnixNano())
			return nil
		})
		return b.String()
	}
	before := snap()
	r2, err := inv.Provision(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(r2.Created)+len(r2.Updated)+len(r2.Kept) != 0 || snap() != before {
		t.Errorf("second run changed something: %+v", r2)
	}
	// an admin edits fstab; the inventory changes the hostname too
	os.WriteFile(filepath.Join(dir, "etc", "fstab"), []byte("# mine\n"), 0o644)
	inv.Nodes[0].Name = "slave21b"
	r3, err := inv.Provision(root)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "etc", "fstab")); string(got) != "# mine\n" {
		t.Error("the admin's fstab was overwritten")
	}
	if len(r3.Kept) != 1 || !strings.HasSuffix(r3.Kept[0], "etc/fstab") {
		t.Errorf("kept %v", r3.Kept)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "etc", "hostname")); string(got) != "slave21b\n" {
		t.Errorf("hostname not updated: %q (updated %v)", got, r3.Updated)
	}
}

func TestParseAddArgs(t *testing.T) {
	nd, err := ParseAddArgs([]string{"ip=192.168.1.21", "name=slave21", "mac=00:02:A5:04:3B:66", "arch=x86_64"})
	if err != nil || nd.Name != "slave21" || nd.IP != "192.168.1.21" || nd.MAC != "00:02:A5:04:3B:66" || nd.Arch != "x86_64" {
		t.Errorf("%+v %v", nd, err)
	}
	for _, bad := range [][]string{{"name=a", "mac=b", "ip=c"}, {"name=a", "name=b", "ip=c", "arch=d"}, {"colour=red", "mac=b", "ip=c", "arch=d"}, {"slave21", "mac=b", "ip=c", "arch=d"}} {
		if _, err := ParseAddArgs(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	n, err := NewNetwork(nd)
	if err != nil || n.Master != "192.168.1.1" || n.Subnet != "192.168.1.0/24" {
		t.Errorf("network %+v %v", n, err)
	}
}

// Stated tells a value the file gives from a default, and where the file
// gives it: the settings quote that line when a variable contradicts it,
// and fill a key the file leaves out.
func TestStatedNetworkKeys(t *testing.T) {
	const nodeText = "\n[[node]]\nname = \"slave21\"\nmac = \"00:02:a5:04:3b:66\"\nip = \"192.168.1.21\"\narch = \"x86_64\"\nkernel_args = \"root = x\"\n"
	inv, err := Parse([]byte("# root = \"/nope\"\n[network] # the shared settings\nmaster = \"192.168.1.1\"\nsubnet = \"192.168.1.0/24\"\n\n  'nfs_opts'= \"vers=4,tcp\"\n"+nodeText), "n.toml")
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"master": "n.toml:3", "subnet": "n.toml:4", "nfs_opts": "n.toml:6"} {
		if where, ok := inv.Stated(key); !ok || where != want {
			t.Errorf("Stated(%s) = %q, %v; want %s", key, where, ok, want)
		}
	}
	// defaulted, not stated
	for _, key := range []string{"root", "home", "router", "interface"} {
		if where, ok := inv.Stated(key); ok {
			t.Errorf("Stated(%s) = %q: the file does not state it", key, where)
		}
	}
	if inv.Network.Root != "/diskless" || inv.Network.Home != "/home" {
		t.Errorf("defaults still apply: %+v", inv.Network)
	}
	// a dotted key before any table; an inline table (stated, line unknown)
	inv, err = Parse([]byte("network.master = \"192.168.1.1\"\nnetwork.subnet = \"192.168.1.0/24\"\nnetwork.root = \"/srv/x\"\n"+nodeText), "d.toml")
	if err != nil {
		t.Fatal(err)
	}
	if where, ok := inv.Stated("root"); !ok || where != "d.toml:3" {
		t.Errorf("dotted root: %q %v", where, ok)
	}
	inv, err = Parse([]byte("network = { master = \"192.168.1.1\", subnet = \"192.168.1.0/24\", root = \"/srv/x\" }\n"+nodeText), "i.toml")
	if err != nil {
		t.Fatal(err)
	}
	if where, ok := inv.Stated("root"); !ok || where != "i.toml" {
		t.Errorf("inline root: %q %v", where, ok)
	}
	// AddNode writes the root of the network it is given; Load reads it as stated
	p := filepath.Join(t.TempDir(), "nodes.toml")
	nd := Node{Name: "slave21", MAC: "00:02:a5:04:3b:66", IP: "192.168.1.21", Arch: "x86_64"}
	n, _ := NewNetwork(nd)
	n.Root = "/srv/x"
	if err := AddNode(p, nd, n); err != nil {
		t.Fatal(err)
	}
	inv, err = Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if where, ok := inv.Stated("root"); !ok || where != p+":5" || inv.Network.Root != "/srv/x" {
		t.Errorf("created inventory: root %s stated at %q %v", inv.Network.Root, where, ok)
	}
	if _, ok := inv.Stated("nfs_opts"); ok {
		t.Error("nfs_opts stated though the network left it empty")
	}
}

// 10,000 nodes: parse and validate, render every file in memory
// (README: goal under 2 s with the files written, BenchmarkWriteRendered).
func BenchmarkRender10000(b *testing.B) {
	text := []byte(manyNodes(10000))
	for i := 0; i < b.N; i++ {
		inv, err := Parse(text, "many.toml")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := inv.Render(); err != nil {
			b.Fatal(err)
		}
	}
}

// nodes:render for 10,000 nodes (46,673 files): into an empty directory
// (first: every file created), then again with one node's address changed
// (again: its files written, the rest read and left alone).
func BenchmarkRenderInto10000(b *testing.B) {
	text := manyNodes(10000)
	inv, err := Parse([]byte(text), "many.toml")
	if err != nil {
		b.Fatal(err)
	}
	moved, err := Parse([]byte(strings.Replace(text, `ip = "10.20.1.2"`, `ip = "10.20.250.2"`, 1)), "many.toml")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("first", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			dir := filepath.Join(b.TempDir(), "master")
			start := time.Now()
			if _, _, err := inv.RenderInto(dir); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(time.Since(start).Seconds(), "s")
		}
	})
	b.Run("again", func(b *testing.B) {
		dir := filepath.Join(b.TempDir(), "master")
		if _, _, err := inv.RenderInto(dir); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			next := moved
			if i%2 == 1 {
				next = inv
			}
			_, written, err := next.RenderInto(dir)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(written), "written")
		}
	})
}

// A render into the directory of an earlier one leaves exactly what this
// inventory makes: a removed node's files and an old MAC's are gone, a
// changed address is written, the unchanged files are not (their times
// stay), and a file an admin left beside them is kept.
func TestRenderIntoReplacesAnEarlierRender(t *testing.T) {
	text := manyNodes(10)
	a, err := Parse([]byte(text), "a.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "master")
	total, written, err := a.RenderInto(dir)
	if err != nil || total != written || total == 0 {
		t.Fatalf("first render: %d files, %d written, %v", total, written, err)
	}
	os.WriteFile(filepath.Join(dir, "README.admin"), []byte("mine\n"), 0o644)
	old := time.Now().Add(-time.Hour)
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			os.Chtimes(p, old, old)
		}
		return nil
	})
	// node009 removed, node001 moved to another address and MAC
	b, err := Parse([]byte(strings.NewReplacer(
		"\n[[node]]\nname = \"node009\"\nmac = \"52:54:00:00:00:09\"\nip = \"10.20.1.11\"\narch = \"x86_64\"\nboot = \"http\"\n", "",
		`mac = "52:54:00:00:00:01"`, `mac = "52:54:00:00:01:01"`, `ip = "10.20.1.3"`, `ip = "10.20.9.3"`).Replace(text)), "b.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Nodes) != 9 {
		t.Fatalf("the test's edit missed: %d nodes", len(b.Nodes))
	}
	want, _ := b.Render()
	total, written, err = b.RenderInto(dir)
	if err != nil || total != len(want) || written == 0 || written >= total {
		t.Fatalf("second render: %d files, %d written, %v", total, written, err)
	}
	got := map[string]string{}
	var rewritten []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		data, _ := os.ReadFile(p)
		got[filepath.ToSlash(rel)] = string(data)
		if st, _ := d.Info(); st.ModTime().After(old.Add(time.Minute)) {
			rewritten = append(rewritten, rel)
		}
		return nil
	})
	if got["README.admin"] != "mine\n" {
		t.Error("the admin's file is gone")
	}
	delete(got, "README.admin")
	for name, content := range want {
		if got[name] != content {
			t.Errorf("%s: not what the inventory renders", name)
		}
		delete(got, name)
	}
	for name := range got {
		t.Errorf("%s left from the earlier render", name)
	}
	if len(rewritten) != written {
		t.Errorf("%d files written, %d said: %v", len(rewritten), written, rewritten)
	}
	if _, err := os.Stat(filepath.Join(dir, "nodes", "10.20.1.11")); err == nil {
		t.Error("the removed node's directory is still there")
	}
}

// The sizing follows the node count, never below the daemons' defaults
// nor above what Ganesha accepts.
func TestSizing(t *testing.T) {
	for _, c := range []struct {
		n                        int
		thresh3, leases, ganesha int
	}{{1, 1024, 1000, 1024}, {1000, 4256, 2000, 2064}, {10000, 40256, 20000, 10000}} {
		inv, err := Parse([]byte(manyNodes(c.n)), "many.toml")
		if err != nil {
			t.Fatal(err)
		}
		s := inv.Sizing()
		if s.GCThresh3 != c.thresh3 || s.DHCPLeaseMax != c.leases || s.GaneshaConnections != c.ganesha || s.GCThresh1 < c.n || s.NginxConnections < c.n {
			t.Errorf("%d nodes: %+v", c.n, s)
		}
		// the map lab:load applies says what the rendered file says
		conf, m := inv.Sysctl(), inv.Sysctls()
		if len(m) != 8 || m["net.ipv6.neigh.default.gc_thresh3"] != c.thresh3 {
			t.Errorf("%d nodes: sysctls %v", c.n, m)
		}
		for k, v := range m {
			if !strings.Contains(conf, fmt.Sprintf("\n%s = %d\n", k, v)) {
				t.Errorf("%d nodes: %s = %d not in\n%s", c.n, k, v, conf)
			}
		}
	}
}
