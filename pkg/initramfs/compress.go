package initramfs

import (
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compress writes r to w compressed as one stream the kernel's decompressors
// accept (the kernel reports "junk at the end" for more than one):
//   - zstd: best compression, 8 MiB window (the kernel allocates the
//     frame's window at boot), no random padding;
//   - xz: CRC32 check (the kernel's XZ decoder rejects the default CRC64),
//     8 MiB dictionary;
//   - gzip: level 9.
func Compress(w io.Writer, r io.Reader, c Compressor) error {
	var wc io.WriteCloser
	var err error
	switch c {
	case Zstd:
		wc, err = zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(8<<20), zstd.WithEncoderConcurrency(1))
	case XZ:
		wc, err = xz.WriterConfig{CheckSum: xz.CRC32, DictCap: 8 << 20}.NewWriter(w)
	case Gzip:
		wc, err = gzip.NewWriterLevel(w, gzip.BestCompression)
	case None:
		_, err = io.Copy(w, r)
		return err
	default:
		return fmt.Errorf("unknown compressor %q", c)
	}
	if err != nil {
		return err
	}
	if _, err := io.Copy(wc, r); err != nil {
		wc.Close()
		return err
	}
	return wc.Close()
}

// Decompress is the inverse, for tests and verify.
func Decompress(r io.Reader, c Compressor) (io.Reader, error) {
	switch c {
	case Zstd:
		d, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case XZ:
		return xz.NewReader(r)
	case Gzip:
		return gzip.NewReader(r)
	case None:
		return r, nil
	}
	return nil, fmt.Errorf("unknown compressor %q", c)
}
