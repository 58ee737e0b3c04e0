package kbuild

import (
	"os"
	"strings"
	"testing"
)

// Every option the real-OS groups add says why: each run of CONFIG_ lines
// follows a comment, and the groups exist for the size benchmark.
func TestOSGroupsSayWhy(t *testing.T) {
	groups, err := osGroups("../../kernels/slave.config")
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) < 4 {
		t.Fatalf("OS groups: %+v", groups)
	}
	for _, g := range groups {
		if len(g.options) == 0 {
			t.Errorf("group %q has no option", g.name)
		}
	}
	data, _ := os.ReadFile("../../kernels/slave.config")
	lines := strings.Split(string(data), "\n")
	in := false
	for i, l := range lines {
		if strings.HasPrefix(l, "# ---") {
			in = strings.HasPrefix(l, "# --- OS: ")
			continue
		}
		if in && strings.HasPrefix(l, "CONFIG_") && !strings.HasPrefix(lines[i-1], "CONFIG_") && !strings.HasPrefix(lines[i-1], "# ") {
			t.Errorf("slave.config:%d: %s has no comment saying why", i+1, l)
		}
	}
}
