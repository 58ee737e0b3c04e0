package fallback

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// The background retries and the main loop mount at the same time: the
// Mounter serialises them, a hanging mount is waited for by the next call
// and its late success is used, and -race sees no shared state unguarded.
func TestMounterSerialisesAndReusesALateMount(t *testing.T) {
	m := &Mounter{Timeout: 50 * time.Millisecond}
	release := make(chan struct{})
	started := 0
	var mu sync.Mutex
	slow := func() error {
		mu.Lock()
		started++
		mu.Unlock()
		<-release
		return nil
	}
	if err := m.Mount("srv:/a", slow, func() {}); err == nil || !strings.Contains(err.Error(), "no answer within") {
		t.Fatalf("first mount: %v", err)
	}
	if !m.Busy() {
		t.Error("a hanging mount is not remembered")
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = m.Mount("srv:/a", slow, func() {})
			_ = m.Busy()
		}(i)
	}
	time.Sleep(20 * time.Millisecond)
	close(release) // the kernel's mount finally succeeds
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		}
	}
	if ok != len(errs) {
		t.Errorf("after the late mount worked, %d of %d calls succeeded: %v", ok, len(errs), errs)
	}
	mu.Lock()
	defer mu.Unlock()
	// the first call's mount, then at most the one started by the call
	// that found the late mount already consumed
	if started > 1+len(errs) {
		t.Errorf("%d mounts started", started)
	}
}

func TestMounterReportsAFailedMount(t *testing.T) {
	m := &Mounter{Timeout: time.Second}
	if err := m.Mount("srv:/a", func() error { return errors.New("permission denied") }, func() {}); err == nil || err.Error() != "permission denied" {
		t.Errorf("failed mount: %v", err)
	}
	if m.Busy() {
		t.Error("a finished mount is still in flight")
	}
}

// A late mount of another source (the image, while the root is wanted) is
// undone, never taken for the one asked for, which is then mounted.
func TestMounterUndoesALateMountOfAnotherSource(t *testing.T) {
	m := &Mounter{Timeout: 50 * time.Millisecond}
	release := make(chan struct{})
	undone := false
	if err := m.Mount("srv:/images/debian", func() error { <-release; return nil }, func() { undone = true }); err == nil {
		t.Fatal("the hanging mount returned")
	}
	close(release)
	mounted := false
	if err := m.Mount("srv:/diskless/10.0.0.5", func() error { mounted = true; return nil }, func() {}); err != nil {
		t.Fatal(err)
	}
	if !undone || !mounted || m.Busy() {
		t.Errorf("late image mount undone %v, root mounted %v, busy %v", undone, mounted, m.Busy())
	}
}

// A key typed between one shell's exit and the next shell's start reaches
// the next shell.
func TestRelayKeepsTheKeyTypedBetweenShells(t *testing.T) {
	var r Relay
	console, typing := io.Pipe()
	go r.Run(console)
	var first, second bytes.Buffer
	var mu sync.Mutex
	w := func(b *bytes.Buffer) io.Writer {
		return writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return b.Write(p) })
	}
	read := func(b *bytes.Buffer) string { mu.Lock(); defer mu.Unlock(); return b.String() }
	r.Attach(w(&first))
	typing.Write([]byte("ls\r"))
	for deadline := time.Now().Add(5 * time.Second); read(&first) != "ls\r" && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	r.Detach() // the first shell exited
	typing.Write([]byte("e"))
	r.Attach(w(&second))
	typing.Write([]byte("cho ok\r"))
	typing.Close()
	for deadline := time.Now().Add(5 * time.Second); read(&second) != "echo ok\r" && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if read(&first) != "ls\r" || read(&second) != "echo ok\r" {
		t.Errorf("first shell got %q, second %q", read(&first), read(&second))
	}
	if !r.Typed() {
		t.Error("Typed is false after typing")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
