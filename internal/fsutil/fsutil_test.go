package fsutil

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteAtomicReplacesWholeFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "f")
	if err := WriteAtomic(p, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := WriteAtomic(p, []byte("two")); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if string(data) != "two" || st.Mode().Perm() != 0o644 {
		t.Errorf("%q %v", data, st.Mode())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".f.tmp-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestHashFileAndMatches(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("abc"), 0o644)
	sum, n, err := HashFile(p)
	// sha256("abc"), as sha256sum prints it
	want := "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if err != nil || n != 3 || sum != want || HashBytes([]byte("abc")) != want {
		t.Fatalf("HashFile = %s %d %v", sum, n, err)
	}
	if !Matches(p, 3, want) || Matches(p, 4, want) || Matches(p, 3, HashBytes([]byte("abd"))) || Matches(p+"x", 3, want) {
		t.Error("Matches accepts a wrong size, sum or path, or refuses the right one")
	}
}

func TestLock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	unlock, err := Lock(p, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(p, true, nil); err != ErrLocked {
		t.Errorf("second lock with noWait: %v, want ErrLocked", err)
	}
	got := make(chan struct{})
	waited := false
	go func() {
		u, err := Lock(p, false, func() { waited = true })
		if err == nil {
			u()
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("a held lock was taken")
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	<-got
	if !waited {
		t.Error("the waiter was not told it waits")
	}
}

func TestWriteReport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab")
	started := time.Date(2026, 12, 1, 1, 2, 3, 0, time.UTC)
	p, err := WriteReport(dir, "load", started, map[string]int{"nodes": 5})
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(dir, "load-20261201T010203Z.json") {
		t.Errorf("path %s", p)
	}
	for _, f := range []string{p, filepath.Join(dir, "load.json")} {
		if data, err := os.ReadFile(f); err != nil || string(data) != "{\n  \"nodes\": 5\n}\n" {
			t.Errorf("%s: %q %v", f, data, err)
		}
	}
}
