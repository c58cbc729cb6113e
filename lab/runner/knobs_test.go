package runner

import (
	"strings"
	"testing"
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
