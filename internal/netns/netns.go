// Package netns runs code with its sockets in a network namespace the
// project made (the lab's), from a process that stays outside it.
package netns

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs f on a thread switched into the namespace at path, then
// switches the thread back; the sockets f opens stay in that namespace.
// The thread must come back: it may be the process's main thread, which
// Go never retires, and a process whose main thread is in the lab's
// namespace is one Down kills.
func Do[T any](path string, f func() (T, error)) (T, error) {
	var zero T
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{zero, err}
			return
		}
		defer home.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{zero, err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{zero, fmt.Errorf("setns %s: %w", path, err)}
			return
		}
		v, err := f()
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else: stays locked, and Go ends the thread with the goroutine
		ch <- result{v, err}
	}()
	r := <-ch
	return r.v, r.err
}
