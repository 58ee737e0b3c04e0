package storm

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/diskless/diskless/pkg/boot"
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
