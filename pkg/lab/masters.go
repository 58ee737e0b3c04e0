package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/diskless/diskless/internal/netns"
)

// Replica is a secondary master of the lab ([[master]] after the first)
// as Options.Fill gets it: its DISKLESS_ROOT to fill, the primary's
// address, and an HTTP client whose connections leave from the
// secondary's own address (the primary's nginx serves the peer masters
// what it serves a node only to that node: the overlays).
type Replica struct {
	Name, Address, Root string
	Primary             string
	Client              *http.Client
}

// secondaryIface is a secondary's port on the bridge, in its namespace.
const secondaryIface = "lab0"

// secondaryNS is the namespace of a secondary master.
func secondaryNS(name string) string { return NetNS + "-" + name }

// upSecondaries brings up every master after the first in a namespace of
// its own, joined to the bridge by a veth pair, its root filled by
// Options.Fill, its daemons started with the files rendered for it
// (nodes.Inventory.ForMaster: itself as next-server and in every URL).
func (l *Lab) upSecondaries(ctx context.Context) error {
	inv := l.o.Inventory
	if len(inv.Masters) < 2 {
		return nil
	}
	for i, m := range inv.Masters[1:] {
		view, err := inv.ForMaster(m.Name)
		if err != nil {
			return err
		}
		o := l.o
		o.Dir = filepath.Join(l.o.Dir, "masters", m.Name)
		o.Root = filepath.Join(o.Dir, "root")
		// its own DISKLESS_ROOT (on a machine of its own, the same path
		// as the primary's): what its nginx, tftpd and Ganesha serve
		view.Network.Root = o.Root
		o.Inventory = view
		s := &Lab{o: o, log: l.log.With("master", m.Name),
			State: State{NetNS: secondaryNS(m.Name), DHCP: o.DHCP, PIDs: map[string]int{}, Started: time.Now(), Root: o.Root, Master: m.Address, Name: m.Name, Dir: o.Dir, CgroupPrefix: m.Name + "."}}
		// on the list before anything is made: Down removes what was
		l.secondaries = append(l.secondaries, s)
		removeLogs(o.Dir)
		if err := os.MkdirAll(o.Root, 0o755); err != nil {
			return err
		}
		if err := s.secondaryNetwork(fmt.Sprintf("dlm%d", i+1), m.Address); err != nil {
			return fmt.Errorf("master %s: %w", m.Name, err)
		}
		if err := l.fill(ctx, s, l.o.Fill); err != nil {
			return err
		}
		if err := s.checkAccess(); err != nil {
			return fmt.Errorf("master %s: %w", m.Name, err)
		}
		files, err := view.Render()
		if err != nil {
			return err
		}
		s.files = files
		if err := s.startDaemons(ctx, files); err != nil {
			return fmt.Errorf("master %s: %w", m.Name, err)
		}
		s.State.Ready = time.Since(s.State.Started).Seconds()
	}
	return nil
}

// fill fills secondary s's root from the primary (l) with fill.
func (l *Lab) fill(ctx context.Context, s *Lab, fill func(context.Context, Replica) error) error {
	start := time.Now()
	if err := fill(ctx, Replica{Name: s.State.Name, Address: s.State.Master, Root: s.o.Root, Primary: l.State.Master, Client: s.HTTPClient()}); err != nil {
		return fmt.Errorf("master %s: filling %s from %s: %w", s.State.Name, s.o.Root, l.State.Master, err)
	}
	l.log.Info("secondary master filled", "master", s.State.Name, "root", s.o.Root, "seconds", fmt.Sprintf("%.1f", time.Since(start).Seconds()))
	return nil
}

// Refill fills every secondary's root again from the primary, one after
// the other (what each secondary's timer does after a publish).
func (l *Lab) Refill(ctx context.Context, fill func(context.Context, Replica) error) error {
	for _, s := range l.secondaries {
		if err := l.fill(ctx, s, fill); err != nil {
			return err
		}
	}
	return nil
}

// secondaryNetwork makes a secondary's namespace and its port on the
// bridge (port, in the primary's namespace) with the master's address.
func (l *Lab) secondaryNetwork(port, addr string) error {
	_, subnet, err := net.ParseCIDR(l.o.Inventory.Network.Subnet)
	if err != nil {
		return err
	}
	ones, _ := subnet.Mask.Size()
	return ipAll([][]string{
		{"netns", "add", l.namespace()},
		{"-n", l.namespace(), "link", "set", "lo", "up"},
		{"-n", NetNS, "link", "add", port, "type", "veth", "peer", "name", secondaryIface, "netns", l.namespace()},
		{"-n", NetNS, "link", "set", port, "master", Bridge},
		{"-n", NetNS, "link", "set", port, "up"},
		{"-n", l.namespace(), "addr", "add", fmt.Sprintf("%s/%d", addr, ones), "dev", secondaryIface},
		{"-n", l.namespace(), "link", "set", secondaryIface, "up"},
	})
}

// HTTPClient is a client whose connections are made in the master's
// namespace (from its address).
func (l *Lab) HTTPClient() *http.Client {
	path := l.nsPath()
	return &http.Client{Transport: &http.Transport{
		ResponseHeaderTimeout: 30 * time.Second,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return netns.Do(path, func() (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			})
		},
	}}
}

// MasterInfo is one master of a running lab.
type MasterInfo struct {
	Name, Address string
	// CgroupPrefix starts its daemons' names in CPU and PeakMemory.
	CgroupPrefix string
}

// Masters are the lab's masters, the primary first (one, named "", for
// a single master).
func (l *Lab) Masters() []MasterInfo {
	out := []MasterInfo{{Name: l.State.Name, Address: l.State.Master}}
	for _, s := range l.secondaries {
		out = append(out, MasterInfo{Name: s.State.Name, Address: s.State.Master, CgroupPrefix: s.State.CgroupPrefix})
	}
	return out
}

// Secondary is the running secondary master name.
func (l *Lab) Secondary(name string) (*Lab, bool) {
	for _, s := range l.secondaries {
		if s.State.Name == name {
			return s, true
		}
	}
	return nil, false
}

// Root is the DISKLESS_ROOT this master serves.
func (l *Lab) Root() string { return l.o.Root }

// KillMaster kills every daemon of the master named (the primary's name,
// or a secondary's) as a lost machine stops answering: each by SIGKILL,
// never restarted. Its address stays on the bridge (connections are
// refused, not left unanswered).
func (l *Lab) KillMaster(name string) error {
	m := l
	if name != l.State.Name {
		var ok bool
		if m, ok = l.Secondary(name); !ok {
			return fmt.Errorf("the lab has no master %q", name)
		}
	}
	if m.files == nil {
		return fmt.Errorf("master %s: only the process that brought the lab up can kill its daemons", name)
	}
	for daemon, pid := range m.State.PIDs {
		if pid > 0 {
			killGroup(pid)
		}
		// gone: Down must not signal a number another process may get
		m.State.PIDs[daemon] = 0
	}
	return l.save()
}

// downSecondaries stops the secondaries' daemons and removes their
// namespaces: those this process knows, and any left by a lab whose
// state is lost.
func (l *Lab) downSecondaries() error {
	for _, s := range l.secondaries {
		for _, pid := range s.State.PIDs {
			if pid > 0 {
				stop(pid)
			}
		}
	}
	l.secondaries = nil
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil // no ip: nothing was made
	}
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], NetNS+"-") {
			continue
		}
		killIn(f[0])
		if out, err := exec.Command("ip", "netns", "delete", f[0]).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns delete %s: %v: %s", f[0], err, out))
		}
	}
	return errors.Join(errs...)
}
