// Package kernel finds out what the running kernel can do for twlab, by
// trying it in a scratch namespace rather than trusting a version table:
// which knobs exist and are per-namespace, whether nftables NAT, conntrack and
// tc eBPF work, which PAWS counters exist, and how TCP timestamp offsets are
// chosen (none, per address pair, or per 4-tuple).
package kernel

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twlab/twlab/lab/internal/kver"
	"github.com/twlab/twlab/lab/load"
	"github.com/twlab/twlab/lab/nat"
	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/probe"
	"github.com/twlab/twlab/lab/skew"
	"github.com/twlab/twlab/lab/sysctl"
	"github.com/twlab/twlab/lab/topo"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Knobs twlab's scenarios use, checked by Detect.
var Knobs = []string{
	"net.ipv4.tcp_timestamps", "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_tw_reuse_delay",
	"net.ipv4.tcp_rfc1337", "net.ipv4.tcp_tw_recycle", "net.ipv4.tcp_max_tw_buckets",
	"net.ipv4.tcp_syncookies", "net.ipv4.tcp_max_syn_backlog", "net.core.somaxconn",
	"net.ipv4.ip_local_port_range", "net.netfilter.nf_conntrack_tcp_timeout_time_wait",
}

// Knob is what was found about one knob.
type Knob struct {
	Name   string `json:"name"`
	State  string `json:"state"` // per-netns | global | missing
	Reason string `json:"reason,omitempty"`
}

// Timestamp offset behaviours.
const (
	OffsetsNone     = "none"        // no random offset (before 4.10, or tcp_timestamps=2)
	OffsetsPerPair  = "per-pair"    // one offset per (saddr, daddr), 4.11 … 6.x
	OffsetsPer4Tup  = "per-4-tuple" // ports in the hash too (the newest kernels)
	OffsetsUnknown  = "unknown"
	offsetThreshold = 5000 // ticks: clock drift between probes is a few ms
)

// Facts are the detected capabilities. The JSON names are twlab doctor
// --json's; run.json records the facts as result.KernelFeatures, with the
// same names.
type Facts struct {
	Release      string   `json:"release"`
	Major        int      `json:"major"`
	Minor        int      `json:"minor"`
	Knobs        []Knob   `json:"knobs"`
	NAT          string   `json:"nat"`       // "ok" or why not
	Conntrack    string   `json:"conntrack"` // "ok" or why not
	EBPF         string   `json:"ebpf"`      // "ok" or why not (tc clsact + cls_bpf)
	PAWSCounters []string `json:"paws_counters"`
	// PAWSDetail says why the counters could not be read (empty when they
	// were): no counter then means "not read", not "this kernel lacks it".
	PAWSDetail string `json:"paws_counters_detail,omitempty"`
	TSOffsets  string `json:"ts_offsets"`
	TSDetail   string `json:"ts_offsets_detail,omitempty"`
	// TSHz is the rate of the TCP timestamp clock, measured from one
	// connection's segments: 1000 since Linux 4.13, jiffies (HZ: 100, 250,
	// 300 or 1000) before. 0 when it could not be measured.
	TSHz       int    `json:"ts_hz"`
	TSHzDetail string `json:"ts_hz_detail,omitempty"`
	// TWCount says whether /proc/net/sockstat's TIME_WAIT count is
	// per-netns or global (older kernels: every namespace shows the
	// machine's total); probes count through sock_diag when it is not
	// per-netns.
	TWCount       string `json:"tw_count"`
	TWCountDetail string `json:"tw_count_detail,omitempty"`
	// TWCounter says which event TcpExt.TW counts: "created" (a socket
	// entered TIME_WAIT; recent kernels) or "expired" (its timer ran out, 60 s
	// later; older kernels), found by creating TIME_WAIT sockets in a fresh
	// namespace and reading the counter at once.
	TWCounter string `json:"tw_counter"`
	// SocketSkew: a connection's timestamp offset set in repair mode before
	// connect survives it (kernels before 4.10), so fixed skew works
	// without eBPF there.
	SocketSkew bool `json:"socket_skew"`
	// TWReuseLoopback: tcp_tw_reuse=2 means "loopback only" (Linux 4.18+,
	// where the knob refuses 3); before, any non-zero value is plain reuse.
	TWReuseLoopback bool `json:"tw_reuse_loopback"`
	// Clocksource is the kernel's current clock source (tsc, kvm-clock,
	// refined-jiffies …): on jiffies every time the run measures is a
	// multiple of the tick.
	Clocksource string `json:"clocksource,omitempty"`
	// DetectS is how long detection took (seconds), and PartsMS how long
	// each of its parts (they run side by side).
	DetectS float64            `json:"detect_s"`
	PartsMS map[string]float64 `json:"detect_parts_ms,omitempty"`
	QEMU    string             `json:"qemu"` // path or ""
	KVM     bool               `json:"kvm"`
}

// TIME_WAIT accounting.
const (
	TWPerNetns = "per-netns"
	TWGlobal   = "global"

	TWCounterCreated = "created"
	TWCounterExpired = "expired"
)

// Exists reports whether the kernel has a knob at all (per namespace or
// global).
func (f *Facts) Exists(knob string) bool {
	for _, k := range f.Knobs {
		if k.Name == knob {
			return k.State != "missing"
		}
	}
	return false
}

// Has reports whether a knob is settable per namespace.
func (f *Facts) Has(knob string) bool {
	for _, k := range f.Knobs {
		if k.Name == knob {
			return k.State == "per-netns"
		}
	}
	return false
}

// Vars are the facts as expression names (kernel.*), for `when:` selectors.
func (f *Facts) Vars() map[string]string {
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	has := func(c string) bool {
		for _, x := range f.PAWSCounters {
			if x == c {
				return true
			}
		}
		return false
	}
	return map[string]string{
		"kernel.release":    f.Release,
		"kernel.major":      strconv.Itoa(f.Major),
		"kernel.minor":      strconv.Itoa(f.Minor),
		"kernel.ts_offsets": f.TSOffsets,
		// has_*: the kernel has the knob, per namespace or global (a VM
		// writes a global one); whether a host run may set it is the cell's
		// business (n/a with the reason).
		"kernel.has_tw_recycle":     b(f.Exists("net.ipv4.tcp_tw_recycle")),
		"kernel.has_tw_reuse_delay": b(f.Exists("net.ipv4.tcp_tw_reuse_delay")),
		"kernel.ts_hz":              strconv.Itoa(f.TSHz),
		"kernel.tw_reuse_loopback":  b(f.TWReuseLoopback),
		"kernel.tw_counter":         f.TWCounter,
		"kernel.has_paws_timewait":  b(has("TcpExt.PAWSTimewait")),
		"kernel.ebpf":               b(f.EBPF == "ok"),
	}
}

// Release returns uname -r.
func Release() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// Options say where detection runs.
type Options struct {
	// VM: this process is the init of a twlab VM, where the whole machine is
	// the lab; a knob that is global on this kernel may be written in the
	// initial namespace (and is put back afterwards).
	VM bool
}

// Detect probes the kernel in a scratch namespace that is removed again.
func Detect(ctx context.Context, opt Options) (*Facts, error) {
	f := &Facts{Release: Release()}
	began := time.Now()
	defer func() { f.DetectS = float64(time.Since(began).Milliseconds()) / 1000 }()
	f.Major, f.Minor, _ = kver.Parse(f.Release)
	if p, err := exec.LookPath("qemu-system-x86_64"); err == nil {
		f.QEMU = p
	}
	f.KVM = KVMUsable()
	f.Clocksource = Clocksource()
	ns, nl, err := newScratch("doctor")
	if err != nil {
		return f, err
	}
	defer ns.Close()
	defer nl.Close()

	// The probes are independent (each writes its own fields of f) and some
	// wait (the clock measurement) or are slow under emulation (loading the
	// eBPF program), so they run side by side: inside a VM detection is part
	// of every kernel's overhead.
	var wg sync.WaitGroup
	var mu sync.Mutex
	f.PartsMS = map[string]float64{}
	part := func(name string, fn func()) {
		wg.Go(func() {
			t := time.Now()
			fn()
			mu.Lock()
			f.PartsMS[name] = float64(time.Since(t).Microseconds()) / 1000
			mu.Unlock()
		})
	}
	f.PartsMS["scratch"] = float64(time.Since(began).Microseconds()) / 1000
	part("nat+knobs", func() { detectNATAndKnobs(f, ns) })
	part("ebpf", func() {
		f.EBPF = "ok"
		// Not on lo: adding the clsact qdisc to an up link swaps its
		// queueing out for a moment, and a SYN of the timestamp probe
		// (same namespace, same time) sent then is lost and waits 1 s for
		// its retransmission. A veth pair that stays down has no traffic.
		link := "lo"
		if nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: topo.Prefix + "bpf0"}, PeerName: topo.Prefix + "bpf1"}) == nil {
			link = topo.Prefix + "bpf0"
		}
		if err := skew.Probe(ns, link); err != nil {
			f.EBPF = err.Error()
		}
		f.PAWSCounters, f.PAWSDetail = pawsCounters(ns)
	})
	part("tw_reuse", func() { f.TWReuseLoopback = detectTWReuseRange(ns, opt) })
	part("timestamps+tw", func() {
		f.TSOffsets, f.TSDetail, f.TSHz, f.TSHzDetail, f.SocketSkew = detectTimestamps(ctx, ns, opt)
		f.TWCount, f.TWCountDetail, f.TWCounter = detectTWCount(ns)
	})
	wg.Wait()
	// A cancelled detection measured nothing: its "unknown"s would be
	// recorded as the kernel's facts, with the wrong reasons.
	if err := ctx.Err(); err != nil {
		return f, fmt.Errorf("kernel detection: %w", err)
	}
	return f, nil
}

// detectNATAndKnobs installs a NAT table and probes every knob (after NAT:
// it loads nf_conntrack, whose sysctls are among the knobs).
func detectNATAndKnobs(f *Facts, ns netns.NsHandle) {
	f.NAT = "ok"
	// The rule names a link that does not exist: installing it proves NAT
	// works, and it never rewrites the loopback probes.
	if err := nat.Apply(ns, nat.Config{Mode: nat.ModeSNAT, OutLink: "twlab-none", SNATAddr: net.IPv4(127, 0, 0, 1), PortMin: 40000, PortMax: 40000}); err != nil {
		f.NAT = err.Error()
	}
	for _, k := range Knobs {
		a, err := sysctl.Probe(ns, k)
		kn := Knob{Name: k}
		switch {
		case err != nil:
			kn.State, kn.Reason = "missing", err.Error()
		case a.Exists && a.Writable:
			kn.State = "per-netns"
		case a.Exists || a.Host:
			kn.State, kn.Reason = "global", a.Reason
		default:
			kn.State, kn.Reason = "missing", a.Reason
		}
		f.Knobs = append(f.Knobs, kn)
	}
	f.Conntrack = "ok"
	if !f.Has("net.netfilter.nf_conntrack_tcp_timeout_time_wait") {
		f.Conntrack = "nf_conntrack sysctls missing in a namespace (module nf_conntrack not loaded or NAT failed)"
	}
}

// pawsCounters lists the PAWS counters the kernel has, or says why they
// could not be read.
func pawsCounters(ns netns.NsHandle) ([]string, string) {
	p, err := probe.Open("doctor", ns, probe.Options{})
	if err != nil {
		return nil, "counters not read: " + err.Error()
	}
	defer p.Close()
	c, err := p.Counters()
	if err != nil {
		return nil, "counters not read: " + err.Error()
	}
	var out []string
	for _, k := range []string{"TcpExt.PAWSPassive", "TcpExt.PAWSActive", "TcpExt.PAWSEstab", "TcpExt.PAWSTimewait"} {
		if _, ok := c[k]; ok {
			out = append(out, k)
		}
	}
	return out, ""
}

// detectTWReuseRange finds out whether tcp_tw_reuse has a "loopback only"
// value 2: the kernel that added it made 2 the knob's maximum, so writing 3
// fails. Written in the scratch namespace, or (global knob) only in a VM and
// put back; on a host where the knob is global the answer stays false.
func detectTWReuseRange(ns netns.NsHandle, opt Options) bool {
	const knob = "net.ipv4.tcp_tw_reuse"
	a, err := sysctl.Probe(ns, knob)
	if err != nil {
		return false
	}
	target := ns
	if !(a.Exists && a.Writable) {
		if !opt.VM || !a.Host {
			return false
		}
		init, err := sysctl.InitialNS()
		if err != nil {
			return false
		}
		defer init.Close()
		target = init
	}
	old, err := sysctl.Read(target, []string{knob})
	if err != nil || old[knob] == "" {
		return false
	}
	_, werr := sysctl.Apply(target, []sysctl.Setting{{Name: knob, Requested: "3"}})
	if werr == nil {
		sysctl.Apply(target, []sysctl.Setting{{Name: knob, Requested: old[knob]}})
		return false
	}
	return errors.Is(werr, unix.EINVAL)
}

// newScratch creates a namespace for detection whose name is dropped at
// once: the handle keeps it alive until Close, and nothing is left under
// /run/netns if the process dies.
func newScratch(tag string) (netns.NsHandle, *netlink.Handle, error) {
	b := make([]byte, 2)
	rand.Read(b)
	name := topo.Prefix + "k" + hex.EncodeToString(b)[:3] + "-" + tag
	ns, err := netnsutil.NewNamed(name)
	if err != nil {
		return ns, nil, fmt.Errorf("scratch namespace: %w", err)
	}
	topo.DeleteNamespace(name)
	nl, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return netns.None(), nil, err
	}
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	if err != nil {
		nl.Close()
		ns.Close()
		return netns.None(), nil, fmt.Errorf("scratch namespace: lo: %w", err)
	}
	return ns, nl, nil
}

// detectTWCount finds out whether sockstat's TIME_WAIT count is the
// namespace's own: with TIME_WAIT sockets in ns (detection's loopback
// connections leave some), a second, empty namespace must read 0. It also
// reads ns's TcpExt.TW, which says whether the counter moves when TIME_WAIT
// starts (it is non-zero now) or when it ends (60 s from now).
func detectTWCount(ns netns.NsHandle) (count, detail, counter string) {
	pa, err := probe.Open("doctor", ns, probe.Options{})
	if err != nil {
		return OffsetsUnknown, err.Error(), OffsetsUnknown
	}
	defer pa.Close()
	own, err := pa.TimeWaitDiag()
	if err != nil {
		return OffsetsUnknown, err.Error(), OffsetsUnknown
	}
	if own == 0 {
		return OffsetsUnknown, "no TIME_WAIT socket to compare with", OffsetsUnknown
	}
	counter = OffsetsUnknown
	if c, err := pa.Counters(); err == nil {
		counter = TWCounterExpired
		if c["TcpExt.TW"] > 0 {
			counter = TWCounterCreated
		}
	}
	empty, nl, err := newScratch("tw")
	if err != nil {
		return OffsetsUnknown, err.Error(), counter
	}
	defer empty.Close()
	defer nl.Close()
	pb, err := probe.Open("doctor-empty", empty, probe.Options{})
	if err != nil {
		return OffsetsUnknown, err.Error(), counter
	}
	defer pb.Close()
	seen, err := pb.TimeWaitSockstat()
	if err != nil {
		return OffsetsUnknown, err.Error(), counter
	}
	detail = fmt.Sprintf("a namespace with %d TIME_WAIT sockets (sock_diag); a new, empty one reads sockstat tw %d", own, seen)
	if seen == 0 {
		return TWPerNetns, detail, counter
	}
	return TWGlobal, detail, counter
}

// detectTimestamps finds out how this kernel chooses TCP timestamp offsets
// and how fast its timestamp clock ticks. It connects on loopback from two
// source ports and two source addresses with tcp_timestamps=1 and reads each
// connection's timestamp clock (TCP_TIMESTAMP: the kernel's clock plus the
// connection's offset, exactly what its segments carry); then it reads one
// connection's clock twice, a measured interval apart.
func detectTimestamps(ctx context.Context, ns netns.NsHandle, opt Options) (offsets, detail string, hz int, hzDetail string, socketSkew bool) {
	// Without tcp_timestamps=1 (a global knob of 4.10-4.12 that the host
	// holds otherwise) the offsets cannot be compared; the clock's rate and
	// whether a socket's offset survives connect can still be measured.
	restore, tsErr := timestampsOn(ns, opt)
	defer restore()
	type src struct {
		ip   string
		port int
	}
	srcs := []src{{"127.0.0.1", 41001}, {"127.0.0.1", 41002}, {"127.0.0.2", 41001}}
	ts := make([]uint32, len(srcs))
	var ticks uint32
	var elapsed time.Duration
	var clockErr error // the clock measurement's last failure
	err := netnsutil.Do(ns, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.9:7")
		if err != nil {
			return err
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		dial := func(s src) (*net.TCPConn, error) {
			d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(s.ip), Port: s.port}}
			c, err := d.DialContext(ctx, "tcp4", "127.0.0.9:7")
			if err != nil {
				return nil, err
			}
			return c.(*net.TCPConn), nil
		}
		for i, s := range srcs {
			c, err := dial(s)
			if err != nil {
				return err
			}
			ts[i], err = tcpTimestamp(c)
			c.Close()
			if err != nil {
				return err
			}
		}
		socketSkew = offsetSurvivesConnect(ts[0])
		// The clock's failures cost the clock's figures only: the offsets
		// and socketSkew above were measured.
		c, err := dial(src{"127.0.0.1", 41003})
		if err != nil {
			clockErr = err
			return nil
		}
		defer c.Close()
		// Under software emulation the guest loses the CPU for milliseconds
		// at a time; a span of 60 ms keeps such a hiccup under a few percent,
		// and a second or third look catches the rare worse one (a look
		// whose edges were all too loosely timed fails: the next may not).
		for try := 0; try < 3 && ctx.Err() == nil; try++ {
			t, e, err := measureTicks(c, 5, 60*time.Millisecond, 500*time.Millisecond)
			if err != nil {
				clockErr = err
				continue
			}
			ticks, elapsed = t, e
			if hz, _ := clockRate(ticks, elapsed); hz != 0 {
				break
			}
		}
		return nil
	})
	if err != nil {
		return OffsetsUnknown, err.Error(), 0, err.Error(), false
	}
	hz, hzDetail = clockRate(ticks, elapsed)
	if hz == 0 && clockErr != nil {
		hzDetail = clockErr.Error()
	}
	if tsErr != nil {
		return OffsetsUnknown, tsErr.Error(), hz, hzDetail, socketSkew
	}
	far := func(a, b uint32) bool {
		d := int32(a - b)
		return d > offsetThreshold || d < -offsetThreshold
	}
	detail = fmt.Sprintf("timestamp clocks of connections: %s:%d=%d %s:%d=%d %s:%d=%d", srcs[0].ip, srcs[0].port, ts[0],
		srcs[1].ip, srcs[1].port, ts[1], srcs[2].ip, srcs[2].port, ts[2])
	switch {
	case far(ts[0], ts[1]):
		offsets = OffsetsPer4Tup
	case far(ts[0], ts[2]):
		offsets = OffsetsPerPair
	default:
		offsets = OffsetsNone
	}
	return offsets, detail, hz, hzDetail, socketSkew
}

// offsetSurvivesConnect connects from 127.0.0.1 with a timestamp offset of
// 10^6 ticks set before connect and compares its clock with ref, the clock
// of a plain connection from the same address a moment ago. Call it on a
// thread inside the scratch namespace, with 127.0.0.9:7 listening.
func offsetSurvivesConnect(ref uint32) bool {
	const off = 1_000_000
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	if load.SetSocketOffset(fd, off) != nil {
		return false
	}
	tv := unix.Timeval{Sec: 2}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	if unix.Connect(fd, &unix.SockaddrInet4{Port: 7, Addr: [4]byte{127, 0, 0, 9}}) != nil {
		return false
	}
	v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_TIMESTAMP)
	if err != nil {
		return false
	}
	d := int32(uint32(v) - ref - off)
	return d > -offsetThreshold && d < offsetThreshold
}

// tickEdges watches the connection's timestamp clock tick: from one change of
// its value to the first change at least minTicks ticks and minSpan later, it
// returns the ticks and the time between them. Timing from edge to edge
// measures a whole number of ticks exactly, so the rate comes out of tens of
// milliseconds where a fixed interval would need hundreds.
//
// An edge is timed by the reads around it: it came after the last read that
// saw the old value began and before the read that saw the new one ended.
// Only edges whose window is under maxEdgeWindow time the span: a thread
// preempted between a read and its clock reading (a busy host, a VM) would
// otherwise stretch or shrink the span by the stall, and 7 ticks of 1 ms
// with a 20 ms stall read as 260/s, a jiffies rate.
//
// A system clock that itself moves in steps (a guest whose TSC could not be
// calibrated runs on refined-jiffies: 4 ms steps at HZ=250) makes every
// window at least one step wide; no edge was ever tight enough, and fixed
// skew went n/a. The bound then grows to a little over a step, and the
// span to at least 20 steps, which keeps its error (at most a step) under
// 5 %.
func tickEdges(c *net.TCPConn, minTicks uint32, minSpan, limit time.Duration) (ticks uint32, elapsed time.Duration, err error) {
	maxEdgeWindow := time.Millisecond
	if step := clockStep(); step > maxEdgeWindow/4 {
		maxEdgeWindow = step + step/2
		minSpan = max(minSpan, 20*step)
		limit = max(limit, 3*minSpan)
	}
	deadline := now().Add(limit)
	prevAt := now()
	prev, err := readTS(c)
	if err != nil {
		return 0, 0, err
	}
	var first uint32
	var start time.Time
	edges, loose := 0, 0
	for {
		before := now()
		if before.After(deadline) {
			return 0, 0, fmt.Errorf("the timestamp clock changed %d times in %s (%d more too loosely timed to use)", edges, limit, loose)
		}
		v, err := readTS(c)
		if err != nil {
			return 0, 0, err
		}
		if v == prev {
			prevAt = before
			continue
		}
		window := now().Sub(prevAt)
		at := prevAt.Add(window / 2)
		prev, prevAt = v, before
		if window > maxEdgeWindow {
			loose++
			continue
		}
		edges++
		if edges == 1 {
			first, start = v, at
			continue
		}
		if v-first >= minTicks && at.Sub(start) >= minSpan {
			return v - first, at.Sub(start), nil
		}
	}
}

// clockRate turns ticks counted over elapsed into the kernel's timestamp
// clock rate: the nearest of the rates Linux has used (milliseconds since
// 4.13, jiffies before), when the measurement is within 10 % of it (250 and
// 300 are 20 % apart).
func clockRate(ticks uint32, elapsed time.Duration) (int, string) {
	if elapsed <= 0 {
		return 0, "no interval measured"
	}
	rate := float64(ticks) / elapsed.Seconds()
	detail := fmt.Sprintf("%d ticks in %s: %.0f per second", ticks, elapsed.Round(time.Millisecond), rate)
	best, bestErr := 0, 1.0
	for _, hz := range []int{100, 250, 300, 1000} {
		if e := math.Abs(rate-float64(hz)) / float64(hz); e < bestErr {
			best, bestErr = hz, e
		}
	}
	if bestErr > 0.1 {
		return 0, detail + " (not a rate Linux uses)"
	}
	return best, detail
}

// measureTicks is tickEdges; tests make it fail.
var measureTicks = tickEdges

// now and readTS are the clocks tickEdges compares; tests make them coarse.
var (
	now    = time.Now
	readTS = tcpTimestamp
)

// clockStep is the smallest step of the system clock seen over a few of its
// changes (tens of nanoseconds on a TSC, a jiffy on a jiffies clock),
// looking for at most 50 ms.
func clockStep() time.Duration {
	step := time.Duration(0)
	end := time.Now().Add(50 * time.Millisecond)
	prev := now()
	for changes := 0; changes < 4 && time.Now().Before(end); {
		t := now()
		if d := t.Sub(prev); d > 0 {
			if step == 0 || d < step {
				step = d
			}
			changes++
			prev = t
		}
	}
	if step == 0 {
		return 50 * time.Millisecond // no change seen at all
	}
	return step
}

// tcpTimestamp reads TCP_TIMESTAMP of a connected socket: the timestamp
// clock its next segment will carry, offset included.
func tcpTimestamp(c *net.TCPConn) (uint32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_TIMESTAMP) }); err != nil {
		return 0, err
	}
	if gerr != nil {
		return 0, fmt.Errorf("getsockopt TCP_TIMESTAMP: %w", gerr)
	}
	return uint32(v), nil
}

// timestampsOn makes new connections in ns use tcp_timestamps=1 (random
// offsets, where the kernel has them) and returns how to undo it. A knob
// that is per-namespace is written in ns. A global one is written only in a
// VM, in the initial namespace, and put back afterwards; on a host, a global
// knob that is already 1 needs no write, and any other value makes the
// detection impossible without touching the host.
func timestampsOn(ns netns.NsHandle, opt Options) (func(), error) {
	const knob = "net.ipv4.tcp_timestamps"
	nothing := func() {}
	a, err := sysctl.Probe(ns, knob)
	if err != nil {
		return nothing, err
	}
	if a.Exists && a.Writable {
		_, err := sysctl.Apply(ns, []sysctl.Setting{{Name: knob, Requested: "1"}})
		return nothing, err
	}
	// A global knob lives in the initial namespace only (a child has no
	// file for it on old kernels): its value is read there, reading the
	// host is fine, and what is put back afterwards is that value.
	init, err := sysctl.InitialNS()
	if err != nil {
		return nothing, err
	}
	defer init.Close()
	cur, err := sysctl.Read(init, []string{knob})
	if err != nil {
		return nothing, err
	}
	if cur[knob] == "1" {
		return nothing, nil
	}
	if cur[knob] == "" {
		return nothing, fmt.Errorf("%s: not readable in this namespace nor in the initial one", knob)
	}
	if !opt.VM {
		return nothing, fmt.Errorf("%s is global on this kernel and set to %q; detection needs 1 and never writes the host (twlab vm can)", knob, cur[knob])
	}
	if _, err := sysctl.Apply(init, []sysctl.Setting{{Name: knob, Requested: "1"}}); err != nil {
		return nothing, fmt.Errorf("%s (global, in the VM): %w", knob, err)
	}
	return func() {
		if h, err := sysctl.InitialNS(); err == nil {
			sysctl.Apply(h, []sysctl.Setting{{Name: knob, Requested: cur[knob]}})
			h.Close()
		}
	}, nil
}

// KVMUsable says whether /dev/kvm exists and creates a VM: a device node
// alone is not enough (nested virtualisation may be off).
func KVMUsable() bool {
	fd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	const kvmGetAPIVersion, kvmCreateVM = 0xAE00, 0xAE01
	v, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), kvmGetAPIVersion, 0)
	if errno != 0 || v != 12 {
		return false
	}
	vm, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), kvmCreateVM, 0)
	if errno != 0 {
		return false
	}
	unix.Close(int(vm))
	return true
}

// Clocksource is the clock source the kernel keeps time with, "" if sysfs
// does not say.
func Clocksource() string {
	b, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
