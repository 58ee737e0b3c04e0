package textutil

import (
	"log/slog"
	"strings"
	"testing"
)

func TestFirstLineAndTail(t *testing.T) {
	if got := FirstLine("a\nb\n"); got != "a" {
		t.Errorf("FirstLine = %q", got)
	}
	if got := FirstLine("only"); got != "only" {
		t.Errorf("FirstLine = %q", got)
	}
	if got := Tail("1\n2\n3\n", 2); got != "  2\n  3" {
		t.Errorf("Tail = %q", got)
	}
	if got := Tail("", 2); got != "" {
		t.Errorf("Tail of nothing = %q", got)
	}
}

func TestProgress(t *testing.T) {
	var term strings.Builder
	Progress(&term, nil, "load")("  5.0 s  offered 3")
	if term.String() != "  5.0 s  offered 3\n" {
		t.Errorf("terminal got %q", term.String())
	}
	var logged strings.Builder
	Progress(nil, slog.New(slog.NewTextHandler(&logged, nil)), "load")("  5.0 s  offered 3")
	if !strings.Contains(logged.String(), `msg="load: 5.0 s offered 3"`) {
		t.Errorf("log got %q", logged.String())
	}
}
