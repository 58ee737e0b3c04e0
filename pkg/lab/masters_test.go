package lab_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/labtest"
	"github.com/diskless/diskless/internal/testenv"
	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/lab"
	"github.com/diskless/diskless/pkg/publish"
	"github.com/diskless/diskless/pkg/sign"
)

// Two masters on the HOWTO's network, one node.
const mastersInv = `[[master]]
name = "m1"
address = "192.168.1.1"

[[master]]
name = "m2"
address = "192.168.1.2"

[network]
subnet = "192.168.1.0/24"
root = "{root}"
nfs_opts = "vers=3,tcp"
home = "{home}"
shared_ro = []

[[node]]
name = "slave26"
mac = "00:02:A5:04:3B:6B"
ip = "192.168.1.26"
arch = "x86_64"
boot = "ipxe"
`

// TestIntegrationLabTwoMasters: with two [[master]] the lab runs the
// secondary in a namespace of its own on the bridge, its root filled by
// publish:pull from the primary (through the primary's nginx, from the
// secondary's address), serving the same signed set from its own copy
// with its own daemons; KillMaster takes one master's daemons away and
// leaves the other serving; Down removes both namespaces.
func TestIntegrationLabTwoMasters(t *testing.T) {
	testutil.Slow(t)
	f := labtest.New(t, labtest.Options{Inventory: mastersInv, Arches: []string{"x86_64"}, Sign: true})
	if lab.Running() {
		t.Fatalf("a lab is already up (namespace %s): not touching it", lab.NetNS)
	}
	trusted := []*sign.PublicKey{f.S.SigningKey.Public()}
	// a secondary that cannot be filled: Up fails and leaves nothing
	_, err := lab.Up(context.Background(), lab.Options{Dir: filepath.Join(f.Tmp, "lab-failed"), Root: f.Root, Inventory: f.Inv, CacheDir: f.S.CacheDir, Log: testenv.Quiet(),
		Fill: func(context.Context, lab.Replica) error { return errors.New("the primary said no") }})
	if err == nil || !strings.Contains(err.Error(), "master m2: filling") || !strings.Contains(err.Error(), "the primary said no") {
		t.Errorf("Up with a failing fill: %v", err)
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), lab.NetNS) {
		t.Fatalf("namespaces left after a failed Up: %s", out)
	}
	var pulled []string
	dir := filepath.Join(f.Tmp, "lab")
	l, err := lab.Up(context.Background(), lab.Options{Dir: dir, Root: f.Root, Inventory: f.Inv, CacheDir: f.S.CacheDir, Log: testenv.Quiet(),
		Fill: func(ctx context.Context, r lab.Replica) error {
			pulled = append(pulled, r.Name)
			_, err := publish.Pull(ctx, "http://"+r.Primary+"/", publish.PullOptions{Root: r.Root, Trusted: trusted, NoWait: true, Client: r.Client})
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	down := func() {
		if err := l.Down(); err != nil {
			t.Error(err)
		}
		if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), lab.NetNS) {
			t.Errorf("namespaces left after Down: %s", out)
		}
	}
	t.Cleanup(func() {
		if lab.Running() {
			down()
		}
	})
	if strings.Join(pulled, ",") != "m2" {
		t.Fatalf("filled %v, want m2", pulled)
	}
	ms := l.Masters()
	if len(ms) != 2 || ms[0].Name != "m1" || ms[1].Name != "m2" || ms[1].Address != "192.168.1.2" {
		t.Fatalf("masters %+v", ms)
	}
	sec, ok := l.Secondary("m2")
	if !ok || sec.Root() == f.Root {
		t.Fatalf("m2: %v, root %s", ok, sec.Root())
	}
	want, err := os.ReadFile(filepath.Join(f.Root, "SHA256SUMS.sig"))
	if err != nil {
		t.Fatal(err)
	}
	get := func(from *lab.Lab, url string) (string, error) {
		resp, err := from.HTTPClient().Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.Status + "\n" + string(b), err
	}
	// each master serves the set from its own root: m2's copy, not m1's
	if got, err := get(l, "http://192.168.1.2/SHA256SUMS.sig"); err != nil || got != "200 OK\n"+string(want) {
		t.Errorf("m2's signature (asked from m1): %q %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(sec.Root(), "only-on-m2"), []byte("m2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := get(l, "http://192.168.1.2/only-on-m2"); err != nil || got != "200 OK\nm2\n" {
		t.Errorf("m2 does not serve its own root: %q %v", got, err)
	}
	// m2's daemons are their own: its nginx logs what it served
	if !strings.Contains(readFile(t, filepath.Join(dir, "masters", "m2", "nginx-access.log")), "192.168.1.1 ") {
		t.Error("m2's nginx logged no request from m1")
	}
	if err := l.KillMaster("m1"); err != nil {
		t.Fatal(err)
	}
	if _, err := get(sec, "http://192.168.1.1/SHA256SUMS.sig"); err == nil {
		t.Error("m1 answers after KillMaster")
	}
	if got, err := get(sec, "http://192.168.1.2/SHA256SUMS.sig"); err != nil || got != "200 OK\n"+string(want) {
		t.Errorf("m2 after m1's loss: %q %v", got, err)
	}
	if err := l.KillMaster("m3"); err == nil || !strings.Contains(err.Error(), `no master "m3"`) {
		t.Errorf("KillMaster(m3): %v", err)
	}
	// a lab whose state is lost: DownAny still removes both namespaces
	if err := lab.DownAny(lab.Options{Dir: filepath.Join(f.Tmp, "elsewhere")}); err != nil {
		t.Error(err)
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), lab.NetNS) {
		t.Errorf("namespaces left after DownAny: %s", out)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Error(err)
	}
	return string(b)
}
