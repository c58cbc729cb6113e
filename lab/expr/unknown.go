package expr

import (
	"fmt"
	"slices"
)

// Checking a selector before the facts it names exist: a `when:` that uses
// kernel.* can only be decided once a run has detected the kernel, but the
// rest of it can be checked when the scenario is read. Evaluating with the
// undecided names as "unknown" (three-valued logic) tells a selector that no
// kernel can make true (`kernel.major >= 5 && lvs.mode == "SNAT"`) from one
// that some kernel might.

// MayHold reports whether e could be true for some values of the names for
// which undecided returns true; the other names come from env. It is false
// only when e is false whatever those values are. Errors are those of the
// decided part (an unknown name, a type mismatch).
func (e *Expr) MayHold(env Env, undecided func(name string) bool) (bool, error) {
	if e == nil || e.root == nil {
		return false, fmt.Errorf("empty expression")
	}
	ev := evaluator{src: e.src, env: env}
	v, known, err := ev.eval3(e.root, undecided)
	if err != nil || !known {
		return !known, err
	}
	return ev.truth("result", v, e.root)
}

// eval3 is eval where a value may be unknown (known false); an unknown
// operand makes the result unknown unless && or || decide without it.
func (ev *evaluator) eval3(n *node, undecided func(string) bool) (v Value, known bool, err error) {
	switch n.kind {
	case kNum, kStr:
		v, err = ev.eval(n)
		return v, err == nil, err
	case kName:
		if undecided(n.str) {
			return Value{}, false, nil
		}
		v, err = ev.eval(n)
		return v, err == nil, err
	case kAnd, kOr:
		// Either side may decide: false && unknown is false, and so is
		// unknown && false.
		decides := n.kind == kOr
		var unknown bool
		for _, side := range []*node{n.x, n.y} {
			sv, ok, err := ev.eval3(side, undecided)
			if err != nil {
				return Value{}, false, err
			}
			if !ok {
				unknown = true
				continue
			}
			t, err := ev.truth(`"`+n.op+`"`, sv, n)
			if err != nil {
				return Value{}, false, err
			}
			if t == decides {
				return boolValue(t), true, nil
			}
		}
		if unknown {
			return Value{}, false, nil
		}
		return boolValue(!decides), true, nil
	}
	// Every other node needs all its operands: an unknown one makes the
	// result unknown; known ones are put in as literals (an operand may be
	// an && or || decided without its unknown side, which eval would not
	// get past) and the node evaluated as usual.
	lit := func(c *node) (*node, bool, error) {
		if c == nil {
			return nil, true, nil
		}
		v, ok, err := ev.eval3(c, undecided)
		if err != nil || !ok {
			return nil, false, err
		}
		l := &node{kind: kStr, str: v.Str, pos: c.pos, end: c.end}
		if v.IsNum {
			l.kind, l.num = kNum, v.Num
		}
		return l, true, nil
	}
	m := *n
	var ok bool
	if m.x, ok, err = lit(n.x); err != nil || !ok {
		return Value{}, false, err
	}
	if m.y, ok, err = lit(n.y); err != nil || !ok {
		return Value{}, false, err
	}
	m.list = make([]*node, len(n.list))
	for i, el := range n.list {
		if m.list[i], ok, err = lit(el); err != nil || !ok {
			return Value{}, false, err
		}
	}
	v, err = ev.eval(&m)
	return v, err == nil, err
}

// Literals lists the string literals e compares name with (name == "x",
// "x" != name, name in ["x", "y"]), so that a loader can check them against
// the values a fact can take before any run.
func (e *Expr) Literals(name string) []string {
	if e == nil {
		return nil
	}
	var out []string
	isName := func(n *node) bool { return n != nil && n.kind == kName && n.str == name }
	var walk func(n *node)
	walk = func(n *node) {
		if n == nil {
			return
		}
		switch {
		case n.kind == kCompare && (n.op == "==" || n.op == "!="):
			if isName(n.x) && n.y.kind == kStr {
				out = append(out, n.y.str)
			}
			if isName(n.y) && n.x.kind == kStr {
				out = append(out, n.x.str)
			}
		case n.kind == kIn && isName(n.x):
			for _, el := range n.list {
				if el.kind == kStr {
					out = append(out, el.str)
				}
			}
		}
		walk(n.x)
		walk(n.y)
		for _, el := range n.list {
			walk(el)
		}
	}
	walk(e.root)
	return out
}

// NumericNames lists the names e uses where only a number or a boolean will
// do: operands of arithmetic, of <, <=, > and >=, of !, && and ||, and a
// bare name as the whole expression. A fact that is always text
// (kernel.ts_offsets) used there fails every evaluation, which a loader can
// say before any run.
func (e *Expr) NumericNames() []string {
	if e == nil {
		return nil
	}
	var out []string
	need := func(n *node) {
		if n != nil && n.kind == kName && !slices.Contains(out, n.str) {
			out = append(out, n.str)
		}
	}
	var walk func(n *node)
	walk = func(n *node) {
		if n == nil {
			return
		}
		switch n.kind {
		case kNeg, kNot:
			need(n.x)
		case kArith, kAnd, kOr:
			need(n.x)
			need(n.y)
		case kCompare:
			if n.op != "==" && n.op != "!=" {
				need(n.x)
				need(n.y)
			}
		}
		walk(n.x)
		walk(n.y)
		for _, el := range n.list {
			walk(el)
		}
	}
	need(e.root)
	walk(e.root)
	return out
}
