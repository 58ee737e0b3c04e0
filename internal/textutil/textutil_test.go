package textutil

import "testing"

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
