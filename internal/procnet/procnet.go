// Package procnet reads a network namespace's socket tables through
// /proc/<pid>/net of any process in it: whether a daemon listens yet.
package procnet

import (
	"fmt"
	"os"
	"strings"
)

// Listening reports whether a socket of proto ("tcp" or "udp", IPv4 or
// IPv6) is bound to port in the network namespace of process pid; for tcp
// it must be in the LISTEN state.
func Listening(pid int, proto string, port int) bool {
	want := fmt.Sprintf(":%04X", port)
	for _, f := range []string{proto, proto + "6"} {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if listens(string(data), want, proto == "tcp") {
			return true
		}
	}
	return false
}

// listens scans one table: the local address (field 1) ends in :PORT, and
// for TCP the state (field 3) is 0A, LISTEN.
func listens(table, port string, tcp bool) bool {
	for _, line := range strings.Split(table, "\n") {
		fs := strings.Fields(line)
		if len(fs) > 3 && strings.HasSuffix(fs[1], port) && (!tcp || fs[3] == "0A") {
			return true
		}
	}
	return false
}
