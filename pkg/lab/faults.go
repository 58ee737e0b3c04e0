package lab

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/diskless/diskless/pkg/nodes"
)

// Faults: the daemons a storm takes down and brings back.
const (
	TFTP = "tftpd"
	HTTP = "nginx"
	NFS  = "ganesha"
)

// Kill stops one of the lab's servers as a crash would: ganesha.nfsd by
// SIGKILL (rpcbind stays), tftpd and nginx by SIGKILL of their process
// groups. Only a lab started by this process can be killed and restarted.
func (l *Lab) Kill(name string) error {
	if l.files == nil {
		return fmt.Errorf("%s: only the process that brought the lab up can restart its daemons", name)
	}
	switch name {
	case NFS:
		l.nfs.Kill()
		return nil
	case TFTP, HTTP:
		pid := l.State.PIDs[name]
		if pid == 0 {
			return fmt.Errorf("%s is not running", name)
		}
		killGroup(pid)
		// a killed nginx leaves its pid file, which a new one overwrites
		return nil
	}
	return fmt.Errorf("%s: the lab can kill %s, %s or %s", name, TFTP, HTTP, NFS)
}

// killGroup kills a daemon's process group and the daemon (SIGKILL) and
// waits until it is gone.
func killGroup(pid int) {
	syscall.Kill(-pid, syscall.SIGKILL)
	syscall.Kill(pid, syscall.SIGKILL)
	for alive(pid) {
		time.Sleep(20 * time.Millisecond)
	}
}

// Restart starts a killed server again with the configuration Up gave it
// and returns once it answers.
func (l *Lab) Restart(ctx context.Context, name string) error {
	switch name {
	case NFS:
		if err := l.nfs.Restart(); err != nil {
			return err
		}
		_, l.State.PIDs[NFS] = l.nfs.PIDs()
		l.account(l.State.CgroupPrefix+NFS, l.State.PIDs[NFS])
		return l.save()
	case TFTP, HTTP:
		start := map[string]func(context.Context, nodes.Files) error{TFTP: l.startTFTP, HTTP: l.startHTTP}[name]
		// its log is appended to (start opens it so)
		if err := start(ctx, l.files); err != nil {
			return err
		}
		return l.save()
	}
	return fmt.Errorf("%s: the lab can restart %s, %s or %s", name, TFTP, HTTP, NFS)
}
