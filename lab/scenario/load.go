package scenario

import (
	"errors"
	"fmt"
	"github.com/twlab/twlab/lab/spec"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twlab/twlab/lab/expr"
)

// Roles that carry sysctls.
var Roles = []string{"clients", "lvs", "server"}

// Plan is a validated scenario expanded into cells.
type Plan struct {
	File     string
	Scenario *Scenario // with defaults and --set overrides, before the matrix
	Cells    []*Cell
	// Warnings are things the user may not expect, not errors: an
	// include cell that keeps its own value of a key --set overrides.
	Warnings []string
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
		if (&node{Kind: scalarNode, Value: strings.TrimSpace(v)}).null() && !nullable(strings.TrimSpace(k)) {
			// An empty value reads as "not given", which quietly ran the
			// built-in default instead of the file's value (an unset
			// shell variable in `--set load.connections=$N`).
			return nil, &Error{File: "--set", Field: strings.TrimSpace(k), Msg: fmt.Sprintf("%q: the value is empty; give one, e.g. %s=50 (leave the --set out to keep the file's value)", kv, strings.TrimSpace(k))}
		}
		// The value is named as the override it came from: the position
		// points at what it overrides in the file, which the user did not
		// write wrong.
		if err := setPath(root, strings.TrimSpace(k), strings.TrimSpace(v), 0, 0, "--set "+strings.TrimSpace(k)); err != nil {
			return nil, &Error{File: "--set", Field: k, Msg: err.Error()}
		}
	}
	base, errs := decode(file, root)
	if len(errs) > 0 {
		return nil, errs
	}
	// A --set of a matrix key pins that axis, so the override holds in every
	// cell of the matrix instead of being silently replaced by its values.
	// An include cell that names its own value for the key keeps it: it was
	// written as that exact cell (TestSetOverrides).
	for _, kv := range opt.Set {
		k, v, _ := strings.Cut(kv, "=")
		for i := range base.Matrix {
			if base.Matrix[i].Key == strings.TrimSpace(k) {
				base.Matrix[i].Values = []string{strings.TrimSpace(v)}
				base.Matrix[i].at = nil
			}
		}
	}
	p := &Plan{File: file, Scenario: base}
	for _, kv := range opt.Set {
		k, v, _ := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		for i, inc := range base.Include {
			if w, ok := inc[k]; ok && string(w) != v {
				p.Warnings = append(p.Warnings, fmt.Sprintf("--set %s=%s: include[%d] keeps its own %s=%s (an include is one exact cell; --only can leave it out)", k, v, i, k, string(w)))
			}
		}
	}
	exps, errs := parseExpect(file, base)
	if len(errs) > 0 {
		return nil, errs
	}
	setKeys := map[string]bool{}
	for _, kv := range opt.Set {
		k, _, _ := strings.Cut(kv, "=")
		setKeys[strings.TrimSpace(k)] = true
	}
	combos, err := expand(file, base, setKeys)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Line == 0 {
			e.Line, e.Col = locate(root, e.Field)
		}
		return nil, err
	}
	var only *expr.Expr
	if opt.Only != "" {
		if only, err = expr.Parse(opt.Only); err != nil {
			return nil, &Error{File: "--only", Msg: err.Error()}
		}
		for _, n := range only.Names() {
			if isKernelVar(n) {
				return nil, &Error{File: "--only", Msg: fmt.Sprintf("%s: --only chooses cells before the kernel is detected; kernel facts belong in an expectation's when:", n)}
			}
		}
	}
	// Labels are made unique over the axes and the keys only includes name
	// (a server axis and a clients include of tcp_timestamps were both
	// "timestamps", and their distinct cells were refused as one).
	labelled := slices.Clone(base.Matrix)
	for _, inc := range base.Include {
		for k := range inc {
			if !slices.ContainsFunc(labelled, func(a Axis) bool { return a.Key == k }) {
				labelled = append(labelled, Axis{Key: k})
			}
		}
	}
	ids := shortNames(labelled)
	selected := make([]bool, len(exps)) // by some cell, or left to run time
	for _, combo := range combos {
		t := cloneNode(root)
		var idParts []string
		for i, kv := range combo.kvs {
			at := combo.at[i]
			if err := setPath(t, kv.Key, kv.Value, at.line, at.col, at.field); err != nil {
				return nil, &Error{File: file, Line: at.line, Field: kv.Key, Msg: err.Error()}
			}
			label, ok := ids[kv.Key]
			if !ok {
				label = ShortName(kv.Key) // an include key that is not an axis
			}
			idParts = append(idParts, label+"="+kv.Value)
		}
		s, errs := decode(file, t)
		if len(errs) > 0 {
			for _, e := range errs {
				if e.Line == 0 {
					e.Line, e.Col = locate(root, e.Field) // an include's value
				}
			}
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
					// Decided at run time; but a selector false for every
					// kernel here (`kernel.major >= 5 && lvs.mode ==
					// "SNAT"`) must not pass as if some kernel could meet it.
					may, err := e.When.MayHold(env, isKernelVar)
					if err != nil {
						return nil, &Error{File: file, Line: w.Line, Col: w.Col, Field: fmt.Sprintf("expect[%d].when", i), Msg: fmt.Sprintf("%v (cell %s)", err, c.ID)}
					}
					if may {
						c.Expect = append(c.Expect, e)
						selected[i] = true
					}
					continue
				}
				if err == nil {
					ok, err = e.When.Bool(env)
				}
				if err != nil {
					msg := fmt.Sprintf("%v; a selector may use scenario fields (lvs.snat_ports) and sysctls (server.net.ipv4.tcp_rfc1337) that every cell has (cell %s has no such name)", err, c.ID)
					var un *expr.UnknownNameError
					if errors.As(err, &un) {
						if k, at, ok := misspeltKey(un.Name, combo); ok {
							if at.line == 0 {
								at.line, at.col = locate(root, at.field)
							}
							// Every other cell has the name: the one
							// that lacks it sets a near one (a typo in
							// an include), which is where to look.
							msg = fmt.Sprintf("%v: cell %s has no such name, but sets %s at line %d (a misspelling?); a selector may use only names that every cell has", err, c.ID, k, at.line)
						}
					}
					return nil, &Error{File: file, Line: w.Line, Col: w.Col, Field: fmt.Sprintf("expect[%d].when", i), Msg: msg}
				}
				if !ok {
					continue
				}
			}
			selected[i] = true
			c.Expect = append(c.Expect, e)
		}
		c.Index = len(p.Cells)
		p.Cells = append(p.Cells, c)
	}
	if len(p.Cells) == 0 {
		return nil, &Error{File: file, Msg: "no cells to run (the matrix, exclude or --only leave nothing)"}
	}
	// A cell is found by its id (compare, up --cell, --only by id): two
	// with one id would hide each other.
	seenID := map[string]bool{}
	seenExp := map[string]string{} // experimentKey -> the first cell's id
	for _, c := range p.Cells {
		if seenID[c.ID] {
			return nil, &Error{File: file, Field: "matrix", Msg: fmt.Sprintf("cell %s is listed twice (a value repeated in the matrix, or an include equal to a matrix cell); every cell must be one of its own", c.ID)}
		}
		seenID[c.ID] = true
		// Ids are spelling; two cells may spell one experiment twice
		// (load.connections [10, 0xa, 1e1], an include equal to the base).
		// A --set that pins an axis makes such twins on purpose.
		// One key per cell, not every pair compared: that was quadratic.
		if len(opt.Set) == 0 {
			k := experimentKey(c)
			if d, dup := seenExp[k]; dup {
				return nil, &Error{File: file, Field: "matrix", Msg: fmt.Sprintf("cells %s and %s are the same experiment (every field and sysctl equal, only spelt otherwise); every cell must be one of its own", d, c.ID)}
			}
			seenExp[k] = c.ID
		}
	}
	if errs := checkFigureNames(file, base, exps, p.Cells, only == nil && len(opt.Set) == 0); len(errs) > 0 {
		return nil, errs
	}
	// lvs.vip only means something in fullnat mode; a matrix may vary the
	// mode, so only a vip that no cell uses is worth a word.
	if base.LVS.VIP != "" && !slices.ContainsFunc(p.Cells, func(c *Cell) bool { return c.S.LVS.Mode == spec.LVSFullNAT }) {
		p.Warnings = append(p.Warnings, fmt.Sprintf("lvs.vip %s is used only with lvs.mode: fullnat, and no cell has that mode: the clients dial the server's address", base.LVS.VIP))
	}
	// An expectation whose selector no cell meets would never be checked,
	// and the run would pass without it: a typo ("SNAT" for "snat"), a value
	// the matrix lacks. Only the whole scenario can tell; --only and --set
	// legitimately leave some expectations without a cell.
	if only == nil && len(opt.Set) == 0 {
		for i, ok := range selected {
			if !ok {
				w := base.Expect[i].When
				return nil, &Error{File: file, Line: w.Line, Col: w.Col, Field: fmt.Sprintf("expect[%d].when", i),
					Msg: fmt.Sprintf("%q selects no cell of this scenario, so its assertions would never be checked; the cells are %s", w.S, cellList(p.Cells))}
			}
		}
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

// cellList names up to 6 cells for a message.
func cellList(cells []*Cell) string {
	var ids []string
	for i, c := range cells {
		if i == 6 {
			ids = append(ids, fmt.Sprintf("… (%d in all)", len(cells)))
			break
		}
		ids = append(ids, c.ID)
	}
	return strings.Join(ids, "; ")
}

// rawOffsets tells offsets given as raw ticks from ones given as times,
// which Vars does not: 60000 and 60s differ on a kernel whose timestamp
// clock is not 1000 Hz.
func rawOffsets(s *Scenario) string {
	var b strings.Builder
	for _, o := range s.Clients.TSOffsets {
		fmt.Fprintf(&b, "%t,", o.Raw)
	}
	if st := s.Clients.TSOffsetStep; st != nil {
		fmt.Fprintf(&b, "step %t", st.Raw)
	}
	return b.String()
}

// locate finds where an exclude or include entry was written, for an error
// whose field names one ("exclude[2].lvs.random", "include[0]"): those
// entries decode into maps of text, which keep no positions.
func locate(root *node, field string) (line, col int) {
	section, rest, ok := strings.Cut(field, "[")
	if !ok || (section != "exclude" && section != "include") {
		return 0, 0
	}
	idx, key, _ := strings.Cut(rest, "]")
	key = strings.TrimPrefix(key, ".")
	i, err := strconv.Atoi(idx)
	if err != nil {
		return 0, 0
	}
	for j := 0; j+1 < len(root.Content); j += 2 {
		if root.Content[j].Value != section {
			continue
		}
		list := root.Content[j+1]
		if list.Kind != sequenceNode || i >= len(list.Content) {
			return root.Content[j].Line, root.Content[j].Column
		}
		entry := list.Content[i]
		for k := 0; key != "" && k+1 < len(entry.Content); k += 2 {
			if entry.Content[k].Value == key {
				v := entry.Content[k+1]
				return v.Line, v.Column
			}
		}
		return entry.Line, entry.Column
	}
	return 0, 0
}

// misspeltKey is the key of a cell's combination written closest to name
// (at most 2 edits), and where: the likely typo when only that cell lacks
// the name.
func misspeltKey(name string, c combo) (string, valueAt, bool) {
	best, bestAt, bestD := "", valueAt{}, 3
	for i, kv := range c.kvs {
		if d := EditDistance(kv.Key, name, 2); d < bestD && kv.Key != name {
			best, bestAt, bestD = kv.Key, c.at[i], d
		}
	}
	return best, bestAt, best != ""
}

// experimentKey is equal for two cells exactly when their variables and
// their timestamp offsets as written are.
func experimentKey(c *Cell) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(c.Vars)) {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(c.Vars[k])
		b.WriteByte(0)
	}
	b.WriteByte(1)
	b.WriteString(rawOffsets(c.S))
	return b.String()
}
