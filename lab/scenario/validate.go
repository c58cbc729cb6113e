package scenario

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/twlab/twlab/lab/spec"
	"github.com/twlab/twlab/lab/sysctl"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// maxKnobsPerRole bounds a role's sysctls (/proc/sys/net has about 1 000
// files in all; a lab sets a handful).
const maxKnobsPerRole = 256

// validate checks ranges and cross-field rules; positions come from the tree.
func validate(file string, root *node, s *Scenario) Errors {
	idx := indexTree(root)
	var errs Errors
	bad := func(field, format string, a ...any) {
		e := &Error{File: file, Field: field, Msg: fmt.Sprintf(format, a...)}
		if n, ok := idx[field]; ok {
			e.Line, e.Col = n.Line, n.Column
			if n.Field != "" {
				// A value an include, the matrix or --set put there: named
				// as such, and located where it was written (by the
				// caller), not at the file's value it replaced.
				e.Field = n.Field
				if strings.HasPrefix(n.Field, "include[") {
					e.Line, e.Col = 0, 0
				}
			}
		}
		errs = append(errs, e)
	}
	if s.Name == "" {
		bad("name", "missing; give the scenario a short name such as nat-paws")
	} else if !nameRE.MatchString(s.Name) {
		bad("name", "%q: want lowercase letters, digits, '-' or '_' (at most 64), e.g. nat-paws", s.Name)
	}
	rng := func(field string, v, lo, hi int) {
		if v < lo || v > hi {
			bad(field, "%d is out of range; want %d..%d", v, lo, hi)
		}
	}
	rng("clients.count", s.Clients.Count, 1, MaxClients)
	if s.Clients.TSSkew == spec.TSSkewKernel && (len(s.Clients.TSOffsets) > 0 || s.Clients.TSOffsetStep != nil) {
		bad("clients.ts_skew", "offsets are given but ts_skew is kernel; set ts_skew: fixed to apply them")
	}
	if len(s.Clients.TSOffsets) > s.Clients.Count && s.Clients.Count > 0 {
		bad("clients.ts_offsets", "%d offsets for %d clients", len(s.Clients.TSOffsets), s.Clients.Count)
	}
	if st := s.Clients.TSOffsetStep; st != nil {
		if span := int64(st.Ticks) * int64(max(s.Clients.Count-1, 0)); span > MaxTSOffset || span < -MaxTSOffset {
			bad("clients.ts_offset_step", "%s × %d clients passes ±%d ticks", st.Text, s.Clients.Count-1, MaxTSOffset)
		}
	}
	rng("lvs.snat_ports", s.LVS.SNATPorts, 0, 64512)
	if s.LVS.SNATPorts > 0 {
		rng("lvs.snat_port_base", s.LVS.SNATPortBase, 1024, 65535)
		if s.LVS.SNATPortBase+s.LVS.SNATPorts-1 > 65535 {
			bad("lvs.snat_ports", "range %d..%d passes 65535", s.LVS.SNATPortBase, s.LVS.SNATPortBase+s.LVS.SNATPorts-1)
		}
	}
	if t := s.LVS.ConntrackTWTimeout; t != nil && (t.D() < 0 || t.D() > time.Hour || t.D()%time.Second != 0) {
		bad("lvs.conntrack_tw_timeout", "%s: want whole seconds from 0s to 1h", t.D())
	}
	if s.LVS.VIP != "" {
		ip := net.ParseIP(s.LVS.VIP).To4()
		switch {
		case ip == nil:
			bad("lvs.vip", "%q is not an IPv4 address", s.LVS.VIP)
		case !vipNet.Contains(ip) || ip[3] <= 10+MaxClients || ip[3] == 255:
			bad("lvs.vip", "%s: want an address in 198.18.0.%d-254 (the clients' subnet, above client addresses)", ip, 11+MaxClients)
		}
	}
	rng("server.port", s.Server.Port, 1, 65535)
	rng("server.ports", s.Server.Ports, 1, MaxServerPorts)
	if s.Server.Port+s.Server.Ports-1 > 65535 {
		bad("server.ports", "ports %d..%d pass 65535", s.Server.Port, s.Server.Port+s.Server.Ports-1)
	}
	rng("server.keepalive_requests", s.Server.KeepaliveRequests, 1, MaxKeepalive)
	rng("server.backlog", s.Server.Backlog, 1, 65535)
	rng("load.connections", s.Load.Connections, 1, MaxConnections)
	durRange := func(field string, d Duration, lo, hi time.Duration) {
		if d.D() < lo || d.D() > hi {
			bad(field, "%s is out of range; want %s..%s", d.D(), lo, hi)
		}
	}
	durRange("load.duration", s.Load.Duration, 100*time.Millisecond, MaxDuration)
	durRange("load.connect_timeout", s.Load.ConnectTimeout, time.Millisecond, MaxConnectTimeout)
	durRange("load.io_timeout", s.Load.IOTimeout, time.Millisecond, MaxConnectTimeout)
	durRange("load.gap", s.Load.Gap, 0, 10*time.Second)
	if !(s.Load.Rate >= 0 && s.Load.Rate <= 1e6) { // also NaN
		bad("load.rate", "%g is out of range; want 0 (unpaced) to 1000000 connections/s", s.Load.Rate)
	}
	if !(s.Load.NeedsRate >= 0 && s.Load.NeedsRate <= 1e6) {
		bad("load.needs_rate", "%g is out of range; want 0 (no need) to 1000000 connections/s", s.Load.NeedsRate)
	} else if s.Load.Rate > 0 && s.Load.NeedsRate > s.Load.Rate {
		// A paced load never goes faster than its rate: every cell would be
		// n/a, and the run's exit code would blame the machine.
		bad("load.needs_rate", "%g is above load.rate %g, which paces the load: no cell could reach it", s.Load.NeedsRate, s.Load.Rate)
	}
	rng("load.concurrency", s.Load.Concurrency, 1, MaxConcurrency)
	if s.Load.BindPort != 0 {
		rng("load.bind_port", s.Load.BindPort, 1024, 65535-MaxConcurrency)
	}
	if s.LVS.Mode != spec.LVSRoute && s.LVS.SNATPorts > 0 && s.LVS.SNATPorts < s.Load.Concurrency && s.Server.Ports < s.Load.Concurrency {
		bad("load.concurrency", "%d chains share %d SNAT port(s) and %d server port(s): concurrent connections would collide in conntrack; give server.ports >= load.concurrency", s.Load.Concurrency, s.LVS.SNATPorts, s.Server.Ports)
	}
	for role, ks := range s.Sysctl {
		if !slices.Contains(Roles, role) {
			bad("sysctl."+role, "unknown role; want one of %s", strings.Join(Roles, ", "))
			continue
		}
		if len(ks) > maxKnobsPerRole {
			// Each cell carries every knob as a variable: 18 500 knobs in
			// 256 cells took a minute and 1.4 GB to check.
			bad("sysctl."+role, "%d knobs; at most %d per role", len(ks), maxKnobsPerRole)
			continue
		}
		seen := map[string]bool{}
		for _, k := range ks {
			field := "sysctl." + role + "." + k.Name
			e := func(format string, a ...any) {
				errs = append(errs, &Error{File: file, Line: k.Line, Col: k.Col, Field: field, Msg: fmt.Sprintf(format, a...)})
			}
			if err := sysctl.ValidName(k.Name); err != nil {
				e("%v", err)
			}
			if seen[k.Name] {
				e("given twice")
			}
			seen[k.Name] = true
			if k.Value == "" || len(k.Value) > 256 || strings.ContainsAny(k.Value, "\n\r\x00") {
				e("value %q: want a non-empty single-line value of at most 256 bytes", k.Value)
			} else if err := sysctl.CheckValue(k.Name, k.Value); err != nil {
				ve := &Error{File: file, Line: k.Line, Col: k.Col, Field: field, Msg: err.Error()}
				if k.ValueField != "" {
					ve.Line, ve.Col, ve.Field = k.ValueLine, k.ValueCol, k.ValueField
				}
				errs = append(errs, ve)
			}
		}
	}
	axes := map[string]bool{}
	for _, a := range s.Matrix {
		if axes[a.Key] {
			errs = append(errs, &Error{File: file, Line: a.Line, Col: a.Col, Field: "matrix." + a.Key, Msg: "given twice"})
		}
		axes[a.Key] = true
		if len(a.Values) == 0 {
			errs = append(errs, &Error{File: file, Line: a.Line, Col: a.Col, Field: "matrix." + a.Key, Msg: "no values; want a non-empty list"})
		}
		if err := checkKey(a.Key); err != nil {
			errs = append(errs, &Error{File: file, Line: a.Line, Col: a.Col, Field: "matrix." + a.Key, Msg: err.Error()})
		}
	}
	return errs
}

var vipNet = &net.IPNet{IP: net.IPv4(198, 18, 0, 0).To4(), Mask: net.CIDRMask(24, 32)}
