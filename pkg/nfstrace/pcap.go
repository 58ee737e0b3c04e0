package nfstrace

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// ReadPcap feeds the Ethernet frames of a pcap file (QEMU's filter-dump
// writes one for a NIC's traffic) to r. The format is a 24-byte header
// and a 16-byte header per frame (libpcap's, in either byte order, micro-
// or nanosecond stamps); a few lines, so no library for it.
func (r *Recorder) ReadPcap(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return r.readPcap(bufio.NewReaderSize(f, 1<<20), path)
}

func (r *Recorder) readPcap(in io.Reader, name string) error {
	var hdr [24]byte
	if _, err := io.ReadFull(in, hdr[:]); err != nil {
		return fmt.Errorf("%s: not a pcap file: %w", name, err)
	}
	var order binary.ByteOrder
	switch binary.LittleEndian.Uint32(hdr[0:4]) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		order = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		order = binary.BigEndian
	default:
		return fmt.Errorf("%s: not a pcap file (magic %x)", name, hdr[0:4])
	}
	if link := order.Uint32(hdr[20:24]); link != 1 {
		return fmt.Errorf("%s: link type %d, want Ethernet (1)", name, link)
	}
	var rec [16]byte
	buf := make([]byte, 0, 65536)
	for {
		if _, err := io.ReadFull(in, rec[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%s: a truncated frame header: %w", name, err)
		}
		n, orig := order.Uint32(rec[8:12]), order.Uint32(rec[12:16])
		if n > 1<<18 {
			return fmt.Errorf("%s: a frame of %d bytes", name, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(in, buf); err != nil {
			// QEMU killed while it wrote: the last frame is cut
			return nil
		}
		if n < orig {
			r.mu.Lock()
			r.Truncated++
			r.mu.Unlock()
			continue // cut by the capture's snap length: its stream has a hole
		}
		r.Frame(buf)
	}
}
