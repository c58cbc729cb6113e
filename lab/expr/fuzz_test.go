package expr

import (
	"errors"
	"sort"
	"testing"
	"unicode/utf8"
)

// fuzzEnv knows a handful of names of each flavour, so fuzzed expressions
// reach numeric, numeric-string and word values as well as unknown names.
var fuzzEnv = mapEnv(map[string]Value{
	"a":              Num(1),
	"b":              Num(0),
	"n":              Str("2"),
	"s":              Str("fullnat"),
	"e":              Str(""),
	"x.y":            Num(-3.5),
	"c1.Tcp.OutRsts": Num(7),
	"big":            Num(1e300),
})

type outcome struct {
	v   Value
	err error
}

func evalOutcome(e *Expr) outcome {
	v, err := e.Eval(fuzzEnv)
	return outcome{v, err}
}

// FuzzParse checks that no input makes the parser or evaluator panic, that
// syntax errors point inside the source, and that both the source as stored
// (String) and the canonical rendering of the tree parse back to an
// expression that evaluates the same way.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"a && b || !c",
		"x.y * -2 >= n - 1",
		`s in ["nat", "fullnat"] && a not in [0]`,
		"(((a)))",
		`"\"\\" == s`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		e, err := Parse(src)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) error %T %v, want *SyntaxError", src, err, err)
			}
			if se.Col < 1 || se.Col > utf8.RuneCountInString(src)+1 || se.Msg == "" || se.Src != src {
				t.Fatalf("Parse(%q) gave malformed %#v", src, se)
			}
			return
		}

		o1 := evalOutcome(e)
		b, berr := e.Bool(fuzzEnv)
		cr, cerr := e.Check(fuzzEnv)
		if berr == nil && (cerr != nil || cr.OK != b) {
			t.Fatalf("%q: Bool = %v but Check = %+v, %v", src, b, cr, cerr)
		}
		if o1.err != nil && (berr == nil || cerr == nil) {
			t.Fatalf("%q: Eval failed (%v) but Bool (%v) or Check (%v) did not", src, o1.err, berr, cerr)
		}
		// With nothing undecided MayHold is Bool; with some names
		// undecided, "cannot hold" must never contradict the full value.
		if may, merr := e.MayHold(fuzzEnv, func(string) bool { return false }); berr == nil && (merr != nil || may != b) {
			t.Fatalf("%q: Bool = %v but MayHold with all names known = %v, %v", src, b, may, merr)
		}
		if may, merr := e.MayHold(fuzzEnv, func(n string) bool { return n == "a" || n == "x.y" }); merr == nil && !may && berr == nil && b {
			t.Fatalf("%q: MayHold with a and x.y undecided says it cannot hold, but it is true", src)
		}
		var un *UnknownNameError
		if errors.As(o1.err, &un) {
			if _, ok := fuzzEnv(un.Name); ok {
				t.Fatalf("%q: name %q reported unknown", src, un.Name)
			}
		}
		names := e.Names()
		if !sort.StringsAreSorted(names) {
			t.Fatalf("%q: Names not sorted: %q", src, names)
		}
		for i := 1; i < len(names); i++ {
			if names[i] == names[i-1] {
				t.Fatalf("%q: Names has duplicate %q", src, names[i])
			}
		}

		e2, err := Parse(e.String())
		if err != nil {
			t.Fatalf("String() %q of %q does not re-parse: %v", e.String(), src, err)
		}
		o2 := evalOutcome(e2)
		if o1.v != o2.v || errString(o1.err) != errString(o2.err) {
			t.Fatalf("%q evaluates to %v/%v, its String() %q to %v/%v", src, o1.v, o1.err, e.String(), o2.v, o2.err)
		}

		canon := format(e.root)
		if len(canon) > maxLen {
			return // spacing can push a maximal source over the limit
		}
		e3, err := Parse(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, src, err)
		}
		if again := format(e3.root); again != canon {
			t.Fatalf("canonical form of %q unstable: %q then %q", src, canon, again)
		}
		o3 := evalOutcome(e3)
		// Error texts quote source snippets, which differ; the kind of outcome may not.
		if o1.v != o3.v || (o1.err == nil) != (o3.err == nil) {
			t.Fatalf("%q evaluates to %v/%v, canonical %q to %v/%v", src, o1.v, o1.err, canon, o3.v, o3.err)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
