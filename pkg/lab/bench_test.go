package lab_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/diskless/diskless/internal/testutil"
	"github.com/diskless/diskless/pkg/boot"
	"github.com/diskless/diskless/pkg/qemu"
)

// BenchmarkFetchTFTPvsHTTP boots the lab's x86-64 nodes one at a time (the
// lab with dhcpd) until their kernel starts, and reports per boot path the
// seconds from the first file loaded to the kernel started (kernel-s), the
// seconds the loader spent fetching the kernel and initramfs (fetch-s: from
// PXELINUX loaded, or from iPXE's script loaded, to both fetched), and the
// bytes of that kernel and initramfs: the same files over TFTP (slave21: PXELINUX) and
// over HTTP (slave26: BIOS iPXE; slave24: UEFI PXE then iPXE; slave25:
// UEFI HTTP boot then iPXE). TCG, one machine at a time.
func BenchmarkFetchTFTPvsHTTP(b *testing.B) {
	f := newFixture(b)
	l := f.up(b, "dhcpd")
	logs := testutil.LogDir(b)
	var bytes int64
	for _, n := range []string{"bzImage_x86_64", f.Inv.Initrd["x86_64"]} {
		st, err := os.Stat(filepath.Join(f.Root, n))
		if err != nil {
			b.Fatal(err)
		}
		bytes += st.Size()
	}
	for _, c := range []struct{ path, node string }{
		{"tftp-pxelinux", "slave21"},
		{"http-bios-ipxe", "slave26"},
		{"http-uefi-pxe-ipxe", "slave24"},
		{"http-uefi-httpboot", "slave25"},
	} {
		b.Run(c.path, func(b *testing.B) {
			var fetch, kernel float64
			for i := 0; i < b.N; i++ {
				nd := f.Node(c.node)
				m, remove, err := l.Machine(nd, nd.MAC, filepath.Join(logs, c.path+".log"))
				if err != nil {
					b.Fatal(err)
				}
				m.Accel = f.S.QEMUAccel
				sess, err := qemu.Start(context.Background(), m)
				if err != nil {
					remove()
					b.Fatal(err)
				}
				_, err = sess.Expect(boot.Markers(boot.Kernel), nil, 5*time.Minute)
				sess.Stop()
				remove()
				if err != nil {
					b.Fatalf("%s: %v", c.node, err)
				}
				at := map[string]float64{}
				for _, st := range boot.Stages(sess.Timeline()) {
					at[st.Name] = st.At
				}
				first, got, started := at[boot.FirstFile], at[boot.Fetched], at[boot.Kernel]
				if first == 0 || got == 0 || started == 0 {
					b.Fatalf("%s: stages missing from the console: %v", c.node, at)
				}
				from := first
				if script, ok := at[boot.Script]; ok {
					from = script
				}
				fetch += got - from
				kernel += started - first
			}
			b.ReportMetric(fetch/float64(b.N), "fetch-s")
			b.ReportMetric(kernel/float64(b.N), "kernel-s")
			b.ReportMetric(float64(bytes), "bytes")
		})
	}
}
