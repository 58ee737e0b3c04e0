// Package kconfig reads kernel config fragments and .config files, merges
// fragments with the semantics of the kernel's scripts/kconfig/merge_config.sh
// (later fragments override earlier ones, each override reported), and checks
// a final .config against every value that was asked for.
//
// It owns the text format only. It never runs make: pkg/kbuild does that and
// calls Verify on the result, before the long compile starts.
package kconfig

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// Entry is one assignment: CONFIG_<Symbol>=<Value>, or "# CONFIG_<Symbol> is
// not set" (Value "n"). Value is kept as written: y, m, n, a decimal or hex
// number, or a double-quoted string with its quotes.
type Entry struct {
	Symbol string // without the CONFIG_ prefix
	Value  string
	File   string
	Line   int
}

// Pos returns "file:line" for messages.
func (e Entry) Pos() string { return fmt.Sprintf("%s:%d", e.File, e.Line) }

// String renders the entry as a .config line.
func (e Entry) String() string {
	if e.Value == "n" {
		return "# CONFIG_" + e.Symbol + " is not set"
	}
	return "CONFIG_" + e.Symbol + "=" + e.Value
}

// Config is an ordered list of entries from one file (a fragment or a
// .config). A symbol assigned twice in one file keeps both entries; Lookup
// returns the last, as Kconfig does.
type Config struct {
	Name    string
	Entries []Entry
	index   map[string]int
}

// Lookup returns the entry for a symbol (without CONFIG_).
func (c *Config) Lookup(sym string) (Entry, bool) {
	if c.index == nil {
		c.reindex()
	}
	i, ok := c.index[sym]
	if !ok {
		return Entry{}, false
	}
	return c.Entries[i], true
}

// Value returns the symbol's value, with "n" for a symbol that is absent.
func (c *Config) Value(sym string) string {
	if e, ok := c.Lookup(sym); ok {
		return e.Value
	}
	return "n"
}

func (c *Config) reindex() {
	c.index = make(map[string]int, len(c.Entries))
	for i, e := range c.Entries {
		c.index[e.Symbol] = i
	}
}

// ParseError is a malformed line, with its position.
type ParseError struct {
	File string
	Line int
	Text string
	Msg  string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d: %s: %q (expected CONFIG_NAME=y|m|n|\"string\"|123|0x1f or # CONFIG_NAME is not set)", e.File, e.Line, e.Msg, e.Text)
}

var (
	symRe    = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
	notSetRe = regexp.MustCompile(`^#\s*CONFIG_([A-Za-z0-9_]+) is not set\s*$`)
	// a comment that looks like a half-written "is not set" line
	nearNotSetRe = regexp.MustCompile(`^#\s*CONFIG_[A-Za-z0-9_]+\s+is\s+not\s+set`)
)

// Parse reads a fragment or .config. name is used in errors and positions.
// Blank lines and comments are skipped; CRLF line ends and a UTF-8 byte order
// mark are accepted. Any other line must be a valid assignment.
func Parse(r io.Reader, name string) (*Config, error) {
	c := &Config{Name: name}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Text()
		if n == 1 {
			raw = strings.TrimPrefix(raw, "\ufeff")
		}
		line := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			if m := notSetRe.FindStringSubmatch(line); m != nil {
				c.Entries = append(c.Entries, Entry{Symbol: m[1], Value: "n", File: name, Line: n})
			} else if nearNotSetRe.MatchString(line) {
				return nil, &ParseError{name, n, line, "malformed \"is not set\" line"}
			}
			continue
		}
		e, err := parseAssignment(line)
		if err != nil {
			return nil, &ParseError{name, n, line, err.Error()}
		}
		e.File, e.Line = name, n
		c.Entries = append(c.Entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, n+1, err)
	}
	c.reindex()
	return c, nil
}

func parseAssignment(line string) (Entry, error) {
	key, val, ok := strings.Cut(line, "=")
	if !ok {
		return Entry{}, fmt.Errorf("no '=' in assignment")
	}
	key = strings.TrimSpace(key)
	val = strings.TrimSpace(val)
	if !strings.HasPrefix(key, "CONFIG_") {
		return Entry{}, fmt.Errorf("option name must start with CONFIG_")
	}
	sym := strings.TrimPrefix(key, "CONFIG_")
	if !symRe.MatchString(sym) {
		return Entry{}, fmt.Errorf("invalid option name %q", key)
	}
	v, err := normalizeValue(val)
	if err != nil {
		return Entry{}, fmt.Errorf("%s: %v", key, err)
	}
	return Entry{Symbol: sym, Value: v}, nil
}

func normalizeValue(val string) (string, error) {
	switch {
	case val == "":
		return "", fmt.Errorf("empty value")
	case val == "y" || val == "m" || val == "n":
		return val, nil
	case strings.HasPrefix(val, `"`):
		s, err := unquote(val)
		if err != nil {
			return "", err
		}
		return quote(s), nil
	case isInt(val):
		return val, nil
	default:
		return "", fmt.Errorf("invalid value %q (strings need double quotes)", val)
	}
}

func isInt(s string) bool {
	_, ok := parseNum(s)
	return ok
}

// parseNum reads a Kconfig int (decimal, maybe negative) or hex (0x...)
// value as its 64-bit pattern, so equal numbers compare equal.
func parseNum(s string) (uint64, bool) {
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		v, err := strconv.ParseUint(s[2:], 16, 64)
		return v, err == nil && len(s) > 2
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return uint64(v), err == nil
}

// unquote reads a Kconfig string: double quotes, backslash escapes \" and \\.
func unquote(v string) (string, error) {
	if len(v) < 2 || v[0] != '"' {
		return "", fmt.Errorf("unterminated string %s", v)
	}
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		ch := v[i]
		switch ch {
		case '\\':
			if i+1 >= len(v) {
				return "", fmt.Errorf("unterminated string %s", v)
			}
			i++
			b.WriteByte(v[i])
		case '"':
			if i != len(v)-1 {
				return "", fmt.Errorf("text after closing quote in %s", v)
			}
			return b.String(), nil
		default:
			b.WriteByte(ch)
		}
	}
	return "", fmt.Errorf("unterminated string %s", v)
}

// Quote renders s as a Kconfig string value (double quotes, \" and \\).
func Quote(s string) string { return quote(s) }

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// ParseFile parses the file at path; errors name the path.
func ParseFile(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config fragment: %w", err)
	}
	defer f.Close()
	return Parse(f, path)
}

// Warning is a redefinition: a later fragment overrides an earlier value.
type Warning struct {
	Old, New Entry
}

func (w Warning) String() string {
	return fmt.Sprintf("%s: %s overrides %s from %s", w.New.Pos(), w.New, w.Old, w.Old.Pos())
}

// Merge combines fragments in order: a later assignment of a symbol replaces
// an earlier one (a Warning is returned when the value differs, as
// merge_config.sh reports). The result keeps the first position of each
// symbol in the output order and the last entry's value and position.
func Merge(frags ...*Config) (*Config, []Warning) {
	out := &Config{Name: "merged"}
	pos := map[string]int{}
	var warns []Warning
	for _, f := range frags {
		for _, e := range f.Entries {
			if i, ok := pos[e.Symbol]; ok {
				old := out.Entries[i]
				if old.Value != e.Value {
					warns = append(warns, Warning{Old: old, New: e})
				}
				out.Entries[i] = e
				continue
			}
			pos[e.Symbol] = len(out.Entries)
			out.Entries = append(out.Entries, e)
		}
	}
	out.reindex()
	return out, warns
}

// Apply writes base (a .config) with every symbol named in req replaced by
// req's value, as merge_config.sh -m does: base lines for those symbols are
// dropped and req's lines appended. The result is what olddefconfig reads.
func Apply(base []byte, req *Config) []byte {
	var buf bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(base))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if sym := lineSymbol(line); sym != "" {
			if _, ok := req.Lookup(sym); ok {
				continue
			}
		}
		buf.WriteString(line)
		buf.WriteByte('\n')
	}
	buf.WriteString("\n# --- requested by diskless fragments\n")
	for _, e := range req.Entries {
		fmt.Fprintf(&buf, "%s\n", e)
	}
	return buf.Bytes()
}

func lineSymbol(line string) string {
	line = strings.TrimSpace(line)
	if m := notSetRe.FindStringSubmatch(line); m != nil {
		return m[1]
	}
	if strings.HasPrefix(line, "CONFIG_") {
		k, _, ok := strings.Cut(line, "=")
		if ok {
			return strings.TrimPrefix(k, "CONFIG_")
		}
	}
	return ""
}

// Mismatch is a requested value that is not in the final .config.
type Mismatch struct {
	Want Entry  // what was asked for, with its fragment position
	Got  string // the final value, "n" when absent or not set
}

func (m Mismatch) String() string {
	return fmt.Sprintf("%s: CONFIG_%s: asked for %s, final .config has %s", m.Want.Pos(), m.Want.Symbol, show(m.Want.Value), show(m.Got))
}

func show(v string) string {
	if v == "n" {
		return "not set"
	}
	return v
}

// Equal reports whether two Kconfig values mean the same: numbers compare by
// value (0x1F == 0x1f), "n" and an absent symbol are the same.
func Equal(a, b string) bool {
	if a == b {
		return true
	}
	if isInt(a) && isInt(b) {
		x, ok1 := parseNum(a)
		y, ok2 := parseNum(b)
		return ok1 && ok2 && x == y
	}
	return false
}

// Verify checks every requested value (the last assignment of each symbol)
// against the final .config and returns the ones that did not make it, in
// request order.
func Verify(final, req *Config) []Mismatch {
	var out []Mismatch
	if req.index == nil {
		req.reindex()
	}
	for i, e := range req.Entries {
		if req.index[e.Symbol] != i {
			continue // overridden later in the same file: the last one counts
		}
		got := final.Value(e.Symbol)
		if !Equal(e.Value, got) {
			out = append(out, Mismatch{Want: e, Got: got})
		}
	}
	return out
}

// VerifyError collects mismatches into one error listing each.
type VerifyError struct {
	Config     string
	Mismatches []Mismatch
}

func (e *VerifyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requested value(s) not in the final %s (Kconfig drops an option whose dependencies are off; add them to the fragment):", len(e.Mismatches), e.Config)
	for _, m := range e.Mismatches {
		b.WriteString("\n  ")
		b.WriteString(m.String())
	}
	return b.String()
}
