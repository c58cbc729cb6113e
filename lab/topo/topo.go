// Package topo builds and destroys the lab: one namespace per client, one LVS
// box, one server, joined by veth pairs and a bridge, all through netlink.
//
//	c1 198.18.0.11 ─┐                 LVS box                      server
//	c2 198.18.0.12 ─┼── bridge ── 198.18.0.1 │ 198.18.1.1 ──────── 198.18.1.2
//	cN …           ─┘
//
// Every link is created inside a lab namespace with its peer placed directly in
// another lab namespace, so nothing is ever created in the host namespace, not
// even for a moment. Addresses and MACs derive from node indices, so two runs
// of one scenario build byte-identical labs; namespaces isolate concurrent runs
// from each other, so they may reuse the same addresses.
package topo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Prefix starts the name of every namespace and link twlab creates.
const Prefix = "twlab-"

// NetnsDir is where named namespaces are bind-mounted (iproute2's
// convention). A variable only so that a test of cleanup --force can point
// it at a folder of its own: the real one holds other runs' labs.
var NetnsDir = "/run/netns"

// MaxClients bounds the client count; the client subnet and link names are
// laid out for it.
const MaxClients = 64

// Fixed lab addressing inside 198.18.0.0/15 (RFC 2544 benchmarking range).
var (
	ClientNet  = mustCIDR("198.18.0.0/24")
	LVSFront   = net.IPv4(198, 18, 0, 1).To4() // clients' gateway, on the bridge
	DefaultVIP = net.IPv4(198, 18, 0, 100).To4()
	ServerNet  = mustCIDR("198.18.1.0/24")
	LVSBack    = net.IPv4(198, 18, 1, 1).To4() // the SNAT address the server sees
	ServerAddr = net.IPv4(198, 18, 1, 2).To4()
	LabRange   = mustCIDR("198.18.0.0/15")
)

// ClientAddr is the address of client i (1-based).
func ClientAddr(i int) net.IP { return net.IPv4(198, 18, 0, byte(10+i)).To4() }

// Role says what a node is for; sysctls are addressed by role.
type Role string

const (
	RoleClient Role = "clients"
	RoleLVS    Role = "lvs"
	RoleServer Role = "server"
)

// Spec is what to build.
type Spec struct {
	RunID   string // short id, part of every name
	Clients int    // 1..MaxClients
	// VIP, when set, is added to the LVS bridge so that clients can dial it
	// (full-NAT mode).
	VIP net.IP
}

// Node is one namespace of the lab.
type Node struct {
	Name   string // c1…cN, lvs, server
	Role   Role
	Index  int    // client index (1-based); 0 for lvs and server
	NSName string // name under /run/netns
	NS     netns.NsHandle
	NL     *netlink.Handle // netlink handle bound to NS
	Addr   net.IP          // the node's lab address (for lvs: its back address)
	Link   string          // the node's main link name inside its namespace
}

// Lab is a built topology. Destroy must be called, also after a failed Build.
type Lab struct {
	ID      string
	Clients []*Node
	LVS     *Node
	Server  *Node
	// BridgeLink and BackLink are the LVS box's client-facing bridge and its
	// server-facing link.
	BridgeLink, BackLink string
	log                  *slog.Logger
	destroyed            bool
}

// Nodes lists every node, clients first.
func (l *Lab) Nodes() []*Node {
	out := append([]*Node(nil), l.Clients...)
	if l.LVS != nil {
		out = append(out, l.LVS)
	}
	if l.Server != nil {
		out = append(out, l.Server)
	}
	return out
}

// Node finds a node by name.
func (l *Lab) Node(name string) *Node {
	for _, n := range l.Nodes() {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// NSName is the /run/netns name of a node of run id.
func NSName(runID, node string) string { return Prefix + runID + "-" + node }

// LinkName is a link name; IFNAMSIZ allows 15 bytes, so runID and suffix stay short.
func LinkName(runID, suffix string) string { return Prefix + runID + "-" + suffix }

// mac derives a locally administered MAC from a role byte and an index, so
// neighbours can be installed statically and no ARP exchange adds latency or
// noise to the first connections of a cell.
func mac(kind, idx byte) net.HardwareAddr { return net.HardwareAddr{0x02, 0x74, 0x77, 0x00, kind, idx} }

const (
	macClient    = 0x01
	macLVSPort   = 0x02
	macBridge    = 0x03
	macLVSBack   = 0x04
	macServerEth = 0x05
)

// Build creates the lab. On error it returns the partly built lab together
// with the error; the caller destroys it either way.
func Build(ctx context.Context, spec Spec, log *slog.Logger) (*Lab, error) {
	if spec.Clients < 1 || spec.Clients > MaxClients {
		return nil, fmt.Errorf("clients: %d out of range 1..%d", spec.Clients, MaxClients)
	}
	// Destroy and cleanup remove only namespaces named after ids twlab
	// issues, and a longer id makes link names longer than IFNAMSIZ: a lab
	// built on any other id could be built but never removed.
	if !issuedID(spec.RunID) {
		return nil, fmt.Errorf("run id %q: not one twlab issues (4 hex digits; tests: t or k and 3)", spec.RunID)
	}
	if log == nil {
		log = slog.Default()
	}
	l := &Lab{ID: spec.RunID, log: log,
		BridgeLink: LinkName(spec.RunID, "br"), BackLink: LinkName(spec.RunID, "ls")}
	// A node's handle starts closed (-1), not 0: a node that a cancel kept
	// from being created must not look open, or Destroy closes fd 0.
	want := []*Node{{Name: "lvs", Role: RoleLVS, NS: netns.None()}, {Name: "server", Role: RoleServer, NS: netns.None()}}
	for i := 1; i <= spec.Clients; i++ {
		want = append(want, &Node{Name: fmt.Sprintf("c%d", i), Role: RoleClient, Index: i, NS: netns.None()})
	}
	// Namespaces are created in parallel: creating one is kernel work
	// (~0.4 ms each here) that two cores can share.
	err := parallel(ctx, len(want), func(i int) error { return newNode(spec.RunID, want[i]) })
	// Every namespace that exists goes into the lab, so that Destroy finds it.
	for _, n := range want {
		if !n.NS.IsOpen() {
			continue
		}
		switch n.Role {
		case RoleLVS:
			l.LVS = n
		case RoleServer:
			l.Server = n
		default:
			l.Clients = append(l.Clients, n)
		}
	}
	if err != nil {
		return l, err
	}
	if err := l.wire(spec); err != nil {
		return l, err
	}
	if err := l.waitUp(ctx, 3*time.Second); err != nil {
		return l, err
	}
	return l, nil
}

// nodeWorkers bounds how many namespaces are created at once.
var nodeWorkers = max(2, 2*runtime.GOMAXPROCS(0))

// parallel runs f(0) … f(n-1) on up to nodeWorkers goroutines and returns
// the first error.
func parallel(ctx context.Context, n int, f func(i int) error) error {
	var next atomic.Int64
	errs := make([]error, n)
	var wg sync.WaitGroup
	for range min(n, nodeWorkers) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := ctx.Err(); err != nil {
					errs[i] = err
					continue
				}
				errs[i] = f(i)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// newNode creates n's namespace and a netlink handle bound to it, and sets
// lo up. On error n keeps what was created, for Destroy.
func newNode(runID string, n *Node) error {
	n.NSName = NSName(runID, n.Name)
	n.NS = netns.None()
	// The netlink socket is opened, and lo set up, on the thread that has
	// just created the namespace: no second switch into it per node.
	h, err := netnsutil.NewNamedWith(n.NSName, func() error {
		// NETLINK_ROUTE only: the default also opens XFRM, which needs a
		// module that minimal kernels lack.
		nlh, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("netlink handle in %s: %w", n.NSName, err)
		}
		n.NL = nlh
		// lo is ifindex 1 in every new namespace (LOOPBACK_IFINDEX).
		if err := nlh.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1, Name: "lo"}}); err != nil {
			return fmt.Errorf("%s: set lo up: %w", n.Name, err)
		}
		return nil
	})
	if h.IsOpen() {
		n.NS = h
	}
	return err
}

// waitUp waits until every lab link is operationally up. A veth reports
// carrier a moment after both ends are set up; a SYN sent before that is
// lost and costs the first connection a 1 s retransmit (seen in about 2 of
// 100 fresh labs).
func (l *Lab) waitUp(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, n := range l.Nodes() {
		links, err := n.NL.LinkList()
		if err != nil {
			return fmt.Errorf("%s: list links: %w", n.Name, err)
		}
		for _, lk := range links {
			name := lk.Attrs().Name
			if !strings.HasPrefix(name, Prefix) {
				continue
			}
			for {
				cur, err := n.NL.LinkByName(name)
				if err != nil {
					return fmt.Errorf("%s: %s: %w", n.Name, name, err)
				}
				if st := cur.Attrs().OperState; st == netlink.OperUp || st == netlink.OperUnknown {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("%s: link %s not up after %s (state %s)", n.Name, name, limit, cur.Attrs().OperState)
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
	}
	return nil
}

func (l *Lab) wire(spec Spec) error {
	lvs, srv := l.LVS, l.Server

	// ip link add twlab-ID-br type bridge; ip addr add 198.18.0.1/24 dev …
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: l.BridgeLink, HardwareAddr: mac(macBridge, 1)}}
	if err := lvs.NL.LinkAdd(br); err != nil {
		return fmt.Errorf("lvs: add bridge %s: %w", l.BridgeLink, err)
	}
	brLink, err := lvs.NL.LinkByName(l.BridgeLink)
	if err != nil {
		return fmt.Errorf("lvs: find bridge: %w", err)
	}
	if err := addAddr(lvs.NL, brLink, LVSFront, 24); err != nil {
		return fmt.Errorf("lvs: %w", err)
	}
	if spec.VIP != nil {
		if err := addAddr(lvs.NL, brLink, spec.VIP, 32); err != nil {
			return fmt.Errorf("lvs: vip: %w", err)
		}
	}
	if err := lvs.NL.LinkSetUp(brLink); err != nil {
		return fmt.Errorf("lvs: bridge up: %w", err)
	}

	for _, c := range l.Clients {
		port := LinkName(l.ID, fmt.Sprintf("v%d", c.Index))
		c.Link = LinkName(l.ID, fmt.Sprintf("c%d", c.Index))
		c.Addr = ClientAddr(c.Index)
		// ip -n lvs link add PORT type veth peer name CLINK netns CLIENT
		if err := addVeth(lvs.NL, port, mac(macLVSPort, byte(c.Index)), c.Link, mac(macClient, byte(c.Index)), c.NS); err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		pl, err := lvs.NL.LinkByName(port)
		if err != nil {
			return fmt.Errorf("lvs: find %s: %w", port, err)
		}
		if err := lvs.NL.LinkSetMaster(pl, brLink); err != nil {
			return fmt.Errorf("lvs: enslave %s: %w", port, err)
		}
		if err := lvs.NL.LinkSetUp(pl); err != nil {
			return fmt.Errorf("lvs: %s up: %w", port, err)
		}
		cl, err := c.NL.LinkByName(c.Link)
		if err != nil {
			return fmt.Errorf("%s: find %s: %w", c.Name, c.Link, err)
		}
		if err := addAddr(c.NL, cl, c.Addr, 24); err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		if err := c.NL.LinkSetUp(cl); err != nil {
			return fmt.Errorf("%s: link up: %w", c.Name, err)
		}
		// ip route add default via 198.18.0.1
		if err := c.NL.RouteAdd(&netlink.Route{LinkIndex: cl.Attrs().Index, Gw: LVSFront}); err != nil {
			return fmt.Errorf("%s: default route: %w", c.Name, err)
		}
		if err := addNeigh(c.NL, cl, LVSFront, mac(macBridge, 1)); err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		if spec.VIP != nil {
			if err := addNeigh(c.NL, cl, spec.VIP, mac(macBridge, 1)); err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
		}
		if err := addNeigh(lvs.NL, brLink, c.Addr, mac(macClient, byte(c.Index))); err != nil {
			return fmt.Errorf("lvs: %w", err)
		}
	}

	srv.Link = LinkName(l.ID, "sl")
	srv.Addr = ServerAddr
	lvs.Link = l.BackLink
	lvs.Addr = LVSBack
	if err := addVeth(lvs.NL, l.BackLink, mac(macLVSBack, 1), srv.Link, mac(macServerEth, 1), srv.NS); err != nil {
		return fmt.Errorf("lvs-server link: %w", err)
	}
	back, err := lvs.NL.LinkByName(l.BackLink)
	if err != nil {
		return fmt.Errorf("lvs: find %s: %w", l.BackLink, err)
	}
	if err := addAddr(lvs.NL, back, LVSBack, 24); err != nil {
		return fmt.Errorf("lvs: %w", err)
	}
	if err := lvs.NL.LinkSetUp(back); err != nil {
		return fmt.Errorf("lvs: back link up: %w", err)
	}
	if err := addNeigh(lvs.NL, back, ServerAddr, mac(macServerEth, 1)); err != nil {
		return fmt.Errorf("lvs: %w", err)
	}
	sl, err := srv.NL.LinkByName(srv.Link)
	if err != nil {
		return fmt.Errorf("server: find %s: %w", srv.Link, err)
	}
	if err := addAddr(srv.NL, sl, ServerAddr, 24); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if err := srv.NL.LinkSetUp(sl); err != nil {
		return fmt.Errorf("server: link up: %w", err)
	}
	if err := addNeigh(srv.NL, sl, LVSBack, mac(macLVSBack, 1)); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	// Without SNAT the server would answer clients directly; the route lets a
	// scenario turn NAT off and still get replies through the box.
	if err := srv.NL.RouteAdd(&netlink.Route{LinkIndex: sl.Attrs().Index, Dst: ClientNet, Gw: LVSBack}); err != nil {
		return fmt.Errorf("server: route to clients: %w", err)
	}
	return nil
}

func addVeth(h *netlink.Handle, name string, hw net.HardwareAddr, peer string, peerHW net.HardwareAddr, peerNS netns.NsHandle) error {
	v := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: name, HardwareAddr: hw, TxQLen: 1000},
		PeerName:         peer,
		PeerHardwareAddr: peerHW,
		PeerNamespace:    netlink.NsFd(int(peerNS)),
	}
	if err := h.LinkAdd(v); err != nil {
		return fmt.Errorf("add veth %s/%s: %w", name, peer, err)
	}
	return nil
}

func addAddr(h *netlink.Handle, link netlink.Link, ip net.IP, bits int) error {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, 32)}}
	if err := h.AddrAdd(link, a); err != nil {
		return fmt.Errorf("add %s/%d on %s: %w", ip, bits, link.Attrs().Name, err)
	}
	return nil
}

func addNeigh(h *netlink.Handle, link netlink.Link, ip net.IP, hw net.HardwareAddr) error {
	n := &netlink.Neigh{LinkIndex: link.Attrs().Index, Family: unix.AF_INET,
		State: netlink.NUD_PERMANENT, IP: ip, HardwareAddr: hw}
	if err := h.NeighSet(n); err != nil {
		return fmt.Errorf("neighbour %s on %s: %w", ip, link.Attrs().Name, err)
	}
	return nil
}

// Destroy removes everything Build created; it is idempotent and keeps going
// past errors so that one failure does not leave the rest behind. Deleting a
// namespace takes its links with it once the last reference (our handles and
// sockets) is gone.
func (l *Lab) Destroy() error {
	if l == nil || l.destroyed {
		return nil
	}
	l.destroyed = true
	var errs []error
	for _, n := range l.Nodes() {
		if n.NL != nil {
			n.NL.Close()
		}
		if n.NS.IsOpen() {
			n.NS.Close()
		}
		if err := DeleteNamespace(n.NSName); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ErrShadowed marks a namespace file hidden under a later mount of /run/netns.
var ErrShadowed = errors.New("hidden under a later mount of " + NetnsDir + " (something, e.g. an `ip netns add`, bind-mounted it while this lab was up); when no lab is up, run `umount " + NetnsDir + "` and clean up again")

// DeleteNamespace unmounts and removes a named namespace; a missing one is
// not an error.
func DeleteNamespace(name string) error {
	if _, ok := RunIDOf(name); !ok {
		return fmt.Errorf("refusing to delete namespace %q: not a name twlab gives (twlab-<id>-<node>)", name)
	}
	p := filepath.Join(NetnsDir, name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", p, err)
	}
	err := os.Remove(p)
	if errors.Is(err, unix.EBUSY) {
		// Still a mount point: mounted twice, or mounted on a dentry that a
		// later mount of /run/netns hides. One more lazy unmount, then say
		// which it is.
		if uerr := unix.Unmount(p, unix.MNT_DETACH); errors.Is(uerr, unix.EINVAL) {
			return fmt.Errorf("%s: %w", name, ErrShadowed)
		}
		err = os.Remove(p)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// ListNamespaces returns the names under /run/netns that twlab gives (see
// RunIDOf).
func ListNamespaces() ([]string, error) {
	ents, err := os.ReadDir(NetnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if _, ok := RunIDOf(e.Name()); ok {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// RunIDOf extracts the run id from a twlab namespace name ("twlab-ab12-c1").
// Only names twlab issues qualify: a run's id is 4 hex digits, a test lab's
// "t" and a detection's "k" plus 3, and the node a short name of letters,
// digits and dashes. A user's own "twlab-dev-server" is not twlab's, and
// cleanup (which every run starts with) must never take it for a dead run.
func RunIDOf(nsName string) (string, bool) {
	rest, ok := strings.CutPrefix(nsName, Prefix)
	if !ok {
		return "", false
	}
	id, node, ok := strings.Cut(rest, "-")
	if !ok || !issuedID(id) || node == "" || len(node) > 32 {
		return "", false
	}
	for _, r := range node {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return "", false
		}
	}
	// A run's nodes are lvs, server and c1…: a user's "twlab-cafe-test"
	// has a hex word where the id goes and is still not a run's.
	if id[0] != 't' && id[0] != 'k' && !runNode(node) {
		return "", false
	}
	return id, true
}

// runNode tells a node name a run's lab has: lvs, server, c1 … cMaxClients.
func runNode(node string) bool {
	if node == "lvs" || node == "server" {
		return true
	}
	n, ok := strings.CutPrefix(node, "c")
	if !ok || n == "" || n[0] == '0' || len(n) > 3 {
		return false
	}
	for _, r := range n {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// issuedID tells an id twlab makes: 4 hex digits (runstate.NewRunID), or
// 't' (test labs) or 'k' (kernel detection) and 3 hex digits.
func issuedID(id string) bool {
	if len(id) != 4 {
		return false
	}
	if id[0] == 't' || id[0] == 'k' {
		id = id[1:]
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

func mustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}
