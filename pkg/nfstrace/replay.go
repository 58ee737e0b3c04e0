package nfstrace

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"
)

// ReplayOptions say where a trace is played.
type ReplayOptions struct {
	// Server is the NFS server's address (rpcbind answers there).
	Server string
	// Port, when set, is where mountd and nfsd both answer, asked
	// without rpcbind (the user-space test server).
	Port int
	// Exports maps a recorded export to the one to mount instead (the
	// recorded node's root to this node's); unmapped ones are mounted as
	// recorded.
	Exports map[string]string
	// Scratch is where writes go, a file name inside the first export
	// (the node's own root): a replayed write never changes a file the
	// recorded node changed (roots may share their files).
	Scratch string
	// Machine names the client in its AUTH_UNIX credential.
	Machine string
	// OnMount, when set, is called once the first export is mounted.
	OnMount func()
}

// Result of a replay.
type Result struct {
	Calls   int
	Read    int64
	Written int64
	// Mounted is when the first export was mounted, from the start.
	Mounted time.Duration
	// Lookups are the LOOKUPs made beyond the trace's, to find a handle
	// the node had another way; Redials the connections made again.
	Lookups, Redials int
}

// NFSError is a call the server refused or did not answer.
type NFSError struct {
	Op  Op
	Err error
}

func (e *NFSError) Error() string {
	return fmt.Sprintf("NFS %s %s%s: %v", e.Op.Proc, e.Op.Export, e.Op.Path, e.Err)
}
func (e *NFSError) Unwrap() error { return e.Err }

// Replay plays t against o.Server as the recorded node's kernel did: the
// mounts (rpcbind, mountd), then every NFS call in order on one
// connection, by file handle: each LOOKUP the node made is made (and its
// handle kept), each listing read with the sizes and continuation the
// node asked, each READ of the offset and size it read, each name it made,
// moved or removed made, moved or removed (in its own directories), and
// its writes, as stable as it asked, into o.Scratch (roots share files:
// a replayed write never changes one). SETATTR, LINK and MKNOD are not
// played. It stops at the first call the server fails that did not fail
// for the recorded node. Its sockets are made on the calling goroutine's
// thread only, so a caller in a network namespace replays from it.
func Replay(ctx context.Context, t *Trace, o ReplayOptions) (*Result, error) {
	r := &replayer{o: o, t: t, start: time.Now(), res: &Result{}, fh: map[string][]byte{}, listing: map[string]cont{}}
	r.deadline, _ = ctx.Deadline()
	defer r.close()
	for _, op := range t.Ops {
		if err := ctx.Err(); err != nil {
			return r.res, err
		}
		if err := r.play(op); err != nil {
			return r.res, &NFSError{op, err}
		}
	}
	if r.nfs != nil {
		r.res.Redials = r.nfs.Redials
	}
	return r.res, nil
}

// NFS v3 procedures and statuses the replay uses.
const (
	nfsGetattr     = 1
	nfsLookup      = 3
	nfsAccess      = 4
	nfsReadlink    = 5
	nfsRead        = 6
	nfsWrite       = 7
	nfsCreate      = 8
	nfsMkdir       = 9
	nfsSymlink     = 10
	nfsRemove      = 12
	nfsRmdir       = 13
	nfsRename      = 14
	nfsReaddir     = 16
	nfsReaddirplus = 17
	nfsFsstat      = 18
	nfsFsinfo      = 19
	nfsPathconf    = 20
	nfsCommit      = 21
	mountMnt       = 1

	nfsOK       = 0
	nfsNoEnt    = 2
	nfsExist    = 17
	nfsNotEmpty = 66
)

// NFSStatus is a status other than NFS3_OK.
type NFSStatus uint32

func (s NFSStatus) Error() string {
	if name, ok := map[NFSStatus]string{1: "NFS3ERR_PERM", 2: "NFS3ERR_NOENT", 5: "NFS3ERR_IO", 13: "NFS3ERR_ACCES", 17: "NFS3ERR_EXIST",
		20: "NFS3ERR_NOTDIR", 28: "NFS3ERR_NOSPC", 66: "NFS3ERR_NOTEMPTY", 70: "NFS3ERR_STALE", 10001: "NFS3ERR_BADHANDLE",
		10003: "NFS3ERR_BAD_COOKIE", 10008: "NFS3ERR_JUKEBOX"}[s]; ok {
		return name
	}
	return fmt.Sprintf("NFS status %d", uint32(s))
}

// cont is where a listing goes on: the cookie and verifier of the last
// entry this replay was sent.
type cont struct {
	cookie uint64
	verf   []byte
}

type replayer struct {
	o        ReplayOptions
	t        *Trace
	start    time.Time
	deadline time.Time
	res      *Result
	nfs      *rpcConn
	// fh holds the handles found, by export and path (key)
	fh      map[string][]byte
	listing map[string]cont
	scratch []byte
}

func key(export, p string) string { return export + "\x00" + p }

func (r *replayer) close() {
	if r.nfs != nil {
		r.nfs.Close()
	}
}

func (r *replayer) play(op Op) error {
	switch op.Proc {
	case "MNT":
		return r.mount(op)
	case "SETATTR", "LINK", "MKNOD":
		return nil // not played: a root's files are shared
	}
	if op.Path == "" || r.fh[key(op.Export, "/")] == nil {
		return nil // rpcbind and mountd's own calls, an object never named, before its mount
	}
	r.res.Calls++
	switch op.Proc {
	case "GETATTR", "FSSTAT", "FSINFO", "PATHCONF", "READLINK":
		proc := map[string]uint32{"GETATTR": nfsGetattr, "FSSTAT": nfsFsstat, "FSINFO": nfsFsinfo, "PATHCONF": nfsPathconf, "READLINK": nfsReadlink}[op.Proc]
		fh, err := r.handle(op.Export, op.Path)
		if err != nil {
			return err
		}
		_, err = r.call(op, proc, (&enc{}).opaque(fh).b)
		return err
	case "ACCESS":
		fh, err := r.handle(op.Export, op.Path)
		if err != nil {
			return err
		}
		mask := op.Mask
		if mask == 0 {
			mask = 0x1f
		}
		_, err = r.call(op, nfsAccess, (&enc{}).opaque(fh).u32(mask).b)
		return err
	case "LOOKUP":
		dir, err := r.handle(op.Export, op.Path)
		if err != nil {
			return err
		}
		x, err := r.call(op, nfsLookup, (&enc{}).opaque(dir).str(op.Name).b)
		if st, ok := err.(NFSStatus); ok && st == nfsNoEnt {
			return nil // not there for this node: a later call on it says so
		}
		if err != nil || x == nil {
			return err
		}
		r.fh[key(op.Export, path.Join(op.Path, op.Name))] = x.opaque()
		return x.err
	case "READ":
		fh, err := r.handle(op.Export, op.Path)
		if err != nil {
			return err
		}
		x, err := r.call(op, nfsRead, (&enc{}).opaque(fh).u64(op.Offset).u32(op.Count).b)
		if err != nil || x == nil {
			return err
		}
		x.skipPostOpAttr()
		r.res.Read += int64(x.u32())
		return x.err
	case "READDIR", "READDIRPLUS":
		return r.list(op)
	case "WRITE", "COMMIT":
		return r.write(op)
	case "MKDIR", "CREATE", "SYMLINK", "REMOVE", "RMDIR", "RENAME":
		return r.changeNames(op)
	}
	r.res.Calls--
	return nil
}

// call makes an NFS call for op and returns its results after the
// status; a status other than OK is an NFSStatus error, and no error (nil
// results) when the recorded node got one too.
func (r *replayer) call(op Op, proc uint32, args []byte) (*xdr, error) {
	res, err := r.nfs.call(progNFS, nfsVers, proc, args)
	if err != nil {
		return nil, err
	}
	x := &xdr{b: res}
	if st := x.u32(); st != nfsOK {
		if op.Status != 0 && op.Status < 1000 {
			return nil, nil // it failed for the recorded node too
		}
		return nil, NFSStatus(st)
	}
	return x, x.err
}

// mount mounts an export as the kernel does: rpcbind for mountd, MNT on
// a connection of its own; the first mount also reaches nfsd, on the one
// connection every export's calls share.
func (r *replayer) mount(op Op) error {
	export := op.Export
	if e, ok := r.o.Exports[export]; ok {
		export = e
	}
	port := r.o.Port
	var err error
	if port == 0 {
		if port, err = getport(r.o.Server, r.o.Machine, progMount, mountVers, r.deadline); err != nil {
			return fmt.Errorf("mountd: %w", err)
		}
	}
	m, err := dialRPC(hostPort(r.o.Server, port), r.o.Machine, r.deadline)
	if err != nil {
		return fmt.Errorf("mountd: %w", err)
	}
	res, err := m.call(progMount, mountVers, mountMnt, (&enc{}).str(export).b)
	m.Close()
	if err != nil {
		return fmt.Errorf("mountd: %w", err)
	}
	x := &xdr{b: res}
	if st := x.u32(); st != 0 {
		return fmt.Errorf("mountd refuses %s (status %d)", export, st)
	}
	fh := x.opaque()
	if x.err != nil {
		return x.err
	}
	if r.nfs == nil {
		port := r.o.Port
		if port == 0 {
			if port, err = getport(r.o.Server, r.o.Machine, progNFS, nfsVers, r.deadline); err != nil {
				return fmt.Errorf("nfsd: %w", err)
			}
		}
		if r.nfs, err = dialRPC(hostPort(r.o.Server, port), r.o.Machine, r.deadline); err != nil {
			return fmt.Errorf("nfsd: %w", err)
		}
	}
	r.fh[key(op.Export, "/")] = fh
	r.res.Calls++
	if r.res.Mounted == 0 {
		r.res.Mounted = time.Since(r.start)
		if r.o.OnMount != nil {
			r.o.OnMount()
		}
	}
	return nil
}

// handle is the handle of a path: kept from a LOOKUP, a listing or a
// mount, or else found by LOOKUPs from the nearest directory whose handle
// is kept (the node had it from a call before the recording, or the trace
// missed the reply).
func (r *replayer) handle(export, p string) ([]byte, error) {
	if fh := r.fh[key(export, p)]; fh != nil {
		return fh, nil
	}
	if p == "/" || p == "" {
		return nil, fmt.Errorf("%s is not mounted", export)
	}
	dir, err := r.handle(export, path.Dir(p))
	if err != nil {
		return nil, err
	}
	r.res.Lookups++
	res, err := r.nfs.call(progNFS, nfsVers, nfsLookup, (&enc{}).opaque(dir).str(path.Base(p)).b)
	if err != nil {
		return nil, err
	}
	x := &xdr{b: res}
	if st := x.u32(); st != nfsOK {
		return nil, fmt.Errorf("looking up %s: %w", p, NFSStatus(st))
	}
	fh := x.opaque()
	r.fh[key(export, p)] = fh
	return fh, x.err
}

// list reads a directory as the node did: a call with the node's cookie 0
// starts the listing, a later one goes on from where this replay's last
// reply ended; READDIRPLUS's handles are kept.
func (r *replayer) list(op Op) error {
	fh, err := r.handle(op.Export, op.Path)
	if err != nil {
		return err
	}
	k := key(op.Export, op.Path)
	c := cont{verf: make([]byte, 8)}
	if op.Offset != 0 {
		if next, ok := r.listing[k]; ok {
			c = next
		}
	}
	args := (&enc{}).opaque(fh).u64(c.cookie)
	args.b = append(args.b, c.verf...)
	plus := op.Proc == "READDIRPLUS"
	proc := uint32(nfsReaddir)
	// a trace written by hand may leave the sizes out: the kernel's then
	dircount, count := op.Dircount, op.Count
	if count == 0 {
		dircount, count = 32768, 32768
	}
	if plus {
		proc = nfsReaddirplus
		args.u32(dircount)
	}
	args.u32(count)
	x, err := r.call(op, proc, args.b)
	if err != nil || x == nil {
		return err
	}
	x.skipPostOpAttr()
	c.verf = append([]byte(nil), x.take(8)...)
	for x.err == nil && x.u32() == 1 {
		x.u64() // fileid
		name := x.str()
		c.cookie = x.u64()
		if plus {
			x.skipPostOpAttr()
			if x.u32() == 1 {
				if h := x.opaque(); name != "." && name != ".." && x.err == nil {
					r.fh[key(op.Export, path.Join(op.Path, name))] = append([]byte(nil), h...)
				}
			}
		}
	}
	r.listing[k] = c
	return x.err
}

// write plays a WRITE into the scratch file, at the node's offset, its
// size and stability, and a COMMIT on it.
func (r *replayer) write(op Op) error {
	if r.o.Scratch == "" {
		r.res.Calls--
		return nil
	}
	if r.scratch == nil {
		root := r.t.Mounts[0]
		dir := r.fh[key(root, "/")]
		if dir == nil {
			return fmt.Errorf("a write before %s is mounted", root)
		}
		name := strings.TrimPrefix(r.o.Scratch, "/")
		for _, proc := range []uint32{nfsLookup, nfsCreate} {
			args := (&enc{}).opaque(dir).str(name)
			if proc == nfsCreate {
				args.u32(0).u32(1).u32(0o644).u32(0).u32(0).u32(0).u32(0).u32(0) // UNCHECKED, mode 0644
			}
			res, err := r.nfs.call(progNFS, nfsVers, proc, args.b)
			if err != nil {
				return err
			}
			x := &xdr{b: res}
			if st := x.u32(); st != nfsOK {
				if proc == nfsCreate {
					return fmt.Errorf("creating %s: %w", r.o.Scratch, NFSStatus(st))
				}
				continue
			}
			if proc == nfsCreate && x.u32() != 1 {
				continue // no handle: look it up
			}
			r.scratch = append([]byte(nil), x.opaque()...)
			break
		}
		if r.scratch == nil {
			if _, err := r.handle(root, "/"+name); err != nil {
				return err
			}
			r.scratch = r.fh[key(root, "/"+name)]
		}
	}
	if op.Proc == "COMMIT" {
		_, err := r.call(op, nfsCommit, (&enc{}).opaque(r.scratch).u64(0).u32(0).b)
		return err
	}
	data := make([]byte, op.Count)
	_, err := r.call(op, nfsWrite, (&enc{}).opaque(r.scratch).u64(op.Offset).u32(op.Count).u32(op.Stable).opaque(data).b)
	if err == nil {
		r.res.Written += int64(op.Count)
	}
	return err
}

// changeNames plays a call that adds, removes or moves a name in the
// node's own directories (its files may be hard links shared with other
// roots; its directories are its own): what a later call looks up is then
// there, or gone, as for the recorded node. A name already there (a run
// before this one made it) or already gone is no error.
func (r *replayer) changeNames(op Op) error {
	dir, err := r.handle(op.Export, op.Path)
	if err != nil {
		return err
	}
	p := path.Join(op.Path, op.Name)
	args := (&enc{}).opaque(dir).str(op.Name)
	var proc uint32
	switch op.Proc {
	case "MKDIR":
		proc = nfsMkdir
		args.u32(1).u32(0o755).u32(0).u32(0).u32(0).u32(0).u32(0)
	case "CREATE":
		proc = nfsCreate
		args.u32(0).u32(1).u32(0o644).u32(0).u32(0).u32(0).u32(0).u32(0)
	case "SYMLINK":
		proc = nfsSymlink
		args.u32(0).u32(0).u32(0).u32(0).u32(0).u32(0).str(op.To)
	case "REMOVE":
		proc = nfsRemove
	case "RMDIR":
		proc = nfsRmdir
	case "RENAME":
		if op.To == "" {
			r.res.Calls--
			return nil // moved into a directory the recording never named
		}
		to, err := r.handle(op.Export, path.Dir(op.To))
		if err != nil {
			return err
		}
		proc = nfsRename
		args.opaque(to).str(path.Base(op.To))
	}
	res, err := r.nfs.call(progNFS, nfsVers, proc, args.b)
	if err != nil {
		return err
	}
	x := &xdr{b: res}
	st := x.u32()
	switch {
	case st == nfsOK && (proc == nfsMkdir || proc == nfsCreate || proc == nfsSymlink):
		if x.u32() == 1 {
			r.fh[key(op.Export, p)] = append([]byte(nil), x.opaque()...)
		}
	case st == nfsOK:
		// moved or removed: the handles under the old name are dropped
		// (a server whose handles name paths, as the test server's do,
		// makes them stale) and found again by LOOKUP when needed
		r.moved(op.Export, p)
	case st == nfsExist || st == nfsNoEnt || st == nfsNotEmpty && proc == nfsRmdir:
		// made, or removed, by a run before this one
		if proc != nfsMkdir && proc != nfsCreate && proc != nfsSymlink {
			r.moved(op.Export, p)
		}
	default:
		return NFSStatus(st)
	}
	return x.err
}

// moved drops the handles kept for from and what is under it.
func (r *replayer) moved(export, from string) {
	for k := range r.fh {
		e, p, _ := strings.Cut(k, "\x00")
		if e == export && (p == from || strings.HasPrefix(p, from+"/")) {
			delete(r.fh, k)
		}
	}
}
