// Package nat programs the LVS box: nftables NAT in the box's namespace that
// makes every client one host to the server, as behind an LVS full-NAT or a
// NAT gateway. The whole table is built in one batch and flushed once.
package nat

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/twlab/twlab/lab/spec"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TableName is the nftables table twlab owns inside a lab namespace.
const TableName = "twlab"

// Mode is how clients reach the server (defined in spec, which the
// scenario decoder shares).
type Mode = spec.LVSMode

const (
	ModeSNAT    = spec.LVSSNAT
	ModeFullNAT = spec.LVSFullNAT
	ModeRoute   = spec.LVSRoute
)

// Config is the NAT to apply on the box.
type Config struct {
	Mode      Mode
	OutLink   string // the box's server-facing link
	SNATAddr  net.IP
	PortMin   uint16 // 0,0 = let the kernel choose
	PortMax   uint16
	Random    bool // NF_NAT_RANGE_PROTO_RANDOM_FULLY
	VIP       net.IP
	Server    net.IP
	PortsFrom uint16 // server ports DNATed in full-NAT mode
	PortsTo   uint16
}

// Apply installs the NAT table in ns. The equivalent nft script:
//
//	table ip twlab {
//	  chain prerouting  { type nat hook prerouting priority -100;
//	    ip daddr VIP tcp dport PORTS dnat to SERVER }          # fullnat only
//	  chain postrouting { type nat hook postrouting priority 100;
//	    oifname OUTLINK meta l4proto tcp snat to ADDR:MIN-MAX [fully-random] }
//	}
//
// The prerouting chain exists in every mode: some older kernels only NAT when
// a nat chain is registered at prerouting as well.
func Apply(ns netns.NsHandle, cfg Config) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("nftables conn: %w", err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName})
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})

	if cfg.Mode == ModeFullNAT {
		if cfg.VIP.To4() == nil || cfg.Server.To4() == nil {
			return fmt.Errorf("fullnat needs an IPv4 VIP and server address")
		}
		ex := []expr.Any{
			// ip daddr VIP
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: cfg.VIP.To4()},
		}
		ex = append(ex, matchTCP()...)
		ex = append(ex,
			// tcp dport PORTSFROM-PORTSTO
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: be16(cfg.PortsFrom)},
			&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: be16(cfg.PortsTo)},
			&expr.Immediate{Register: 1, Data: cfg.Server.To4()},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
		)
		c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: ex})
	}

	if cfg.Mode == ModeSNAT || cfg.Mode == ModeFullNAT {
		if cfg.SNATAddr.To4() == nil {
			return fmt.Errorf("snat needs an IPv4 address")
		}
		ex := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(cfg.OutLink)},
		}
		// A port-mapped SNAT needs a protocol match.
		ex = append(ex, matchTCP()...)
		ex = append(ex, &expr.Immediate{Register: 1, Data: cfg.SNATAddr.To4()})
		n := &expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4,
			RegAddrMin: 1, RegAddrMax: 1, FullyRandom: cfg.Random}
		if cfg.PortMin != 0 {
			ex = append(ex,
				&expr.Immediate{Register: 2, Data: be16(cfg.PortMin)},
				&expr.Immediate{Register: 3, Data: be16(cfg.PortMax)})
			n.RegProtoMin, n.RegProtoMax, n.Specified = 2, 3, true
		}
		ex = append(ex, n)
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: ex})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: install nat table: %w", err)
	}
	return nil
}

func matchTCP() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
}

func be16(v uint16) []byte {
	b := make([]byte, 2)
	binary.BigEndian.PutUint16(b, v)
	return b
}

// ifname pads a link name the way the kernel stores it (IFNAMSIZ bytes).
func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

// SYN accounting on the server: nftables counters that see every SYN before
// the TCP stack decides its fate, and every answer the stack sends.
const (
	CounterSYNIn     = "syn_in"
	CounterSYNACKOut = "synack_out"
	CounterRSTIn     = "rst_in"
	CounterRSTOut    = "rst_out"
	counterTable     = "twlab_syn"
)

// InstallSYNCounters adds counters to ns. The equivalent nft script:
//
//	table ip twlab_syn {
//	  chain in  { type filter hook prerouting priority -300;
//	    tcp flags & (syn|ack) == syn counter comment "syn_in"
//	    tcp flags & rst == rst counter comment "rst_in" }
//	  chain out { type filter hook postrouting priority 300;
//	    tcp flags & (syn|ack) == syn|ack counter comment "synack_out"
//	    tcp flags & rst == rst counter comment "rst_out" }
//	}
//
// The counters are anonymous, in the rules, found again by the name kept in
// each rule's user data: named counter objects would need Linux 4.10.
func InstallSYNCounters(ns netns.NsHandle) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("nftables conn: %w", err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: counterTable})
	raw := nftables.ChainPriorityRaw
	last := nftables.ChainPriority(300)
	in := c.AddChain(&nftables.Chain{Name: "in", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: raw})
	out := c.AddChain(&nftables.Chain{Name: "out", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPostrouting, Priority: &last})
	flagRule := func(ch *nftables.Chain, mask, want byte, counter string) {
		ex := matchTCP()
		ex = append(ex,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{mask}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{want}},
			&expr.Counter{},
		)
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ex, UserData: []byte(counter)})
	}
	const syn, rst, ack = 0x02, 0x04, 0x10
	flagRule(in, syn|ack, syn, CounterSYNIn)
	flagRule(in, rst, rst, CounterRSTIn)
	flagRule(out, syn|ack, syn|ack, CounterSYNACKOut)
	flagRule(out, rst, rst, CounterRSTOut)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: install syn counters: %w", err)
	}
	return nil
}

// ReadSYNCounters returns the packet count of every counter of the SYN table.
func ReadSYNCounters(ns netns.NsHandle) (map[string]uint64, error) {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return nil, fmt.Errorf("nftables conn: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: counterTable}
	out := map[string]uint64{}
	// The chains are two dumps, not one snapshot: "out" is read first so
	// that every SYN-ACK counted answers a SYN the later read of "in"
	// includes. Read the other way round, a sample taken under load showed
	// more SYN-ACKs out than SYNs in (230 against 227).
	for _, ch := range []string{"out", "in"} {
		rules, err := c.GetRules(t, &nftables.Chain{Name: ch, Table: t})
		if err != nil {
			return nil, fmt.Errorf("nftables: read syn counters: %w", err)
		}
		for _, r := range rules {
			for _, e := range r.Exprs {
				if ctr, ok := e.(*expr.Counter); ok && len(r.UserData) > 0 {
					out[string(r.UserData)] = ctr.Packets
				}
			}
		}
	}
	for _, n := range []string{CounterSYNIn, CounterSYNACKOut, CounterRSTIn, CounterRSTOut} {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("nftables: syn counter %s missing from table %s", n, counterTable)
		}
	}
	return out, nil
}
