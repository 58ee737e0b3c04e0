// Package initramfs builds the fallback initramfs: a u-root busybox (built
// with the mkuimage/gobusybox Go API, not the u-root CLI) holding u-root's
// init, the gosh rescue shell, the commands listed in initramfs/commands.txt
// and the fallback init (initramfs/dlinit), rewritten as a deterministic
// newc archive (sorted entries, zero mtimes, uid/gid 0, sequential inodes,
// /dev/console and /dev/null device nodes, the settings file) and
// compressed in Go in a form the kernel unpacks. An unchanged rebuild skips
// the Go build.
//
// It builds and writes artifacts; it does not boot them.
package initramfs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/diskless/diskless/initramfs/fallback"
	"github.com/diskless/diskless/internal/fsutil"
	"github.com/diskless/diskless/internal/textutil"
	"github.com/diskless/diskless/pkg/arch"
)

// Compressor names an initramfs compression.
type Compressor string

// The compressions the slave kernel unpacks (RD_ZSTD, RD_XZ, RD_GZIP).
const (
	Zstd Compressor = "zstd"
	XZ   Compressor = "xz"
	Gzip Compressor = "gzip"
	None Compressor = "none"
)

// Ext is the file name extension after .cpio.
func (c Compressor) Ext() string {
	switch c {
	case Zstd:
		return ".zst"
	case XZ:
		return ".xz"
	case Gzip:
		return ".gz"
	}
	return ""
}

// ParseCompressor validates INITRAMFS_COMPRESS (empty: zstd).
func ParseCompressor(s string) (Compressor, error) {
	switch c := Compressor(strings.ToLower(strings.TrimSpace(s))); c {
	case "":
		return Zstd, nil
	case Zstd, XZ, Gzip, None:
		return c, nil
	}
	return "", fmt.Errorf("INITRAMFS_COMPRESS=%q: unknown compressor; use zstd, xz, gzip or none", s)
}

const uroot = "github.com/u-root/u-root/cmds/core/"

// Command is one entry of the command list.
type Command struct {
	Pkg  string // Go package path
	File string
	Line int
}

// ReadCommands reads a command list: one u-root core command name or Go
// package path per line, # comments. gosh (the rescue shell) and the
// project's dlinit (/init) are always added.
func ReadCommands(path, module string) ([]Command, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("command list: %w", err)
	}
	defer f.Close()
	cmds := []Command{{Pkg: uroot + "gosh", File: "(always)"}, {Pkg: module + "/initramfs/dlinit", File: "(always)"}}
	seen := map[string]bool{}
	for _, c := range cmds {
		seen[c.Pkg] = true
	}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(strings.TrimSuffix(sc.Text(), "\r"))
		if i := strings.Index(line, "#"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		if strings.ContainsAny(line, " \t") {
			return nil, fmt.Errorf("%s:%d: %q: one command per line", path, n, line)
		}
		pkg := line
		if !strings.Contains(line, "/") {
			pkg = uroot + line
		}
		if seen[pkg] {
			continue
		}
		seen[pkg] = true
		cmds = append(cmds, Command{Pkg: pkg, File: path, Line: n})
	}
	return cmds, sc.Err()
}

// Options for one build.
type Options struct {
	Arch arch.Arch
	// ProjectDir is the module root (go.mod, initramfs/).
	ProjectDir string
	// Commands defaults to ProjectDir/initramfs/commands.txt.
	Commands string
	Compress Compressor
	// OutDir receives initramfs_<arch>.cpio.<ext> and initramfs_<arch>.json.
	OutDir   string
	CacheDir string
	// Settings are written to /etc/diskless-fallback.json in the image.
	Settings fallback.Settings
	Log      *slog.Logger
}

// Meta is initramfs_<arch>.json.
type Meta struct {
	Arch       string     `json:"arch"`
	GOARCH     string     `json:"goarch"`
	Commands   []string   `json:"commands"`
	Compressor Compressor `json:"compressor"`
	Key        string     `json:"cache_key"`
	GoVersion  string     `json:"go_version"`
	RawSize    int64      `json:"cpio_size"`
	Size       int64      `json:"size"`
	SHA256     string     `json:"sha256"`
	Name       string     `json:"name"`
	BuildSecs  float64    `json:"go_build_seconds"`
	CompSecs   float64    `json:"compress_seconds"`
	Files      int        `json:"files"`
}

// Result of Build.
type Result struct {
	Meta
	Path string
	// Skipped is true when nothing changed: no Go build, no compression.
	Skipped bool
}

// ArtifactName is initramfs_<arch>.cpio<ext>.
func ArtifactName(a arch.Arch, c Compressor) string {
	return "initramfs_" + a.Name + ".cpio" + c.Ext()
}

// Build makes the initramfs for o.Arch. Inputs are validated before any Go
// build; on failure nothing is left in OutDir.
func Build(ctx context.Context, o Options) (*Result, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Compress == "" {
		o.Compress = Zstd
	}
	if _, err := ParseCompressor(string(o.Compress)); err != nil {
		return nil, err
	}
	if o.Commands == "" {
		o.Commands = filepath.Join(o.ProjectDir, "initramfs", "commands.txt")
	}
	if o.Settings == (fallback.Settings{}) {
		o.Settings = fallback.DefaultSettings
	}
	module, err := modulePath(o.ProjectDir)
	if err != nil {
		return nil, err
	}
	cmds, err := ReadCommands(o.Commands, module)
	if err != nil {
		return nil, err
	}
	goVer, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOVERSION: %w (the initramfs is built with the Go toolchain)", err)
	}
	settings, _ := json.MarshalIndent(o.Settings, "", "  ")
	key, err := cacheKey(o, cmds, strings.TrimSpace(string(goVer)), settings)
	if err != nil {
		return nil, err
	}
	name := ArtifactName(o.Arch, o.Compress)
	metaPath := filepath.Join(o.OutDir, "initramfs_"+o.Arch.Name+".json")
	if m, ok := upToDate(metaPath, filepath.Join(o.OutDir, name), key); ok {
		o.Log.Info("initramfs up to date: Go build skipped", "arch", o.Arch.Name, "file", name)
		return &Result{Meta: *m, Path: filepath.Join(o.OutDir, name), Skipped: true}, nil
	}
	if err := checkPackages(ctx, o.ProjectDir, cmds); err != nil {
		return nil, err
	}
	work := filepath.Join(o.CacheDir, "initramfs", o.Arch.Name)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	m := Meta{Arch: o.Arch.Name, GOARCH: o.Arch.GOARCH, Compressor: o.Compress, Key: key, GoVersion: strings.TrimSpace(string(goVer)), Name: name}
	for _, c := range cmds {
		m.Commands = append(m.Commands, c.Pkg)
	}
	rawPath := filepath.Join(work, "raw-"+key[:16]+".cpio")
	raw, err := os.ReadFile(rawPath)
	if err != nil {
		start := time.Now()
		o.Log.Info("building the u-root busybox", "arch", o.Arch.Name, "goarch", o.Arch.GOARCH, "commands", len(cmds))
		if raw, err = busybox(ctx, o, cmds, settings, work); err != nil {
			return nil, err
		}
		m.BuildSecs = time.Since(start).Round(10 * time.Millisecond).Seconds()
		if err := fsutil.WriteAtomic(rawPath, raw); err != nil {
			return nil, err
		}
	}
	m.RawSize = int64(len(raw))
	if m.Files, err = countRecords(raw); err != nil {
		return nil, err
	}
	start := time.Now()
	var out bytes.Buffer
	if err := Compress(&out, bytes.NewReader(raw), o.Compress); err != nil {
		return nil, err
	}
	m.CompSecs = time.Since(start).Round(10 * time.Millisecond).Seconds()
	m.Size = int64(out.Len())
	m.SHA256 = fsutil.HashBytes(out.Bytes())
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	if err := fsutil.WriteAtomic(filepath.Join(o.OutDir, name), out.Bytes()); err != nil {
		return nil, err
	}
	// other compressions of an earlier build are stale now
	old, _ := filepath.Glob(filepath.Join(o.OutDir, "initramfs_"+o.Arch.Name+".cpio*"))
	for _, p := range old {
		if filepath.Base(p) != name {
			os.Remove(p)
		}
	}
	data, _ := json.MarshalIndent(m, "", "  ")
	if err := fsutil.WriteAtomic(metaPath, append(data, '\n')); err != nil {
		return nil, err
	}
	o.Log.Info("initramfs built", "arch", o.Arch.Name, "file", name, "size", m.Size, "cpio", m.RawSize)
	return &Result{Meta: m, Path: filepath.Join(o.OutDir, name)}, nil
}

func modulePath(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("project dir %s: %w", dir, err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "module" {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("%s/go.mod has no module line", dir)
}

// checkPackages resolves every command package in the project's module
// (the busybox builder needs them there) with one `go list -e -json`: only
// its JSON answer on stdout is read (stderr carries download progress on a
// cold module cache), and -mod=readonly keeps go.mod and go.sum as they are.
// A missing or non-command package is named with its list line and the go
// get command that adds it.
func checkPackages(ctx context.Context, dir string, cmds []Command) error {
	args := []string{"list", "-e", "-mod=readonly", "-json=ImportPath,Name,Error"}
	for _, c := range cmds {
		args = append(args, c.Pkg)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	found, err := parseGoList(&stdout)
	if err != nil || (runErr != nil && len(found) == 0) {
		if err == nil {
			err = runErr
		}
		return fmt.Errorf("go list of the initramfs commands (in %s): %w\n%s", dir, err, textutil.Tail(stderr.String(), 10))
	}
	var bad []string
	for _, c := range cmds {
		msg := "not listed by go list"
		if p, ok := found[c.Pkg]; ok {
			switch {
			case p.Error != nil:
				msg = textutil.FirstLine(p.Error.Err)
			case p.Name != "main":
				msg = fmt.Sprintf("not a command (package %s)", p.Name)
			default:
				continue
			}
		}
		where := c.File
		if c.Line > 0 {
			where = fmt.Sprintf("%s:%d", c.File, c.Line)
		}
		bad = append(bad, fmt.Sprintf("%s: %s: %s (is it a command? add it with: go get -tool %s@<version>)", where, c.Pkg, msg, c.Pkg))
	}
	if len(bad) > 0 {
		return fmt.Errorf("unknown initramfs command(s):\n  %s", strings.Join(bad, "\n  "))
	}
	return nil
}

// listedPackage is the part of `go list -json` checkPackages reads.
type listedPackage struct {
	ImportPath string
	Name       string
	Error      *struct{ Err string }
}

// parseGoList reads the stream of JSON objects `go list -json` writes.
func parseGoList(r io.Reader) (map[string]listedPackage, error) {
	out := map[string]listedPackage{}
	dec := json.NewDecoder(r)
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			return out, nil
		} else if err != nil {
			return out, fmt.Errorf("reading go list's answer: %w", err)
		}
		out[p.ImportPath] = p
	}
}

// ProjectSources are the project's directories whose Go files the
// initramfs is built from (a test checks the list against go list -deps).
var ProjectSources = []string{"initramfs", "pkg/sign", "pkg/pxe", "pkg/arch", "pkg/kconfig"}

// cacheKey hashes every input of the image: commands, arch, compressor,
// Go version, go.sum, the project's initramfs/ sources, the settings.
func cacheKey(o Options, cmds []Command, goVer string, settings []byte) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "diskless-initramfs-v1\x00%s\x00%s\x00%s\x00%v\x00", o.Arch.GOARCH, o.Compress, goVer, BuildTags)
	for _, c := range cmds {
		fmt.Fprintf(h, "%s\n", c.Pkg)
	}
	h.Write(settings)
	for _, f := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(o.ProjectDir, f))
		if err != nil {
			return "", err
		}
		h.Write(data)
	}
	// the project's packages the init is built from: initramfs/ and what
	// it imports of pkg/ (go list -deps ./initramfs/dlinit)
	for _, dir := range ProjectSources {
		src := filepath.Join(o.ProjectDir, dir)
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			if dir != "initramfs" && filepath.Dir(p) != src {
				return nil // a package's own files, not its sub-packages'
			}
			data, err := os.ReadFile(p)
			fmt.Fprintf(h, "%s\x00%d\x00", p[len(o.ProjectDir):], len(data))
			h.Write(data)
			return err
		})
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func upToDate(metaPath, artifact, key string) (*Meta, bool) {
	data, err := os.ReadFile(metaPath)
	if err != nil {
		return nil, false
	}
	var m Meta
	if json.Unmarshal(data, &m) != nil || m.Key != key {
		return nil, false
	}
	return &m, fsutil.Matches(artifact, m.Size, m.SHA256)
}
