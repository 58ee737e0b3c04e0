package nodes

import (
	"fmt"
	"strings"
)

// Sizing is what a master needs beyond its daemons' defaults to boot
// every node of the inventory at once, each limit a default that lab:load
// found too small (README, "A thousand nodes"):
//
//   - the neighbour table: Linux keeps at most gc_thresh3 entries (1,024
//     by default) and drops packets to new neighbours past it ("neighbour
//     table overflow"); the master needs one per node, and gc_thresh1
//     (below which nothing is collected) above the node count so that
//     booting nodes keep theirs;
//   - the sockets' receive buffers (net.core.rmem_default, 208 KB):
//     tftpd-hpa forks a process per request and reads its one socket
//     between forks, dhcpd reads one packet socket; a room powering on
//     at once queues a request per node there, and what overflows is
//     lost (5,000 nodes: 38 requests dropped, 11 nodes without their
//     first file);
//   - nginx: one connection per iPXE node fetching, and two descriptors
//     each (the socket and the file it sends);
//   - dnsmasq: at most dhcp-lease-max leases (1,000 by default), static
//     ones included;
//   - NFS-Ganesha: at most RPC_Max_Connections connections (1,024 by
//     default, 10,000 at most: Ganesha refuses a larger value), one per
//     mounted node plus its short mount and rpcbind calls, and
//     Entries_HWMark cached file handles (100,000): a node's boot looks
//     up about 600 files of its own root.
type Sizing struct {
	Nodes                              int
	GCThresh1, GCThresh2, GCThresh3    int
	ReceiveBuffer                      int
	NginxConnections, NginxFiles       int
	DHCPLeaseMax                       int
	GaneshaConnections, GaneshaEntries int
}

// ganeshaMaxConnections is the largest RPC_Max_Connections Ganesha 4.3
// takes ("(20064) is out of range" for 5,000 nodes at 4 a node).
const ganeshaMaxConnections = 10000

// Sizing is the inventory's: for its number of nodes, never below the
// daemons' own defaults.
func (inv *Inventory) Sizing() Sizing {
	n := len(inv.Nodes)
	s := Sizing{
		Nodes:              n,
		GCThresh1:          max(128, n+64),
		GCThresh2:          max(512, 2*n+128),
		GCThresh3:          max(1024, 4*n+256),
		ReceiveBuffer:      max(212992, 2048*n),
		NginxConnections:   max(1024, 2*n+64),
		DHCPLeaseMax:       max(1000, 2*n),
		GaneshaConnections: min(ganeshaMaxConnections, max(1024, 2*n+64)),
		GaneshaEntries:     max(100000, 1000*n),
	}
	s.NginxFiles = 2 * s.NginxConnections
	return s
}

// sysctl is one setting of sysctl.d/60-diskless.conf.
type sysctl struct {
	key   string
	value int
}

// sysctls are the file's settings in its order: the neighbour tables
// (IPv4, IPv6), then the sockets' receive buffers.
func (s Sizing) sysctls() (neigh, buffers []sysctl) {
	for _, fam := range []string{"ipv4", "ipv6"} {
		neigh = append(neigh,
			sysctl{"net." + fam + ".neigh.default.gc_thresh1", s.GCThresh1},
			sysctl{"net." + fam + ".neigh.default.gc_thresh2", s.GCThresh2},
			sysctl{"net." + fam + ".neigh.default.gc_thresh3", s.GCThresh3})
	}
	return neigh, []sysctl{{"net.core.rmem_default", s.ReceiveBuffer}, {"net.core.rmem_max", s.ReceiveBuffer}}
}

// Sysctl is sysctl.d/60-diskless.conf: the neighbour tables, IPv4 and
// IPv6, and the sockets' receive buffers, sized for the nodes.
func (inv *Inventory) Sysctl() string {
	s := inv.Sizing()
	neigh, buffers := s.sysctls()
	var b strings.Builder
	b.WriteString(inv.comment("#"))
	fmt.Fprintf(&b, "# one neighbour entry per node: %d nodes (copy to /etc/sysctl.d/ and run sysctl --system)\n", s.Nodes)
	for _, c := range neigh {
		fmt.Fprintf(&b, "%s = %d\n", c.key, c.value)
	}
	b.WriteString("# a request per node queued on tftpd's and dhcpd's sockets when all power on at once\n")
	for _, c := range buffers {
		fmt.Fprintf(&b, "%s = %d\n", c.key, c.value)
	}
	return b.String()
}

// Sysctls are Sysctl's settings by key.
func (inv *Inventory) Sysctls() map[string]int {
	neigh, buffers := inv.Sizing().sysctls()
	out := map[string]int{}
	for _, c := range append(neigh, buffers...) {
		out[c.key] = c.value
	}
	return out
}

// NginxMain is nginx/diskless-main.conf: the main-context settings the
// site needs for the nodes. nginx takes them only at nginx.conf's top
// level and one events block: include this file there in place of
// nginx.conf's own events block.
func (inv *Inventory) NginxMain() string {
	s := inv.Sizing()
	var b strings.Builder
	b.WriteString(inv.comment("#"))
	fmt.Fprintf(&b, "# %d nodes: a connection each while iPXE fetches, two descriptors per connection;\n# include at nginx.conf's top level in place of its events block\n", s.Nodes)
	fmt.Fprintf(&b, "worker_rlimit_nofile %d;\nevents {\n\tworker_connections %d;\n}\n", s.NginxFiles, s.NginxConnections)
	return b.String()
}
