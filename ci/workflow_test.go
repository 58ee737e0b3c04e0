// Package ci holds checks of the CI definitions themselves.
package ci

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/diskless/diskless/internal/testutil"
)

// actionlint runs actionlint (the Go tool pinned in go.mod) on files with
// shellcheck at the given path ("" lints no shell).
func actionlint(t *testing.T, shellcheck string, files ...string) ([]byte, error) {
	t.Helper()
	root, _ := filepath.Abs("..")
	args := append([]string{"tool", "actionlint", "-no-color", "-shellcheck=" + shellcheck, "-pyflakes="}, files...)
	c := exec.Command("go", args...)
	c.Dir = root
	// findings on stdout; stderr has the go command's own lines ("go:
	// downloading ..." with an empty module cache), shown on failure
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, stderr.String())
	}
	return out, err
}

func workflows(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob("../.github/workflows/*.yml")
	if len(files) == 0 {
		t.Fatal("no workflows")
	}
	for i := range files {
		files[i], _ = filepath.Abs(files[i])
	}
	return files
}

// The GitHub workflow cannot run here; actionlint (a Go tool: the unit
// suite has it) lints its structure, expressions and job graph.
func TestActionlintWorkflows(t *testing.T) {
	if out, err := actionlint(t, "", workflows(t)...); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("actionlint: %v\n%s", err, out)
	}
	// and it does catch a broken workflow
	bad := filepath.Join(t.TempDir(), "bad.yml")
	os.WriteFile(bad, []byte("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n"), 0o644)
	if out, err := actionlint(t, "", bad); err == nil {
		t.Errorf("actionlint accepted a broken workflow:\n%s", out)
	}
}

// With shellcheck, actionlint also lints the shell of the run: steps.
func TestActionlintWorkflowsWithShellcheck(t *testing.T) {
	shellcheck := testutil.NeedTool(t, "shellcheck", "shellcheck")
	if out, err := actionlint(t, shellcheck, workflows(t)...); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("actionlint with shellcheck: %v\n%s", err, out)
	}
	// and shellcheck did look: an unquoted variable is reported
	bad := filepath.Join(t.TempDir(), "unquoted.yml")
	os.WriteFile(bad, []byte("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo $FOO\n"), 0o644)
	if out, err := actionlint(t, shellcheck, bad); err == nil || !strings.Contains(string(out), "SC2086") {
		t.Errorf("shellcheck did not report an unquoted variable: %v\n%s", err, out)
	}
}

// job is the text of one job of a workflow: from its "  name:" line to
// the next job's.
func job(workflow, name string) string {
	start := strings.Index(workflow, "\n  "+name+":\n")
	if start < 0 {
		return ""
	}
	rest := workflow[start+1:]
	next := regexp.MustCompile(`\n  [A-Za-z0-9_-]+:\n`).FindStringIndex(rest[1:])
	if next == nil {
		return rest
	}
	return rest[:next[0]+1]
}

// The checks job is the unit suite's machine: the Go toolchain, gcc and
// libc6-dev (cgo, -race), git, certificates, and what every Debian system
// has. A unit test that needs another program is an integration test
// (testutil.NeedTool), so the job installs nothing else; a package added
// here would hide such a test.
func TestChecksJobRunsTheUnitSuiteOnABaseSystem(t *testing.T) {
	data, err := os.ReadFile("../.github/workflows/artifacts.yml")
	if err != nil {
		t.Fatal(err)
	}
	checks := job(string(data), "checks")
	if checks == "" || strings.Contains(checks, "\n  artifacts:") {
		t.Fatalf("no checks job, or more than it:\n%s", checks)
	}
	for _, want := range []string{"container: debian:12", "go vet ./...", "go vet -tags mage .", "run: go test -short -race -count=1 ./..."} {
		if !strings.Contains(checks, want) {
			t.Errorf("the checks job lacks %q", want)
		}
	}
	allowed := map[string]bool{"ca-certificates": true, "git": true, "gcc": true, "libc6-dev": true}
	installs := regexp.MustCompile(`apt-get install ([^\n]*)`).FindAllStringSubmatch(checks, -1)
	if len(installs) != 1 {
		t.Fatalf("the checks job has %d apt-get install lines, want 1", len(installs))
	}
	var pkgs []string
	for _, w := range strings.Fields(installs[0][1]) {
		if !strings.HasPrefix(w, "-") {
			pkgs = append(pkgs, w)
		}
	}
	for _, p := range pkgs {
		if !allowed[p] {
			t.Errorf("the checks job installs %s: the unit suite needs only Go, gcc and Debian's Essential packages (a test that needs %s is an integration test)", p, p)
		}
	}
	for p := range allowed {
		if !strings.Contains(" "+strings.Join(pkgs, " ")+" ", " "+p+" ") {
			t.Errorf("the checks job does not install %s", p)
		}
	}
	if !strings.Contains(checks, "go-version: \"1.26\"") {
		t.Error("the checks job's Go is not 1.26")
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
