package storm

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/nodes"
	"github.com/diskless/diskless/pkg/relay"
)

// BenchmarkStorm boots 16, then 32 nodes at once running the Debian 12
// image (systemd to multi-user, /usr from the image over NFS), half by
// PXELINUX, half by iPXE, under TCG on this machine; reports the seconds
// until all are up, the p95 of the stages, the failures (always 0: a
// failure fails the benchmark), the master's CPU and MB served. Tens of
// minutes: run with BENCH_STORM=1 (go run mage.go bench passes it through).
func BenchmarkStorm(b *testing.B) {
	if os.Getenv("BENCH_STORM") != "1" {
		b.Skip("boots 16 and 32 Debian nodes at once: run with BENCH_STORM=1")
	}
	f := newFixture(b, 32, "debian-12")
	f.up(b)
	f.timeout = 30 * time.Minute
	for _, n := range []int{16, 32} {
		b.Run(fmt.Sprintf("%d-nodes-debian", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				r := f.stormUp(b, f.nodes[:n], relay.Impairment{}, UpFor(f.inv, f.nodes[0]))
				b.ReportMetric(r.AllUp, "all-up-s")
				b.ReportMetric(float64(len(r.Failed)), "failed")
				b.ReportMetric(stage(r, boot.Fetched).P95, "fetched-p95-s")
				b.ReportMetric(stage(r, boot.Root).P95, "root-p95-s")
				b.ReportMetric(stage(r, "up").P50, "up-p50-s")
				b.ReportMetric(r.MasterCPUPercent, "master-cpu-%")
				var served int64
				for _, v := range r.Served {
					served += v
				}
				b.ReportMetric(float64(served)/1e6, "served-MB")
			}
		})
	}
}

// BenchmarkStormTwoMasters boots 16 stateless Debian nodes at once with
// two masters (the secondary filled by publish:pull): with no fault
// (the load shared), then with a master's daemons killed while they
// boot (lab:storm "n=16 fault=master": the master that gave the first
// kernel its address); reports the seconds until all are
// up and each master's MB served and CPU. Tens of minutes: BENCH_STORM=1.
func BenchmarkStormTwoMasters(b *testing.B) {
	if os.Getenv("BENCH_STORM") != "1" {
		b.Skip("boots 16 stateless Debian nodes twice: run with BENCH_STORM=1")
	}
	f := newFixtureWith(b, 16, "debian-12", nodes.ModeStateless, twoMasters)
	f.timeout = 30 * time.Minute
	for _, args := range []string{"n=16 fault=master", "n=16"} {
		b.Run(strings.ReplaceAll(args, " ", "-"), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				r := f.command(b, args)
				b.ReportMetric(r.AllUp, "all-up-s")
				b.ReportMetric(float64(len(r.Failed)), "failed")
				for _, m := range []string{"m1", "m2"} {
					b.ReportMetric(float64(r.ServedByMaster[m])/1e6, m+"-MB")
					b.ReportMetric(r.CPUByMaster[m], m+"-cpu-s")
					b.ReportMetric(float64(r.NodesByMaster[m]), m+"-nodes")
				}
			}
		})
	}
}
