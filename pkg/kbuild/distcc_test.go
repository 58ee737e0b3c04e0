package kbuild

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/testutil"
)

func TestParseDistccHosts(t *testing.T) {
	hosts, err := ParseDistccHosts("localhost/2 node21/4 10.0.0.5:3700 node22,lzo --randomize")
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 4 || Slots(hosts) != 2+4+4+4 || hosts[2].Port != 3700 || !hosts[0].Local || hosts[3].Host != "node22" {
		t.Errorf("hosts %+v", hosts)
	}
	for _, bad := range []string{"", "node/x", "node:99999", "@node", "--randomize"} {
		if _, err := ParseDistccHosts(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDropHosts(t *testing.T) {
	bad := map[string]error{"node21:3632": nil, "10.0.0.5:3700": nil}
	got, left := DropHosts("localhost/2 node21/4 --randomize 10.0.0.5:3700 node22,lzo", bad)
	if got != "localhost/2 --randomize node22,lzo" || !left {
		t.Errorf("DropHosts = %q, %v", got, left)
	}
	if _, left := DropHosts("node21/4", bad); left {
		t.Error("a host left after dropping the only one")
	}
}

func TestRemoteJobsFromClientLog(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.log")
	os.WriteFile(p, []byte("distcc[1] compile a.c on 127.0.0.1:36321/2 completed ok\ndistcc[2] compile b.c on localhost completed ok\ndistcc[3] (dcc_x) noise\ndistcc[4] compile c.c on node21/4 completed ok\n"), 0o644)
	if r, l := RemoteJobs(p); r != 2 || l != 1 {
		t.Errorf("remote %d local %d", r, l)
	}
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startDistccd runs a real distccd on 127.0.0.1 only.
func startDistccd(t testing.TB) (port int, logPath string) {
	t.Helper()
	distccd := testutil.NeedTool(t, "distccd", "distcc")
	port = freePort(t)
	// distccd drops root to the distcc user: its log must be reachable
	// through world-traversable directories (t.TempDir's parent is 0700)
	dir, err := os.MkdirTemp("", "diskless-distccd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	logPath = filepath.Join(dir, "distccd.log")
	os.WriteFile(logPath, nil, 0o666)
	os.Chmod(logPath, 0o666)
	c := exec.Command(distccd, "--daemon", "--no-detach", "--listen", "127.0.0.1", "--allow", "127.0.0.1", "--port", itoa(port), "--log-file", logPath, "--log-level", "info", "--jobs", "2")
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-c.Process.Pid, syscall.SIGKILL); c.Wait() })
	for i := 0; i < 50; i++ {
		if conn, err := net.Dial("tcp", "127.0.0.1:"+itoa(port)); err == nil {
			conn.Close()
			return port, logPath
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("distccd did not start")
	return 0, ""
}

func itoa(n int) string { return strconv.Itoa(n) }

var distccObjects = []string{"lib/string.o", "lib/sort.o", "lib/ctype.o", "kernel/panic.o"}

// A partial slave build through a loopback distccd: its log shows the
// compile jobs, the client log counts them as remote, and the objects are
// byte-identical to a local compile of the same tree.
func TestIntegrationDistcc(t *testing.T) {
	a := mustArch(t, "x86_64")
	needKernelTools(t, a)
	testutil.NeedTool(t, "distcc", "distcc")
	port, dlog := startDistccd(t)
	src, err := ResolveSource(context.Background(), os.Getenv("KERNEL_SRC"), testCacheDir())
	if err != nil {
		t.Fatal(err)
	}
	o := realOptions(t, a, Slave, false)
	o.KernelSrc, o.CacheDir, o.NoCcache = src.Dir, t.TempDir(), true
	o.Targets = distccObjects
	o.DistccHosts = "127.0.0.1:" + itoa(port) + "/2"
	res, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.RemoteJobs < len(distccObjects) {
		t.Errorf("%d compile jobs went remote, want at least %d", res.RemoteJobs, len(distccObjects))
	}
	data, _ := os.ReadFile(dlog)
	if n := strings.Count(string(data), "COMPILE_OK"); n < len(distccObjects) {
		t.Errorf("distccd log shows %d completed jobs:\n%s", n, tailString(string(data), 10))
	}
	bdir := res.BuildDir
	remote := map[string][]byte{}
	for _, obj := range distccObjects {
		b, err := os.ReadFile(filepath.Join(bdir, obj))
		if err != nil {
			t.Fatal(err)
		}
		remote[obj] = b
		os.Remove(filepath.Join(bdir, obj))
	}
	os.Remove(filepath.Join(bdir, stampName))
	o.DistccHosts = ""
	if _, err := Build(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	for _, obj := range distccObjects {
		local, err := os.ReadFile(filepath.Join(bdir, obj))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(local, remote[obj]) {
			t.Errorf("%s differs between the distcc and the local compile", obj)
		}
	}
	t.Logf("%d jobs remote through distccd on 127.0.0.1:%d; objects byte-identical to local", res.RemoteJobs, port)

	// an unreachable host (a closed loopback port): distcc compiles
	// locally, the build succeeds, and the user was warned
	for _, obj := range distccObjects {
		os.Remove(filepath.Join(bdir, obj))
	}
	os.Remove(filepath.Join(bdir, stampName))
	var logBuf bytes.Buffer
	o.Log = slogTo(&logBuf)
	o.DistccHosts = "127.0.0.1:" + itoa(freePort(t)) + "/2"
	res, err = Build(context.Background(), o)
	if err != nil {
		t.Fatalf("build with an unreachable distcc host failed: %v", err)
	}
	if res.RemoteJobs != 0 || res.DistccHosts != "" || !strings.Contains(logBuf.String(), "distcc host unreachable") || !strings.Contains(logBuf.String(), "no distcc host reachable: compiling locally") {
		t.Errorf("remote jobs %d, hosts %q; log:\n%s", res.RemoteJobs, res.DistccHosts, logBuf.String())
	}
	for _, obj := range distccObjects {
		if b, _ := os.ReadFile(filepath.Join(bdir, obj)); !bytes.Equal(b, remote[obj]) {
			t.Errorf("%s differs after the local fallback", obj)
		}
	}
}

func tailString(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// BenchmarkSlaveFarm: full x86_64 slave builds from a fresh tree, ccache
// off: 1 local job, 2 local jobs, and 2 jobs through a distccd on 127.0.0.1
// (the same 2 CPUs, so it cannot be faster: the difference is distcc's
// per-job overhead). Minutes each: run with BENCH_DISTCC=1.
func BenchmarkSlaveFarm(b *testing.B) {
	if os.Getenv("BENCH_DISTCC") != "1" {
		b.Skip("three full kernel builds: run with BENCH_DISTCC=1")
	}
	o := benchOptions(b, "x86_64")
	src, err := ResolveSource(context.Background(), o.KernelSrc, testCacheDir())
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, jobs int, hosts string) {
		for i := 0; i < b.N; i++ {
			o := o
			o.KernelSrc, o.CacheDir, o.NoCcache, o.Jobs, o.DistccHosts, o.OutDir = src.Dir, b.TempDir(), true, jobs, hosts, b.TempDir()
			start := time.Now()
			res, err := Build(context.Background(), o)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(time.Since(start).Seconds(), "wall-s")
			if hosts != "" {
				b.ReportMetric(float64(res.RemoteJobs), "remote-jobs")
			}
		}
	}
	b.Run("local-j1", func(b *testing.B) { run(b, 1, "") })
	b.Run("local-j2", func(b *testing.B) { run(b, 2, "") })
	b.Run("distcc-loopback-2", func(b *testing.B) {
		port, _ := startDistccd(b)
		run(b, 2, "127.0.0.1:"+itoa(port)+"/2")
	})
}
