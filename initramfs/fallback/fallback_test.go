package fallback

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseNFSRootKernelSyntax(t *testing.T) {
	cases := []struct {
		in, client, boot string
		src, data        string
	}{
		{"10.0.2.2:/diskless/%s,vers=3,tcp,port=2049", "10.0.2.15", "", "10.0.2.2:/diskless/10.0.2.15", "vers=3,tcp,port=2049,nolock,addr=10.0.2.2"},
		{"/diskless/%s", "192.168.1.21", "192.168.1.1", "192.168.1.1:/diskless/192.168.1.21", "vers=3,tcp,nolock,addr=192.168.1.1"},
		{"10.0.2.2:/r,vers=4,lock,addr=1.2.3.4", "", "", "10.0.2.2:/r", "vers=4,lock,addr=10.0.2.2"},
		{"10.0.2.2:/r,nolock,mountport=5", "", "", "10.0.2.2:/r", "nolock,mountport=5,addr=10.0.2.2"},
	}
	for _, c := range cases {
		tg, err := ParseNFSRoot(c.in, c.client, c.boot, "vers=3,tcp")
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if tg.Source() != c.src || tg.MountData() != c.data {
			t.Errorf("%s: source %q data %q, want %q %q", c.in, tg.Source(), tg.MountData(), c.src, c.data)
		}
	}
	for _, bad := range []struct{ in, client, boot, want string }{
		{"", "", "", "no nfsroot="},
		{"/diskless", "", "", "no server"},
		{"nfs.lab:/x", "", "", "not an IPv4"},
		{"10.0.2.2:x", "", "", "absolute"},
		{"10.0.2.2:/d/%s", "", "", "no IP address"},
	} {
		if _, err := ParseNFSRoot(bad.in, bad.client, bad.boot, ""); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want %q", bad.in, err, bad.want)
		}
	}
}

func TestParseCmdlineLastWins(t *testing.T) {
	c := ParseCmdline("console=ttyS0 ip=dhcp root=/dev/nfs nfsroot=a nfsroot=10.0.2.2:/x rw\n")
	if c["nfsroot"] != "10.0.2.2:/x" || c["ip"] != "dhcp" {
		t.Errorf("%v", c)
	}
	if _, ok := c["rw"]; !ok {
		t.Error("bare word lost")
	}
}

func TestBootServerFromProcNetPnp(t *testing.T) {
	pnp := "#PROTO: DHCP\ndomain example\nnameserver 10.0.2.3\nbootserver 10.0.2.2\n"
	if s := BootServer(pnp); s != "10.0.2.2" {
		t.Errorf("BootServer = %q", s)
	}
	if s := BootServer("bootserver 0.0.0.0\n"); s != "" {
		t.Errorf("0.0.0.0 taken as a server: %q", s)
	}
}

func TestFailureLineNamesStepServerAndError(t *testing.T) {
	f := &Failure{Step: StepMount, Server: "10.0.2.2", Export: "/diskless/10.0.2.15", Err: errors.New("connection refused")}
	want := "diskless-fallback: mount failed: server=10.0.2.2 export=/diskless/10.0.2.15: connection refused (the server answers but runs no NFS server on that port)"
	if f.Line() != want {
		t.Errorf("line %q\nwant %q", f.Line(), want)
	}
	l := (&Failure{Step: StepLink, Err: errors.New("no interface has a carrier")}).Line()
	if !strings.HasPrefix(l, Prefix+" link failed: no interface") {
		t.Errorf("link line %q", l)
	}
}

func TestBackoff(t *testing.T) {
	got := []time.Duration{Backoff(1, time.Minute), Backoff(2, time.Minute), Backoff(3, time.Minute), Backoff(10, time.Minute)}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, time.Minute}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("Backoff(%d) = %s, want %s", i+1, got[i], want[i])
		}
	}
}

func TestLoadSettings(t *testing.T) {
	dir := t.TempDir()
	s, err := LoadSettings(filepath.Join(dir, "none.json"))
	if err != nil || s != DefaultSettings {
		t.Errorf("missing file: %+v %v", s, err)
	}
	p := filepath.Join(dir, "s.json")
	os.WriteFile(p, []byte(`{"default_nfs_opts":"vers=4","retry_max":"30s"}`), 0o644)
	s, err = LoadSettings(p)
	if err != nil || s.DefaultOpts != "vers=4" || time.Duration(s.RetryMax) != 30*time.Second || s.Shell != DefaultSettings.Shell {
		t.Errorf("settings %+v %v", s, err)
	}
	os.WriteFile(p, []byte(`{`), 0o644)
	if _, err := LoadSettings(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("bad JSON: %v", err)
	}
}

func TestNodeConf(t *testing.T) {
	c, err := ParseNodeConf("# written by provision\n\nimage=/diskless/images/debian-12-x86_64\n")
	if err != nil || c.Image != "/diskless/images/debian-12-x86_64" {
		t.Errorf("%+v %v", c, err)
	}
	for _, bad := range []string{"image=relative/path\n", "usr=/x\n", "just words\n"} {
		if _, err := ParseNodeConf(bad); err == nil || !strings.Contains(err.Error(), NodeConfPath+":1") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	root := Target{Server: "10.0.2.2", Path: "/diskless/10.0.2.21", Opts: []string{"vers=4", "tcp", "rw"}}
	it := root.ImageTarget("/diskless/images/debian-12-x86_64")
	if it.Source() != "10.0.2.2:/diskless/images/debian-12-x86_64" || it.MountData() != "vers=4,tcp,ro,nolock,addr=10.0.2.2" {
		t.Errorf("image mount %s %s", it.Source(), it.MountData())
	}
}

func TestJitter(t *testing.T) {
	for _, c := range []struct {
		u    float64
		want time.Duration
	}{{0, 1500 * time.Millisecond}, {0.5, 2 * time.Second}, {0.999, 2499 * time.Millisecond}} {
		if got := Jitter(2*time.Second, c.u).Truncate(time.Millisecond); got != c.want {
			t.Errorf("Jitter(2 s, %v) = %s, want %s", c.u, got, c.want)
		}
	}
}
