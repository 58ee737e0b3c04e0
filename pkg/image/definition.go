// Package image builds the node images (the root filesystems diskless nodes
// run) and publishes them in generations on the master. A Debian image is
// made by Debian's own debootstrap from a definition in the repository
// (images/<name>.packages); an admin's own root comes from a directory or a
// tarball (IMAGE_FROM). Every built image is cached under a key of what
// went into it and described by a manifest (packages with versions, a hash
// of the tree). Published images live in <root>/images/<name>-<arch>/ as
// gen-NNNN directories and a "current" symlink switched atomically; nodes
// mount current/usr read-only at boot (the fallback initramfs resolves the
// symlink once, so a running node keeps the generation it booted).
package image

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// DefinitionsDir is where the image definitions live in the repository.
const DefinitionsDir = "images"

// Definition is one image the repository describes.
type Definition struct {
	Name  string
	File  string // the .packages file
	Suite string // Debian codename (bookworm)
	// Packages are installed on top of debootstrap's minbase.
	Packages []Package
}

// Package is one line of the definition.
type Package struct {
	Name string
	Line int
}

var (
	nameRe    = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)
	debPkgRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	codenames = map[string]string{"debian-11": "bullseye", "debian-12": "bookworm", "debian-13": "trixie"}
)

// ValidName checks an image name (it becomes a directory name).
func ValidName(name string) error {
	if !nameRe.MatchString(name) {
		return fmt.Errorf("image name %q: want lower-case letters, digits, '.' and '-' (like debian-12)", name)
	}
	return nil
}

// Known lists the definitions in projectDir/images.
func Known(projectDir string) []string {
	m, _ := filepath.Glob(filepath.Join(projectDir, DefinitionsDir, "*.packages"))
	var out []string
	for _, p := range m {
		out = append(out, strings.TrimSuffix(filepath.Base(p), ".packages"))
	}
	sort.Strings(out)
	return out
}

// LoadDefinition reads images/<name>.packages. An unknown name is an error
// listing the known ones.
func LoadDefinition(projectDir, name string) (*Definition, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	file := filepath.Join(projectDir, DefinitionsDir, name+".packages")
	data, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("IMAGE=%s: unknown image (known: %s; or give IMAGE_FROM=<directory or tarball> for your own root)", name, strings.Join(Known(projectDir), ", "))
	}
	if err != nil {
		return nil, err
	}
	return ParseDefinition(name, file, data)
}

// ParseDefinition reads a definition's text; errors name file and line.
func ParseDefinition(name, file string, data []byte) (*Definition, error) {
	d := &Definition{Name: name, File: file, Suite: codenames[name]}
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "#"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		if v, ok := strings.CutPrefix(line, "suite:"); ok {
			d.Suite = strings.TrimSpace(v)
			if !nameRe.MatchString(d.Suite) {
				return nil, fmt.Errorf("%s:%d: suite %q is not a Debian codename", file, n, d.Suite)
			}
			continue
		}
		if !debPkgRe.MatchString(line) {
			return nil, fmt.Errorf("%s:%d: %q is not a Debian package name (one per line, # for comments)", file, n, line)
		}
		if prev, dup := seen[line]; dup {
			return nil, fmt.Errorf("%s:%d: %s is already on line %d", file, n, line, prev)
		}
		seen[line] = n
		d.Packages = append(d.Packages, Package{Name: line, Line: n})
	}
	if d.Suite == "" {
		return nil, fmt.Errorf("%s: no \"suite: <codename>\" line (the Debian release to bootstrap)", file)
	}
	return d, nil
}

// Names are the package names in file order.
func (d *Definition) Names() []string {
	var out []string
	for _, p := range d.Packages {
		out = append(out, p.Name)
	}
	return out
}

// lineOf names where a package is listed, for debootstrap's errors.
func (d *Definition) lineOf(pkg string) string {
	for _, p := range d.Packages {
		if p.Name == pkg {
			return fmt.Sprintf("%s:%d", d.File, p.Line)
		}
	}
	return d.File
}

// HostMirror is the mirror of this host's apt sources (/etc/apt), or "".
func HostMirror() string {
	files := map[string][]byte{}
	paths, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	for _, p := range append([]string{"/etc/apt/sources.list"}, paths...) {
		if data, err := os.ReadFile(p); err == nil {
			files[p] = data
		}
	}
	return MirrorFromAptSources(files)
}

// MirrorFromAptSources finds the Debian mirror the host's apt uses: the
// first URIs: of a deb822 .sources file or the first "deb" line of a
// sources.list. The caller passes the host's files (the settings edge
// reads /etc/apt); a master uses its own mirror or proxy, never one
// written into the code.
func MirrorFromAptSources(files map[string][]byte) string {
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, l := range strings.Split(string(files[n]), "\n") {
			l = strings.TrimSpace(l)
			if strings.HasSuffix(n, ".sources") {
				if v, ok := strings.CutPrefix(l, "URIs:"); ok {
					if f := strings.Fields(v); len(f) > 0 && !strings.Contains(f[0], "security") {
						return f[0]
					}
				}
				continue
			}
			f := strings.Fields(l)
			if len(f) >= 3 && f[0] == "deb" {
				i := 1
				if strings.HasPrefix(f[1], "[") {
					for i < len(f) && !strings.HasSuffix(f[i], "]") {
						i++
					}
					i++
				}
				if i < len(f) && !strings.Contains(f[i], "security") {
					return f[i]
				}
			}
		}
	}
	return ""
}
