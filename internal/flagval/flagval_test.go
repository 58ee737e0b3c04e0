package flagval

import "testing"

func TestCI(t *testing.T) {
	for v, want := range map[string]bool{"": false, "false": false, "0": false, "no": false, "true": true, "1": true, "yes": true, "TRUE": true, "github": true} {
		if got := CI(v); got != want {
			t.Errorf("CI(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestBool(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "1": true, "true": true, "no": false} {
		if got, err := Bool("X", v); err != nil || got != want {
			t.Errorf("Bool(%q) = %v, %v", v, got, err)
		}
	}
	if _, err := Bool("NO_CCACHE", "maybe"); err == nil || err.Error() != `NO_CCACHE="maybe": want 1 or 0` {
		t.Errorf("bad value: %v", err)
	}
}
