// Package expr is the small expression language of scenario expectations
// (`when:` guards and `assert:` checks). It exists so that a scenario file can
// state conditions over measured figures and knob values without twlab ever
// evaluating code: the language has no calls, no assignment and no loops, and
// every failure is an error value, never a panic.
//
// # Language
//
// Operands are numbers (10, 0.5, 1e3), double-quoted strings ("fullnat",
// with \" and \\ as the only escapes), the literals true and false (1 and 0),
// and names: dot-separated segments of letters, digits and underscores whose
// first segment starts with a letter or underscore, such as
// server.TcpExt.PAWSTimewait, load.connect_ms.p99 or c1.Tcp.OutRsts. A name
// is looked up in the environment of the matrix cell being evaluated. Text
// that reads as a number compares as one, "true"/"false" as 1/0, and a
// duration ("1.5s", "20ms") as seconds.
//
// Operators, from loosest to tightest binding:
//
//	||  or                       either side true
//	&&  and                      both sides true
//	!   not                      negation
//	== != < <= > >=              comparison (does not chain: a < b < c is an error)
//	in [x, y]   not in [x, y]    membership, with == semantics per element
//	+ -                          addition, subtraction
//	* /                          multiplication, division
//	-                            unary minus
//	( )                          grouping
//
// Because ! binds looser than comparison, !a == b means !(a == b), which is
// what a condition such as !(lvs.mode == "fullnat") usually wants; write (!a)
// to negate a single operand inside arithmetic or a comparison.
//
// Values are numbers or strings. Knob values arrive as strings such as "1",
// so a string that strconv.ParseFloat accepts is treated as a number
// everywhere a number is wanted, and == and != compare numerically when both
// sides are numeric (net.ipv4.tcp_rfc1337 == 1 holds for the knob "1") and
// as text otherwise. Ordering, arithmetic and the logical operators on a
// non-numeric string are errors rather than silently false, so a typo in a
// scenario fails loudly. Booleans are the numbers 1 and 0; && and || stop
// evaluating once the result is known.
//
// Sources are limited to 4096 bytes and 64 levels of nesting (parentheses
// and unary operators), which bounds the work a hostile or mistaken scenario
// file can cause.
package expr

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Limits that keep parsing cheap and the recursive evaluator's stack shallow
// whatever a scenario file contains.
const (
	maxLen   = 4096
	maxDepth = 64
)

// Value is a number or a string; IsNum tells which field is meaningful.
// Keeping both in one small struct lets an Env hand over raw knob text
// without deciding its type up front.
type Value struct {
	Num   float64
	Str   string
	IsNum bool
}

// Num makes a numeric Value.
func Num(f float64) Value { return Value{Num: f, IsNum: true} }

// Str makes a string Value; it still takes part in numeric comparisons when
// its text is a number, because that is how knob values arrive.
func Str(s string) Value { return Value{Str: s} }

// String renders numbers without exponent or trailing zeros where that is
// readable (3, 0.25, 1234567) so that report tables show figures as people
// write them; strings are returned unquoted.
func (v Value) String() string {
	if !v.IsNum {
		return v.Str
	}
	return formatNum(v.Num)
}

func formatNum(f float64) string {
	if f == 0 {
		return "0" // also folds -0, which would only confuse a reader
	}
	if a := math.Abs(f); a >= 1e-4 && a < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// number reports v as a float when it is numeric or numeric-looking text.
// NaN text ("nan") is left a string: treating it as a number would make
// x == "nan" false even when x is "nan". Text "true" and "false" is 1 and
// 0, as the literals are, and a duration ("1.5s", "20ms") is seconds:
// fields arrive as text, and "lvs.random == true" or "load.gap == 0" must
// match the cells they name ("lvs.random == \"false\"" still does).
func (v Value) number() (float64, bool) {
	if v.IsNum {
		return v.Num, true
	}
	f, err := strconv.ParseFloat(v.Str, 64)
	if err == nil && !math.IsNaN(f) {
		return f, true
	}
	switch v.Str {
	case "true":
		return 1, true
	case "false":
		return 0, true
	}
	if d, err := time.ParseDuration(v.Str); err == nil && strings.ContainsAny(v.Str, "smhnuµ") {
		// Not d.Seconds(): it adds whole and fractional seconds as two
		// rounded floats, so 1140ms became 1.1400000000000001 and
		// `load.connect_timeout == 1.14` was false.
		return float64(d) / 1e9, true
	}
	return 0, false
}

// describe names a value in error messages, quoting strings so that an empty
// or blank string is still visible.
func (v Value) describe() string {
	if v.IsNum {
		return "number " + formatNum(v.Num)
	}
	return fmt.Sprintf("string %q", v.Str)
}

func boolValue(b bool) Value {
	if b {
		return Num(1)
	}
	return Num(0)
}

// Env resolves names. It is a function rather than a map so that callers can
// compute figures lazily or layer several sources (knobs, counters, load
// results) without copying them into one table.
type Env func(name string) (Value, bool)

// Expr is a parsed expression. It is immutable and safe for concurrent use,
// so a scenario can be parsed once and evaluated for every matrix cell.
type Expr struct {
	src   string // as given; node spans index into it
	root  *node
	names []string
}

// Parse parses src. Errors are *SyntaxError so that a scenario loader can
// point at the offending column.
func Parse(src string) (*Expr, error) {
	if len(src) > maxLen {
		return nil, errAt(src, maxLen, fmt.Sprintf("expression longer than %d bytes", maxLen))
	}
	if strings.TrimSpace(src) == "" {
		return nil, &SyntaxError{Src: src, Col: 1, Msg: "empty expression"}
	}
	p := &parser{src: src, lx: lexer{src: src}}
	var err error
	if p.tok, err = p.lx.next(); err != nil {
		return nil, err
	}
	root, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tEOF {
		if p.tok.is(")") {
			return nil, p.errAt(p.tok.pos, `unmatched ")"`)
		}
		return nil, p.errAt(p.tok.pos, "expected operator or end of expression, found "+p.describe(p.tok))
	}
	return &Expr{src: src, root: root, names: collectNames(root)}, nil
}

// MustParse is for expressions fixed at compile time, where a syntax error is
// a programming mistake; never use it on scenario input.
func MustParse(src string) *Expr {
	e, err := Parse(src)
	if err != nil {
		panic(fmt.Sprintf("expr.MustParse(%q): %v", src, err))
	}
	return e
}

// String returns the source without surrounding whitespace, so reports quote
// the expectation exactly as the scenario author wrote it.
func (e *Expr) String() string {
	if e == nil {
		return ""
	}
	return strings.TrimSpace(e.src)
}

// Names lets a loader check a scenario against the names a cell will provide
// before running anything. The slice is a fresh copy each call.
func (e *Expr) Names() []string {
	if e == nil {
		return nil
	}
	return append([]string(nil), e.names...)
}

// Eval evaluates e. Comparisons and logical operators yield Num(1) or Num(0).
// A nil env knows no names.
func (e *Expr) Eval(env Env) (Value, error) {
	if e == nil || e.root == nil {
		return Value{}, fmt.Errorf("empty expression")
	}
	ev := evaluator{src: e.src, env: env}
	return ev.eval(e.root)
}

// Bool evaluates e as a condition (a `when:` guard). A non-numeric string
// result is an error rather than false, since it almost always means the
// author forgot the comparison.
func (e *Expr) Bool(env Env) (bool, error) {
	if e == nil || e.root == nil {
		return false, fmt.Errorf("empty expression")
	}
	ev := evaluator{src: e.src, env: env}
	v, err := ev.eval(e.root)
	if err != nil {
		return false, err
	}
	return ev.truth("result", v, e.root)
}

// CheckResult carries both sides of a failed (or passed) assertion so that a
// report can say "p99 was 73, bound 50" instead of just "false".
type CheckResult struct {
	OK       bool
	Left     Value
	Right    Value
	HasRight bool
	Op       string
}

// Check evaluates e as an assertion. When the top-level node is a comparison
// (== != < <= > >=), Left is its left side (the measured figure), Right its
// right side (the bound) and Op the operator; otherwise Left is the value of
// the whole expression, HasRight is false and Op is empty. On error the
// fields evaluated before the failure are still filled in.
func (e *Expr) Check(env Env) (CheckResult, error) {
	if e == nil || e.root == nil {
		return CheckResult{}, fmt.Errorf("empty expression")
	}
	ev := evaluator{src: e.src, env: env}
	n := e.root
	if n.kind == kCompare {
		res := CheckResult{Op: n.op}
		l, err := ev.eval(n.x)
		if err != nil {
			return res, err
		}
		res.Left = l
		r, err := ev.eval(n.y)
		if err != nil {
			return res, err
		}
		res.Right, res.HasRight = r, true
		res.OK, err = ev.compare(n, l, r)
		return res, err
	}
	v, err := ev.eval(n)
	if err != nil {
		return CheckResult{}, err
	}
	res := CheckResult{Left: v}
	res.OK, err = ev.truth("result", v, n)
	return res, err
}

// SyntaxError locates a parse failure; Col counts characters (not bytes)
// from 1, newlines included, so it matches what an editor shows for a
// one-line expectation.
type SyntaxError struct {
	Src string
	Col int
	Msg string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("col %d: %s", e.Col, e.Msg) }

// UnknownNameError is its own type because a runner treats a name the cell
// does not provide (a counter the kernel lacks, a misspelt knob) differently
// from an expression that is simply false.
type UnknownNameError struct {
	Name string
}

func (e *UnknownNameError) Error() string { return fmt.Sprintf("unknown name %q", e.Name) }

func collectNames(root *node) []string {
	seen := map[string]bool{}
	var walk func(n *node)
	walk = func(n *node) {
		if n == nil {
			return
		}
		if n.kind == kName {
			seen[n.str] = true
		}
		walk(n.x)
		walk(n.y)
		for _, el := range n.list {
			walk(el)
		}
	}
	walk(root)
	names := make([]string, 0, len(seen))
	for s := range seen {
		names = append(names, s)
	}
	sort.Strings(names)
	return names
}
