// Package skew gives a client an exact, repeatable TCP timestamp clock offset.
//
// A tc program on the client's link (clsact qdisc, direct-action cls_bpf,
// attached through netlink; clsact exists from 4.5, and the program passes
// the verifier from 4.7 on, where bpf_skb_load_bytes may fill uninitialised
// stack; before, a cell falls back to socket offsets) adds the
// offset to TSval on egress and subtracts it from TSecr on ingress: the server
// sees a clock that is exactly offset ahead or behind, while the client's own
// RTT measurement, computed from TSecr, stays right. With tcp_timestamps=2
// the kernel adds no random offset of its own, so the scenario's offsets are
// the only difference between clients.
//
// The program lives in bpf/skew.c; its object and Go bindings are generated
// by `make generate` (clang) and committed, so building twlab needs no clang.
package skew

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// filter names make twlab's filters recognisable in `tc filter show`.
const (
	nameEgress  = "twlab_skew_egress"
	nameIngress = "twlab_skew_ingress"
)

// Stats counts what the program did on one link (run.json records it as
// result.SkewStats).
type Stats struct {
	EgressRewritten  uint64 // TSval rewritten on packets leaving the client
	IngressRewritten uint64 // TSecr restored on packets reaching it
	NoTimestamp      uint64 // TCP packets without a timestamp option
	Malformed        uint64 // option lists the program refused to touch
}

// Attachment is the program attached to one link.
type Attachment struct {
	objs    skewObjects
	nl      *netlink.Handle
	link    netlink.Link
	qdisc   *netlink.GenericQdisc
	filters []*netlink.BpfFilter
	Offset  int32 // ticks
}

// Attach loads a private copy of the program (its own maps, so every client
// has its own offset and counters) and attaches it to link in ns.
func Attach(ns netns.NsHandle, link string, offsetTicks int32) (a *Attachment, err error) {
	raiseMemlock()
	a = &Attachment{Offset: offsetTicks}
	defer func() {
		if err != nil {
			a.Close()
			a = nil
		}
	}()
	if err := loadSkewObjects(&a.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return a, fmt.Errorf("load skew program: the verifier refused it: %v", ve)
		}
		return a, fmt.Errorf("load skew program: %w%s", err, memlockHint(err))
	}
	if err := a.objs.SkewConfig.Put(uint32(0), skewConfig{Offset: offsetTicks, Enabled: 1}); err != nil {
		return a, fmt.Errorf("skew config: %w", err)
	}
	if a.nl, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE); err != nil {
		return a, fmt.Errorf("netlink: %w", err)
	}
	if a.link, err = a.nl.LinkByName(link); err != nil {
		return a, fmt.Errorf("find %s: %w", link, err)
	}
	// tc qdisc add dev LINK clsact
	q := &netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: a.link.Attrs().Index,
		Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}, QdiscType: "clsact"}
	if err := a.nl.QdiscAdd(q); err != nil {
		return a, fmt.Errorf("add clsact qdisc on %s (needs sch_ingress/clsact): %w", link, err)
	}
	a.qdisc = q
	// tc filter add dev LINK {egress|ingress} bpf direct-action obj …
	for _, f := range []struct {
		parent uint32
		prog   *ebpf.Program
		name   string
	}{
		{netlink.HANDLE_MIN_EGRESS, a.objs.SkewEgress, nameEgress},
		{netlink.HANDLE_MIN_INGRESS, a.objs.SkewIngress, nameIngress},
	} {
		bf := &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: a.link.Attrs().Index, Parent: f.parent,
			Handle: netlink.MakeHandle(0, 1), Priority: 1, Protocol: unix.ETH_P_ALL},
			Fd: f.prog.FD(), Name: f.name, DirectAction: true}
		if err := a.nl.FilterAdd(bf); err != nil {
			return a, fmt.Errorf("attach %s on %s (needs cls_bpf): %w", f.name, link, err)
		}
		a.filters = append(a.filters, bf)
	}
	return a, nil
}

// Before Linux 5.11 BPF maps and programs are charged to RLIMIT_MEMLOCK,
// 64 KiB by default: on 4.x two clients' programs and maps already exceed it
// and loading fails with EPERM. The limit is this process's own; raising it
// changes nothing outside it.
var memlockOnce sync.Once

// raiseMemlock lifts the limit as far as this process may: to infinity with
// CAP_SYS_RESOURCE, else to its hard limit. On kernels that charge memory
// cgroups instead (5.11+) the limit does not matter and a failure is
// harmless; where it matters, loading fails with the kernel's EPERM and the
// error says what the limit is.
func raiseMemlock() {
	memlockOnce.Do(func() {
		var cur unix.Rlimit
		if unix.Prlimit(0, unix.RLIMIT_MEMLOCK, nil, &cur) != nil || cur.Cur == unix.RLIM_INFINITY {
			return
		}
		inf := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
		if unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &inf, nil) != nil && cur.Max > cur.Cur {
			unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: cur.Max, Max: cur.Max}, nil)
		}
	})
}

// memlockHint explains an EPERM from loading on a kernel that charges BPF
// memory to RLIMIT_MEMLOCK.
func memlockHint(err error) string {
	if !errors.Is(err, unix.EPERM) {
		return ""
	}
	var cur unix.Rlimit
	if unix.Prlimit(0, unix.RLIMIT_MEMLOCK, nil, &cur) != nil || cur.Cur == unix.RLIM_INFINITY {
		return ""
	}
	return fmt.Sprintf(" (RLIMIT_MEMLOCK is %d bytes and could not be raised; kernels before 5.11 charge BPF maps and programs to it)", cur.Cur)
}

// Stats sums the per-CPU counters.
func (a *Attachment) Stats() (Stats, error) {
	var s Stats
	dst := []*uint64{&s.EgressRewritten, &s.IngressRewritten, &s.NoTimestamp, &s.Malformed}
	for i, p := range dst {
		var per []uint64
		if err := a.objs.SkewStats.Lookup(uint32(i), &per); err != nil {
			return s, fmt.Errorf("skew stats: %w", err)
		}
		for _, v := range per {
			*p += v
		}
	}
	return s, nil
}

// Close detaches the filters, removes the qdisc and unloads the program. It
// keeps going past errors; a link already gone (namespace deleted) is fine.
func (a *Attachment) Close() error {
	var errs []error
	if a.nl != nil {
		for _, f := range a.filters {
			if err := a.nl.FilterDel(f); err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("detach %s: %w", f.Name, err))
			}
		}
		if a.qdisc != nil {
			if err := a.nl.QdiscDel(a.qdisc); err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("remove clsact: %w", err))
			}
		}
		a.nl.Close()
	}
	errs = append(errs, a.objs.Close())
	a.filters, a.qdisc, a.nl = nil, nil, nil
	return errors.Join(errs...)
}

// Filters lists the twlab skew filters on link in ns (for tests and cleanup
// checks: after Close there must be none).
func Filters(ns netns.NsHandle, link string) ([]string, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	l, err := h.LinkByName(link)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, parent := range []uint32{netlink.HANDLE_MIN_EGRESS, netlink.HANDLE_MIN_INGRESS} {
		fs, err := h.FilterList(l, parent)
		if err != nil {
			continue // no clsact: no filters
		}
		for _, f := range fs {
			if bf, ok := f.(*netlink.BpfFilter); ok {
				out = append(out, bf.Name)
			}
		}
	}
	qs, err := h.QdiscList(l)
	if err == nil {
		for _, q := range qs {
			if q.Type() == "clsact" {
				out = append(out, "qdisc clsact")
			}
		}
	}
	return out, nil
}

// Probe finds out whether fixed skew can work in ns: it loads the egress
// program (the verifier sees the real code) and attaches it, on a clsact
// qdisc, to link, then removes both. Loading one of the two programs halves
// what the verifier costs (it dominates detection inside an emulated VM);
// the ingress program is the same walk over the options.
func Probe(ns netns.NsHandle, link string) error {
	raiseMemlock()
	spec, err := loadSkew()
	if err != nil {
		return fmt.Errorf("skew program: %w", err)
	}
	delete(spec.Programs, skewProgSkewIngress)
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return fmt.Errorf("load skew program: the verifier refused it: %v", ve)
		}
		return fmt.Errorf("load skew program: %w%s", err, memlockHint(err))
	}
	defer coll.Close()
	nl, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer nl.Close()
	l, err := nl.LinkByName(link)
	if err != nil {
		return fmt.Errorf("find %s: %w", link, err)
	}
	q := &netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index,
		Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}, QdiscType: "clsact"}
	if err := nl.QdiscAdd(q); err != nil {
		return fmt.Errorf("add clsact qdisc on %s (needs sch_ingress/clsact, Linux 4.5+): %w", link, err)
	}
	defer nl.QdiscDel(q)
	bf := &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: l.Attrs().Index, Parent: netlink.HANDLE_MIN_EGRESS,
		Handle: netlink.MakeHandle(0, 1), Priority: 1, Protocol: unix.ETH_P_ALL},
		Fd: coll.Programs[skewProgSkewEgress].FD(), Name: nameEgress, DirectAction: true}
	if err := nl.FilterAdd(bf); err != nil {
		return fmt.Errorf("attach %s on %s (needs cls_bpf): %w", nameEgress, link, err)
	}
	return nl.FilterDel(bf)
}
