package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/nodes"
)

func TestTapNames(t *testing.T) {
	if n := tapName("00:02:a5:04:3b:66"); n != "dl043b66" || len(n) > 15 {
		t.Errorf("tap %q", n)
	}
}

// Each refusal of Up is reached and named. Up checks root first, then the
// inventory, a lab already up, the DHCP server and DISKLESS_ROOT; none of
// these refusals starts anything. The inventory is empty (its subnet does
// not parse): should a check ever let Up through, it stops at the network,
// before running ip.
func TestUpRefusesBadInput(t *testing.T) {
	inv := &nodes.Inventory{}
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	os.WriteFile(file, nil, 0o644)
	for _, c := range []struct {
		name string
		o    Options
		want string
	}{
		{"inventory", Options{Dir: tmp, Root: tmp}, "the lab needs a node inventory (nodes.toml): nodes:add first"},
		{"DHCP server", Options{Dir: tmp, Root: tmp, Inventory: inv, DHCP: "isc"}, "LAB_DHCP=isc: want dhcpd or dnsmasq"},
		{"missing DISKLESS_ROOT", Options{Dir: tmp, Root: filepath.Join(tmp, "missing"), Inventory: inv}, "DISKLESS_ROOT=" + filepath.Join(tmp, "missing") + ": not a directory"},
		{"DISKLESS_ROOT a file", Options{Dir: tmp, Root: file, Inventory: inv, DHCP: "dnsmasq"}, "DISKLESS_ROOT=" + file + ": not a directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Up(context.Background(), c.o)
			if err != nil && os.Geteuid() != 0 && strings.Contains(err.Error(), needsRoot) {
				testutil.SkipOrFail(t, "Up checks root before its input (pkg/lab/lab.go): reaching its "+c.name+" check needs root")
			}
			if err != nil && c.o.Inventory != nil && strings.Contains(err.Error(), "already up") {
				testutil.SkipOrFail(t, "a lab is up on this machine (namespace "+NetNS+"), and Up checks that before its "+c.name+" check: lab:down first")
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Up: %v, want %q", err, c.want)
			}
		})
	}
	// input Up accepts as far as its checks go, from a user who is not
	// root (as root: with the effective uid of nobody)
	t.Run("not root", func(t *testing.T) {
		o := Options{Dir: tmp, Root: "/", Inventory: inv, DHCP: "dnsmasq"}
		var err error
		if os.Geteuid() == 0 {
			asNobody(t, func() { _, err = Up(context.Background(), o) })
		} else {
			_, err = Up(context.Background(), o)
		}
		if err == nil || !strings.Contains(err.Error(), needsRoot) {
			t.Errorf("Up as uid %d: %v, want %q", nobody, err, needsRoot)
		}
	})
}

// needsRoot is Up's refusal for a user who is not root.
const needsRoot = "the lab needs root"

const nobody = 65534

// asNobody runs f with the process's effective uid set to nobody's, then
// sets it back to root (the saved uid stays 0, so it may). The lab tests
// do not run in parallel: nothing else runs meanwhile.
func asNobody(t *testing.T, f func()) {
	t.Helper()
	if err := syscall.Setresuid(-1, nobody, -1); err != nil {
		testutil.SkipOrFail(t, fmt.Sprintf("running Up as uid %d needs setresuid: %v", nobody, err))
	}
	defer func() {
		if err := syscall.Setresuid(-1, 0, -1); err != nil {
			panic(fmt.Sprintf("setresuid back to root after running as uid %d: %v", nobody, err))
		}
	}()
	f()
}

func TestNginxConf(t *testing.T) {
	c := NginxConf("/a/lab", "/a/lab/nginx/diskless.conf", "/a/lab/nginx/diskless-main.conf")
	for _, w := range []string{"daemon off;", "user www-data;", "pid /a/lab/nginx.pid;", "include /a/lab/nginx/diskless.conf;", "include /a/lab/nginx/diskless-main.conf;", "client_body_temp_path /a/lab/nginx-tmp/body;"} {
		if !strings.Contains(c, w) {
			t.Errorf("no %q in\n%s", w, c)
		}
	}
}
