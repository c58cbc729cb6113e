package scenario

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/twlab/twlab/lab/spec"
)

// The figures a cell measures under load., syn. and skew. have fixed
// shapes (lab/runner's Figures makes them; a test there keeps the two in
// step), so a misspelt one is found when the scenario is read, not after
// minutes of load. Node counters (server.TcpExt.…) depend on the kernel and
// are checked when the cell has run.
var (
	loadFigures    = []string{"attempts", "ok", "failed", "cut_short", "requests", "conn_per_s", "elapsed_s", "min_client_ok", "max_client_ok", "max_client_failed"}
	failureFigures = []string{"timeout", "refused", "reset", "addr", "response", "other"}
	latencyFigures = []string{"p50", "p90", "p99", "max"}
	clientFigures  = []string{"attempts", "ok", "failed", "cut_short"}
	handoffFigures = []string{"attempts", "retried", "failed"}
	synFigures     = []string{"in", "synack_out", "synack_retrans", "unanswered", "rst_in", "rst_out"}
	skewFigures    = []string{"offset_ticks", "offset_ms", "applied", "egress_rewritten", "ingress_rewritten"}
)

// KnownFigure reports whether name is a load., syn. or skew. figure a cell
// of clients named clients measures (true for names of any other kind: not
// this check's to judge).
func KnownFigure(name string, clients []string) bool {
	first, rest, _ := strings.Cut(name, ".")
	parts := strings.Split(rest, ".")
	isClient := func(c string) bool { return slices.Contains(clients, c) }
	switch first {
	case "syn":
		return len(parts) == 1 && slices.Contains(synFigures, parts[0])
	case "skew":
		return len(parts) == 2 && isClient(parts[0]) && slices.Contains(skewFigures, parts[1])
	case "load":
		switch {
		case len(parts) == 1:
			return slices.Contains(loadFigures, parts[0])
		case len(parts) == 2 && parts[0] == "failures":
			return slices.Contains(failureFigures, parts[1])
		case len(parts) == 2 && parts[0] == "connect_ms":
			return slices.Contains(latencyFigures, parts[1])
		case len(parts) == 3 && parts[0] == "clients":
			return isClient(parts[1]) && slices.Contains(clientFigures, parts[2])
		case len(parts) == 3 && parts[0] == "handoffs":
			a, b, ok := strings.Cut(parts[1], "_to_")
			return ok && isClient(a) && isClient(b) && slices.Contains(handoffFigures, parts[2])
		}
		return false
	}
	return true
}

// checkFigureNames refuses assertion names under load., syn. and skew.
// that are neither a figure nor a field of any cell.
func checkFigureNames(file string, s *Scenario, exps []*Expectation, cells []*Cell, strict bool) Errors {
	var errs Errors
	n := s.Clients.Count
	for _, c := range cells {
		n = max(n, c.S.Clients.Count) // a matrix may vary it
	}
	var clients []string
	for i := 1; i <= n; i++ {
		clients = append(clients, fmt.Sprintf("c%d", i))
	}
	isVar := func(n string) bool {
		for _, c := range cells {
			if _, ok := c.Vars[n]; ok {
				return true
			}
		}
		return false
	}
	for i, x := range exps {
		// skew.* figures exist only where the offsets are twlab's own. An
		// expectation no cell carries (--only, --set) is not judged.
		applies := slices.ContainsFunc(cells, func(c *Cell) bool { return slices.Contains(c.Expect, x) })
		fixed := !applies || slices.ContainsFunc(cells, func(c *Cell) bool {
			return c.S.Clients.TSSkew == spec.TSSkewFixed && slices.Contains(c.Expect, x)
		})
		for j, a := range x.Asserts {
			for _, n := range a.Names() {
				if isVar(n) {
					continue
				}
				msg := ""
				switch {
				case !KnownFigure(n, clients):
					msg = fmt.Sprintf("%s: not a figure a cell measures%s", n, figureHint(n, clients))
				case highestClient(n) <= len(clients) && fewerClients(n, x, cells) != nil:
					c := fewerClients(n, x, cells)
					msg = fmt.Sprintf("%s: cell %s has %d clients (c1 … c%d) and this expectation applies to it; limit the expectation with when: clients.count >= %d", n, c.ID, c.S.Clients.Count, c.S.Clients.Count, highestClient(n))
				case strings.HasPrefix(n, "skew.") && !fixed:
					msg = fmt.Sprintf("%s: skew figures exist only in cells with clients.ts_skew: fixed, and no cell this expectation applies to has it", n)
				default:
					msg = otherNameProblem(n, clients, strict)
				}
				if msg == "" {
					continue
				}
				var line, col int
				if e := s.Expect[i]; j < len(e.Assert.Pos) {
					line, col = e.Assert.Pos[j].line, e.Assert.Pos[j].col
				}
				errs = append(errs, &Error{File: file, Line: line, Col: col, Field: fmt.Sprintf("expect[%d].assert[%d]", i, j), Msg: msg})
			}
		}
	}
	return errs
}

// highestClient is the highest client number a name refers to (c3 in
// load.clients.c3.ok, load.handoffs.c1_to_c3.retried or c3.time_wait.max),
// 0 if none.
func highestClient(n string) int {
	hi := 0
	for _, seg := range strings.Split(n, ".") {
		for _, part := range strings.Split(seg, "_to_") {
			if len(part) < 2 || part[0] != 'c' || strings.Trim(part[1:], "0123456789") != "" {
				continue
			}
			k, err := strconv.Atoi(part[1:])
			if err == nil && k > hi {
				hi = k
			}
		}
	}
	return hi
}

// fewerClients is a cell that carries x but has fewer clients than name
// refers to: a matrix over clients.count makes the largest count no promise
// for every cell, and the figure would be missing there at run time.
func fewerClients(name string, x *Expectation, cells []*Cell) *Cell {
	hi := highestClient(name)
	if hi == 0 {
		return nil
	}
	for _, c := range cells {
		if c.S.Clients.Count < hi && slices.Contains(c.Expect, x) {
			return c
		}
	}
	return nil
}

// otherNameProblem checks what can be checked of a name that is no load.,
// syn. or skew. figure and no field: a node counter (server.TcpExt.…,
// c2.time_wait.max) must name a node of the lab, whatever the kernel
// counts, and a kernel.* name must be a fact detection gives. "" if fine.
// A client beyond the cells' count is judged only when every cell is
// there (strict: no --only or --set took some away).
func otherNameProblem(n string, clients []string, strict bool) string {
	first, _, _ := strings.Cut(n, ".")
	switch first {
	case "load", "syn", "skew":
		return ""
	case "kernel":
		if slices.Contains(KernelVars, n) {
			return ""
		}
		return fmt.Sprintf("%s: not a kernel fact twlab detects%s", n, closest(n, KernelVars, "; they are "+strings.Join(KernelVars, ", ")))
	}
	nodes := append([]string{"server", "lvs", "clients"}, clients...)
	if slices.Contains(nodes, first) {
		return ""
	}
	if len(first) > 1 && first[0] == 'c' && strings.Trim(first[1:], "0123456789") == "" {
		if !strict {
			return ""
		}
		return fmt.Sprintf("%s: this scenario has %d clients (c1 … c%d)", n, len(clients), len(clients))
	}
	var cands []string
	rest := strings.TrimPrefix(n, first)
	for _, nd := range nodes {
		cands = append(cands, nd+rest)
	}
	return fmt.Sprintf("%s: no node %q in this lab (nodes: server, lvs, clients, c1 … c%d)%s", n, first, len(clients), closest(n, cands, ""))
}

// closest is "; did you mean X?" for the candidate nearest to n (at most
// two edits away), else otherwise.
func closest(n string, cands []string, otherwise string) string {
	best, bd := "", 3
	for _, x := range cands {
		if d := EditDistance(n, x, 2); d < bd {
			best, bd = x, d
		}
	}
	if best != "" {
		return "; did you mean " + best + "?"
	}
	return otherwise
}

// figureHint suggests the figures closest to a misspelt name.
func figureHint(n string, clients []string) string {
	var all []string
	add := func(prefix string, names []string) {
		for _, x := range names {
			all = append(all, prefix+x)
		}
	}
	add("load.", loadFigures)
	add("load.failures.", failureFigures)
	add("load.connect_ms.", latencyFigures)
	add("syn.", synFigures)
	for _, c := range clients {
		add("load.clients."+c+".", clientFigures)
		add("skew."+c+".", skewFigures)
	}
	return closest(n, all, "; scenarios/README.md lists the figures")
}

// EditDistance is the Levenshtein distance of a and b, or limit+1 once it
// is sure to exceed limit: for "did you mean" suggestions.
func EditDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d > limit || -d > limit {
		return limit + 1
	}
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		best := i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			best = min(best, cur[j])
		}
		if best > limit {
			return limit + 1
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
