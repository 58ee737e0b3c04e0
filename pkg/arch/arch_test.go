package arch

import (
	"runtime"
	"strings"
	"testing"
)

func TestLookupNamesAndAliases(t *testing.T) {
	cases := map[string]string{
		"x86_64": "x86_64", "amd64": "x86_64", "AMD64": "x86_64",
		"i386": "i386", "x86": "i386", "i686": "i386",
		"arm64": "arm64", "aarch64": "arm64",
		"riscv64": "riscv64", " riscv64 ": "riscv64",
	}
	for in, want := range cases {
		a, err := Lookup(in)
		if err != nil {
			t.Errorf("Lookup(%q): %v", in, err)
			continue
		}
		if a.Name != want {
			t.Errorf("Lookup(%q) = %s, want %s", in, a.Name, want)
		}
	}
}

func TestLookupUnknownListsSupported(t *testing.T) {
	_, err := Lookup("mips")
	if err == nil {
		t.Fatal("Lookup(mips) succeeded")
	}
	for _, n := range []string{"mips", "x86_64", "i386", "arm64", "riscv64", "amd64=x86_64"} {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not mention %q", err, n)
		}
	}
}

func TestParseArg(t *testing.T) {
	for in, want := range map[string]string{"arch=x86_64": "x86_64", "x86_64": "x86_64", "arch=aarch64": "arm64"} {
		a, err := ParseArg(in)
		if err != nil || a.Name != want {
			t.Errorf("ParseArg(%q) = %v, %v; want %s", in, a.Name, err, want)
		}
	}
	for _, bad := range []string{"", "arch=", "foo=x86_64", "arch=sparc"} {
		if _, err := ParseArg(bad); err == nil {
			t.Errorf("ParseArg(%q) succeeded", bad)
		}
	}
}

func TestTableIsConsistent(t *testing.T) {
	seen := map[string]bool{}
	for _, a := range All() {
		for _, n := range append([]string{a.Name}, a.Aliases...) {
			if seen[n] {
				t.Errorf("name %q used twice", n)
			}
			seen[n] = true
		}
		if !strings.HasPrefix(a.ImagePath, "arch/"+a.SrcArch+"/boot/") {
			t.Errorf("%s: image path %s not under arch/%s/boot", a.Name, a.ImagePath, a.SrcArch)
		}
		if a.ArtifactName() != a.ImageName+"_"+a.Name {
			t.Errorf("%s: artifact name %s", a.Name, a.ArtifactName())
		}
		if a.QEMU == "" || a.QEMUPackage == "" || a.Console == "" || a.GOARCH == "" || a.ToolchainPackage == "" {
			t.Errorf("%s: incomplete entry %+v", a.Name, a)
		}
	}
}

func TestCompilerOnThisHost(t *testing.T) {
	x, _ := Lookup("x86_64")
	a, _ := Lookup("arm64")
	if runtime.GOARCH == "amd64" {
		if cc, pkg := x.Compiler(); cc != "gcc" || pkg != "gcc" {
			t.Errorf("x86_64 on amd64: %s %s", cc, pkg)
		}
		if x.CrossCompile() != "" {
			t.Errorf("x86_64 on amd64 cross-compiles: %q", x.CrossCompile())
		}
		if cc, pkg := a.Compiler(); cc != "aarch64-linux-gnu-gcc" || pkg != "gcc-aarch64-linux-gnu" {
			t.Errorf("arm64 on amd64: %s %s", cc, pkg)
		}
		if a.CrossCompile() != "aarch64-linux-gnu-" {
			t.Errorf("arm64 CROSS_COMPILE %q", a.CrossCompile())
		}
	}
}
