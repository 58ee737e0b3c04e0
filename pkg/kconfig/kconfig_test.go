package kconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustParse(t *testing.T, name, text string) *Config {
	t.Helper()
	c, err := Parse(strings.NewReader(text), name)
	if err != nil {
		t.Fatalf("Parse(%s): %v", name, err)
	}
	return c
}

func TestParseEveryValueForm(t *testing.T) {
	c := mustParse(t, "a.config", `# a comment
CONFIG_Y=y
CONFIG_M=m
CONFIG_N=n
# CONFIG_NOTSET is not set

CONFIG_STR="hello world"
CONFIG_ESC="a \"quoted\" \\ back"
CONFIG_EMPTYSTR=""
CONFIG_DEC=123
CONFIG_NEG=-5
CONFIG_HEX=0x1f
CONFIG_lower_Case9=y
  CONFIG_SPACED = y
`)
	want := []struct{ sym, val string }{
		{"Y", "y"}, {"M", "m"}, {"N", "n"}, {"NOTSET", "n"},
		{"STR", `"hello world"`}, {"ESC", `"a \"quoted\" \\ back"`}, {"EMPTYSTR", `""`},
		{"DEC", "123"}, {"NEG", "-5"}, {"HEX", "0x1f"}, {"lower_Case9", "y"}, {"SPACED", "y"},
	}
	if len(c.Entries) != len(want) {
		t.Fatalf("got %d entries %+v, want %d", len(c.Entries), c.Entries, len(want))
	}
	for i, w := range want {
		e := c.Entries[i]
		if e.Symbol != w.sym || e.Value != w.val {
			t.Errorf("entry %d = %s=%s, want %s=%s", i, e.Symbol, e.Value, w.sym, w.val)
		}
		if e.File != "a.config" {
			t.Errorf("entry %d file %q", i, e.File)
		}
	}
	if e, _ := c.Lookup("DEC"); e.Line != 10 {
		t.Errorf("CONFIG_DEC line %d, want 10", e.Line)
	}
	if c.Value("ABSENT") != "n" {
		t.Errorf("absent symbol value %q", c.Value("ABSENT"))
	}
	if got := (Entry{Symbol: "X", Value: "n"}).String(); got != "# CONFIG_X is not set" {
		t.Errorf("not-set rendering %q", got)
	}
}

func TestParseMalformedLinesNameFileAndLine(t *testing.T) {
	cases := map[string]string{
		"no equals":        "CONFIG_FOO",
		"no prefix":        "FOO=y",
		"empty value":      "CONFIG_FOO=",
		"bad value":        "CONFIG_FOO=yes",
		"unquoted string":  "CONFIG_FOO=hello world",
		"unterminated str": `CONFIG_FOO="abc`,
		"after quote":      `CONFIG_FOO="a" b`,
		"bad name":         "CONFIG_FO-O=y",
		"bad hex":          "CONFIG_FOO=0xZZ",
		"bad not set":      "# CONFIG_FOO is not set, really",
		"empty hex":        "CONFIG_FOO=0x",
	}
	for name, line := range cases {
		_, err := Parse(strings.NewReader("CONFIG_OK=y\n\n"+line+"\n"), "frag.config")
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%s: %q parsed without a ParseError (err=%v)", name, line, err)
			continue
		}
		if pe.Line != 3 || !strings.Contains(err.Error(), "frag.config:3:") {
			t.Errorf("%s: error %q does not name frag.config:3", name, err)
		}
	}
}

func TestParseCRLFAndBOM(t *testing.T) {
	c := mustParse(t, "dos.config", "\ufeffCONFIG_A=y\r\n# CONFIG_B is not set\r\nCONFIG_C=\"x\"\r\n")
	if c.Value("A") != "y" || c.Value("B") != "n" || c.Value("C") != `"x"` {
		t.Fatalf("CRLF parse: %+v", c.Entries)
	}
}

func TestParseEmptyFragment(t *testing.T) {
	for _, text := range []string{"", "\n\n", "# only a comment\n"} {
		c := mustParse(t, "empty.config", text)
		if len(c.Entries) != 0 {
			t.Errorf("%q: %d entries", text, len(c.Entries))
		}
	}
	m, w := Merge(mustParse(t, "a", "CONFIG_A=y\n"), mustParse(t, "empty", ""))
	if len(w) != 0 || m.Value("A") != "y" {
		t.Errorf("merge with empty fragment: %+v %v", m.Entries, w)
	}
}

func TestParseFileMissing(t *testing.T) {
	_, err := ParseFile(filepath.Join(t.TempDir(), "nope.config"))
	if err == nil || !strings.Contains(err.Error(), "nope.config") {
		t.Fatalf("missing file error %v does not name the file", err)
	}
}

func TestMergeLaterWinsWithWarning(t *testing.T) {
	a := mustParse(t, "kernels/slave.config", "CONFIG_A=y\nCONFIG_B=m\nCONFIG_C=y\n")
	b := mustParse(t, "kernels/arch/x86_64.config", "CONFIG_B=y\n# CONFIG_C is not set\nCONFIG_A=y\nCONFIG_D=1\n")
	m, warns := Merge(a, b)
	if m.Value("A") != "y" || m.Value("B") != "y" || m.Value("C") != "n" || m.Value("D") != "1" {
		t.Fatalf("merge result %+v", m.Entries)
	}
	// order: first appearance
	var order []string
	for _, e := range m.Entries {
		order = append(order, e.Symbol)
	}
	if strings.Join(order, ",") != "A,B,C,D" {
		t.Errorf("order %v", order)
	}
	// A is redefined to the same value: no warning, as merge_config.sh
	if len(warns) != 2 {
		t.Fatalf("warnings %v, want 2 (B and C)", warns)
	}
	w := warns[0].String()
	for _, s := range []string{"kernels/arch/x86_64.config:1", "kernels/slave.config:2", "CONFIG_B=y", "CONFIG_B=m"} {
		if !strings.Contains(w, s) {
			t.Errorf("warning %q lacks %q", w, s)
		}
	}
	if e, _ := m.Lookup("B"); e.Pos() != "kernels/arch/x86_64.config:1" {
		t.Errorf("B position %s", e.Pos())
	}
}

func TestApplyReplacesBaseLines(t *testing.T) {
	base := []byte("#\n# Automatically generated\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x\"\n")
	req := mustParse(t, "f", "CONFIG_B=y\n# CONFIG_A is not set\n")
	out := string(Apply(base, req))
	final := mustParse(t, ".config", out)
	if final.Value("A") != "n" || final.Value("B") != "y" || final.Value("C") != `"x"` {
		t.Fatalf("applied config:\n%s", out)
	}
	if strings.Count(out, "CONFIG_A") != 1 || strings.Count(out, "CONFIG_B") != 1 {
		t.Errorf("duplicated symbols:\n%s", out)
	}
}

func TestVerifyReportsDroppedValueWithPosition(t *testing.T) {
	req := mustParse(t, "kernels/slave.config", "CONFIG_NFS_FS=y\n\nCONFIG_ROOT_NFS=y\n# CONFIG_IPV6 is not set\nCONFIG_HZ=0x64\nCONFIG_CMDLINE=\"a b\"\n")
	// What the kernel's olddefconfig writes when FILE_LOCKING is off: the NFS
	// options are dropped, IPV6 is absent (fine: absent is "not set").
	final := mustParse(t, "build/.config", "# CONFIG_NFS_FS is not set\nCONFIG_HZ=100\nCONFIG_CMDLINE=\"a  b\"\n")
	ms := Verify(final, req)
	if len(ms) != 3 {
		t.Fatalf("mismatches %v, want NFS_FS, ROOT_NFS and CMDLINE", ms)
	}
	err := &VerifyError{Config: "build/.config", Mismatches: ms}
	msg := err.Error()
	for _, s := range []string{
		"kernels/slave.config:1: CONFIG_NFS_FS: asked for y, final .config has not set",
		"kernels/slave.config:3: CONFIG_ROOT_NFS: asked for y, final .config has not set",
		`kernels/slave.config:6: CONFIG_CMDLINE: asked for "a b", final .config has "a  b"`,
	} {
		if !strings.Contains(msg, s) {
			t.Errorf("error lacks %q:\n%s", s, msg)
		}
	}
}

func TestEqualNumbers(t *testing.T) {
	for _, c := range []struct {
		a, b string
		eq   bool
	}{
		{"0x1f", "0x1F", true}, {"0x10", "16", true}, {"010", "10", true}, {"010", "8", false},
		{"y", "y", true}, {"y", "m", false}, {`"1"`, "1", false}, {"-1", "0xffffffffffffffff", true},
	} {
		if got := Equal(c.a, c.b); got != c.eq {
			t.Errorf("Equal(%s, %s) = %v", c.a, c.b, got)
		}
	}
}

func TestSlaveRequestedRejectsModules(t *testing.T) {
	req := mustParse(t, "kernels/slave.config", "CONFIG_NFS_FS=m\nCONFIG_E1000=m\nCONFIG_SOUND=m\n")
	err := SlaveRequested(req)
	if err == nil {
		t.Fatal("=m in the NFS-root chain accepted")
	}
	for _, s := range []string{"kernels/slave.config:1: CONFIG_NFS_FS=m", "set CONFIG_NFS_FS=y", "kernels/slave.config:2: CONFIG_E1000=m"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error lacks %q:\n%v", s, err)
		}
	}
	if strings.Contains(err.Error(), "SOUND") {
		t.Errorf("unrelated module flagged: %v", err)
	}
	if err := SlaveRequested(mustParse(t, "ok", "CONFIG_NFS_FS=y\nCONFIG_SOUND=m\n")); err != nil {
		t.Errorf("valid request rejected: %v", err)
	}
}

func TestSlaveFinal(t *testing.T) {
	good := "CONFIG_NET=y\nCONFIG_PACKET=y\nCONFIG_UNIX=y\nCONFIG_INET=y\nCONFIG_IP_PNP=y\nCONFIG_IP_PNP_DHCP=y\nCONFIG_NETWORK_FILESYSTEMS=y\nCONFIG_NFS_FS=y\nCONFIG_ROOT_NFS=y\n"
	req := mustParse(t, "kernels/slave.config", good)
	if err := SlaveFinal(mustParse(t, ".config", good+"CONFIG_VIRTIO_NET=y\n"), req); err != nil {
		t.Fatalf("good config rejected: %v", err)
	}
	err := SlaveFinal(mustParse(t, ".config", strings.Replace(good, "CONFIG_NFS_FS=y", "CONFIG_NFS_FS=m", 1)+"CONFIG_E1000=m\n"), req)
	if err == nil {
		t.Fatal("NFS_FS=m and no built-in NIC accepted")
	}
	for _, s := range []string{"CONFIG_NFS_FS must be =y", "a module (=m)", "requested at kernels/slave.config:8", "no NIC driver is built in", "CONFIG_E1000"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error lacks %q:\n%v", s, err)
		}
	}
	err = SlaveFinal(mustParse(t, ".config", strings.Replace(good, "CONFIG_ROOT_NFS=y\n", "", 1)+"CONFIG_E1000=y\n"), mustParse(t, "f", ""))
	if err == nil || !strings.Contains(err.Error(), "CONFIG_ROOT_NFS") || !strings.Contains(err.Error(), "not requested") {
		t.Errorf("missing ROOT_NFS: %v", err)
	}
}

// The project's own fragments must parse and satisfy the slave rule as
// requested (the final check needs the kernel; pkg/kbuild tests that).
func TestProjectFragmentsParse(t *testing.T) {
	files, _ := filepath.Glob("../../kernels/*.config")
	arch, _ := filepath.Glob("../../kernels/arch/*.config")
	files = append(files, arch...)
	if len(files) < 6 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		c, err := ParseFile(f)
		if err != nil {
			t.Error(err)
			continue
		}
		if len(c.Entries) == 0 {
			t.Errorf("%s: no entries", f)
		}
	}
	slave, err := ParseFile("../../kernels/slave.config")
	if err != nil {
		t.Fatal(err)
	}
	for _, sym := range NFSRootChain {
		if slave.Value(sym) != "y" {
			t.Errorf("kernels/slave.config: CONFIG_%s is %s, want y", sym, slave.Value(sym))
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x\\\"y\"\nCONFIG_D=0x10\r\n")
	f.Add("\ufeff# c\n\nCONFIG_E=-1\n")
	f.Add("CONFIG_=y\nFOO\n\"")
	if data, err := os.ReadFile("../../kernels/slave.config"); err == nil {
		f.Add(string(data))
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := Parse(strings.NewReader(text), "fuzz")
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) && !strings.Contains(err.Error(), "token too long") {
				t.Fatalf("non-ParseError %T: %v", err, err)
			}
			return
		}
		// Rendering and parsing again gives the same entries.
		var b strings.Builder
		for _, e := range c.Entries {
			b.WriteString(e.String())
			b.WriteByte('\n')
		}
		c2, err := Parse(strings.NewReader(b.String()), "again")
		if err != nil {
			t.Fatalf("re-parse of rendered config failed: %v\n%s", err, b.String())
		}
		if len(c2.Entries) != len(c.Entries) {
			t.Fatalf("round trip: %d entries, then %d", len(c.Entries), len(c2.Entries))
		}
		for i := range c.Entries {
			if c.Entries[i].Symbol != c2.Entries[i].Symbol || c.Entries[i].Value != c2.Entries[i].Value {
				t.Fatalf("round trip entry %d: %v vs %v", i, c.Entries[i], c2.Entries[i])
			}
		}
		// Applying to an empty base then parsing yields the same values.
		final, err := Parse(strings.NewReader(string(Apply(nil, c))), "applied")
		if err != nil {
			t.Fatalf("applied config does not parse: %v", err)
		}
		if ms := Verify(final, c); len(ms) != 0 {
			t.Fatalf("apply then verify: %v", ms)
		}
	})
}
