package initramfs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/u-root/gobusybox/src/pkg/golang"
	mkcpio "github.com/u-root/mkuimage/cpio"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/u-root/uio/llog"

	"github.com/diskless/diskless/initramfs/fallback"
)

// BuildTags are the Go build tags of the busybox.
var BuildTags = []string{"goshsmall"}

// baseArchive is the skeleton under the busybox: our own instead of
// uimage.DefaultRamfs (which writes nameserver 8.8.8.8 into resolv.conf).
func baseArchive(settings []byte) *mkcpio.Archive {
	a, _ := mkcpio.ArchiveFromRecords([]mkcpio.Record{
		mkcpio.Directory("bin", 0o755),
		mkcpio.Directory("dev", 0o755),
		mkcpio.Directory("etc", 0o755),
		mkcpio.Directory("newroot", 0o755),
		mkcpio.Directory("proc", 0o755),
		mkcpio.Directory("sys", 0o755),
		mkcpio.Directory("tmp", 0o1777),
		mkcpio.Directory("usr", 0o755),
		mkcpio.Directory("var", 0o755),
		mkcpio.Directory("var/log", 0o755),
		mkcpio.CharDev("dev/console", 0o600, 5, 1),
		mkcpio.CharDev("dev/null", 0o666, 1, 3),
		mkcpio.CharDev("dev/tty", 0o666, 5, 0),
		mkcpio.StaticFile("etc/resolv.conf", "", 0o644),
		mkcpio.StaticFile(fallback.SettingsPath[1:], string(settings)+"\n", 0o644),
	})
	return a
}

// busybox builds the u-root image with the mkuimage API and returns it as a
// deterministic newc archive.
func busybox(ctx context.Context, o Options, cmds []Command, settings []byte, work string) ([]byte, error) {
	tmp, err := os.MkdirTemp(work, "build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "u-root.cpio")
	var pkgs []string
	for _, c := range cmds {
		pkgs = append(pkgs, c.Pkg)
	}
	abs, err := filepath.Abs(o.ProjectDir)
	if err != nil {
		return nil, err
	}
	// goshsmall: gosh's plain line-reading prompt. Its default editor
	// (bubbline) queries the terminal (ESC[6n) and waits for an answer a
	// serial console never sends.
	env := golang.Default(golang.DisableCGO(), golang.WithGOOS("linux"), golang.WithGOARCH(o.Arch.GOARCH), golang.WithWorkingDir(abs), golang.WithBuildTag(BuildTags...))
	logger := llog.New(slog.LevelWarn, func(format string, v ...any) { o.Log.Debug(fmt.Sprintf(format, v...)) })
	err = uimage.Create(logger,
		uimage.WithReplaceEnv(env),
		uimage.WithBaseArchive(baseArchive(settings)),
		uimage.WithBusyboxCommands(pkgs...),
		// dlinit is /init, PID 1: the init it finds on the node's root
		// must be PID 1 too (systemd refuses to run otherwise), and only
		// PID 1 can exec it as PID 1.
		uimage.WithInit("dlinit"),
		uimage.WithShell("gosh"),
		uimage.WithSkipLDD(),
		uimage.WithTempDir(tmp),
		uimage.WithCPIOOutput(out),
	)
	if err != nil {
		return nil, fmt.Errorf("u-root busybox for %s: %w", o.Arch.GOARCH, err)
	}
	f, err := os.Open(out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Normalize(f)
}

// Normalize rewrites a newc archive deterministically: records sorted by
// name (parents first), mtimes 0, uid/gid 0, inodes numbered 1..n in that
// order, device nodes kept with their rdev, one trailer.
func Normalize(r io.ReaderAt) ([]byte, error) {
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(r))
	if err != nil {
		return nil, fmt.Errorf("reading the u-root archive: %w", err)
	}
	byName := map[string]cpio.Record{}
	for _, rec := range recs {
		if rec.Name == cpio.Trailer {
			continue
		}
		rec = cpio.MakeReproducible(rec)
		if rec.Name == "" || rec.Name == "." {
			continue
		}
		byName[rec.Name] = rec // later wins, as the kernel unpacks
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	for i, n := range names {
		rec := byName[n]
		rec.Ino = uint64(i + 1)
		if rec.NLink == 0 || rec.NLink > 1 {
			rec.NLink = 1
		}
		if err := w.WriteRecord(rec); err != nil {
			return nil, err
		}
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func countRecords(raw []byte) (int, error) {
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	n := 0
	for _, r := range recs {
		if r.Name != cpio.Trailer {
			n++
		}
	}
	return n, err
}
