package scenario

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twlab/twlab/lab/expr"
	"github.com/twlab/twlab/lab/sysctl"
	"gopkg.in/yaml.v3"
)

// Roles that carry sysctls.
var Roles = []string{"clients", "lvs", "server"}

// Plan is a validated scenario expanded into cells.
type Plan struct {
	File     string
	Scenario *Scenario // with defaults and --set overrides, before the matrix
	Cells    []*Cell
}

// Cell is one full set of knobs.
type Cell struct {
	Index int
	ID    string
	// Matrix holds this cell's matrix assignments in axis order.
	Matrix []KV
	S      *Scenario
	// Vars are every field and sysctl of the resolved scenario by dotted
	// name ("lvs.snat_ports", "server.net.ipv4.tcp_rfc1337"); `when`
	// selectors and expectations read them.
	Vars map[string]string
	// Expect lists the expectations whose selector matches this cell.
	Expect []*Expectation
}

// KV is one assignment.
type KV struct{ Key, Value string }

// Expectation is a parsed expect entry.
type Expectation struct {
	Name    string
	When    *expr.Expr
	Asserts []*expr.Expr
	Line    int
	// NeedsKernel: the selector names kernel.* facts, which only a run can
	// detect; the runner decides whether it applies.
	NeedsKernel bool
}

// KernelVars are the kernel.* names a `when:` selector may use; the runner
// fills them from detection (lab/kernel), never from the version string.
var KernelVars = []string{"kernel.release", "kernel.major", "kernel.minor", "kernel.ts_offsets",
	"kernel.has_tw_recycle", "kernel.has_tw_reuse_delay", "kernel.has_paws_timewait", "kernel.ebpf", "kernel.ts_hz", "kernel.tw_reuse_loopback", "kernel.tw_counter"}

// Options change a plan from the command line.
type Options struct {
	Set  []string // path=value overrides
	Only string   // expression selecting cells
}

// Load parses, validates and expands a scenario. file names the source in
// errors. Every error is an Errors or *Error with file:line:col.
func Load(file string, src []byte, opt Options) (*Plan, error) {
	root, err := parseTree(file, src)
	if err != nil {
		return nil, err
	}
	if errs := checkFields(file, root, reflect.TypeOf(Scenario{}), ""); len(errs) > 0 {
		return nil, errs
	}
	for _, kv := range opt.Set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, &Error{File: "--set", Msg: fmt.Sprintf("%q: want path=value, e.g. load.connections=50 or server.net.ipv4.tcp_rfc1337=1", kv)}
		}
		if err := setPath(root, strings.TrimSpace(k), strings.TrimSpace(v), 0, 0); err != nil {
			return nil, &Error{File: "--set", Field: k, Msg: err.Error()}
		}
	}
	base, errs := decode(file, root)
	if len(errs) > 0 {
		return nil, errs
	}
	// A --set of a matrix key pins that axis, so the override holds in every
	// cell instead of being silently replaced by the matrix values.
	for _, kv := range opt.Set {
		k, v, _ := strings.Cut(kv, "=")
		for i := range base.Matrix {
			if base.Matrix[i].Key == strings.TrimSpace(k) {
				base.Matrix[i].Values = []string{strings.TrimSpace(v)}
			}
		}
	}
	p := &Plan{File: file, Scenario: base}
	exps, errs := parseExpect(file, base)
	if len(errs) > 0 {
		return nil, errs
	}
	combos, err := expand(file, base)
	if err != nil {
		return nil, err
	}
	var only *expr.Expr
	if opt.Only != "" {
		if only, err = expr.Parse(opt.Only); err != nil {
			return nil, &Error{File: "--only", Msg: err.Error()}
		}
	}
	ids := shortNames(base.Matrix)
	for _, combo := range combos {
		t := cloneNode(root)
		var idParts []string
		for _, kv := range combo.kvs {
			if err := setPath(t, kv.Key, kv.Value, combo.line, combo.col); err != nil {
				return nil, &Error{File: file, Line: combo.line, Field: kv.Key, Msg: err.Error()}
			}
			label, ok := ids[kv.Key]
			if !ok {
				label = ShortName(kv.Key) // an include key that is not an axis
			}
			idParts = append(idParts, label+"="+kv.Value)
		}
		s, errs := decode(file, t)
		if len(errs) > 0 {
			return nil, errs
		}
		c := &Cell{Index: len(p.Cells), Matrix: combo.kvs, S: s, Vars: Flatten(s)}
		c.ID = strings.Join(idParts, ",")
		if c.ID == "" {
			c.ID = "default"
		}
		env := VarsEnv(c.Vars)
		if only != nil {
			if err := unknownName(only, c.Vars); err != nil {
				return nil, &Error{File: "--only", Msg: fmt.Sprintf("%v (cell variables are scenario fields such as lvs.snat_ports and sysctls such as server.net.ipv4.tcp_rfc1337)", err)}
			}
			ok, err := only.Bool(env)
			if err != nil {
				return nil, &Error{File: "--only", Msg: fmt.Sprintf("%v (cell variables are scenario fields such as lvs.snat_ports and sysctls such as server.net.ipv4.tcp_rfc1337)", err)}
			}
			if !ok {
				continue
			}
		}
		for i, e := range exps {
			if e.When != nil {
				w := base.Expect[i].When
				err := unknownName(e.When, c.Vars)
				ok := false
				if err == nil && e.NeedsKernel {
					c.Expect = append(c.Expect, e) // decided at run time
					continue
				}
				if err == nil {
					ok, err = e.When.Bool(env)
				}
				if err != nil {
					return nil, &Error{File: file, Line: w.Line, Col: w.Col, Field: fmt.Sprintf("expect[%d].when", i), Msg: fmt.Sprintf("%v; a selector may use scenario fields (lvs.snat_ports) and sysctls (server.net.ipv4.tcp_rfc1337) that every cell has (cell %s has no such name)", err, c.ID)}
				}
				if !ok {
					continue
				}
			}
			c.Expect = append(c.Expect, e)
		}
		c.Index = len(p.Cells)
		p.Cells = append(p.Cells, c)
	}
	if len(p.Cells) == 0 {
		return nil, &Error{File: file, Msg: "no cells to run (the matrix, exclude or --only leave nothing)"}
	}
	if len(p.Cells) > MaxCells {
		return nil, &Error{File: file, Field: "matrix", Msg: fmt.Sprintf("%d cells; the limit is %d", len(p.Cells), MaxCells)}
	}
	var total time.Duration
	for _, c := range p.Cells {
		total += c.S.Load.Duration.D()
	}
	if total > MaxRunTime {
		return nil, &Error{File: file, Field: "load.duration", Msg: fmt.Sprintf("%d cells × their durations add up to %s; a run is limited to %s", len(p.Cells), total, MaxRunTime)}
	}
	return p, nil
}

// unknownName reports a name of x that vars lack. Evaluation alone would miss
// one behind && or || that short-circuits in every cell.
func unknownName(x *expr.Expr, vars map[string]string) error {
	for _, n := range x.Names() {
		if strings.HasPrefix(n, "kernel.") && slices.Contains(KernelVars, n) {
			continue
		}
		if _, ok := vars[n]; !ok {
			return &expr.UnknownNameError{Name: n}
		}
	}
	return nil
}

// decode turns a tree into a validated Scenario with defaults.
func decode(file string, root *yaml.Node) (*Scenario, Errors) {
	var s Scenario
	if err := root.Decode(&s); err != nil {
		return nil, Errors{decodeError(file, root, err)}
	}
	// A field written as 0 (or "") is validated, not replaced by its default.
	given := map[string]bool{}
	for p, n := range indexTree(root) {
		given[p] = n.ShortTag() != "!!null"
	}
	defaults(&s, given)
	return &s, validate(file, root, &s)
}

func decodeError(file string, root *yaml.Node, err error) *Error {
	var pe *posError
	if errors.As(err, &pe) {
		field, _ := fieldAt(root, pe.line, func(n *yaml.Node) bool { return n.Column == pe.col })
		return &Error{File: file, Line: pe.line, Col: pe.col, Field: field, Msg: pe.msg}
	}
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		at := func(line int, match func(*yaml.Node) bool, msg string) *Error {
			e := &Error{File: file, Line: line, Msg: msg}
			var n *yaml.Node
			if e.Field, n = fieldAt(root, line, match); n != nil {
				e.Col = n.Column
			}
			return e
		}
		if m := typeErrRE.FindStringSubmatch(te.Errors[0]); m != nil {
			line, _ := strconv.Atoi(m[1])
			// yaml.v3 quotes long values as "1234567..."
			val, cut := strings.CutSuffix(m[3], "...")
			match := func(n *yaml.Node) bool {
				return n.Kind == yaml.ScalarNode && (n.Value == val || cut && strings.HasPrefix(n.Value, val))
			}
			return at(line, match, fmt.Sprintf("%q is not valid here: want %s", m[3], kindWord(m[4])))
		}
		if m := lineErrRE.FindStringSubmatch(te.Errors[0]); m != nil {
			line, _ := strconv.Atoi(m[1])
			return at(line, nil, m[2])
		}
		return &Error{File: file, Msg: te.Errors[0]}
	}
	return &Error{File: file, Msg: err.Error()}
}

var (
	typeErrRE = regexp.MustCompile("^line (\\d+): cannot unmarshal (!!\\w+) `(.*)` into (.+)$")
	lineErrRE = regexp.MustCompile(`^line (\d+): (.*)$`)
)

func kindWord(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "an integer"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "bool":
		return "true or false"
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "map"), strings.HasPrefix(goType, "scenario."):
		return "a mapping"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	}
	return goType
}

// fieldAt finds the dotted path of a node on line, and the node (for its
// column): the first value node on line that match accepts, else (or with a
// nil match) the first scalar value or key on line.
func fieldAt(root *yaml.Node, line int, match func(*yaml.Node) bool) (string, *yaml.Node) {
	var walk func(n *yaml.Node, path string, exact bool) (string, *yaml.Node)
	walk = func(n *yaml.Node, path string, exact bool) (string, *yaml.Node) {
		hit := func(v *yaml.Node) bool {
			if exact {
				return v.Line == line && match(v)
			}
			return v.Kind == yaml.ScalarNode && v.Line == line
		}
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := join(path, k.Value)
				if hit(v) {
					return p, v
				}
				if !exact && k.Line == line {
					return p, k
				}
				if r, rn := walk(v, p, exact); rn != nil {
					return r, rn
				}
			}
		case yaml.SequenceNode:
			for i, e := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if hit(e) {
					return p, e
				}
				if r, rn := walk(e, p, exact); rn != nil {
					return r, rn
				}
			}
		}
		return "", nil
	}
	if match != nil {
		if p, n := walk(root, "", true); n != nil {
			return p, n
		}
	}
	return walk(root, "", false)
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// checkFields reports every unknown key, with the valid ones, before decoding.
func checkFields(file string, n *yaml.Node, t reflect.Type, path string) Errors {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()) {
		return nil // validates itself
	}
	var errs Errors
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return Errors{{File: file, Line: n.Line, Col: n.Column, Field: path, Msg: "want a mapping with fields " + strings.Join(fieldNames(t), ", ")}}
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if seen[k.Value] {
				errs = append(errs, &Error{File: file, Line: k.Line, Col: k.Column, Field: join(path, k.Value), Msg: "given twice"})
				continue
			}
			seen[k.Value] = true
			f, ok := fieldByTag(t, k.Value)
			if !ok {
				errs = append(errs, &Error{File: file, Line: k.Line, Col: k.Column, Field: join(path, k.Value),
					Msg: "unknown field; valid fields here: " + strings.Join(fieldNames(t), ", ")})
				continue
			}
			errs = append(errs, checkFields(file, v, f.Type, join(path, k.Value))...)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return Errors{{File: file, Line: n.Line, Col: n.Column, Field: path, Msg: "want a mapping"}}
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if seen[k.Value] {
				errs = append(errs, &Error{File: file, Line: k.Line, Col: k.Column, Field: join(path, k.Value), Msg: "given twice"})
				continue
			}
			seen[k.Value] = true
			errs = append(errs, checkFields(file, n.Content[i+1], t.Elem(), join(path, k.Value))...)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return Errors{{File: file, Line: n.Line, Col: n.Column, Field: path, Msg: "want a list"}}
		}
		for i, e := range n.Content {
			errs = append(errs, checkFields(file, e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			return Errors{{File: file, Line: n.Line, Col: n.Column, Field: path, Msg: "want a single value, not a " + kindName(n.Kind)}}
		}
	}
	return errs
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag := strings.Split(f.Tag.Get("yaml"), ",")[0]; tag == name && tag != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func fieldNames(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		if tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	return out
}

// defaults fills what a scenario may leave out.
// Only fields not given (or given as null) get a default.
func defaults(s *Scenario, given map[string]bool) {
	set := func(field string, p *int, v int) {
		if *p == 0 && !given[field] {
			*p = v
		}
	}
	set("clients.count", &s.Clients.Count, 2)
	if s.Clients.TSSkew == "" && !given["clients.ts_skew"] {
		s.Clients.TSSkew = "kernel"
	}
	if s.LVS.Mode == "" && !given["lvs.mode"] {
		s.LVS.Mode = "snat"
	}
	if s.LVS.SNATPorts > 0 && s.LVS.SNATPortBase == 0 && !given["lvs.snat_port_base"] {
		s.LVS.SNATPortBase = 40000
	}
	if s.LVS.Mode == "fullnat" && s.LVS.VIP == "" {
		s.LVS.VIP = "198.18.0.100"
	}
	set("server.port", &s.Server.Port, 8080)
	set("server.ports", &s.Server.Ports, 1)
	if s.Server.Close == "" && !given["server.close"] {
		s.Server.Close = "server"
	}
	set("server.keepalive_requests", &s.Server.KeepaliveRequests, 1)
	set("server.backlog", &s.Server.Backlog, 4096)
	if s.Server.Accept == "" && !given["server.accept"] {
		s.Server.Accept = "normal"
	}
	set("load.connections", &s.Load.Connections, 200)
	if s.Load.Duration == 0 && !given["load.duration"] {
		s.Load.Duration = Duration(10 * time.Second)
	}
	set("load.concurrency", &s.Load.Concurrency, 1)
	if s.Load.Order == "" && !given["load.order"] {
		s.Load.Order = "round-robin"
	}
	if s.Load.ConnectTimeout == 0 && !given["load.connect_timeout"] {
		s.Load.ConnectTimeout = Duration(time.Second)
	}
	if s.Load.IOTimeout == 0 && !given["load.io_timeout"] {
		s.Load.IOTimeout = Duration(2 * time.Second)
	}
	if s.Seed == 0 {
		s.Seed = 1
	}
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// validate checks ranges and cross-field rules; positions come from the tree.
func validate(file string, root *yaml.Node, s *Scenario) Errors {
	idx := indexTree(root)
	var errs Errors
	bad := func(field, format string, a ...any) {
		e := &Error{File: file, Field: field, Msg: fmt.Sprintf(format, a...)}
		if n, ok := idx[field]; ok {
			e.Line, e.Col = n.Line, n.Column
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
	switch s.Clients.TSSkew {
	case "kernel":
		if len(s.Clients.TSOffsets) > 0 || s.Clients.TSOffsetStep != nil {
			bad("clients.ts_skew", "offsets are given but ts_skew is kernel; set ts_skew: fixed to apply them")
		}
	case "fixed":
	default:
		bad("clients.ts_skew", "%q: want kernel (the kernel's own random offsets) or fixed (exact offsets by eBPF on tcp_timestamps=2)", s.Clients.TSSkew)
	}
	if len(s.Clients.TSOffsets) > s.Clients.Count && s.Clients.Count > 0 {
		bad("clients.ts_offsets", "%d offsets for %d clients", len(s.Clients.TSOffsets), s.Clients.Count)
	}
	if st := s.Clients.TSOffsetStep; st != nil {
		if span := int64(st.Ticks) * int64(max(s.Clients.Count-1, 0)); span > MaxTSOffset || span < -MaxTSOffset {
			bad("clients.ts_offset_step", "%s × %d clients passes ±%d ticks", st.Text, s.Clients.Count-1, MaxTSOffset)
		}
	}
	switch s.LVS.Mode {
	case "snat", "fullnat", "route":
	default:
		bad("lvs.mode", "%q: want snat, fullnat or route", s.LVS.Mode)
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
	switch s.Server.Close {
	case "server", "client", "reset":
	default:
		bad("server.close", "%q: want server, client or reset", s.Server.Close)
	}
	rng("server.keepalive_requests", s.Server.KeepaliveRequests, 1, MaxKeepalive)
	rng("server.backlog", s.Server.Backlog, 1, 65535)
	switch s.Server.Accept {
	case "normal", "stalled":
	default:
		bad("server.accept", "%q: want normal or stalled (never accept during the load)", s.Server.Accept)
	}
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
	}
	rng("load.concurrency", s.Load.Concurrency, 1, MaxConcurrency)
	switch s.Load.Order {
	case "round-robin", "random":
	default:
		bad("load.order", "%q: want round-robin or random", s.Load.Order)
	}
	if s.Load.BindPort != 0 {
		rng("load.bind_port", s.Load.BindPort, 1024, 65535-MaxConcurrency)
	}
	if s.LVS.Mode != "route" && s.LVS.SNATPorts > 0 && s.LVS.SNATPorts < s.Load.Concurrency && s.Server.Ports < s.Load.Concurrency {
		bad("load.concurrency", "%d chains share %d SNAT port(s) and %d server port(s): concurrent connections would collide in conntrack; give server.ports >= load.concurrency", s.Load.Concurrency, s.LVS.SNATPorts, s.Server.Ports)
	}
	for role, ks := range s.Sysctl {
		if !slices.Contains(Roles, role) {
			bad("sysctl."+role, "unknown role; want one of %s", strings.Join(Roles, ", "))
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

// indexTree maps dotted paths to their value nodes (key nodes for positions).
func indexTree(root *yaml.Node) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			pos := v
			if v.Kind != yaml.ScalarNode || v.Line == 0 {
				pos = k
			}
			out[p] = pos
			walk(v, p)
		}
	}
	walk(root, "")
	return out
}

// checkKey says whether a matrix or --set key names something settable.
func checkKey(key string) error {
	role, rest, _ := strings.Cut(key, ".")
	if slices.Contains(Roles, role) && strings.HasPrefix(rest, "net.") {
		return sysctl.ValidName(rest)
	}
	t := reflect.TypeOf(Scenario{})
	segs := strings.Split(key, ".")
	for i, seg := range segs {
		f, ok := fieldByTag(t, seg)
		if !ok {
			return fmt.Errorf("unknown key; want a sysctl of a role (clients.net.…, lvs.net.…, server.net.…) or a field such as lvs.snat_ports, load.connections, server.keepalive_requests")
		}
		t = f.Type
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if i < len(segs)-1 && t.Kind() != reflect.Struct {
			return fmt.Errorf("%s is not a section", strings.Join(segs[:i+1], "."))
		}
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Slice, reflect.Map:
		return fmt.Errorf("%s is a section, not a single value", key)
	}
	if key == "name" || key == "description" {
		return fmt.Errorf("%s cannot vary", key)
	}
	return nil
}

// setPath sets key to value in the tree: sysctls of a role go under
// sysctl.ROLE, fields under their section. New nodes carry line/col so that
// errors in an overridden value point at the override.
func setPath(root *yaml.Node, key, value string, line, col int) error {
	if err := checkKey(key); err != nil {
		return err
	}
	var segs []string
	role, rest, _ := strings.Cut(key, ".")
	if slices.Contains(Roles, role) && strings.HasPrefix(rest, "net.") {
		segs = []string{"sysctl", role, rest}
	} else {
		segs = strings.Split(key, ".")
	}
	n := root
	for i, seg := range segs {
		last := i == len(segs)-1
		var found *yaml.Node
		for j := 0; j+1 < len(n.Content); j += 2 {
			if n.Content[j].Value == seg {
				found = n.Content[j+1]
			}
		}
		if last {
			v := &yaml.Node{Kind: yaml.ScalarNode, Value: value, Line: line, Column: col}
			if found != nil {
				*found = *v
			} else {
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: seg, Line: line, Column: col}, v)
			}
			return nil
		}
		if found == nil {
			found = &yaml.Node{Kind: yaml.MappingNode, Line: line, Column: col}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: seg, Line: line, Column: col}, found)
		}
		if found.Kind != yaml.MappingNode {
			return fmt.Errorf("%s is not a mapping", strings.Join(segs[:i+1], "."))
		}
		n = found
	}
	return nil
}

func cloneNode(n *yaml.Node) *yaml.Node {
	c := *n
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, k := range n.Content {
		c.Content[i] = cloneNode(k)
	}
	return &c
}

type combo struct {
	kvs       []KV
	line, col int
}

// expand builds the cartesian product of the axes (first axis slowest),
// drops excluded combinations and appends included ones.
func expand(file string, s *Scenario) ([]combo, error) {
	total := 1
	for _, a := range s.Matrix {
		total *= max(len(a.Values), 1)
		if total > MaxCells {
			return nil, &Error{File: file, Line: a.Line, Col: a.Col, Field: "matrix", Msg: fmt.Sprintf("more than %d cells; split the scenario or use exclude/--only", MaxCells)}
		}
	}
	axisKeys := map[string]bool{}
	for _, a := range s.Matrix {
		axisKeys[a.Key] = true
	}
	for i, ex := range s.Exclude {
		for k := range ex {
			if !axisKeys[k] {
				return nil, &Error{File: file, Field: fmt.Sprintf("exclude[%d].%s", i, k), Msg: "not a matrix key; exclude entries name matrix keys"}
			}
		}
	}
	out := []combo{{}}
	for _, a := range s.Matrix {
		var next []combo
		for _, c := range out {
			for _, v := range a.Values {
				kvs := append(slices.Clone(c.kvs), KV{a.Key, v})
				next = append(next, combo{kvs: kvs, line: a.Line, col: a.Col})
			}
		}
		out = next
	}
	matches := func(c combo, m map[string]Scalar) bool {
		for k, v := range m {
			hit := false
			for _, kv := range c.kvs {
				if kv.Key == k && sysctl.Normalize(kv.Value) == sysctl.Normalize(string(v)) {
					hit = true
				}
			}
			if !hit {
				return false
			}
		}
		return true
	}
	var kept []combo
	for _, c := range out {
		drop := false
		for _, ex := range s.Exclude {
			if matches(c, ex) {
				drop = true
			}
		}
		if !drop {
			kept = append(kept, c)
		}
	}
	for i, inc := range s.Include {
		var kvs []KV
		for _, a := range s.Matrix {
			if v, ok := inc[a.Key]; ok {
				kvs = append(kvs, KV{a.Key, string(v)})
			}
		}
		keys := make([]string, 0, len(inc))
		for k := range inc {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if err := checkKey(k); err != nil {
				return nil, &Error{File: file, Field: fmt.Sprintf("include[%d].%s", i, k), Msg: err.Error()}
			}
			if !axisKeys[k] {
				kvs = append(kvs, KV{k, string(inc[k])})
			}
		}
		kept = append(kept, combo{kvs: kvs})
		if len(kept) > MaxCells { // before each cell costs a decode
			return nil, &Error{File: file, Field: fmt.Sprintf("include[%d]", i), Msg: fmt.Sprintf("more than %d cells with the includes; split the scenario or use exclude/--only", MaxCells)}
		}
	}
	return kept, nil
}

// shortNames gives each axis a short, unique label for cell ids:
// "tw_recycle", "timestamps", or "clients.timestamps" when two roles share one.
func shortNames(m Matrix) map[string]string {
	short := func(k string) string {
		i := strings.LastIndex(k, ".")
		s := k[i+1:]
		return strings.TrimPrefix(s, "tcp_")
	}
	count := map[string]int{}
	for _, a := range m {
		count[short(a.Key)]++
	}
	out := map[string]string{}
	for _, a := range m {
		s := short(a.Key)
		if count[s] > 1 {
			role, _, _ := strings.Cut(a.Key, ".")
			s = role + "." + s
		}
		out[a.Key] = s
	}
	return out
}

// ShortName is the label of key in cell ids (exported for the include keys
// that are not axes).
func ShortName(key string) string { return shortNames(Matrix{{Key: key}})[key] }

func parseExpect(file string, s *Scenario) ([]*Expectation, Errors) {
	var out []*Expectation
	var errs Errors
	for i, e := range s.Expect {
		x := &Expectation{Name: e.Name, Line: e.When.Line}
		field := fmt.Sprintf("expect[%d]", i)
		if e.When.S != "" {
			w, err := expr.Parse(e.When.S)
			if err != nil {
				errs = append(errs, exprError(file, field+".when", e.When.Line, e.When.Col, err))
			}
			x.When = w
			if w != nil {
				for _, n := range w.Names() {
					if strings.HasPrefix(n, "kernel.") {
						x.NeedsKernel = true
					}
				}
			}
		}
		if len(e.Assert.Items) == 0 {
			errs = append(errs, &Error{File: file, Field: field + ".assert", Msg: "no assertions; want e.g. `server.TcpExt.PAWSTimewait > 0`"})
		}
		for j, a := range e.Assert.Items {
			p, err := expr.Parse(a)
			if err != nil {
				var line, col int
				if j < len(e.Assert.Pos) {
					line, col = e.Assert.Pos[j].line, e.Assert.Pos[j].col
				}
				errs = append(errs, exprError(file, fmt.Sprintf("%s.assert[%d]", field, j), line, col, err))
				continue
			}
			x.Asserts = append(x.Asserts, p)
		}
		if x.Line == 0 && len(e.Assert.Pos) > 0 {
			x.Line = e.Assert.Pos[0].line
		}
		out = append(out, x)
	}
	return out, errs
}

// Flatten lists every scalar field of s by dotted yaml name, and every sysctl
// as ROLE.NAME.
func Flatten(s *Scenario) map[string]string {
	out := map[string]string{}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return
			}
			v = v.Elem()
		}
		if d, ok := v.Interface().(Duration); ok {
			out[path] = d.D().String()
			return
		}
		if o, ok := v.Interface().(TSOffset); ok {
			out[path] = strconv.Itoa(int(o.Ticks))
			return
		}
		switch v.Kind() {
		case reflect.Struct:
			t := v.Type()
			for i := 0; i < t.NumField(); i++ {
				tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
				if tag == "" || tag == "-" || tag == "description" || tag == "expect" || tag == "matrix" || tag == "sysctl" || tag == "exclude" || tag == "include" {
					continue
				}
				walk(v.Field(i), join(path, tag))
			}
		case reflect.String:
			out[path] = v.String()
		case reflect.Int, reflect.Int64:
			out[path] = strconv.FormatInt(v.Int(), 10)
		case reflect.Uint64:
			out[path] = strconv.FormatUint(v.Uint(), 10)
		case reflect.Float64:
			out[path] = strconv.FormatFloat(v.Float(), 'g', -1, 64)
		case reflect.Bool:
			out[path] = strconv.FormatBool(v.Bool())
		}
	}
	walk(reflect.ValueOf(s).Elem(), "")
	for role, ks := range s.Sysctl {
		for _, k := range ks {
			out[role+"."+k.Name] = sysctl.Normalize(k.Value)
		}
	}
	return out
}

// VarsEnv exposes cell variables to expressions.
func VarsEnv(vars map[string]string) expr.Env {
	return func(name string) (expr.Value, bool) {
		v, ok := vars[name]
		if !ok {
			return expr.Value{}, false
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return expr.Num(f), true
		}
		return expr.Str(v), true
	}
}

// exprError places an expression's syntax error at its column in the file
// (exact for plain one-line scalars, the common case).
func exprError(file, field string, line, col int, err error) *Error {
	var se *expr.SyntaxError
	if errors.As(err, &se) && col > 0 {
		return &Error{File: file, Line: line, Col: col + se.Col - 1, Field: field, Msg: se.Msg}
	}
	return &Error{File: file, Line: line, Col: col, Field: field, Msg: err.Error()}
}
