package load

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/diskless/diskless/internal/labtest"
	"github.com/diskless/diskless/internal/testenv"
	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/lab"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/simnode"
)

// BenchmarkLoad is the README's table: lab:load with 100 to 5,000 nodes at
// once, with dhcpd and with dnsmasq, by iPXE (TFTP only for undionly.kpxe)
// and by PXELINUX (everything over TFTP), each series stopping at its
// first run with a failure (that run is reported, then the series ends).
// Each run reports the seconds until all are done, the p95 of the
// firmware's lease, of the kernel and initramfs fetched and of up, the
// failures, and the master's CPU seconds per node. Hours: run with
// BENCH_LOAD=1 (go run mage.go bench passes it through); BENCH_LOAD_MAX
// caps the nodes (default 5000).
func BenchmarkLoad(b *testing.B) {
	f, most := benchLab(b, "boots up to 5,000 simulated nodes per run against the lab's daemons")
	for _, dhcp := range []string{"dhcpd", "dnsmasq"} {
		for _, method := range []string{nodes.BootIPXE, nodes.BootPXELinux} {
			failed := false
			for _, n := range []int{100, 250, 500, 1000, 2000, 5000} {
				if failed || n > most {
					break
				}
				b.Run(fmt.Sprintf("%s-%s-%d", dhcp, method, n), func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						a, err := ParseArgs(fmt.Sprintf("n=%d dhcp=%s boot=%s timeout=15m", n, dhcp, method))
						if err != nil {
							b.Fatal(err)
						}
						r, _, err := Command(context.Background(), CommandOptions{Settings: f.S, Args: a, Log: testenv.Quiet(), Dir: filepath.Join(f.Tmp, "load")})
						if r == nil {
							b.Fatal(err)
						}
						b.Log(r.Summary())
						failed = failed || len(r.Failed) > 0
						b.ReportMetric(r.AllDone, "all-done-s")
						b.ReportMetric(float64(len(r.Failed)), "failed")
						for _, p := range r.Stages {
							switch p.Stage {
							case boot.Lease:
								b.ReportMetric(p.P95, "lease-p95-s")
							case boot.Fetched:
								b.ReportMetric(p.P95, "fetched-p95-s")
							case simnode.Up:
								b.ReportMetric(p.P95, "up-p95-s")
							}
						}
						b.ReportMetric(r.MasterCPUPerNodeMs/1000, "master-cpu-s/node")
					}
				})
			}
		}
	}
}

// BenchmarkLabUp is how long each of the master's daemons takes to serve
// an inventory of 1,000 and 5,000 nodes (10,000 with BENCH_LOAD_MAX=10000:
// Ganesha did not start within 6 minutes with 10,000 exports here), from
// its start until it serves: dhcpd's or dnsmasq's hosts, Ganesha's one
// export per node. Run with BENCH_LOAD=1.
func BenchmarkLabUp(b *testing.B) {
	f, most := benchLab(b, "starts the lab's daemons for thousands of nodes")
	for _, n := range []int{1000, 5000, 10000} {
		if n > most {
			break
		}
		inv, err := Inventory(n, nodes.BootIPXE, Layout{Root: f.Root})
		if err != nil {
			b.Fatal(err)
		}
		for _, dhcp := range []string{"dhcpd", "dnsmasq"} {
			b.Run(fmt.Sprintf("%s-%d", dhcp, n), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					l, err := lab.Up(context.Background(), lab.Options{Dir: filepath.Join(f.Tmp, "up-"+dhcp), Root: f.Root, Inventory: inv, DHCP: dhcp, CacheDir: f.S.CacheDir, Log: testenv.Quiet()})
					if err != nil {
						b.Fatal(err)
					}
					ready := l.State.DaemonReady
					if err := l.Down(); err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(l.State.Ready, "lab-up-s")
					for _, d := range []string{dhcp, "ganesha", "nginx", "tftpd"} {
						b.ReportMetric(ready[d], d+"-ready-s")
					}
				}
			})
		}
	}
}

// benchLab skips unless BENCH_LOAD=1 (saying what the benchmark does) and
// returns the lab fixture with x86_64 built and the most nodes to run
// (BENCH_LOAD_MAX, default 5,000).
func benchLab(b *testing.B, does string) (*labtest.Fixture, int) {
	if os.Getenv("BENCH_LOAD") != "1" {
		b.Skip(does + ": run with BENCH_LOAD=1")
	}
	most := 5000
	if v := os.Getenv("BENCH_LOAD_MAX"); v != "" {
		fmt.Sscan(v, &most)
	}
	f := labtest.New(b, labtest.Options{Inventory: slave21Inv, Arches: []string{"x86_64"}})
	return f, most
}
