package fallback

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Mounter runs mounts that cannot be cancelled (mount(2) of an unreachable
// NFS server retries in the kernel for minutes) with a deadline. A mount
// still running after its deadline is remembered: the next call waits for
// it (and uses it if it worked) instead of starting a second one. Calls
// from several goroutines (the background retries, the main loop after
// the shell exits) are serialised.
type Mounter struct {
	Timeout time.Duration

	mu       sync.Mutex
	inflight *lateMount
}

// lateMount is a mount still running after its deadline.
type lateMount struct {
	source string
	done   chan error
	undo   func()
}

// Busy reports whether an earlier mount is still running in the kernel
// (the mount point must then be left alone).
func (m *Mounter) Busy() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inflight != nil
}

// Mount runs mount (which mounts source) with the deadline; undo removes
// what mount mounted. A late mount of the same source that worked is
// used; one of another source (the image's /usr while the root is wanted)
// is undone first: measured in a 32-node storm, where the root's mount
// outlived its deadline, the retry found the image's late mount and took
// it for the root's, and the node retried for ever on "device or resource
// busy".
func (m *Mounter) Mount(source string, mount func() error, undo func()) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if late := m.inflight; late != nil {
		select {
		case err := <-late.done:
			m.inflight = nil
			if err == nil {
				if late.source == source {
					return nil // the late mount worked
				}
				late.undo()
			}
		case <-time.After(m.Timeout):
			return fmt.Errorf("an earlier mount of %s is still hanging in the kernel", late.source)
		}
	}
	done := make(chan error, 1)
	go func() { done <- mount() }()
	select {
	case err := <-done:
		return err
	case <-time.After(m.Timeout):
		m.inflight = &lateMount{source: source, done: done, undo: undo}
		return fmt.Errorf("no answer within %s", m.Timeout)
	}
}

// Relay forwards what is typed on the console to the current rescue
// shell. One Relay reads the console for the life of the process, so a key
// typed while no shell runs (between one shell's exit and the next one's
// start) is kept and given to the next shell instead of being read by a
// reader left over from the old one and lost.
type Relay struct {
	typed   atomic.Bool
	mu      sync.Mutex
	to      io.Writer
	pending []byte
}

// Run copies from the console until it fails.
func (r *Relay) Run(console io.Reader) error {
	buf := make([]byte, 256)
	for {
		n, err := console.Read(buf)
		if n > 0 {
			r.Input(buf[:n])
		}
		if err != nil {
			return err
		}
	}
}

// Input is what was typed: it goes to the attached shell, or waits for
// the next one.
func (r *Relay) Input(b []byte) {
	r.typed.Store(true)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.to != nil {
		if _, err := r.to.Write(b); err == nil {
			return
		}
	}
	r.pending = append(r.pending, b...)
}

// Attach makes w (a shell's pty) receive the input, first what waited.
func (r *Relay) Attach(w io.Writer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.to = w
	if len(r.pending) > 0 {
		if _, err := w.Write(r.pending); err == nil {
			r.pending = nil
		}
	}
}

// Detach stops sending input to the shell (call it before closing its pty).
func (r *Relay) Detach() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.to = nil
}

// Typed reports whether the admin has typed anything.
func (r *Relay) Typed() bool { return r.typed.Load() }
