package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/twlab/twlab/lab/kernel"
)

// hints say how to get a missing feature.
var hints = map[string]string{
	"net.ipv4.tcp_tw_recycle":                          "removed in Linux 4.12; run tw_recycle cells in a VM with an older kernel (twlab vm)",
	"net.ipv4.tcp_tw_reuse_delay":                      "added in Linux 6.14",
	"net.netfilter.nf_conntrack_tcp_timeout_time_wait": "load nf_conntrack (modprobe nf_conntrack)",
}

func cmdDoctor(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("twlab doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the findings as JSON")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageCode(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "twlab doctor: unexpected argument %q; it takes only --json\n", pos[0])
		return exitUsage
	}
	if os.Geteuid() != 0 {
		if !*asJSON { // stdout of --json is JSON or nothing
			fmt.Fprintf(stdout, "kernel   %s\n", kernel.Release())
		}
		fmt.Fprintln(stderr, "twlab doctor tries features in a scratch network namespace and needs root: run it with sudo")
		return exitEnv
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f, err := kernel.Detect(ctx, kernel.Options{})
	if err != nil {
		fmt.Fprintln(stderr, "twlab doctor:", err)
		return exitEnv
	}
	if *asJSON {
		b, _ := json.MarshalIndent(f, "", "  ")
		fmt.Fprintln(stdout, string(b))
		return exitOK
	}
	line := func(ok bool, what, detail string) {
		mark := "ok "
		if !ok {
			mark = "-- "
		}
		fmt.Fprintf(stdout, "%s %-50s %s\n", mark, what, detail)
	}
	fmt.Fprintf(stdout, "kernel %s\n\n", f.Release)
	line(true, "network namespaces", "")
	line(f.NAT == "ok", "nftables NAT (snat with a port range)", orEmpty(f.NAT))
	line(f.Conntrack == "ok", "conntrack sysctls per namespace", orEmpty(f.Conntrack))
	line(f.EBPF == "ok", "eBPF on tc (clsact + cls_bpf): fixed clock skew", orEmpty(f.EBPF))
	for _, k := range f.Knobs {
		detail := k.State
		if k.State != "per-netns" {
			if h, ok := hints[k.Name]; ok {
				detail += ": " + h
			} else if k.Reason != "" {
				detail += ": " + k.Reason
			}
		}
		line(k.State == "per-netns", k.Name, detail)
	}
	line(len(f.PAWSCounters) > 0, "PAWS counters", fmt.Sprint(f.PAWSCounters))
	line(f.TSOffsets != kernel.OffsetsUnknown, "TCP timestamp offsets (tcp_timestamps=1)", f.TSOffsets+"  ("+f.TSDetail+")")
	line(f.TSHz != 0, "TCP timestamp clock", fmt.Sprintf("%d ticks/s  (%s)", f.TSHz, f.TSHzDetail))
	line(f.TWCount == kernel.TWPerNetns, "TIME_WAIT count per namespace (sockstat)", f.TWCount+"  ("+f.TWCountDetail+"; otherwise twlab counts through sock_diag)")
	q := f.QEMU
	if q == "" {
		q = "not found: apt-get install qemu-system-x86 (for twlab vm)"
	}
	line(f.QEMU != "", "QEMU", q)
	kvm := "no usable /dev/kvm: twlab vm uses software emulation (slower, correct)"
	if f.KVM {
		kvm = "/dev/kvm accepts VMs; twlab vm (--accel auto) uses it when a probe guest runs under it, software emulation otherwise (under nested virtualisation guests may never run)"
	}
	line(f.KVM, "KVM", kvm)
	return exitOK
}

func orEmpty(s string) string {
	if s == "ok" {
		return ""
	}
	return s
}
