package publish

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/diskless/diskless/internal/fsutil"
	"github.com/diskless/diskless/pkg/sign"
)

// WriteBundle writes files as a deterministic tar.zst (sorted, mtime 0,
// uid/gid 0) with their SHA256SUMS and manifest.json, the form CI hands
// artifacts over in. Each file's checksum is computed while writing and
// checked against one recorded at build time. With a signer, the bundle
// also holds SHA256SUMS.sig.
func WriteBundle(out string, files []File, signer *Signer) (*Manifest, error) {
	if len(files) == 0 {
		return nil, errors.New("nothing to bundle")
	}
	if err := checkNames(files); err != nil {
		return nil, err
	}
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	m := &Manifest{Published: time.Now().UTC().Truncate(time.Second)}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	zw, err := zstd.NewWriter(tmp, zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, f := range sorted {
		data := f.Data
		if f.Source != "" {
			if data, err = os.ReadFile(f.Source); err != nil {
				return nil, err
			}
		}
		sum := fsutil.HashBytes(data)
		if f.SHA256 != "" && f.SHA256 != sum {
			return nil, fmt.Errorf("%s changed since it was built: recorded sha256 %s, now %s", f.Source, f.SHA256, sum)
		}
		f.SHA256, f.Size = sum, int64(len(data))
		if err := add(f.Name, data); err != nil {
			return nil, err
		}
		m.Files = append(m.Files, f)
	}
	sums := []byte(Sums(m.Files))
	if err := add(SumsName, sums); err != nil {
		return nil, err
	}
	if signer != nil {
		if err := add(SigName, signer.signature(sums)); err != nil {
			return nil, err
		}
	}
	data, _ := json.MarshalIndent(m, "", "  ")
	if err := add(ManifestName, append(data, '\n')); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	return m, os.Rename(tmp.Name(), out)
}

// ReadBundle unpacks a bundle into dir and returns its files for Publish,
// after checking every file against the bundle's SHA256SUMS: a file whose
// checksum does not match, a file SHA256SUMS does not list, or a listed
// file that is missing is an error naming it, and nothing is returned.
// With trusted keys, SHA256SUMS.sig must verify against one of them first.
func ReadBundle(path, dir string, trusted []*sign.PublicKey) ([]File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("PUBLISH_FROM=%s: %w", path, unwrap(err))
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	got := map[string]string{}
	var sums, manifest, sig []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w (not a diskless bundle?)", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := filepath.ToSlash(filepath.Clean(h.Name))
		if strings.HasPrefix(name, "../") || filepath.IsAbs(name) || strings.HasPrefix(name, ".") {
			return nil, fmt.Errorf("%s: bad entry name %q", path, h.Name)
		}
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, tr); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, name, err)
		}
		switch name {
		case SumsName:
			sums = buf.Bytes()
			continue
		case ManifestName:
			manifest = buf.Bytes()
			continue
		case SigName:
			sig = buf.Bytes()
			continue
		}
		dst := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
			return nil, err
		}
		got[name] = fsutil.HashBytes(buf.Bytes())
	}
	if sums == nil {
		return nil, fmt.Errorf("%s has no %s: not a diskless bundle", path, SumsName)
	}
	if len(trusted) > 0 {
		if err := CheckSignature("bundle "+path, sums, sig, trusted); err != nil {
			return nil, fmt.Errorf("%w; nothing published", err)
		}
	}
	var m Manifest
	if manifest != nil {
		json.Unmarshal(manifest, &m)
	}
	meta := map[string]File{}
	for _, mf := range m.Files {
		meta[mf.Name] = mf
	}
	var files []File
	var bad []string
	listed := map[string]bool{}
	lines, err := ParseSums(sums)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, l := range lines {
		want, name := l.SHA256, l.Name
		listed[name] = true
		switch g, present := got[name]; {
		case !present:
			bad = append(bad, fmt.Sprintf("%s: listed in %s but missing", name, SumsName))
		case g != want:
			bad = append(bad, fmt.Sprintf("%s: sha256 %s, %s says %s", name, g, SumsName, want))
		default:
			mf := meta[name]
			files = append(files, File{Name: name, Source: filepath.Join(dir, name), Arch: mf.Arch, Kind: orDefault(mf.Kind, "file"), SHA256: want, Build: mf.Build, SecureBoot: mf.SecureBoot})
		}
	}
	for name := range got {
		if !listed[name] {
			bad = append(bad, fmt.Sprintf("%s: in the bundle but not in %s", name, SumsName))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return nil, fmt.Errorf("bundle %s failed its checksums, nothing published:\n  %s", path, strings.Join(bad, "\n  "))
	}
	return files, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
