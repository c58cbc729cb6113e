package runner

import (
	"strings"
	"testing"

	"github.com/twlab/twlab/lab/kernel"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/sysctl"
)

// On a kernel where tcp_timestamps is global, clients=0 and server=1 in one
// cell cannot both hold: the last write would win and the cell would run as
// something else than it says (seen on 4.10: every "timestamps=0" cell ran
// with timestamps on).
func TestConflictingGlobalKnobs(t *testing.T) {
	plan := []*plannedKnob{
		{key: "clients.net.ipv4.tcp_timestamps", name: "net.ipv4.tcp_timestamps", value: "2", global: true, implied: "ts_skew: fixed"},
		{key: "server.net.ipv4.tcp_timestamps", name: "net.ipv4.tcp_timestamps", value: "1", global: true},
		{key: "server.net.ipv4.tcp_rfc1337", name: "net.ipv4.tcp_rfc1337", value: "1", global: true},
		{key: "lvs.net.ipv4.ip_forward", name: "net.ipv4.ip_forward", value: "1"},
	}
	got := conflicts(plan)
	if len(got) != 1 {
		t.Fatalf("conflicts %q, want one", got)
	}
	for _, want := range []string{"net.ipv4.tcp_timestamps is global", "clients.net.ipv4.tcp_timestamps=2 (implied by ts_skew: fixed)", "server.net.ipv4.tcp_timestamps=1"} {
		if !strings.Contains(got[0], want) {
			t.Errorf("%q lacks %q", got[0], want)
		}
	}
	// The same value from two roles, or different values of a knob that is
	// per-namespace here, is no conflict.
	plan[1].value = "2"
	if got := conflicts(plan); len(got) != 0 {
		t.Errorf("equal values: %q", got)
	}
	plan[1].value, plan[0].global, plan[1].global = "1", false, false
	if got := conflicts(plan); len(got) != 0 {
		t.Errorf("per-namespace knob: %q", got)
	}
}

// Where tcp_timestamps is global, the clients' 2 that ts_skew: fixed implies
// gives way to the server's explicit 0 (no connection carries a timestamp
// either way), and to its 1 where the kernel has no random offsets (2 means
// 1 there): timestamps-off's cells were n/a on every kernel with a global
// knob. An explicit clients value, a server at 1 where 2 turns random
// offsets off (4.10 on), a kernel not known or a per-namespace knob keep it.
func TestImpliedTimestampsYieldToServerOff(t *testing.T) {
	global := sysctl.Availability{Exists: true, Host: true}
	perNS := sysctl.Availability{Exists: true, Writable: true, Host: true}
	mk := func(clientsImplied string, server string, a sysctl.Availability) (*cellRun, []*plannedKnob, []sysctl.Availability) {
		plan := []*plannedKnob{
			{key: "lvs.net.ipv4.ip_forward", name: "net.ipv4.ip_forward", value: "1", implied: "the box forwards"},
			{key: "clients.net.ipv4.tcp_timestamps", name: "net.ipv4.tcp_timestamps", value: "2", implied: clientsImplied},
			{key: "server.net.ipv4.tcp_timestamps", name: "net.ipv4.tcp_timestamps", value: server},
		}
		return &cellRun{rc: &result.Cell{}, opt: cellOpts{facts: &kernel.Facts{Major: 4, Minor: 9, TSOffsets: kernel.OffsetsNone}}}, plan, []sysctl.Availability{perNS, a, a}
	}
	cr, plan, probes := mk("ts_skew: fixed", "0", global)
	plan, probes = cr.yieldImplied(plan, probes)
	if len(plan) != 2 || len(probes) != 2 || plan[1].key != "server.net.ipv4.tcp_timestamps" || len(conflicts(plan)) != 0 {
		t.Fatalf("plan %v: want the implied clients knob dropped", keys(plan))
	}
	if len(cr.rc.Notes) != 1 || !strings.Contains(cr.rc.Notes[0], "nothing to skew") {
		t.Errorf("notes %q: want why the clients run without timestamps", cr.rc.Notes)
	}
	cr, plan, probes = mk("ts_skew: fixed", "1", global)
	if plan, _ = cr.yieldImplied(plan, probes); len(plan) != 2 || len(cr.rc.Notes) != 1 || !strings.Contains(cr.rc.Notes[0], "so 2 means 1") {
		t.Errorf("server 1 on 4.9: plan %v, notes %q; want the implied knob dropped", keys(plan), cr.rc.Notes)
	}
	for _, c := range []struct {
		implied, server string
		a               sysctl.Availability
		facts           *kernel.Facts
	}{
		{"", "0", global, nil},
		{"ts_skew: fixed", "1", global, &kernel.Facts{Major: 4, Minor: 10, TSOffsets: kernel.OffsetsPerPair}},
		{"ts_skew: fixed", "1", global, &kernel.Facts{Major: 4, Minor: 9, TSOffsets: kernel.OffsetsUnknown}},
		{"ts_skew: fixed", "1", global, nil},
		{"ts_skew: fixed", "0", perNS, nil},
	} {
		cr, plan, probes := mk(c.implied, c.server, c.a)
		cr.opt.facts = c.facts
		if plan, _ = cr.yieldImplied(plan, probes); len(plan) != 3 || len(cr.rc.Notes) != 0 {
			t.Errorf("implied %q, server %s, %+v, facts %+v: plan %v, notes %q; want it kept", c.implied, c.server, c.a, c.facts, keys(plan), cr.rc.Notes)
		}
	}
}

func keys(plan []*plannedKnob) []string {
	var out []string
	for _, pk := range plan {
		out = append(out, pk.key)
	}
	return out
}
