package ganesha

import (
	"strings"
	"testing"
)

func TestConfig(t *testing.T) {
	c := Config("/run/lab", "/run/lab/exports.conf", 4064)
	for _, want := range []string{"Protocols = 3, 4;", "Enable_NLM = false;", "Graceless = true;", `RecoveryRoot = "/run/lab/recovery";`, "Only_Numeric_Owners = true;", `%include "/run/lab/exports.conf"`, "RPC_Max_Connections = 4064;"} {
		if !strings.Contains(c, want) {
			t.Errorf("ganesha.conf lacks %q:\n%s", want, c)
		}
	}
}
