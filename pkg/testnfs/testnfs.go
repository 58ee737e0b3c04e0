// Package testnfs is the boot tests' NFS server in user space
// (github.com/willscott/go-nfs): one directory under one export path on a
// loopback port, reached by a slirp guest at 10.0.2.2 without privileges
// or rpcbind, and the tiny test root (pkg/testroot) served as the HOWTO's
// per-slave root. The real master's NFS server is NFS-Ganesha
// (pkg/ganesha); this one needs no root and no namespace.
//
// It serves files; it boots nothing and judges nothing.
package testnfs

import (
	"context"
	"fmt"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	nfs "github.com/willscott/go-nfs"
	nfshelper "github.com/willscott/go-nfs/helpers"
)

// Server is a userspace NFSv3 server (github.com/willscott/go-nfs) on
// 127.0.0.1 serving one directory under one export path. A slirp guest
// reaches it as 10.0.2.2:Port; it needs no privileges and no rpcbind (the
// guest passes port= and mountport=).
type Server struct {
	Dir    string
	Export string
	Port   int
	ln     net.Listener
	done   chan struct{}
	mu     sync.Mutex
	mounts []string
}

var quietNFS sync.Once

// Start serves dir as export (e.g. "/diskless/10.0.2.15") on a free
// loopback port.
func Start(dir, export string) (*Server, error) { return StartOnPort(dir, export, 0) }

// StartOnPort is Start on a given port (0: any free one), e.g. to
// bring a stopped server back where a guest expects it.
func StartOnPort(dir, export string, port int) (*Server, error) {
	quietNFS.Do(func() { nfs.Log.SetLevel(nfs.ErrorLevel) })
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("NFS root %s: not a directory", dir)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, Export: path.Clean("/" + export), Port: ln.Addr().(*net.TCPAddr).Port, ln: ln, done: make(chan struct{})}
	h := &exportHandler{Handler: nfshelper.NewNullAuthHandler(changeFS{osfs.New(dir)}), srv: s}
	go func() {
		defer close(s.done)
		nfs.Serve(ln, nfshelper.NewCachingHandler(h, 1024))
	}()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() {
	s.ln.Close()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
}

// Mounts lists the export paths guests asked to mount, accepted or not.
func (s *Server) Mounts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.mounts...)
}

// CheckRefused returns an error when a guest asked for an export this
// server does not have: the kernel retries such a mount silently for
// about 95 s before it says anything.
func (s *Server) CheckRefused() error {
	for _, m := range s.Mounts() {
		if m != s.Export {
			return fmt.Errorf("the node asked the NFS server for %s, which is not exported (the server exports %s): wrong nfsroot path", m, s.Export)
		}
	}
	return nil
}

// GuestOptions is the nfsroot option string a slirp guest needs to reach
// this server: NFSv3 over TCP on our port, no lock manager (no rpcbind).
func (s *Server) GuestOptions() string {
	return fmt.Sprintf("vers=3,tcp,port=%d,mountport=%d,mountproto=tcp,nolock", s.Port, s.Port)
}

// exportHandler refuses mounts of any path but the export, like a real
// server with one line in /etc/exports.
type exportHandler struct {
	nfs.Handler
	srv *Server
}

func (h *exportHandler) Mount(ctx context.Context, conn net.Conn, req nfs.MountRequest) (nfs.MountStatus, billy.Filesystem, []nfs.AuthFlavor) {
	p := path.Clean("/" + strings.TrimRight(string(req.Dirpath), "\x00"))
	h.srv.mu.Lock()
	h.srv.mounts = append(h.srv.mounts, p)
	h.srv.mu.Unlock()
	status, fs, auth := h.Handler.Mount(ctx, conn, req)
	if p != h.srv.Export {
		// go-nfs v0.0.4 calls ToHandle on the filesystem even for a refused
		// mount (and crashes on nil); the handle is not sent to the client.
		return nfs.MountStatusErrNoEnt, fs, nil
	}
	return status, fs, auth
}

// changeFS adds billy.Change to osfs: without it the guest gets EIO when it
// creates a file ("Error applying attributes"), as go-nfs's osnfs example
// notes.
type changeFS struct{ billy.Filesystem }

func (fs changeFS) Chmod(name string, mode os.FileMode) error {
	return os.Chmod(fs.Join(fs.Root(), name), mode)
}
func (fs changeFS) Lchown(name string, uid, gid int) error {
	return os.Lchown(fs.Join(fs.Root(), name), uid, gid)
}
func (fs changeFS) Chown(name string, uid, gid int) error {
	return os.Chown(fs.Join(fs.Root(), name), uid, gid)
}
func (fs changeFS) Chtimes(name string, atime, mtime time.Time) error {
	return os.Chtimes(fs.Join(fs.Root(), name), atime, mtime)
}
