package ganesha

import (
	"strings"
	"testing"
)

func TestConfig(t *testing.T) {
	c := Config("/run/lab", "/run/lab/exports.conf")
	for _, want := range []string{"Protocols = 3, 4;", "Enable_NLM = false;", "Graceless = true;", `RecoveryRoot = "/run/lab/recovery";`, "Only_Numeric_Owners = true;", `%include "/run/lab/exports.conf"`} {
		if !strings.Contains(c, want) {
			t.Errorf("ganesha.conf lacks %q:\n%s", want, c)
		}
	}
}
