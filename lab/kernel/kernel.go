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
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/twlab/twlab/lab/capture"
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

// Facts are the detected capabilities.
type Facts struct {
	Release      string   `json:"release"`
	Major        int      `json:"major"`
	Minor        int      `json:"minor"`
	Knobs        []Knob   `json:"knobs"`
	NAT          string   `json:"nat"`       // "ok" or why not
	Conntrack    string   `json:"conntrack"` // "ok" or why not
	EBPF         string   `json:"ebpf"`      // "ok" or why not (tc clsact + cls_bpf)
	PAWSCounters []string `json:"paws_counters"`
	TSOffsets    string   `json:"ts_offsets"`
	TSDetail     string   `json:"ts_offsets_detail,omitempty"`
	QEMU         string   `json:"qemu"` // path or ""
	KVM          bool     `json:"kvm"`
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
		"kernel.release":            f.Release,
		"kernel.major":              strconv.Itoa(f.Major),
		"kernel.minor":              strconv.Itoa(f.Minor),
		"kernel.ts_offsets":         f.TSOffsets,
		"kernel.has_tw_recycle":     b(f.Has("net.ipv4.tcp_tw_recycle")),
		"kernel.has_tw_reuse_delay": b(f.Has("net.ipv4.tcp_tw_reuse_delay")),
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

// Detect probes the kernel in a scratch namespace that is removed again.
func Detect(ctx context.Context) (*Facts, error) {
	f := &Facts{Release: Release()}
	parts := strings.SplitN(f.Release, ".", 3)
	if len(parts) >= 2 {
		f.Major, _ = strconv.Atoi(parts[0])
		f.Minor, _ = strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	}
	if p, err := exec.LookPath("qemu-system-x86_64"); err == nil {
		f.QEMU = p
	}
	f.KVM = KVMUsable()
	b := make([]byte, 2)
	rand.Read(b)
	name := topo.Prefix + "k" + hex.EncodeToString(b)[:3] + "-doctor"
	ns, err := netnsutil.NewNamed(name)
	if err != nil {
		return f, fmt.Errorf("scratch namespace: %w", err)
	}
	// Drop the name at once: the handle keeps the namespace until Close, and
	// nothing is left under /run/netns if we die.
	topo.DeleteNamespace(name)
	defer ns.Close()
	nl, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return f, err
	}
	defer nl.Close()
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	if err != nil {
		return f, fmt.Errorf("scratch namespace: lo: %w", err)
	}

	f.NAT = "ok"
	// The rule names a link that does not exist: installing it proves NAT
	// works, and it never rewrites the loopback probes below.
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
	f.EBPF = "ok"
	if a, err := skew.Attach(ns, "lo", 0); err != nil {
		f.EBPF = err.Error()
	} else if err := a.Close(); err != nil {
		f.EBPF = "detach: " + err.Error()
	}
	if p, err := probe.Open("doctor", ns); err == nil {
		if c, err := p.Counters(); err == nil {
			for _, k := range []string{"TcpExt.PAWSPassive", "TcpExt.PAWSActive", "TcpExt.PAWSEstab", "TcpExt.PAWSTimewait"} {
				if _, ok := c[k]; ok {
					f.PAWSCounters = append(f.PAWSCounters, k)
				}
			}
		}
		p.Close()
	}
	f.TSOffsets, f.TSDetail = detectOffsets(ctx, ns)
	return f, nil
}

// detectOffsets opens connections on loopback from two source ports and two
// source addresses with tcp_timestamps=1 and compares their SYNs' TSvals.
func detectOffsets(ctx context.Context, ns netns.NsHandle) (string, string) {
	if _, err := sysctl.Apply(ns, []sysctl.Setting{{Name: "net.ipv4.tcp_timestamps", Requested: "1"}}); err != nil {
		return OffsetsUnknown, "cannot set tcp_timestamps=1 in a namespace: " + err.Error()
	}
	dir, err := os.MkdirTemp("", "twlab-doctor")
	if err != nil {
		return OffsetsUnknown, err.Error()
	}
	defer os.RemoveAll(dir)
	pcap := filepath.Join(dir, "lo.pcap")
	capt, err := capture.Start(ns, "lo", pcap, capture.DefaultLimits)
	if err != nil {
		return OffsetsUnknown, err.Error()
	}
	type src struct {
		ip   string
		port int
	}
	srcs := []src{{"127.0.0.1", 41001}, {"127.0.0.1", 41002}, {"127.0.0.2", 41001}}
	err = netnsutil.Do(ns, func() error {
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
		for _, s := range srcs {
			d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(s.ip), Port: s.port}}
			c, err := d.DialContext(ctx, "tcp4", "127.0.0.9:7")
			if err != nil {
				return err
			}
			c.Close()
		}
		return nil
	})
	time.Sleep(20 * time.Millisecond)
	if _, serr := capt.Stop(); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return OffsetsUnknown, err.Error()
	}
	frames, err := capture.ReadFile(pcap)
	if err != nil {
		return OffsetsUnknown, err.Error()
	}
	ts := map[src]uint32{}
	for _, fr := range frames {
		s, ok := capture.ParseTCP(fr.Data)
		if ok && s.Flags&(capture.FlagSYN|capture.FlagACK) == capture.FlagSYN && s.HasTS {
			k := src{s.Src.String(), int(s.SrcPort)}
			if _, seen := ts[k]; !seen {
				ts[k] = s.TSval
			}
		}
	}
	if len(ts) != len(srcs) {
		return OffsetsUnknown, fmt.Sprintf("captured %d of %d SYNs", len(ts), len(srcs))
	}
	far := func(a, b uint32) bool {
		d := int32(a - b)
		return d > offsetThreshold || d < -offsetThreshold
	}
	ports := far(ts[srcs[0]], ts[srcs[1]])
	addrs := far(ts[srcs[0]], ts[srcs[2]])
	detail := fmt.Sprintf("TSval of SYNs: %s:%d=%d %s:%d=%d %s:%d=%d", srcs[0].ip, srcs[0].port, ts[srcs[0]],
		srcs[1].ip, srcs[1].port, ts[srcs[1]], srcs[2].ip, srcs[2].port, ts[srcs[2]])
	switch {
	case ports:
		return OffsetsPer4Tup, detail
	case addrs:
		return OffsetsPerPair, detail
	}
	return OffsetsNone, detail
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
