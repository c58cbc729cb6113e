package sysctl_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/sysctl"
	"github.com/vishvananda/netns"
)

func TestValidName(t *testing.T) {
	good := []string{"net.ipv4.tcp_rfc1337", "net.netfilter.nf_conntrack_tcp_timeout_time_wait", "net.ipv4.conf.twlab-ab12-c1.rp_filter"}
	bad := []string{"", "net", "kernel.pid_max", "net.ipv4/../../kernel/x", "net..ipv4", "net.ipv4.tcp rfc", "../etc/passwd", "net.ipv4.tcp_rfc1337\n", "/proc/sys/net/ipv4/x", "net.ipv4.*"}
	for _, n := range good {
		if err := sysctl.ValidName(n); err != nil {
			t.Errorf("ValidName(%q) = %v, want ok", n, err)
		}
	}
	for _, n := range bad {
		if err := sysctl.ValidName(n); err == nil {
			t.Errorf("ValidName(%q) = ok, want an error", n)
		}
	}
	if p := sysctl.Path("net.ipv4.tcp_rfc1337"); p != "/proc/sys/net/ipv4/tcp_rfc1337" {
		t.Errorf("Path = %s", p)
	}
	if sysctl.Normalize("32768\t60999\n") != "32768 60999" {
		t.Error("Normalize does not fold whitespace")
	}
	if !sysctl.AbsentEquivalent("net.ipv4.tcp_tw_recycle", "0") || sysctl.AbsentEquivalent("net.ipv4.tcp_tw_recycle", "1") {
		t.Error("AbsentEquivalent: tcp_tw_recycle=0 is the kernel's behaviour without the knob, =1 is not")
	}
}

// newNS makes an anonymous namespace for a test; closing the handle frees it.
func newNS(t *testing.T) netns.NsHandle {
	t.Helper()
	// A named namespace whose name is dropped at once: the open handle keeps
	// it alive and nothing is left under /run/netns if the test dies.
	name := "twlab-" + roottest.RunID(t) + "-sysctl"
	h, err := netnsutil.NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.DeleteNamed(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestProbeAndApplyStayInNamespace(t *testing.T) {
	roottest.Skip(t)
	ns := newNS(t)
	hostBefore, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_rfc1337")
	a, err := sysctl.Probe(ns, "net.ipv4.tcp_rfc1337")
	if err != nil {
		t.Fatal(err)
	}
	if !a.Exists || !a.Writable {
		t.Fatalf("tcp_rfc1337 in a namespace: %+v (per-namespace since about 4.15)", a)
	}
	want := "1"
	if strings.TrimSpace(string(hostBefore)) == "1" {
		want = "0"
	}
	got, err := sysctl.Apply(ns, []sysctl.Setting{{Name: "net.ipv4.tcp_rfc1337", Requested: want}})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Actual != want {
		t.Errorf("read back %q, want %q", got[0].Actual, want)
	}
	vals, err := sysctl.Read(ns, []string{"net.ipv4.tcp_rfc1337", "net.ipv4.no_such_knob"})
	if err != nil || vals["net.ipv4.tcp_rfc1337"] != want {
		t.Errorf("Read = %v, %v", vals, err)
	}
	hostAfter, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_rfc1337")
	if string(hostAfter) != string(hostBefore) {
		t.Errorf("host tcp_rfc1337 changed: %q -> %q", hostBefore, hostAfter)
	}

	missing, err := sysctl.Probe(ns, "net.ipv4.tcp_twlab_no_such_knob")
	if err != nil {
		t.Fatal(err)
	}
	if missing.Exists || !strings.Contains(missing.Reason, "does not exist on this kernel") {
		t.Errorf("missing knob: %+v", missing)
	}
	if _, err := os.Stat("/proc/sys/net/ipv4/tcp_tw_recycle"); os.IsNotExist(err) {
		a, _ := sysctl.Probe(ns, "net.ipv4.tcp_tw_recycle")
		if !strings.Contains(a.Reason, "removed in Linux 4.12") {
			t.Errorf("tcp_tw_recycle reason %q should say it was removed in 4.12", a.Reason)
		}
	}
	_, err = sysctl.Apply(ns, []sysctl.Setting{{Name: "net.ipv4.tcp_rfc1337", Requested: "banana"}})
	if err == nil || !strings.Contains(err.Error(), "net.ipv4.tcp_rfc1337") || !strings.Contains(err.Error(), "invalid argument") {
		t.Errorf("kernel-refused value: err = %v, want the knob and the kernel's words", err)
	}
}

// TestApplyRefusesWhatTheKernelPartlyTook: values the kernel takes only a
// part of, with no error of its own, are refused, not recorded as asked.
func TestApplyRefusesWhatTheKernelPartlyTook(t *testing.T) {
	roottest.Skip(t)
	ns := newNS(t)
	// Depending on the kernel, a value too many is a short write (it took
	// "1" and not the rest) or taken whole and ignored (it now holds "1").
	for _, tc := range []struct{ name, value, says string }{
		{"net.ipv4.tcp_rfc1337", "1 0", `"1"`},
		{"net.ipv4.tcp_tw_reuse", "1 1", `"1"`},
		{"net.ipv4.ip_local_port_range", "40000", "it holds 2 values here, not 1"},
		{"net.ipv4.ip_local_port_range", "40000 40007 5", `it took "40000 40007" and not the rest, "5"`},
	} {
		_, err := sysctl.Apply(ns, []sysctl.Setting{{Name: tc.name, Requested: tc.value}})
		var re *sysctl.RefusedError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s=%q: err = %v, want a refusal saying %q", tc.name, tc.value, err, tc.says)
		}
	}
	// A list the knob takes whole is fine, however it is spaced.
	got, err := sysctl.Apply(ns, []sysctl.Setting{{Name: "net.ipv4.ip_local_port_range", Requested: "40000   40007"}})
	if err != nil || got[0].Actual != "40000 40007" {
		t.Errorf("ip_local_port_range 40000 40007: %v, %v", got, err)
	}
}

func TestPerDevice(t *testing.T) {
	for name, want := range map[string]bool{
		"net.ipv4.conf.eth0.rp_filter":        true,
		"net.ipv6.neigh.ens3.retrans_time_ms": true,
		"net.ipv4.conf.all.rp_filter":         false,
		"net.ipv4.conf.default.rp_filter":     false,
		"net.ipv4.neigh.default.gc_thresh1":   false,
		"net.ipv4.tcp_tw_recycle":             false,
		"net.core.message_cost":               false,
	} {
		if got := sysctl.PerDevice(name); got != want {
			t.Errorf("PerDevice(%s) = %v, want %v", name, got, want)
		}
	}
}

// Values compare as the kernel holds them: it reads integers in base 0
// (0x1 is 1, 010 is 8) and prints them in decimal and tab-separated.
func TestNormalizeAsTheKernelReads(t *testing.T) {
	for in, want := range map[string]string{
		"0x1":            "1",
		"010":            "8",
		"0":              "0",
		"-1":             "-1",
		"40000\t60999\n": "40000 60999",
		"0x9c40 0xee47":  "40000 60999",
		"+1":             "+1", // refused by the kernel; left for it to say so
		"1_000":          "1_000",
		"08":             "08",
		"cubic":          "cubic",
		"1.0":            "1.0",
	} {
		if got := sysctl.Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}
