package expr

import (
	"fmt"
	"math"
	"strconv"
)

// evaluator carries the source so that error messages can quote the
// sub-expression at fault; a scenario may hold many similar asserts.
type evaluator struct {
	src string
	env Env
}

func (ev *evaluator) snippet(n *node) string { return ev.src[n.pos:n.end] }

func (ev *evaluator) eval(n *node) (Value, error) {
	switch n.kind {
	case kNum:
		return Num(n.num), nil
	case kStr:
		return Str(n.str), nil
	case kName:
		if ev.env != nil {
			if v, ok := ev.env(n.str); ok {
				return v, nil
			}
		}
		return Value{}, &UnknownNameError{Name: n.str}
	case kNeg:
		v, err := ev.eval(n.x)
		if err != nil {
			return Value{}, err
		}
		f, ok := v.number()
		if !ok {
			return Value{}, ev.needNumber(n, v)
		}
		return Num(-f), nil
	case kNot:
		v, err := ev.eval(n.x)
		if err != nil {
			return Value{}, err
		}
		t, err := ev.truth(`"!"`, v, n)
		return boolValue(!t), err
	case kAnd, kOr:
		// Short-circuit so that a guard such as `x != 0 && y / x > 2` is safe.
		v, err := ev.eval(n.x)
		if err != nil {
			return Value{}, err
		}
		t, err := ev.truth(strconv.Quote(n.op), v, n)
		if err != nil {
			return Value{}, err
		}
		if t == (n.kind == kOr) {
			return boolValue(t), nil
		}
		if v, err = ev.eval(n.y); err != nil {
			return Value{}, err
		}
		t, err = ev.truth(strconv.Quote(n.op), v, n)
		return boolValue(t), err
	case kArith:
		return ev.arith(n)
	case kCompare:
		l, err := ev.eval(n.x)
		if err != nil {
			return Value{}, err
		}
		r, err := ev.eval(n.y)
		if err != nil {
			return Value{}, err
		}
		ok, err := ev.compare(n, l, r)
		return boolValue(ok), err
	case kIn:
		l, err := ev.eval(n.x)
		if err != nil {
			return Value{}, err
		}
		found := false
		for _, el := range n.list {
			r, err := ev.eval(el)
			if err != nil {
				return Value{}, err
			}
			if equal(l, r) {
				found = true
				break
			}
		}
		return boolValue(found != (n.op == "not in")), nil
	}
	return Value{}, fmt.Errorf("internal error: unknown node kind %d", n.kind)
}

func (ev *evaluator) needNumber(n *node, v Value) error {
	return fmt.Errorf("%q needs numbers, got %s in %q", n.op, v.describe(), ev.snippet(n))
}

func (ev *evaluator) arith(n *node) (Value, error) {
	l, err := ev.eval(n.x)
	if err != nil {
		return Value{}, err
	}
	r, err := ev.eval(n.y)
	if err != nil {
		return Value{}, err
	}
	a, ok := l.number()
	if !ok {
		return Value{}, ev.needNumber(n, l)
	}
	b, ok := r.number()
	if !ok {
		return Value{}, ev.needNumber(n, r)
	}
	var f float64
	switch n.op {
	case "+":
		f = a + b
	case "-":
		f = a - b
	case "*":
		f = a * b
	case "/":
		if b == 0 {
			return Value{}, fmt.Errorf("division by zero in %q", ev.snippet(n))
		}
		f = a / b
	}
	// Infinities and NaN would make later comparisons quietly meaningless.
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return Value{}, fmt.Errorf("result of %q is not a finite number", ev.snippet(n))
	}
	return Num(f), nil
}

// truth interprets v as a condition. Non-numeric strings are refused: "yes"
// or "fullnat" being silently true (or false) would hide a missing comparison.
func (ev *evaluator) truth(what string, v Value, n *node) (bool, error) {
	f, ok := v.number()
	if !ok {
		return false, fmt.Errorf("%s needs a number or boolean, got %s in %q", what, v.describe(), ev.snippet(n))
	}
	if math.IsNaN(f) {
		return false, fmt.Errorf("%s is NaN in %q", what, ev.snippet(n))
	}
	return f != 0, nil
}

func (ev *evaluator) compare(n *node, l, r Value) (bool, error) {
	switch n.op {
	case "==":
		return equal(l, r), nil
	case "!=":
		return !equal(l, r), nil
	}
	a, ok := l.number()
	if !ok {
		return false, ev.needNumber(n, l)
	}
	b, ok := r.number()
	if !ok {
		return false, ev.needNumber(n, r)
	}
	switch n.op {
	case "<":
		return a < b, nil
	case "<=":
		return a <= b, nil
	case ">":
		return a > b, nil
	case ">=":
		return a >= b, nil
	}
	return false, fmt.Errorf("internal error: unknown comparison %q", n.op)
}

// equal compares numerically when both sides are numeric so that the knob
// text "1" equals 1 and "1.0"; otherwise it compares the text, which makes
// mode == "fullnat" work and a number never equal to a word.
func equal(l, r Value) bool {
	a, ok1 := l.number()
	b, ok2 := r.number()
	if ok1 && ok2 {
		return a == b
	}
	return l.String() == r.String()
}
