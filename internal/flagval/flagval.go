// Package flagval parses the yes/no values of the project's settings and
// the CI switch, in one place, so the settings loader and the test helpers
// agree on what counts as set.
package flagval

import (
	"fmt"
	"strings"
)

// Bool parses a yes/no setting: "", 0, false, no, off are false; 1, true,
// yes, on are true; anything else is an error naming the variable.
func Bool(name, value string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(value)) {
	case "", "0", "false", "no", "off":
		return false, nil
	case "1", "true", "yes", "on":
		return true, nil
	}
	return false, fmt.Errorf("%s=%q: want 1 or 0", name, value)
}

// CI reports whether a CI variable's value means "running under CI": any
// value but empty, 0, false, no or off. CI systems set CI=true, CI=1 or
// CI=yes; none of them may be taken for "not CI", where tests skip.
func CI(value string) bool {
	switch strings.ToLower(strings.TrimSpace(value)) {
	case "", "0", "false", "no", "off":
		return false
	}
	return true
}
