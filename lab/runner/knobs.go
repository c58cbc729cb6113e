package runner

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/twlab/twlab/lab/kernel"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/scenario"
	"github.com/twlab/twlab/lab/skew"
	"github.com/twlab/twlab/lab/sysctl"
	"github.com/twlab/twlab/lab/topo"
)

type plannedKnob struct {
	key, name, value string
	nodes            []*topo.Node
	skip             bool // absent, and absence means the value asked for
	global           bool // VM only: written once in the initial namespace
	// host: global on this kernel, outside a VM, and the host already holds
	// the value asked for: in force on every node, never written.
	host    bool
	implied string
}

// knobPlan lists the cell's sysctls with the nodes they go to, plus the
// knobs the lab itself needs on the box.
func (cr *cellRun) knobPlan() []*plannedKnob {
	lab, s := cr.lab.topo, cr.s
	nodesOf := func(role string) []*topo.Node {
		switch role {
		case "clients":
			return lab.Clients
		case "lvs":
			return []*topo.Node{lab.LVS}
		}
		return []*topo.Node{lab.Server}
	}
	var out []*plannedKnob
	out = append(out, &plannedKnob{key: "lvs.net.ipv4.ip_forward", name: "net.ipv4.ip_forward", value: "1", nodes: nodesOf("lvs"),
		implied: "the box forwards"})
	if t := s.LVS.ConntrackTWTimeout; t != nil {
		out = append(out, &plannedKnob{key: "lvs.net.netfilter.nf_conntrack_tcp_timeout_time_wait",
			name: "net.netfilter.nf_conntrack_tcp_timeout_time_wait", value: fmt.Sprint(int(t.D().Seconds())), nodes: nodesOf("lvs"),
			implied: "lvs.conntrack_tw_timeout"})
	}
	if s.Clients.TSSkew == skew.ModeFixed && !slices.ContainsFunc(s.Sysctl["clients"], func(k scenario.Knob) bool { return k.Name == "net.ipv4.tcp_timestamps" }) {
		// Fixed skew sits on top of timestamps without the kernel's own
		// random offset; an explicit clients sysctl wins.
		out = append(out, &plannedKnob{key: "clients.net.ipv4.tcp_timestamps", name: "net.ipv4.tcp_timestamps", value: "2", nodes: nodesOf("clients"),
			implied: "ts_skew: fixed"})
	}
	for _, role := range scenario.Roles {
		for _, k := range s.Sysctl[role] {
			out = append(out, &plannedKnob{key: role + "." + k.Name, name: k.Name, value: sysctl.Normalize(k.Value), nodes: nodesOf(role)})
		}
	}
	return out
}

// conflicts finds knobs that are global on this kernel (one value for the
// whole VM) but asked for with different values by different roles, e.g.
// clients tcp_timestamps=0 and server tcp_timestamps=1 on Linux 4.10: the
// last write would win and the cell would run something else than it says.
func conflicts(plan []*plannedKnob) []string {
	byName := map[string][]*plannedKnob{}
	var names []string
	for _, pk := range plan {
		if !pk.global {
			continue
		}
		if _, ok := byName[pk.name]; !ok {
			names = append(names, pk.name)
		}
		byName[pk.name] = append(byName[pk.name], pk)
	}
	sort.Strings(names)
	var out []string
	for _, n := range names {
		pks := byName[n]
		differ := false
		for _, pk := range pks[1:] {
			if pk.value != pks[0].value {
				differ = true
			}
		}
		if !differ {
			continue
		}
		var wants []string
		for _, pk := range pks {
			w := pk.key + "=" + pk.value
			if pk.implied != "" {
				w += " (implied by " + pk.implied + ")"
			}
			wants = append(wants, w)
		}
		out = append(out, fmt.Sprintf("%s is global on this kernel (one value for the whole VM) and this cell asks for %s", n, strings.Join(wants, " and ")))
	}
	return out
}

// applyGlobal writes a knob that is global on this kernel in the VM's
// initial namespace, the lab first remembering the value it had so that
// Close puts it back: the next cell must not inherit it.
func (cr *cellRun) applyGlobal(pk *plannedKnob) error {
	init, err := sysctl.InitialNS()
	if err != nil {
		return err
	}
	defer init.Close()
	if err := cr.lab.saveGlobal(init, pk.name); err != nil {
		return fmt.Errorf("%s (global): %w", pk.key, err)
	}
	if _, err := sysctl.Apply(init, []sysctl.Setting{{Name: pk.name, Requested: pk.value}}); err != nil {
		return fmt.Errorf("%s (global): %w", pk.key, err)
	}
	return nil
}

// readBack records what the kernel holds for every planned knob right
// before the load starts: read in each node the knob went to, never the
// value that was asked for. A global knob is read in the VM's initial
// namespace and marked so; nodes that disagree are listed one by one.
func (cr *cellRun) readBack(plan []*plannedKnob) (map[string]string, error) {
	out := map[string]string{}
	for _, pk := range plan {
		switch {
		case pk.skip:
			out[pk.key] = "absent"
			continue
		case pk.host:
			v, err := sysctl.ReadHost(pk.name)
			if err != nil {
				return nil, fmt.Errorf("read back %s: %w", pk.key, err)
			}
			out[pk.key] = v + " (global)"
			continue
		case pk.global:
			init, err := sysctl.InitialNS()
			if err != nil {
				return nil, err
			}
			v, err := sysctl.Read(init, []string{pk.name})
			init.Close()
			if err != nil {
				return nil, fmt.Errorf("read back %s: %w", pk.key, err)
			}
			out[pk.key] = v[pk.name] + " (global)"
			continue
		}
		var vals []string
		for _, n := range pk.nodes {
			v, err := sysctl.Read(n.NS, []string{pk.name})
			if err != nil {
				return nil, fmt.Errorf("read back %s in %s: %w", pk.key, n.Name, err)
			}
			vals = append(vals, v[pk.name])
		}
		same := true
		for _, v := range vals[1:] {
			same = same && v == vals[0]
		}
		if same {
			out[pk.key] = vals[0]
			continue
		}
		var per []string
		for i, n := range pk.nodes {
			per = append(per, n.Name+"="+vals[i])
		}
		out[pk.key] = strings.Join(per, " ")
	}
	return out, nil
}

// yieldImplied drops the clients' tcp_timestamps=2 that ts_skew: fixed
// implies when the knob is global on this kernel and the server asks for a
// value that runs the same cell: 0 (then no connection of the lab carries
// a timestamp whatever the clients say, so there is nothing to skew), or 1
// on a kernel without random timestamp offsets (detected: ts_offsets none;
// before 4.10), where 2 means 1. From 4.10 to the knob's move into the
// namespace, 2 and 1 differ (random offsets off or on) and the conflict
// stands. Kept, it made every timestamps-off cell n/a on such kernels: a
// conflict twlab itself had made.
func (cr *cellRun) yieldImplied(plan []*plannedKnob, probes []sysctl.Availability) ([]*plannedKnob, []sysctl.Availability) {
	const ts = "net.ipv4.tcp_timestamps"
	i := slices.IndexFunc(plan, func(pk *plannedKnob) bool { return pk.key == "server."+ts })
	if i < 0 {
		return plan, probes
	}
	why := ""
	switch server := plan[i].value; {
	case server == "0":
		why = "no connection carries a timestamp either way, so there is nothing to skew"
	case server == "1" && cr.opt.facts != nil && cr.opt.facts.TSOffsets == kernel.OffsetsNone:
		why = "this kernel gives timestamps no random offset (that came in Linux 4.10), so 2 means 1"
	default:
		return plan, probes
	}
	for j, pk := range plan {
		global := probes[j].Host && !(probes[j].Exists && probes[j].Writable)
		if pk.key == "clients."+ts && pk.implied != "" && global {
			cr.rc.Notes = append(cr.rc.Notes, fmt.Sprintf("%s is global on this kernel and the server asks for %s: the clients run with it too, not with the 2 that %s implies; %s", ts, plan[i].value, pk.implied, why))
			return slices.Delete(plan, j, j+1), slices.Delete(probes, j, j+1)
		}
	}
	return plan, probes
}

// applyKnobs probes, checks and writes the cell's knobs. A knob this kernel
// lacks, or that is global where twlab may not write it, or a conflict
// between roles on a global knob, leaves the cell n/a with the reason.
func (cr *cellRun) applyKnobs() ([]*plannedKnob, error) {
	rc := cr.rc
	plan := cr.knobPlan()
	probes := make([]sysctl.Availability, len(plan))
	for i, pk := range plan {
		a, err := sysctl.Probe(pk.nodes[0].NS, pk.name)
		if err != nil {
			return nil, err
		}
		probes[i] = a
	}
	plan, probes = cr.yieldImplied(plan, probes)
	var na []string
	for i, pk := range plan {
		a := probes[i]
		switch {
		case a.Exists && a.Writable:
		case cr.opt.vm && a.Host:
			// The whole VM is the lab: a knob global on this kernel is set
			// in the initial namespace, for every node at once.
			pk.global = true
		case a.Host && !sysctl.PerDevice(pk.name):
			// Global on this kernel, and twlab never writes the host: what
			// the host holds is in force in every lab namespace. The cell
			// runs only if that is the value asked for (tcp_tw_recycle=0
			// on a 4.10 host whose tw_recycle is 1 would run with it on).
			v, err := sysctl.ReadHost(pk.name)
			if err != nil {
				return nil, err
			}
			if v != sysctl.Normalize(pk.value) {
				na = append(na, fmt.Sprintf("%s is global on this kernel (not per-namespace) and the host holds %s, not %s: twlab never changes the host; run it in a VM (twlab vm)", pk.name, v, pk.value))
				continue
			}
			pk.host = true
			rc.Notes = append(rc.Notes, fmt.Sprintf("%s is global on this kernel (not per-namespace) and the host holds %s, the value asked for: in force on every node, not written", pk.key, v))
		case sysctl.AbsentEquivalent(pk.name, pk.value):
			rc.Notes = append(rc.Notes, fmt.Sprintf("%s: %s; the cell runs as %s=%s, which is what the kernel does without it", pk.key, a.Reason, pk.name, pk.value))
			pk.skip = true
		default:
			na = append(na, a.Reason)
		}
	}
	na = append(na, conflicts(plan)...)
	if len(na) > 0 {
		rc.Status, rc.Reason = result.CellNA, "n/a: "+strings.Join(dedupe(na), "; ")
		return plan, nil
	}
	var globals []string
	for _, pk := range plan {
		switch {
		case pk.skip, pk.host:
		case pk.global:
			if err := cr.applyGlobal(pk); err != nil {
				return plan, err
			}
			if !slices.Contains(globals, pk.name) {
				globals = append(globals, pk.name)
			}
		default:
			for _, n := range pk.nodes {
				if _, err := sysctl.Apply(n.NS, []sysctl.Setting{{Name: pk.name, Requested: pk.value}}); err != nil {
					return plan, fmt.Errorf("%s (%s): %w", pk.key, n.Name, err)
				}
			}
		}
	}
	if len(globals) > 0 {
		rc.Notes = append(rc.Notes, fmt.Sprintf("Global on this kernel, so written in the VM's initial namespace and in force on every node: %s.", strings.Join(globals, ", ")))
	}
	return plan, nil
}
