package nfstrace

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskless/diskless/pkg/testnfs"
)

// A trace plays against a real NFS v3 server (the go-nfs test server):
// the mount of the node's own export in the recorded one's place, the
// lookups, the reads of what the node read, a negative lookup, a listing,
// and the writes into the scratch file, never into the node's files.
func TestReplayAgainstAServer(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	hostname := strings.Repeat("node\n", 1000)
	os.WriteFile(filepath.Join(root, "etc", "hostname"), []byte(hostname), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "fstab"), []byte("# none\n"), 0o644)
	srv, err := testnfs.Start(root, "/diskless/10.0.2.16")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tr := &Trace{Mounts: []string{"/diskless/10.0.2.15"}, Ops: []Op{
		{Proc: "MNT", Export: "/diskless/10.0.2.15", Path: "/"},
		{Proc: "GETATTR", Export: "/diskless/10.0.2.15", Path: "/"},
		{Proc: "LOOKUP", Export: "/diskless/10.0.2.15", Path: "/", Name: "etc"},
		{Proc: "LOOKUP", Export: "/diskless/10.0.2.15", Path: "/etc", Name: "hostname"},
		{Proc: "READ", Export: "/diskless/10.0.2.15", Path: "/etc/hostname", Offset: 0, Count: 4096},
		{Proc: "READ", Export: "/diskless/10.0.2.15", Path: "/etc/hostname", Offset: 4096, Count: 904},
		{Proc: "LOOKUP", Export: "/diskless/10.0.2.15", Path: "/etc", Name: "nosuch"},
		{Proc: "LOOKUP", Export: "/diskless/10.0.2.15", Path: "/", Name: "gone", Status: 2},
		{Proc: "READDIRPLUS", Export: "/diskless/10.0.2.15", Path: "/etc"},
		{Proc: "WRITE", Export: "/diskless/10.0.2.15", Path: "/etc/fstab", Count: 3000},
		{Proc: "READ", Export: "/diskless/10.0.2.15", Path: "", Count: 100}, // never named: skipped
	}}
	res, err := Replay(context.Background(), tr, ReplayOptions{Server: "127.0.0.1", Port: srv.Port, Exports: map[string]string{"/diskless/10.0.2.15": "/diskless/10.0.2.16"}, Scratch: "/.replay-write", Machine: "test"})
	if err != nil {
		t.Fatal(err)
	}
	// the failed LOOKUP is made too (it fails again)
	if res.Read != int64(len(hostname)) || res.Written != 3000 || res.Calls != 10 || res.Lookups != 0 {
		t.Errorf("replayed %+v: want %d bytes read, 3000 written, 10 calls, no lookup of its own", res, len(hostname))
	}
	if data, _ := os.ReadFile(filepath.Join(root, "etc", "fstab")); string(data) != "# none\n" {
		t.Errorf("a replayed write changed the node's file: %q", data)
	}
	if st, err := os.Stat(filepath.Join(root, ".replay-write")); err != nil || st.Size() != 3000 {
		t.Errorf("scratch file: %v %v", st, err)
	}
	if got := srv.Mounts(); len(got) != 1 || got[0] != "/diskless/10.0.2.16" {
		t.Errorf("mounted %v", got)
	}
	// a mount the server refuses is an NFS error naming it
	tr.Ops[0].Export = "/elsewhere"
	tr.Mounts = []string{"/elsewhere"}
	if _, err := Replay(context.Background(), tr, ReplayOptions{Server: "127.0.0.1", Port: srv.Port}); err == nil || !strings.Contains(err.Error(), "NFS MNT /elsewhere") {
		t.Errorf("a refused mount: %v", err)
	}
}

// What the node made, removed and moved in its own directories is made,
// removed and moved again, so a later call finds what it found: a
// directory made then listed, a file created, written and renamed, then
// read by its new name, a symlink; played a second time into the same
// root (names already there, or gone), nothing fails.
func TestReplayChangesNames(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "var", "log"), 0o755)
	srv, err := testnfs.Start(root, "/diskless/n")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	e := "/diskless/n"
	tr := &Trace{Mounts: []string{e}, Ops: []Op{
		{Proc: "MNT", Export: e, Path: "/"},
		{Proc: "MKDIR", Export: e, Path: "/var/log", Name: "journal"},
		{Proc: "READDIRPLUS", Export: e, Path: "/var/log/journal"},
		{Proc: "CREATE", Export: e, Path: "/var/log/journal", Name: ".tmp"},
		{Proc: "WRITE", Export: e, Path: "/var/log/journal/.tmp", Count: 100},
		{Proc: "RENAME", Export: e, Path: "/var/log/journal", Name: ".tmp", To: "/var/log/journal/system.journal"},
		{Proc: "GETATTR", Export: e, Path: "/var/log/journal/system.journal"},
		{Proc: "SYMLINK", Export: e, Path: "/var/log", Name: "latest", To: "journal/system.journal"},
		{Proc: "READLINK", Export: e, Path: "/var/log/latest"},
		{Proc: "CREATE", Export: e, Path: "/var/log", Name: "lock"},
		{Proc: "REMOVE", Export: e, Path: "/var/log", Name: "lock"},
		{Proc: "LOOKUP", Export: e, Path: "/var/log", Name: "lock"},
	}}
	for run := 1; run <= 2; run++ {
		if _, err := Replay(context.Background(), tr, ReplayOptions{Server: "127.0.0.1", Port: srv.Port, Scratch: "/.replay-write", Machine: "test"}); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "var/log/journal/system.journal")); err != nil {
		t.Error(err)
	}
	if link, err := os.Readlink(filepath.Join(root, "var/log/latest")); err != nil || link != "journal/system.journal" {
		t.Errorf("symlink %q %v", link, err)
	}
	for _, gone := range []string{"var/log/journal/.tmp", "var/log/lock"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); err == nil {
			t.Errorf("%s is still there", gone)
		}
	}
}
