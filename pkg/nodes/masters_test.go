package nodes

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const mastersInv = `[network]
subnet = "192.168.1.0/24"
root = "/diskless"
image = "debian-12"

[[master]]
name = "m1"
address = "192.168.1.1"

[[master]]
name = "m2"
address = "192.168.1.2"

[[node]]
name = "slave21"
mac = "00:02:a5:04:3b:66"
ip = "192.168.1.21"
arch = "x86_64"

[[node]]
name = "slave22"
mac = "00:02:a5:04:3b:67"
ip = "192.168.1.22"
arch = "x86_64"
master = "m2"

[[node]]
name = "slave31"
mac = "00:02:a5:04:3b:71"
ip = "192.168.1.31"
arch = "x86_64"
boot = "ipxe"
mode = "stateless"
`

func loadText(t *testing.T, text string) (*Inventory, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "nodes.toml")
	os.WriteFile(p, []byte(text), 0o644)
	return Load(p)
}

// Two masters: each renders the files of a master that answers every
// node with itself (next-server, URLs, the address its daemons listen
// on), exports only the roots of the nodes whose home it is, and keeps
// only their files; the per-node boot files, published in the signed set
// both serve, are the same from either.
func TestMastersRender(t *testing.T) {
	inv, err := loadText(t, mastersInv)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Network.Master != "192.168.1.1" || inv.Primary() != "m1" || !reflect.DeepEqual(inv.Network.DNS, []string{"192.168.1.1", "192.168.1.2"}) {
		t.Errorf("primary %s (%s), dns %v", inv.Primary(), inv.Network.Master, inv.Network.DNS)
	}
	all, err := inv.RenderMasters()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("rendered for %d masters", len(all))
	}
	// each master is its nodes' router and first name server
	for name, want := range map[string]string{"m1": "option routers 192.168.1.1;\n  option domain-name-servers 192.168.1.1, 192.168.1.2;", "m2": "option routers 192.168.1.2;\n  option domain-name-servers 192.168.1.2, 192.168.1.1;"} {
		if !strings.Contains(all[name]["dhcpd.conf"], want) {
			t.Errorf("%s's dhcpd.conf lacks %q", name, want)
		}
	}
	stated, err := loadText(t, strings.Replace(mastersInv, "[network]\n", "[network]\nrouter = \"192.168.1.254\"\n", 1))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := stated.ForMaster("m2"); v.Network.Router != "192.168.1.254" {
		t.Errorf("a stated router on m2: %s", v.Network.Router)
	}
	for _, c := range []struct {
		name, self, other string
		roots, notRoots   []string
	}{
		{"m1", "192.168.1.1", "192.168.1.2", []string{"192.168.1.21"}, []string{"192.168.1.22", "192.168.1.31"}},
		{"m2", "192.168.1.2", "192.168.1.1", []string{"192.168.1.22"}, []string{"192.168.1.21", "192.168.1.31"}},
	} {
		f := all[c.name]
		for file, want := range map[string][]string{
			"dhcpd.conf":              {"next-server " + c.self + ";", "http://" + c.self + "/boot.ipxe", "host slave21", "host slave22", "host slave31", `option root-path "192.168.1.1:/diskless/192.168.1.21"`, `option root-path "192.168.1.2:/diskless/192.168.1.22"`},
			"dnsmasq.d/diskless.conf": {"http://" + c.self + "/boot.ipxe", ",," + c.self + "\n"},
			"nginx/diskless.conf":     {"listen " + c.self + ":80;"},
			"default/tftpd-hpa":       {`TFTP_ADDRESS="` + c.self + `:69"`},
		} {
			for _, w := range want {
				if !strings.Contains(f[file], w) {
					t.Errorf("%s's %s lacks %q", c.name, file, w)
				}
			}
			if strings.Contains(f[file], "next-server "+c.other) || strings.Contains(f[file], "http://"+c.other+"/") {
				t.Errorf("%s's %s hands out the other master", c.name, file)
			}
		}
		// a stateless node's initramfs may fetch from any master
		if got := f["ipxe/00-02-a5-04-3b-71.ipxe"]; !strings.Contains(got, " diskless.masters=192.168.1.1,192.168.1.2 ") && !strings.Contains(got, " diskless.masters=192.168.1.1,192.168.1.2\n") {
			t.Errorf("%s's script for slave31 lacks diskless.masters=:\n%s", c.name, got)
		}
		for _, ip := range c.roots {
			if !strings.Contains(f["exports"], "/diskless/"+ip+"\t") || !strings.Contains(f["ganesha.conf"], `Path = "/diskless/`+ip+`"`) {
				t.Errorf("%s does not export %s's root", c.name, ip)
			}
			if _, ok := f["nodes/"+ip+"/etc/fstab"]; !ok {
				t.Errorf("%s lacks %s's files", c.name, ip)
			}
		}
		for _, ip := range c.notRoots {
			if strings.Contains(f["exports"], "/diskless/"+ip+"\t") || strings.Contains(f["ganesha.conf"], `Path = "/diskless/`+ip+`"`) {
				t.Errorf("%s exports %s's root", c.name, ip)
			}
		}
	}
	// a stateless node's identity is the primary's to keep and publish
	if _, ok := all["m1"]["nodes/192.168.1.31/etc/hostname"]; !ok {
		t.Error("m1 lacks the stateless node's identity")
	}
	if _, ok := all["m2"]["nodes/192.168.1.31/etc/hostname"]; ok {
		t.Error("m2 keeps the stateless node's identity")
	}
	// a node's mounts are its home master's
	if fstab := all["m2"]["nodes/192.168.1.22/etc/fstab"]; !strings.Contains(fstab, "192.168.1.2:/diskless/192.168.1.22\t/\tnfs") || !strings.Contains(fstab, "192.168.1.2:/home\t/home") || strings.Contains(fstab, "192.168.1.1:") {
		t.Errorf("slave22's fstab:\n%s", fstab)
	}
	// the per-node boot files are one set
	v1, _ := inv.ForMaster("m1")
	v2, _ := inv.ForMaster("m2")
	b1, err1 := v1.BootFiles()
	b2, err2 := v2.BootFiles()
	if err1 != nil || err2 != nil || !reflect.DeepEqual(b1, b2) {
		t.Errorf("the masters' per-node boot files differ: %v %v", err1, err2)
	}
	if !strings.Contains(b1["pxelinux.cfg/01-00-02-a5-04-3b-67"], "nfsroot=192.168.1.2:/diskless/192.168.1.22") {
		t.Errorf("slave22's PXELINUX file does not mount its root from m2:\n%s", b1["pxelinux.cfg/01-00-02-a5-04-3b-67"])
	}
	for _, name := range []string{"m1", "m2"} {
		checkWithDaemons(t, all[name])
	}
	// nodes:render writes each master's files in its own directory
	out := t.TempDir()
	if _, _, err := inv.RenderInto(out); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"m1", "m2"} {
		data, err := os.ReadFile(filepath.Join(out, name, "dhcpd.conf"))
		if err != nil || string(data) != all[name]["dhcpd.conf"] {
			t.Errorf("%s/dhcpd.conf: %v", name, err)
		}
	}
	// the secondary pulls the primary's sets on a timer; the primary does not
	if !strings.Contains(all["m2"]["systemd/diskless-pull.service"], "publish:pull from=http://192.168.1.1/") || !strings.Contains(all["m2"]["systemd/diskless-pull.timer"], "OnUnitActiveSec=30s") {
		t.Errorf("m2's pull units:\n%s\n%s", all["m2"]["systemd/diskless-pull.service"], all["m2"]["systemd/diskless-pull.timer"])
	}
	if _, ok := all["m1"]["systemd/diskless-pull.service"]; ok {
		t.Error("the primary pulls from itself")
	}
	if _, err := inv.ForMaster("m3"); err == nil || !strings.Contains(err.Error(), `no [[master]] "m3" (it has m1, m2)`) {
		t.Errorf("ForMaster(m3): %v", err)
	}
}

// Bad [[master]] entries are named with their line.
func TestMastersValidation(t *testing.T) {
	for _, c := range []struct{ from, to, want string }{
		{`address = "192.168.1.2"`, `address = "10.0.0.2"`, `[[master]] 2 (m2, line 10): address 10.0.0.2 is outside subnet 192.168.1.0/24`},
		{`address = "192.168.1.2"`, `address = "192.168.1.1"`, `[[master]] 2 (m2, line 10): address 192.168.1.1 is also that of [[master]] 1 (m1, line 6)`},
		{`name = "m2"`, `name = "m1"`, `name m1 is also that of [[master]] 1`},
		{`name = "m2"`, `name = "M 2"`, `name "M 2": want a host name`},
		{`master = "m2"`, `master = "m9"`, `node 2 (slave22, line 20): master = "m9": no [[master]] has that name (m1, m2)`},
		{`ip = "192.168.1.21"`, `ip = "192.168.1.2"`, `node 1 (slave21, line 14): ip 192.168.1.2 is master m2's`},
		{`[network]` + "\n", "[network]\nmaster = \"192.168.1.9\"\n", `[network]: master = "192.168.1.9", but the first [[master]] (m1, the primary) is 192.168.1.1: with [[master]] leave [network] master out`},
	} {
		text := strings.Replace(mastersInv, c.from, c.to, 1)
		if _, err := loadText(t, text); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s -> %s: %v\nwant %q", c.from, c.to, err, c.want)
		}
	}
	// [network] master alone is the single master, as before; a node's
	// master = needs [[master]]
	single := "[network]\nmaster = \"192.168.1.1\"\nsubnet = \"192.168.1.0/24\"\n\n[[node]]\nname = \"a\"\nmac = \"00:02:a5:04:3b:66\"\nip = \"192.168.1.21\"\narch = \"x86_64\"\n"
	inv, err := loadText(t, single)
	if err != nil || inv.Primary() != "" || inv.HomeAddress(inv.Nodes[0]) != "192.168.1.1" {
		t.Errorf("single master: %v", err)
	}
	if _, err := loadText(t, single+"master = \"m1\"\n"); err == nil || !strings.Contains(err.Error(), `master = "m1": the inventory names no [[master]]`) {
		t.Errorf("master = without [[master]]: %v", err)
	}
	// the same address stated twice is fine
	if _, err := loadText(t, strings.Replace(mastersInv, "[network]\n", "[network]\nmaster = \"192.168.1.1\"\n", 1)); err != nil {
		t.Errorf("[network] master = the primary's: %v", err)
	}
}
