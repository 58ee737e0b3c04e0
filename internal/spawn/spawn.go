// Package spawn starts child processes that must die with this one
// (Pdeathsig) from a thread that lives as long as the process.
//
// Linux sends the parent-death signal when the thread that forked the
// child exits, not the process (prctl(2), PR_SET_PDEATHSIG). Go ends a
// thread when a goroutine that locked it returns without unlocking, as
// every simulated node and every netns.Do that leaves a namespace behind
// does. A daemon forked from a thread that a later goroutine locked and
// ended was killed in the middle of a run (golang/go#27505): dhcpd went
// silent under lab:load. Start forks from one goroutine locked to its
// thread for good, so the signal comes only when the process ends.
package spawn

import (
	"os/exec"
	"runtime"
	"sync"
)

type request struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	once sync.Once
	reqs chan request
)

// Start is cmd.Start, run on the process's spawning thread.
func Start(cmd *exec.Cmd) error {
	once.Do(func() {
		reqs = make(chan request)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as the process
			for r := range reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	reqs <- request{cmd, done}
	return <-done
}
