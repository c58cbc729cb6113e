package sysctl

import (
	"fmt"
	"strconv"
	"strings"
)

// shape is what a knob twlab knows accepts. The kernel parses most of these
// as plain integers and would take 3 for a 0/1 switch, or refuse "yes" only
// when the cell runs (after the lab is built, as "invalid argument"); a
// scenario that spells them wrongly is told so by validate, with the line.
type shape struct {
	choices  []string // the values with a meaning, e.g. 0, 1, 2
	min, max int64    // otherwise an integer in [min, max]
	pair     bool     // two integers "low high" in [min, max], low <= high
	meaning  string   // what the choices mean, for the error
}

const maxInt = 1<<31 - 1

// maxJiffySeconds bounds knobs the kernel keeps in jiffies: seconds times
// HZ (up to 1000) must fit an int, or the write is refused.
const maxJiffySeconds = maxInt / 1000

var shapes = map[string]shape{
	"net.ipv4.tcp_timestamps":        {choices: []string{"0", "1", "2"}, meaning: "0 off, 1 on with a random offset per connection, 2 on without it (Linux 4.10 and later)"},
	"net.ipv4.tcp_tw_recycle":        {choices: []string{"0", "1"}, meaning: "0 off, 1 on (kernels before 4.12)"},
	"net.ipv4.tcp_tw_reuse":          {choices: []string{"0", "1", "2"}, meaning: "0 off, 1 on, 2 loopback only (Linux 4.19 and later)"},
	"net.ipv4.tcp_rfc1337":           {choices: []string{"0", "1"}, meaning: "0 off, 1 on"},
	"net.ipv4.tcp_syncookies":        {choices: []string{"0", "1", "2"}, meaning: "0 off, 1 when the SYN queue overflows, 2 always"},
	"net.ipv4.tcp_tw_reuse_delay":    {min: 1, max: 60000}, // ms; the kernel refuses more (measured: 100000)
	"net.ipv4.tcp_max_tw_buckets":    {min: 0, max: maxInt},
	"net.ipv4.tcp_max_syn_backlog":   {min: 0, max: maxInt},
	"net.ipv4.tcp_invalid_ratelimit": {min: 0, max: maxInt},
	"net.ipv4.tcp_fin_timeout":       {min: 0, max: maxJiffySeconds},
	"net.core.somaxconn":             {min: 0, max: maxInt},
	"net.ipv4.ip_local_port_range":   {pair: true, min: 1, max: 65535},
}

// CheckValue says whether value is one the knob accepts with a meaning. Knobs
// twlab does not know are left to the kernel.
func CheckValue(name, value string) error {
	s, ok := shapes[name]
	if !ok && strings.HasPrefix(name, "net.netfilter.nf_conntrack_") && strings.Contains(name, "_timeout") {
		s, ok = shape{min: 0, max: maxJiffySeconds}, true // seconds, kept in jiffies
	}
	if !ok {
		return nil
	}
	v := Normalize(value)
	switch {
	case s.choices != nil:
		// The kernel reads integers in C's bases: 0x1 and 01 are 1.
		n, err := strconv.ParseInt(v, 0, 64)
		for _, c := range s.choices {
			if err == nil && strconv.FormatInt(n, 10) == c {
				return nil
			}
		}
		return fmt.Errorf("value %q: want %s; %s", value, orList(s.choices), s.meaning)
	case s.pair:
		f := strings.Fields(v)
		if len(f) == 2 {
			lo, err1 := strconv.ParseInt(f[0], 10, 64)
			hi, err2 := strconv.ParseInt(f[1], 10, 64)
			if err1 == nil && err2 == nil && s.min <= lo && lo <= hi && hi <= s.max {
				return nil
			}
		}
		return fmt.Errorf("value %q: want two ports \"LOW HIGH\" with %d <= LOW <= HIGH <= %d, e.g. \"40000 40063\" (the kernel also wants LOW at or above ip_unprivileged_port_start, 1024 by default)", value, s.min, s.max)
	}
	n, err := strconv.ParseInt(v, 0, 64)
	if err != nil || n < s.min || n > s.max {
		return fmt.Errorf("value %q: want a whole number from %d to %d", value, s.min, s.max)
	}
	return nil
}

func orList(cs []string) string {
	if len(cs) == 1 {
		return cs[0]
	}
	return strings.Join(cs[:len(cs)-1], ", ") + " or " + cs[len(cs)-1]
}
