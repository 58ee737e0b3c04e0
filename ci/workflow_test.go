// Package ci holds checks of the CI definitions themselves.
package ci

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/testutil"
)

func actionlint(t *testing.T, files ...string) ([]byte, error) {
	t.Helper()
	root, _ := filepath.Abs("..")
	c := exec.Command("go", append([]string{"tool", "actionlint", "-no-color"}, files...)...)
	c.Dir = root
	return c.CombinedOutput()
}

// The GitHub workflow cannot run here; actionlint (the Go tool pinned in
// go.mod) lints it, including the shell in run: steps when shellcheck is
// installed.
func TestActionlintWorkflows(t *testing.T) {
	testutil.NeedTool(t, "shellcheck", "shellcheck") // actionlint lints run: steps with it
	files, _ := filepath.Glob("../.github/workflows/*.yml")
	if len(files) == 0 {
		t.Fatal("no workflows")
	}
	for i := range files {
		files[i], _ = filepath.Abs(files[i])
	}
	if out, err := actionlint(t, files...); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("actionlint: %v\n%s", err, out)
	}
	// and it does catch a broken workflow
	bad := filepath.Join(t.TempDir(), "bad.yml")
	os.WriteFile(bad, []byte("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n"), 0o644)
	if out, err := actionlint(t, bad); err == nil {
		t.Errorf("actionlint accepted a broken workflow:\n%s", out)
	}
}

// The workflow runs the same target as a laptop, for every arch.
func TestWorkflowRunsCIArtifactsForEveryArch(t *testing.T) {
	data, err := os.ReadFile("../.github/workflows/artifacts.yml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for _, want := range []string{"go run mage.go ci:artifacts arch=${{ matrix.arch }}", "arch: [x86_64, i386, arm64, riscv64]", "container: debian:12", "~/.cache/diskless",
		"go vet ./...", "go vet -tags mage .", "secrets.DISKLESS_SIGNING_KEY", `SIGNING_KEY=$RUNNER_TEMP/ci.sec`, "go test -short -race -count=1 ./...", `CCACHE_DIR=$HOME/.cache/ccache" >> "$GITHUB_ENV"`} {
		if !strings.Contains(s, want) {
			t.Errorf("workflow lacks %q", want)
		}
	}
	if bad := tildeInEnv(s); len(bad) > 0 {
		t.Errorf("env: values are not expanded by a shell, so ~ stays literal: %v", bad)
	}
}

// tildeInEnv lists the lines of env: maps whose value starts with ~.
var envValue = regexp.MustCompile(`^\s+[A-Za-z_][A-Za-z0-9_]*:\s*["']?~`)

func tildeInEnv(workflow string) []string {
	var bad []string
	inEnv, indent := false, 0
	for _, l := range strings.Split(workflow, "\n") {
		trimmed := strings.TrimLeft(l, " ")
		ind := len(l) - len(trimmed)
		switch {
		case strings.HasPrefix(trimmed, "env:"):
			inEnv, indent = true, ind
		case inEnv && trimmed != "" && ind <= indent:
			inEnv = false
		case inEnv && envValue.MatchString(l):
			bad = append(bad, strings.TrimSpace(l))
		}
	}
	return bad
}

func TestTildeInEnvIsFound(t *testing.T) {
	old := "      - name: x\n        env:\n          CCACHE_DIR: ~/.cache/ccache\n        run: true\n"
	if bad := tildeInEnv(old); len(bad) != 1 {
		t.Errorf("the old workflow's CCACHE_DIR is not caught: %v", bad)
	}
	if bad := tildeInEnv("        env:\n          GH_TOKEN: ${{ github.token }}\n        with:\n          path: ~/go\n"); len(bad) != 0 {
		t.Errorf("false positive: %v", bad)
	}
}
