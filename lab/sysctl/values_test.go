package sysctl

import (
	"strings"
	"testing"
)

func TestCheckValue(t *testing.T) {
	for _, tc := range []struct {
		name, value, frag string // frag "" means accepted
	}{
		{"net.ipv4.tcp_timestamps", "2", ""},
		{"net.ipv4.tcp_timestamps", " 1 ", ""},
		{"net.ipv4.tcp_timestamps", "yes", "want 0, 1 or 2"},
		{"net.ipv4.tcp_timestamps", "3", "want 0, 1 or 2"},
		{"net.ipv4.tcp_tw_recycle", "2", "want 0 or 1"},
		{"net.ipv4.tcp_rfc1337", "1", ""},
		{"net.ipv4.tcp_rfc1337", "0x1", ""}, // the kernel reads C's bases
		{"net.ipv4.tcp_fin_timeout", "2147483647", "whole number from 0 to 2147483"},
		{"net.ipv4.tcp_tw_reuse_delay", "100000", "from 1 to 60000"},
		{"net.ipv4.tcp_max_tw_buckets", "0", ""},
		{"net.ipv4.tcp_max_tw_buckets", "-1", "whole number from 0"},
		{"net.ipv4.tcp_max_tw_buckets", "1e6", "whole number from 0"},
		{"net.ipv4.tcp_tw_reuse_delay", "0", "whole number from 1"},
		{"net.netfilter.nf_conntrack_tcp_timeout_time_wait", "0", ""},
		{"net.netfilter.nf_conntrack_tcp_timeout_time_wait", "1s", "whole number"},
		{"net.ipv4.ip_local_port_range", "40000\t40063", ""},
		{"net.ipv4.ip_local_port_range", "40000 40000", ""},
		{"net.ipv4.ip_local_port_range", "40063 40000", "LOW <= HIGH"},
		{"net.ipv4.ip_local_port_range", "0 100", "LOW <= HIGH"},
		{"net.ipv4.ip_local_port_range", "40000", "two ports"},
		// Knobs twlab has no table for are the kernel's to judge.
		{"net.ipv4.tcp_congestion_control", "cubic", ""},
		{"net.core.default_qdisc", "anything at all", ""},
	} {
		err := CheckValue(tc.name, tc.value)
		switch {
		case tc.frag == "" && err != nil:
			t.Errorf("%s=%q: %v, want accepted", tc.name, tc.value, err)
		case tc.frag != "" && (err == nil || !strings.Contains(err.Error(), tc.frag)):
			t.Errorf("%s=%q: error %v, want one with %q", tc.name, tc.value, err, tc.frag)
		}
	}
}
