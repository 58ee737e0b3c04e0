package lab

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cgroupBase is where each daemon gets a control group of its own
// (diskless-lab/<daemon>), so that the processor time of everything it
// runs is counted, children included: tftpd-hpa forks a process per
// transfer and does not wait for them, so /proc's cutime never sees them.
// cgroup v2 (cpu.stat) where mounted, else v1's cpuacct.
func cgroupBase() (dir string, v2 bool, err error) {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "/sys/fs/cgroup/" + NetNS, true, nil
	}
	if _, err := os.Stat("/sys/fs/cgroup/cpuacct/cpuacct.usage"); err == nil {
		return "/sys/fs/cgroup/cpuacct/" + NetNS, false, nil
	}
	return "", false, errors.New("no cgroup v2 and no cgroup v1 cpuacct mounted under /sys/fs/cgroup")
}

// cgroupProcs makes a daemon's control groups and returns their
// cgroup.procs files (the memory one empty under cgroup v2, which has one
// hierarchy), for a process to join before it runs the daemon.
func cgroupProcs(name string) (cpu, mem string, err error) {
	base, _, err := cgroupBase()
	if err != nil {
		return "", "", err
	}
	dir := filepath.Join(base, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	if m := memoryBase(); m != "" {
		if os.MkdirAll(filepath.Join(m, name), 0o755) == nil {
			mem = filepath.Join(m, name, "cgroup.procs")
		}
	}
	return filepath.Join(dir, "cgroup.procs"), mem, nil
}

// inCgroup is args run by a shell that first joins the daemon's control
// groups, then becomes it (exec: the same process): every process the
// daemon forks is born inside them (nginx's workers fork at once, before
// a move after the start could catch them).
func inCgroup(cpu, mem string, args []string) []string {
	return append([]string{"sh", "-c", `echo $$ > "$0" && { [ -z "$1" ] || echo $$ > "$1"; } && shift && exec "$@"`, cpu, mem}, args...)
}

// account moves a daemon's process (all its threads) into its control
// group; the processes it starts later are born there. Without cgroups
// (a container that hides them) the lab runs all the same, and CPU says
// nothing of that daemon: a warning says so.
func (l *Lab) account(name string, pid int) {
	err := func() error {
		base, _, err := cgroupBase()
		if err != nil {
			return err
		}
		dir := filepath.Join(base, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return err
		}
		// cgroup v1 keeps memory in a hierarchy of its own
		if mem := memoryBase(); mem != "" {
			mdir := filepath.Join(mem, name)
			if os.MkdirAll(mdir, 0o755) == nil {
				os.WriteFile(filepath.Join(mdir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
			}
		}
		return nil
	}()
	if err != nil {
		l.log.Warn("the daemon's CPU will not be measured", "daemon", name, "pid", pid, "err", err)
	}
}

// CPU is the processor time (user and system) each daemon's control group
// used since the lab came up, children included.
func (l *Lab) CPU() map[string]time.Duration {
	out := map[string]time.Duration{}
	base, v2, err := cgroupBase()
	if err != nil {
		return out
	}
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if v2 {
			data, err := os.ReadFile(filepath.Join(base, e.Name(), "cpu.stat"))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(data), "\n") {
				if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
					n, _ := strconv.ParseInt(v, 10, 64)
					out[e.Name()] = time.Duration(n) * time.Microsecond
				}
			}
			continue
		}
		data, err := os.ReadFile(filepath.Join(base, e.Name(), "cpuacct.usage"))
		if err != nil {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		out[e.Name()] = time.Duration(n)
	}
	return out
}

// memoryBase is cgroup v1's memory hierarchy for the daemons' groups ("" on
// cgroup v2, where the CPU groups count memory too).
func memoryBase() string {
	if _, v2, err := cgroupBase(); err == nil && !v2 {
		if _, err := os.Stat("/sys/fs/cgroup/memory/memory.max_usage_in_bytes"); err == nil {
			return "/sys/fs/cgroup/memory/" + NetNS
		}
	}
	return ""
}

// PeakMemory is the most memory each daemon's control group held since
// the lab came up (memory.peak, or v1's memory.max_usage_in_bytes),
// children included.
func (l *Lab) PeakMemory() map[string]int64 {
	out := map[string]int64{}
	base, file := memoryBase(), "memory.max_usage_in_bytes"
	if base == "" {
		var err error
		if base, _, err = cgroupBase(); err != nil {
			return out
		}
		file = "memory.peak"
	}
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		if data, err := os.ReadFile(filepath.Join(base, e.Name(), file)); err == nil {
			n, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
			out[e.Name()] = n
		}
	}
	return out
}

// removeCgroups removes the daemons' control groups once their processes
// are gone (a group with a process in it cannot be removed).
func removeCgroups() {
	base, _, err := cgroupBase()
	if err != nil {
		return
	}
	for _, b := range []string{base, memoryBase()} {
		if b == "" {
			continue
		}
		entries, _ := os.ReadDir(b)
		for _, e := range entries {
			if e.IsDir() {
				p := filepath.Join(b, e.Name())
				for i := 0; i < 50 && os.Remove(p) != nil; i++ {
					time.Sleep(100 * time.Millisecond)
				}
			}
		}
		os.Remove(b)
	}
}
