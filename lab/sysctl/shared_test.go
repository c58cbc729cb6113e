package sysctl

import (
	"runtime"
	"strings"
	"testing"

	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/vishvananda/netns"
)

func TestReleaseBefore(t *testing.T) {
	for _, c := range []struct {
		rel  string
		want bool
	}{
		{"4.9.337", true}, {"5.10.0-28-amd64", true}, {"5.12.19", true},
		{"5.13.0", false}, {"6.1.0-9-amd64", false}, {"10.0", false}, {"", true}, {"garbage", true},
	} {
		if got := releaseBefore(c.rel, [2]int{5, 13}); got != c.want {
			t.Errorf("releaseBefore(%q, 5.13) = %v, want %v", c.rel, got, c.want)
		}
	}
}

// nf_conntrack_max before 5.13 is writable in any namespace of the initial
// user namespace and is the host's one value: Probe must call it global
// (not writable), or a cell writes the host's conntrack limit for good.
// Here a per-namespace knob stands in for it, with a kernel "before" the
// bound, and one "after" it.
func TestSharedKnobIsNotANodes(t *testing.T) {
	roottest.Skip(t)
	const knob = "net.ipv4.tcp_rfc1337"
	sharedBefore[knob] = [2]int{5, 13}
	oldRel := runningRelease
	t.Cleanup(func() { delete(sharedBefore, knob); runningRelease = oldRel })

	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New()
	netns.Set(orig)
	orig.Close()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()

	runningRelease = func() string { return "4.19.0-27-amd64" }
	a, err := Probe(ns, knob)
	if err != nil {
		t.Fatal(err)
	}
	if a.Writable || !a.Host || !strings.Contains(a.Reason, "global on this kernel") {
		t.Errorf("on 4.19: %+v, want not writable (global) and the reason", a)
	}
	runningRelease = func() string { return "5.13.0" }
	if a, err := Probe(ns, knob); err != nil || !a.Writable || a.Reason != "" {
		t.Errorf("on 5.13: %+v, %v, want a node's knob", a, err)
	}
}

// tcp_tw_recycle=0 on a kernel without it is what the kernel does; on a
// kernel before 4.12 the knob is there, and not seeing it (twlab in a
// container's namespace) says nothing of the machine's value.
func TestAbsentEquivalentOnlyAfterRemoval(t *testing.T) {
	oldRel := runningRelease
	t.Cleanup(func() { runningRelease = oldRel })
	for _, c := range []struct {
		rel  string
		want bool
	}{{"6.18.0", true}, {"4.12.0", true}, {"4.10.17", false}, {"4.4.0-210-generic", false}} {
		runningRelease = func() string { return c.rel }
		if got := AbsentEquivalent("net.ipv4.tcp_tw_recycle", "0"); got != c.want {
			t.Errorf("on %s: AbsentEquivalent(tcp_tw_recycle=0) = %v, want %v", c.rel, got, c.want)
		}
	}
	runningRelease = func() string { return "6.18.0" }
	if AbsentEquivalent("net.ipv4.tcp_tw_recycle", "1") {
		t.Error("tcp_tw_recycle=1 is no kernel's behaviour without the knob")
	}
}
