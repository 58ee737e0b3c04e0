package nodes

import (
	"fmt"
	"net"
	"path"
	"strings"
)

// Master is one of several masters ([[master]]): the first is the primary,
// where builds are published; the others pull its signed sets
// (publish:pull). Every master answers every node's DHCP request with
// itself as next-server and in every URL, so a node boots entirely from
// whichever master answered first.
type Master struct {
	Name    string `toml:"name"`
	Address string `toml:"address"`
}

// Primary is the primary master's name: the first [[master]], or "" with
// a single master ([network] master).
func (inv *Inventory) Primary() string {
	if len(inv.Masters) == 0 {
		return ""
	}
	return inv.Masters[0].Name
}

// MasterByName finds a [[master]].
func (inv *Inventory) MasterByName(name string) (Master, bool) {
	for _, m := range inv.Masters {
		if m.Name == name {
			return m, true
		}
	}
	return Master{}, false
}

// HomeOf is the name of the node's home master: the one whose NFS server
// holds its root and its shared mounts (a per-node NFS root is written by
// the node and cannot be replicated): its master =, else the primary; ""
// with a single master.
func (inv *Inventory) HomeOf(nd Node) string {
	if nd.Master != "" {
		return nd.Master
	}
	return inv.Primary()
}

// HomeAddress is the address of the node's home master (the single
// master's without [[master]]).
func (inv *Inventory) HomeAddress(nd Node) string {
	if m, ok := inv.MasterByName(inv.HomeOf(nd)); ok {
		return m.Address
	}
	return inv.primaryAddress()
}

// primaryAddress is the primary's address, or the single master's. A
// master's own view (ForMaster) keeps it.
func (inv *Inventory) primaryAddress() string {
	if len(inv.Masters) > 0 {
		return inv.Masters[0].Address
	}
	return inv.Network.Master
}

// Self is the master this inventory renders for: ForMaster's, else the
// primary ("" with a single master).
func (inv *Inventory) Self() string {
	if inv.self != "" {
		return inv.self
	}
	return inv.Primary()
}

// homed says whether this master holds the node's root (and so exports
// it): always with a single master.
func (inv *Inventory) homed(nd Node) bool {
	return len(inv.Masters) == 0 || inv.HomeOf(nd) == inv.Self()
}

// ProvisionedHere says whether this master keeps the node's files
// (<root>/<ip>): an NFS node's root on its home master; a stateless
// node's identity on the primary, which publishes it as its overlay in
// the signed set every master serves.
func (inv *Inventory) ProvisionedHere(nd Node) bool {
	if len(inv.Masters) == 0 {
		return true
	}
	if inv.Stateless(nd) {
		return inv.Self() == inv.Primary()
	}
	return inv.homed(nd)
}

// ForMaster is the inventory as master name renders it: itself as
// next-server, in every URL and as the address its daemons listen on, and
// only the NFS roots of the nodes whose home it is.
func (inv *Inventory) ForMaster(name string) (*Inventory, error) {
	m, ok := inv.MasterByName(name)
	if !ok {
		return nil, fmt.Errorf("%s names no [[master]] %q (it has %s)", inv.file, name, strings.Join(inv.MasterNames(), ", "))
	}
	c := *inv
	c.Network.Master = m.Address
	c.self = name
	// unless the file names them, a node's router and first name server
	// are the master that answered it (the primary may be the one down)
	if _, stated := inv.stated["router"]; !stated {
		c.Network.Router = m.Address
	}
	if _, stated := inv.stated["dns"]; !stated {
		c.Network.DNS = []string{m.Address}
		for _, o := range inv.Masters {
			if o.Name != name {
				c.Network.DNS = append(c.Network.DNS, o.Address)
			}
		}
	}
	return &c, nil
}

// MasterNames are the [[master]] names, primary first.
func (inv *Inventory) MasterNames() []string {
	var out []string
	for _, m := range inv.Masters {
		out = append(out, m.Name)
	}
	return out
}

// RenderMasters is Render for every master: by name with [[master]]
// (each master's own view, ForMaster), or "" for the single master.
func (inv *Inventory) RenderMasters() (map[string]Files, error) {
	if len(inv.Masters) == 0 {
		f, err := inv.Render()
		return map[string]Files{"": f}, err
	}
	out := map[string]Files{}
	for _, m := range inv.Masters {
		v, err := inv.ForMaster(m.Name)
		if err != nil {
			return nil, err
		}
		if out[m.Name], err = v.Render(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// validateMasters checks [[master]] and the nodes' master =; add reports.
func (inv *Inventory) validateMasters(add func(where, format string, args ...any)) {
	names, addrs := map[string]int{}, map[string]int{}
	for i, m := range inv.Masters {
		where := inv.masterWhere(i)
		if !hostnameRe.MatchString(m.Name) {
			add(where, "name %q: want a host name (lower-case letters, digits, '-')", m.Name)
		}
		ip := net.ParseIP(m.Address).To4()
		switch {
		case ip == nil:
			add(where, "address %q: not an IPv4 address", m.Address)
		case inv.subnet != nil && !inv.subnet.Contains(ip):
			add(where, "address %s is outside subnet %s: every master answers the nodes' DHCP requests on their network", m.Address, inv.Network.Subnet)
		}
		if j, dup := names[m.Name]; dup {
			add(where, "name %s is also that of %s", m.Name, inv.masterWhere(j))
		}
		if j, dup := addrs[m.Address]; dup {
			add(where, "address %s is also that of %s", m.Address, inv.masterWhere(j))
		}
		names[m.Name], addrs[m.Address] = i, i
	}
	if len(inv.Masters) > 0 && inv.statedMaster != "" && inv.statedMaster != inv.Masters[0].Address {
		add("[network]", "master = %q, but the first [[master]] (%s, the primary) is %s: with [[master]] leave [network] master out", inv.statedMaster, inv.Masters[0].Name, inv.Masters[0].Address)
	}
	for i, nd := range inv.Nodes {
		if nd.Master == "" {
			continue
		}
		if len(inv.Masters) == 0 {
			add(inv.nodeWhere(i), "master = %q: the inventory names no [[master]]", nd.Master)
		} else if _, ok := inv.MasterByName(nd.Master); !ok {
			add(inv.nodeWhere(i), "master = %q: no [[master]] has that name (%s)", nd.Master, strings.Join(inv.MasterNames(), ", "))
		}
	}
	for i, nd := range inv.Nodes {
		if j, ok := addrs[nd.IP]; ok {
			add(inv.nodeWhere(i), "ip %s is master %s's", nd.IP, inv.Masters[j].Name)
		}
	}
}

// masterWhere names [[master]] i for a message, with its line when known.
func (inv *Inventory) masterWhere(i int) string {
	name := inv.Masters[i].Name
	if i < len(inv.masterLines) && len(inv.masterLines) == len(inv.Masters) {
		return fmt.Sprintf("[[master]] %d (%s, line %d)", i+1, name, inv.masterLines[i])
	}
	return fmt.Sprintf("[[master]] %d (%s)", i+1, name)
}

// MasterDir is where nodes:render writes a master's files under out:
// out/<name> with [[master]], out itself for the single master.
func MasterDir(out, name string) string {
	if name == "" {
		return out
	}
	return path.Join(out, name)
}

// PullInterval is how often a secondary's timer runs publish:pull: an
// unchanged pull fetches one signature file (~200 bytes).
const PullInterval = "30s"

// PullUnits are a secondary master's systemd units (systemd/ in its
// rendered files): a timer that runs publish:pull from the primary every
// PullInterval and at boot. None for the primary or a single master.
func (inv *Inventory) PullUnits() Files {
	if len(inv.Masters) < 2 || inv.Self() == inv.Primary() {
		return nil
	}
	from := "http://" + inv.Masters[0].Address + "/"
	return Files{
		"systemd/diskless-pull.service": inv.comment("#") +
			"# Install in /etc/systemd/system/ on " + inv.Self() + "; WorkingDirectory is this project's\n" +
			"# checkout there, /etc/diskless/primary.pub the primary's public key\n" +
			"# (keygen's .pub: only sets it signed are served here).\n" +
			"[Unit]\nDescription=diskless: pull the primary's signed boot files (" + from + ")\n" +
			"Wants=network-online.target\nAfter=network-online.target\n\n" +
			"# A stalled primary cannot hold the publish lock: each file's download\n" +
			"# gives up after 60 s without a byte, the whole run after 15 minutes.\n" +
			"[Service]\nType=oneshot\nWorkingDirectory=/opt/diskless\nTimeoutStartSec=15min\n" +
			"Environment=HOME=/root GOCACHE=/var/cache/diskless/go-build DISKLESS_ROOT=" + inv.Network.Root + " TRUSTED_KEY=/etc/diskless/primary.pub PUBLISH_NOWAIT=1\n" +
			"ExecStart=/usr/bin/env go run mage.go publish:pull from=" + from + "\n",
		"systemd/diskless-pull.timer": inv.comment("#") +
			"# systemctl enable --now diskless-pull.timer\n" +
			"[Unit]\nDescription=diskless: pull the primary's signed boot files every " + PullInterval + "\n\n" +
			"[Timer]\nOnBootSec=10s\nOnUnitActiveSec=" + PullInterval + "\nAccuracySec=1s\n\n" +
			"[Install]\nWantedBy=timers.target\n",
	}
}
