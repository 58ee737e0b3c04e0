package spawn

import (
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// A child started from a goroutine that then locks its thread and ends
// (Go ends the thread with it) outlives that thread; with cmd.Start on
// such a thread it would get its Pdeathsig.
func TestChildOutlivesTheStartingThread(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(*exec.Cmd) error
		alive bool
	}{{"spawn.Start", Start, true}, {"exec.Cmd.Start", (*exec.Cmd).Start, false}} {
		cmd := exec.Command("sleep", "30")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		errc := make(chan error)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			errc <- tc.start(cmd)
		}()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		select {
		case <-exited:
			if tc.alive {
				t.Errorf("%s: the child died with the thread that asked for it: %v", tc.name, cmd.ProcessState)
			}
		case <-time.After(2 * time.Second):
			if !tc.alive {
				t.Errorf("%s: the child outlived its forking thread: the test no longer shows the kernel's behaviour", tc.name)
			}
			cmd.Process.Kill()
			<-exited
		}
	}
}
