package scenario

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/twlab/twlab/lab/expr"
)

func parseExpect(file string, s *Scenario) ([]*Expectation, Errors) {
	var out []*Expectation
	var errs Errors
	total := 0
	for _, e := range s.Expect {
		total += max(1, len(e.Assert.Items))
	}
	if total > MaxAsserts {
		return nil, Errors{&Error{File: file, Field: "expect", Msg: fmt.Sprintf("%d assertions; a scenario may have at most %d", total, MaxAsserts)}}
	}
	for i, e := range s.Expect {
		x := &Expectation{Name: e.Name, Line: e.When.Line}
		field := fmt.Sprintf("expect[%d]", i)
		if e.When.S != "" {
			w, err := expr.Parse(e.When.S)
			if err != nil {
				errs = append(errs, exprError(file, field+".when", pos{e.When.Line, e.When.Col, e.When.verbatim}, err))
			}
			x.When = w
			if w != nil {
				for _, n := range w.Names() {
					if strings.HasPrefix(n, "kernel.") {
						x.NeedsKernel = true
					}
				}
				if err := checkKernelLiterals(w); err != nil {
					errs = append(errs, &Error{File: file, Line: e.When.Line, Col: e.When.Col, Field: field + ".when", Msg: err.Error()})
				}
				if err := checkKernelText(w); err != nil {
					errs = append(errs, &Error{File: file, Line: e.When.Line, Col: e.When.Col, Field: field + ".when", Msg: err.Error()})
				}
			}
		}
		if len(e.Assert.Items) == 0 {
			errs = append(errs, &Error{File: file, Field: field + ".assert", Msg: "no assertions; want e.g. `server.TcpExt.PAWSTimewait > 0`"})
		}
		for j, a := range e.Assert.Items {
			p, err := expr.Parse(a)
			if err != nil {
				var at pos
				if j < len(e.Assert.Pos) {
					at = e.Assert.Pos[j]
				}
				errs = append(errs, exprError(file, fmt.Sprintf("%s.assert[%d]", field, j), at, err))
				continue
			}
			if err := checkKernelText(p); err != nil {
				var line, col int
				if j < len(e.Assert.Pos) {
					line, col = e.Assert.Pos[j].line, e.Assert.Pos[j].col
				}
				errs = append(errs, &Error{File: file, Line: line, Col: col, Field: fmt.Sprintf("%s.assert[%d]", field, j), Msg: err.Error()})
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

// exprError places an expression's syntax error at its column in the file
// when the expression is written there as it reads (a plain or quoted
// one-line scalar, the common case); otherwise (escapes, folded or block
// text) at the expression's start, naming the column within it.
func exprError(file, field string, at pos, err error) *Error {
	var se *expr.SyntaxError
	if errors.As(err, &se) && at.col > 0 {
		if at.verbatim {
			return &Error{File: file, Line: at.line, Col: at.col + se.Col - 1, Field: field, Msg: se.Msg}
		}
		return &Error{File: file, Line: at.line, Col: at.col, Field: field, Msg: fmt.Sprintf("col %d of the expression: %s", se.Col, se.Msg)}
	}
	return &Error{File: file, Line: at.line, Col: at.col, Field: field, Msg: err.Error()}
}

// checkKernelLiterals refuses a comparison of a kernel.* fact with a value
// it never takes ("per-tuple" for "per-4-tuple").
func checkKernelLiterals(w *expr.Expr) error {
	for name, valid := range KernelValues {
		for _, lit := range w.Literals(name) {
			if !slices.Contains(valid, lit) {
				return fmt.Errorf("%s is never %q; it is one of %s", name, lit, quoteList(valid))
			}
		}
	}
	return nil
}

// checkKernelText refuses a kernel fact that is always text used as a
// number or a condition (kernel.ts_offsets > 0, !kernel.tw_counter): it
// would fail in every cell on every kernel.
func checkKernelText(x *expr.Expr) error {
	for _, n := range x.NumericNames() {
		if n == "kernel.release" {
			return fmt.Errorf("kernel.release is text such as \"4.10.17\", not a number; compare versions with kernel.major and kernel.minor (kernel.major == 4 && kernel.minor < 12)")
		}
		if valid, ok := KernelValues[n]; ok {
			return fmt.Errorf("%s is text, not a number or a condition; compare it with == or in: one of %s", n, quoteList(valid))
		}
	}
	return nil
}

func quoteList(vs []string) string {
	q := make([]string, 0, len(vs))
	for _, v := range vs {
		if v != "" {
			q = append(q, strconv.Quote(v))
		}
	}
	return strings.Join(q, ", ")
}
