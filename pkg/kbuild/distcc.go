package kbuild

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// DistccHost is one entry of DISTCC_HOSTS (distcc's syntax:
// host[:port][/limit][,options], "localhost" for local slots).
type DistccHost struct {
	Host  string
	Port  int
	Slots int
	Local bool
}

// ParseDistccHosts reads DISTCC_HOSTS. distcc's defaults: port 3632, 4 slots
// per remote host, 2 for localhost. Zeroconf and options such as --randomize
// are passed to distcc as they are but count no slots.
func ParseDistccHosts(s string) ([]DistccHost, error) {
	var out []DistccHost
	for _, tok := range strings.Fields(s) {
		if strings.HasPrefix(tok, "--") || strings.HasPrefix(tok, "+") {
			continue
		}
		spec, _, _ := strings.Cut(tok, ",")
		h := DistccHost{Port: 3632, Slots: 4}
		if i := strings.Index(spec, "/"); i >= 0 {
			n, err := strconv.Atoi(spec[i+1:])
			if err != nil || n < 1 {
				return nil, fmt.Errorf("DISTCC_HOSTS: %q: the job limit after / must be a number", tok)
			}
			h.Slots, spec = n, spec[:i]
		} else if spec == "localhost" {
			h.Slots = 2
		}
		if strings.HasPrefix(spec, "@") {
			return nil, fmt.Errorf("DISTCC_HOSTS: %q: ssh hosts are not supported; run distccd on the host", tok)
		}
		if host, port, ok := strings.Cut(spec, ":"); ok {
			p, err := strconv.Atoi(port)
			if err != nil || p < 1 || p > 65535 {
				return nil, fmt.Errorf("DISTCC_HOSTS: %q: bad port", tok)
			}
			spec, h.Port = host, p
		}
		if spec == "" {
			return nil, fmt.Errorf("DISTCC_HOSTS: %q: no host", tok)
		}
		h.Host, h.Local = spec, spec == "localhost"
		out = append(out, h)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("DISTCC_HOSTS=%q names no host", s)
	}
	return out, nil
}

// Slots is the total job limit of hosts, make's -j by default.
func Slots(hosts []DistccHost) int {
	n := 0
	for _, h := range hosts {
		n += h.Slots
	}
	return n
}

// Addr is host:port.
func (h DistccHost) Addr() string { return net.JoinHostPort(h.Host, strconv.Itoa(h.Port)) }

// Unreachable returns the remote hosts a TCP connection fails to, with the
// error.
func Unreachable(hosts []DistccHost, timeout time.Duration) map[string]error {
	bad := map[string]error{}
	for _, h := range hosts {
		if h.Local {
			continue
		}
		c, err := net.DialTimeout("tcp", h.Addr(), timeout)
		if err != nil {
			bad[h.Addr()] = err
			continue
		}
		c.Close()
	}
	return bad
}

// DropHosts returns DISTCC_HOSTS without the host entries whose address is
// in bad (options such as --randomize are kept), and whether any host is
// left. Compiling without an unreachable host is faster and safer than
// distcc's own fallback, which retries each job locally after the failed
// connection (and was seen to leave a truncated dependency file behind).
func DropHosts(s string, bad map[string]error) (string, bool) {
	var keep []string
	left := false
	for _, tok := range strings.Fields(s) {
		if !strings.HasPrefix(tok, "--") && !strings.HasPrefix(tok, "+") {
			hs, err := ParseDistccHosts(tok)
			if err == nil && len(hs) == 1 {
				if _, drop := bad[hs[0].Addr()]; drop && !hs[0].Local {
					continue
				}
				left = true
			}
		}
		keep = append(keep, tok)
	}
	return strings.Join(keep, " "), left
}

// RemoteJobs counts the compile jobs a distcc client log says ran on a
// remote host ("compile x.c on host:port/n completed ok").
func RemoteJobs(logPath string) (remote, local int) {
	f, err := os.Open(logPath)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l := sc.Text()
		i := strings.Index(l, " compile ")
		if i < 0 || !strings.HasSuffix(l, " completed ok") {
			continue
		}
		if strings.Contains(l, " on localhost completed ok") {
			local++
		} else {
			remote++
		}
	}
	return remote, local
}
