// Package nfstrace records what a node asks its NFS server while it boots
// and plays it back: a Recorder reads the node's Ethernet frames (a pcap
// file QEMU's filter-dump writes while a real QEMU node boots through the
// master's real daemons in the lab), follows its TCP and UDP streams to
// rpcbind, mountd and nfsd, decodes the ONC RPC calls and replies of
// MOUNT v3 and NFS v3 (handles named by LOOKUP, READDIRPLUS, CREATE and
// followed through RENAME), and writes a Trace: every operation in order,
// on which export and path, with the offsets, sizes and flags the node
// sent. Replay plays a Trace against a server by file handle, as the
// kernel's client did, with its own ONC RPC client (rpc.go says why not
// go-nfs-client's), from wherever its caller's thread is (a simulated
// node's network namespace).
//
// It decodes and replays; it boots nothing and starts no server.
package nfstrace

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
)

// Op is one call the node made.
type Op struct {
	// Proc is the NFS v3 procedure (GETATTR, LOOKUP, READ, ...) or
	// MNT for the mount.
	Proc string `json:"op"`
	// Export is the mounted export the call is on (as the node mounted
	// it); Path the object within it ("/" for the export's root, "" when
	// the file handle was never seen in a reply).
	Export string `json:"export"`
	Path   string `json:"path"`
	// Name is the entry a directory operation names (LOOKUP, CREATE, ...).
	Name string `json:"name,omitempty"`
	// To is where a RENAME moves the entry (a path in the same export),
	// and what a SYMLINK's link says.
	To string `json:"to,omitempty"`
	// Offset and Count are what READ, WRITE and COMMIT ask; Count of a
	// READ is what the server sent.
	Offset uint64 `json:"offset,omitempty"`
	Count  uint32 `json:"count,omitempty"`
	// Stable is how a WRITE asked the data kept: 0 UNSTABLE (a COMMIT
	// follows), 1 DATA_SYNC, 2 FILE_SYNC.
	Stable uint32 `json:"stable,omitempty"`
	// Mask is what an ACCESS asked; Dircount a READDIRPLUS's directory
	// bytes (its Count is the reply's most bytes, a READDIR's Count its
	// count).
	Mask     uint32 `json:"mask,omitempty"`
	Dircount uint32 `json:"dircount,omitempty"`
	// Status is the reply's NFS status (0: OK).
	Status uint32 `json:"status,omitempty"`
	// Call and Reply are the RPC messages' sizes in bytes (without record
	// marking).
	Call  int `json:"call_bytes"`
	Reply int `json:"reply_bytes"`
}

// Trace is a recorded boot's NFS traffic.
type Trace struct {
	// Source says what was recorded (the node, its image, the date).
	Source string `json:"source"`
	// Mounts are the exports the node mounted, in order; Kinds says what
	// each was on the recorded master: KindRoot, KindImage, KindHome or
	// KindShared followed by its mount point ("shared /opt").
	Mounts []string          `json:"mounts"`
	Kinds  map[string]string `json:"kinds,omitempty"`
	Ops    []Op              `json:"ops"`
}

// What a mount was on the recorded master.
const (
	KindRoot   = "root"
	KindImage  = "image"
	KindHome   = "home"
	KindShared = "shared"
)

// Stats sums a trace: calls by procedure, bytes read and written, and the
// RPC bytes each way.
type Stats struct {
	Calls      map[string]int `json:"calls"`
	Read       int64          `json:"read_bytes"`
	Written    int64          `json:"written_bytes"`
	CallBytes  int64          `json:"call_bytes"`
	ReplyBytes int64          `json:"reply_bytes"`
}

// Stats of t.
func (t *Trace) Stats() Stats {
	s := Stats{Calls: map[string]int{}}
	for _, op := range t.Ops {
		s.Calls[op.Proc]++
		s.CallBytes += int64(op.Call)
		s.ReplyBytes += int64(op.Reply)
		switch op.Proc {
		case "READ":
			s.Read += int64(op.Count)
		case "WRITE":
			s.Written += int64(op.Count)
		}
	}
	return s
}

// String is a one-line summary.
func (s Stats) String() string {
	var procs []string
	for p := range s.Calls {
		procs = append(procs, p)
	}
	sort.Strings(procs)
	out := ""
	for _, p := range procs {
		out += fmt.Sprintf("%s %d, ", p, s.Calls[p])
	}
	return fmt.Sprintf("%sread %d bytes, written %d bytes, RPC %d bytes out, %d in", out, s.Read, s.Written, s.CallBytes, s.ReplyBytes)
}

// Map is a copy of t with each export moved as exports says (an export
// it does not name is kept) and each op then given to f, which may change
// its path and name (the image's generation directory in another root).
func (t *Trace) Map(exports map[string]string, f func(op *Op)) *Trace {
	move := func(e string) string {
		if to, ok := exports[e]; ok {
			return to
		}
		return e
	}
	out := &Trace{Source: t.Source, Kinds: map[string]string{}}
	for _, m := range t.Mounts {
		out.Mounts = append(out.Mounts, move(m))
		if k, ok := t.Kinds[m]; ok {
			out.Kinds[move(m)] = k
		}
	}
	for _, op := range t.Ops {
		op.Export = move(op.Export)
		if f != nil {
			f(&op)
		}
		out.Ops = append(out.Ops, op)
	}
	return out
}

// MountOf is the first mount of a kind ("" when there is none).
func (t *Trace) MountOf(kind string) string {
	for _, m := range t.Mounts {
		if t.Kinds[m] == kind {
			return m
		}
	}
	return ""
}

// Write saves the trace as JSON.
func (t *Trace) Write(path string) error {
	data, err := json.MarshalIndent(t, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// Read loads a trace saved by Write.
func Read(path string) (*Trace, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var t Trace
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(t.Mounts) == 0 {
		return nil, fmt.Errorf("%s: a trace without a mount", path)
	}
	return &t, nil
}
