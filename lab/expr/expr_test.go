package expr

import (
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// sexpr prints the tree fully parenthesized, so precedence tests compare
// structure rather than a printer's choice of parentheses.
func sexpr(n *node) string {
	switch n.kind {
	case kNum:
		return strconv.FormatFloat(n.num, 'g', -1, 64)
	case kStr:
		return strconv.Quote(n.str)
	case kName:
		return n.str
	case kNeg:
		return "(neg " + sexpr(n.x) + ")"
	case kNot:
		return "(! " + sexpr(n.x) + ")"
	case kIn:
		parts := []string{strings.ReplaceAll(n.op, " ", "-"), sexpr(n.x)}
		for _, el := range n.list {
			parts = append(parts, sexpr(el))
		}
		return "(" + strings.Join(parts, " ") + ")"
	}
	return "(" + n.op + " " + sexpr(n.x) + " " + sexpr(n.y) + ")"
}

func mapEnv(m map[string]Value) Env {
	return func(name string) (Value, bool) {
		v, ok := m[name]
		return v, ok
	}
}

var testEnv = mapEnv(map[string]Value{
	"clients.net.ipv4.tcp_timestamps":  Str("1"),
	"server.net.ipv4.tcp_rfc1337":      Str("0"),
	"server.TcpExt.PAWSTimewait":       Num(12),
	"load.failures.timeout":            Num(0),
	"load.connect_ms.p99":              Num(42.5),
	"syn.in":                           Num(100),
	"syn.synack_out":                   Num(85),
	"lvs.mode":                         Str("nat"),
	"lvs.net.ipv4.ip_local_port_range": Str("32768\t60999"),
	"c1.Tcp.OutRsts":                   Num(3),
	"nic.rx.0.packets":                 Num(7),
	"empty":                            Str(""),
	"half":                             Str("0.5"),
	"one":                              Str("1.0"),
	"lvs.random":                       Str("false"),
	"load.gap":                         Str("0s"),
	"load.connect_timeout":             Str("1.5s"),
	"zero":                             Num(0),
	"a":                                Num(1),
	"b":                                Num(0),
	"c":                                Num(1),
	"x.in":                             Num(5),
})

func TestPrecedence(t *testing.T) {
	tests := []struct{ src, want string }{
		{"a || b && c", "(|| a (&& b c))"},
		{"a && b || c", "(|| (&& a b) c)"},
		{"a || b || c", "(|| (|| a b) c)"},
		{"a and b or c", "(|| (&& a b) c)"},
		{"!a == b", "(! (== a b))"},
		{"not a == b", "(! (== a b))"},
		{"!a && b", "(&& (! a) b)"},
		{"!!a", "(! (! a))"},
		{"(!a) == b", "(== (! a) b)"},
		{"a + b * c", "(+ a (* b c))"},
		{"a * b + c", "(+ (* a b) c)"},
		{"a - b - c", "(- (- a b) c)"},
		{"a - (b - c)", "(- a (- b c))"},
		{"a / b * c", "(* (/ a b) c)"},
		{"-a * b", "(* (neg a) b)"},
		{"- -a", "(neg (neg a))"},
		{"--a", "(neg (neg a))"},
		{"a - -b", "(- a (neg b))"},
		{"-(a + b)", "(neg (+ a b))"},
		{"a + b < c * d", "(< (+ a b) (* c d))"},
		{"syn.in - syn.synack_out >= 10", "(>= (- syn.in syn.synack_out) 10)"},
		{"(a < b) == (c < d)", "(== (< a b) (< c d))"},
		{"x in [1, -2, a + 1]", "(in x 1 (neg 2) (+ a 1))"},
		{"x not in [1]", "(not-in x 1)"},
		{"x  not\tin [1]", "(not-in x 1)"},
		{"not x in [1] and y or z", "(|| (&& (! (in x 1)) y) z)"},
		{"!(lvs.mode == \"fullnat\")", "(! (== lvs.mode \"fullnat\"))"},
		{"(a || b) && c", "(&& (|| a b) c)"},
		{"((a))", "a"},
		{"true && false", "(&& 1 0)"},
		{"1e3 + 0.5 + 10 + 2E-2 + 1e+2", "(+ (+ (+ (+ 1000 0.5) 10) 0.02) 100)"},
		{`a == "x \"y\" \\"`, `(== a "x \"y\" \\")`},
		{"c1.Tcp.OutRsts > 0", "(> c1.Tcp.OutRsts 0)"},
		{"nic.rx.0.packets > 0", "(> nic.rx.0.packets 0)"},
		{"x.in == 1", "(== x.in 1)"},
		{"in.x == 1", "(== in.x 1)"},
		{"_a.b_1 == 1", "(== _a.b_1 1)"},
		{"a<=b", "(<= a b)"},
		{"a!=b", "(!= a b)"},
		{"a>=-1", "(>= a (neg 1))"},
		{"clients.net.ipv4.tcp_timestamps == 1 && server.net.ipv4.tcp_rfc1337 == 0",
			"(&& (== clients.net.ipv4.tcp_timestamps 1) (== server.net.ipv4.tcp_rfc1337 0))"},
		{"server.net.ipv4.tcp_rfc1337 in [0, 1] && !(lvs.mode == \"fullnat\")",
			"(&& (in server.net.ipv4.tcp_rfc1337 0 1) (! (== lvs.mode \"fullnat\")))"},
		{"\n a \t", "a"},
	}
	for _, tt := range tests {
		e, err := Parse(tt.src)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.src, err)
			continue
		}
		if got := sexpr(e.root); got != tt.want {
			t.Errorf("Parse(%q) = %s, want %s", tt.src, got, tt.want)
		}
	}
}

func TestEval(t *testing.T) {
	tests := []struct {
		src  string
		want Value
	}{
		{"1 + 2 * 3", Num(7)},
		{"(1 + 2) * 3", Num(9)},
		{"10 / 4", Num(2.5)},
		{"7 - 10", Num(-3)},
		{"-3 * -2", Num(6)},
		{"1e3", Num(1000)},
		{"true", Num(1)},
		{"false", Num(0)},
		{`"abc"`, Str("abc")},
		{`""`, Str("")},
		{`"a\"b\\c"`, Str(`a"b\c`)},
		{"syn.in - syn.synack_out", Num(15)},
		{"syn.in - syn.synack_out >= 10", Num(1)},
		{"syn.in - syn.synack_out >= 16", Num(0)},
		{"lvs.mode", Str("nat")},
		{"server.TcpExt.PAWSTimewait > 0", Num(1)},
		{"load.failures.timeout == 0", Num(1)},
		{"load.connect_ms.p99 < 50", Num(1)},
		{"load.connect_ms.p99 <= 42.5", Num(1)},
		{"load.connect_ms.p99 > 42.5", Num(0)},
		{"clients.net.ipv4.tcp_timestamps == 1 && server.net.ipv4.tcp_rfc1337 == 0", Num(1)},
		{"clients.net.ipv4.tcp_timestamps == 1 && server.net.ipv4.tcp_rfc1337 == 1", Num(0)},
		{"server.net.ipv4.tcp_rfc1337 in [0, 1] && !(lvs.mode == \"fullnat\")", Num(1)},
		{"!(lvs.mode == \"nat\")", Num(0)},
		{"!lvs.mode == \"nat\"", Num(0)},
		{"a || b", Num(1)},
		{"b || b", Num(0)},
		{"a && c", Num(1)},
		{"a && b", Num(0)},
		{"a and not b", Num(1)},
		{"!zero", Num(1)},
		{"!!5", Num(1)},
		{"2 && 3", Num(1)}, // logical operators normalise to 1/0
		{"0 || -0.5", Num(1)},
		{"c1.Tcp.OutRsts + nic.rx.0.packets", Num(10)},
		{"x.in * 2", Num(10)},
		{"half * 4", Num(2)}, // numeric-looking strings take part in arithmetic
		{"-half", Num(-0.5)},
		{"half < 1", Num(1)},
		{"clients.net.ipv4.tcp_timestamps", Str("1")},
	}
	for _, tt := range tests {
		e := MustParse(tt.src)
		got, err := e.Eval(testEnv)
		if err != nil {
			t.Errorf("Eval(%q): %v", tt.src, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Eval(%q) = %#v, want %#v", tt.src, got, tt.want)
		}
	}
}

func TestCompareStringsAndNumbers(t *testing.T) {
	tests := []struct {
		src  string
		want bool
	}{
		{`clients.net.ipv4.tcp_timestamps == 1`, true},   // knob text vs number
		{`clients.net.ipv4.tcp_timestamps == "1"`, true}, // knob text vs numeric string
		{`clients.net.ipv4.tcp_timestamps == "1.0"`, true},
		{`one == 1`, true}, // "1.0" is numerically 1
		{`one == "1"`, true},
		{`one != 1`, false},
		{`"01" == 1`, true},
		{`"1e0" == "1"`, true},
		{`lvs.mode == "nat"`, true},
		{`lvs.mode == "NAT"`, false}, // text comparison is exact
		{`lvs.mode != "fullnat"`, true},
		{`lvs.mode == 1`, false}, // a word never equals a number
		{`lvs.mode != 0`, true},
		{`empty == ""`, true},
		{`empty == 0`, false},
		{`lvs.net.ipv4.ip_local_port_range == "32768	60999"`, true},
		{`lvs.net.ipv4.ip_local_port_range == 32768`, false},
		{`"abc" == "abc"`, true},
		{`"10" > 9`, true}, // numeric, not lexical
		{`"10" > "9"`, true},
		{`half >= 0.5`, true},
		{`true == 1`, true},
		{`false == 0`, true},
		{`(1 < 2) == true`, true},
		// Fields arrive as text: yes/no is 1/0, a duration is seconds, and
		// the text forms scenarios already use still match.
		{`lvs.random == false`, true},
		{`lvs.random == true`, false},
		{`lvs.random == "false"`, true},
		{`!lvs.random`, true},
		{`load.gap == 0`, true},
		{`load.connect_timeout == 1.5`, true},
		{`load.connect_timeout == "1.5s"`, true},
		{`load.connect_timeout == "1500ms"`, true},
		{`load.connect_timeout > 1`, true},
	}
	for _, tt := range tests {
		got, err := MustParse(tt.src).Bool(testEnv)
		if err != nil {
			t.Errorf("Bool(%q): %v", tt.src, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Bool(%q) = %v, want %v", tt.src, got, tt.want)
		}
	}
}

func TestIn(t *testing.T) {
	tests := []struct {
		src  string
		want bool
	}{
		{`server.net.ipv4.tcp_rfc1337 in [0, 1]`, true},
		{`server.net.ipv4.tcp_rfc1337 in [1, 2]`, false},
		{`server.net.ipv4.tcp_rfc1337 not in [1, 2]`, true},
		{`server.net.ipv4.tcp_rfc1337 not in [0]`, false},
		{`server.net.ipv4.tcp_rfc1337 in ["0"]`, true},
		{`lvs.mode in ["dr", "nat", "tun"]`, true},
		{`lvs.mode in ["fullnat"]`, false},
		{`lvs.mode not in ["fullnat", 1]`, true},
		{`3 in [1, 1 + 2]`, true},
		{`-1 in [-1]`, true},
		{`syn.in - syn.synack_out in [15]`, true},
		{`!(3 in [4])`, true},
		{`not 3 in [4]`, true},
		{`a in [b] || c in [1]`, true},
		{`(a in [1]) == 1`, true},
		// Elements after the first match are not evaluated, like "||".
		{`a in [1, no.such.name]`, true},
	}
	for _, tt := range tests {
		got, err := MustParse(tt.src).Bool(testEnv)
		if err != nil {
			t.Errorf("Bool(%q): %v", tt.src, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Bool(%q) = %v, want %v", tt.src, got, tt.want)
		}
	}
	if _, err := MustParse(`a in [2, no.such.name]`).Eval(testEnv); err == nil {
		t.Errorf("unknown name in a list element that is reached: want error")
	}
}

func TestSyntaxErrors(t *testing.T) {
	tests := []struct {
		src string
		col int
		msg string
	}{
		{"", 1, "empty expression"},
		{" \t\n ", 1, "empty expression"},
		{"a &&", 5, `expected operand after "&&"`},
		{"a && ", 6, `expected operand after "&&"`},
		{"a == 1 && )", 11, `expected operand after "&&", found ")"`},
		{"a or", 5, `expected operand after "or"`},
		{"-", 2, `expected operand after "-"`},
		{"in", 1, `expected operand, found "in"`},
		{")", 1, `expected operand, found ")"`},
		{"a == ", 6, `expected operand after "=="`},
		{"a < b < c", 7, `comparisons do not chain; join them with "&&"`},
		{"a == 1 in [1]", 8, `comparisons do not chain; join them with "&&"`},
		{"x in [1] not in [2]", 10, `comparisons do not chain; join them with "&&"`},
		{"a b", 3, `expected operator or end of expression, found name "b"`},
		{"a 1", 3, `expected operator or end of expression, found number 1`},
		{`a "s"`, 3, `expected operator or end of expression, found string "s"`},
		{"a ! b", 3, `expected operator or end of expression, found "!"`},
		{"a == b not c", 8, `expected operator or end of expression, found "not"`},
		{"a not c", 7, `expected "in" after "not", found name "c"`},
		{"a not", 6, `expected "in" after "not", found end of expression`},
		{"(a", 3, `expected ")" to close "(" at col 1, found end of expression`},
		{"x && (a b)", 9, `expected ")" to close "(" at col 6, found name "b"`},
		{"a)", 2, `unmatched ")"`},
		{"a = 1", 3, `unexpected "="; use "==" to compare`},
		{"a & b", 3, `unexpected "&"; use "&&" for "and"`},
		{"a | b", 3, `unexpected "|"; use "||" for "or"`},
		{"a in 1", 6, `expected "[" after "in", found number 1`},
		{"a not in (1)", 10, `expected "[" after "in", found "("`},
		{"a in [1, 2", 11, `expected "," or "]" in list opened at col 6, found end of expression`},
		{"a in [1 2]", 9, `expected "," or "]" in list opened at col 6, found number 2`},
		{"a in []", 7, `expected operand after "[", found "]"`},
		{"a in [1,]", 9, `expected operand after ",", found "]"`},
		{"a in [b == 1]", 9, `expected "," or "]" in list opened at col 6, found "=="`},
		{`x == "abc`, 6, `unterminated string; close it with "`},
		{`x == "abc\`, 6, `unterminated string; close it with "`},
		{`x == "a\nb"`, 8, `invalid escape in string; only \" and \\ are allowed`},
		{"load.connect_ms.p99 > 10ms", 23, `invalid number "10ms"; write plain decimals such as 10, 0.5 or 1e3 (no units)`},
		{"1.2.3", 1, `invalid number "1.2.3"; write plain decimals such as 10, 0.5 or 1e3 (no units)`},
		{"1e", 1, `invalid number "1e"; write plain decimals such as 10, 0.5 or 1e3 (no units)`},
		{"1_000", 1, `invalid number "1_000"; write plain decimals such as 10, 0.5 or 1e3 (no units)`},
		{"0x10", 1, `invalid number "0x10"; write plain decimals such as 10, 0.5 or 1e3 (no units)`},
		{"1e400", 1, `number 1e400 is out of range`},
		{".5", 1, `unexpected character '.'`},
		{"a. == 1", 3, `expected name segment after "."`},
		{"a..b", 3, `expected name segment after "."`},
		{"a.", 3, `expected name segment after "."`},
		{"1 + !a", 5, `expected operand after "+", found "!" (negation binds looser than comparison and arithmetic; wrap it in parentheses)`},
		{"a == not b", 6, `expected operand after "==", found "not" (negation binds looser than comparison and arithmetic; wrap it in parentheses)`},
		{"a # b", 3, `unexpected character '#'`},
		{"é == 1", 1, `unexpected character 'é'`},
		{`"é" == b c`, 10, `expected operator or end of expression, found name "c"`}, // columns count characters
		{"a == \xff", 6, `invalid UTF-8 byte 0xff`},
		{"a && # && (", 6, `unexpected character '#'`}, // the first problem in reading order
		{"true.x == 1 && true", 0, ""},                 // dotted names containing keywords are fine
	}
	for _, tt := range tests {
		_, err := Parse(tt.src)
		if tt.col == 0 {
			if err != nil {
				t.Errorf("Parse(%q): unexpected error %v", tt.src, err)
			}
			continue
		}
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q) error = %v, want *SyntaxError", tt.src, err)
			continue
		}
		if se.Col != tt.col || se.Msg != tt.msg || se.Src != tt.src {
			t.Errorf("Parse(%q) = col %d %q (src %q), want col %d %q", tt.src, se.Col, se.Msg, se.Src, tt.col, tt.msg)
		}
	}
}

func TestSyntaxErrorString(t *testing.T) {
	_, err := Parse("a == 1 &&")
	if got, want := err.Error(), `col 10: expected operand after "&&"`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestLimits(t *testing.T) {
	long := strings.Repeat("a", maxLen)
	if _, err := Parse(long); err != nil {
		t.Errorf("name of exactly %d bytes: %v", maxLen, err)
	}
	var se *SyntaxError
	if _, err := Parse(long + "b"); !errors.As(err, &se) || se.Col != maxLen+1 || se.Msg != "expression longer than 4096 bytes" {
		t.Errorf("over-long source: %v", err)
	}

	deep := func(open, close string, n int) string {
		return strings.Repeat(open, n) + "1" + strings.Repeat(close, n)
	}
	const deepMsg = "expression nested too deeply (more than 64 levels of parentheses or unary operators)"
	for _, tt := range []struct {
		name, src string
		col       int // 0: must parse
	}{
		{"64 parens", deep("(", ")", 64), 0},
		{"65 parens", deep("(", ")", 65), 65},
		{"64 nots", deep("!", "", 64), 0},
		{"65 nots", deep("!", "", 65), 65},
		{"65 minus", deep("-", "", 65), 65},
		{"65 mixed", deep("-(", ")", 33), 65},
		{"65 not words", deep("not ", "", 65), 4*64 + 1},
		{"siblings do not add up", strings.Repeat(deep("(", ")", 40)+" + ", 10) + "1", 0},
		{"binary chains are not nesting", strings.Repeat("1 + ", 1000) + "1", 0},
		{"sibling minus signs", strings.Repeat("-1 + ", 100) + "1", 0},
		{"sibling negations", strings.Repeat("!a && ", 100) + "a", 0},
	} {
		_, err := Parse(tt.src)
		if tt.col == 0 {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if !errors.As(err, &se) || se.Col != tt.col || se.Msg != deepMsg {
			t.Errorf("%s: got %v, want col %d %q", tt.name, err, tt.col, deepMsg)
		}
	}
	// A long chain still evaluates (the evaluator recurses on the left-deep tree).
	if v, err := MustParse(strings.Repeat("1 + ", 1000) + "1").Eval(nil); err != nil || v != Num(1001) {
		t.Errorf("long chain = %v, %v", v, err)
	}
}

func TestUnknownName(t *testing.T) {
	for _, src := range []string{
		"no.such.name",
		"no.such.name > 1",
		"1 + no.such.name",
		"a && no.such.name",
		"b || no.such.name",
		"-no.such.name",
		"!no.such.name",
		"no.such.name in [1]",
	} {
		_, err := MustParse(src).Eval(testEnv)
		var un *UnknownNameError
		if !errors.As(err, &un) || un.Name != "no.such.name" {
			t.Errorf("Eval(%q) error = %v, want UnknownNameError", src, err)
			continue
		}
		if got, want := err.Error(), `unknown name "no.such.name"`; got != want {
			t.Errorf("Error() = %q, want %q", got, want)
		}
	}
	// A nil env knows nothing, and must not panic.
	var un *UnknownNameError
	if _, err := MustParse("x.y").Eval(nil); !errors.As(err, &un) || un.Name != "x.y" {
		t.Errorf("nil env: %v", err)
	}
	// Short circuit: the right side is never looked up.
	for _, src := range []string{"b && no.such.name", "a || no.such.name"} {
		if _, err := MustParse(src).Eval(testEnv); err != nil {
			t.Errorf("Eval(%q): %v", src, err)
		}
	}
}

func TestEvalErrors(t *testing.T) {
	tests := []struct{ src, msg string }{
		{"1 / 0", `division by zero in "1 / 0"`},
		{"syn.in / load.failures.timeout > 1", `division by zero in "syn.in / load.failures.timeout"`},
		{"1 / (a - 1)", `division by zero in "1 / (a - 1)"`},
		{`lvs.mode < 3`, `"<" needs numbers, got string "nat" in "lvs.mode < 3"`},
		{`3 >= lvs.mode`, `">=" needs numbers, got string "nat" in "3 >= lvs.mode"`},
		{`"a" < "b"`, `"<" needs numbers, got string "a" in "\"a\" < \"b\""`},
		{`empty > 0`, `">" needs numbers, got string "" in "empty > 0"`},
		{`lvs.mode + 1`, `"+" needs numbers, got string "nat" in "lvs.mode + 1"`},
		{`1 * lvs.mode`, `"*" needs numbers, got string "nat" in "1 * lvs.mode"`},
		{`-lvs.mode`, `"-" needs numbers, got string "nat" in "-lvs.mode"`},
		{`!lvs.mode`, `"!" needs a number or boolean, got string "nat" in "!lvs.mode"`},
		{`lvs.mode && a`, `"&&" needs a number or boolean, got string "nat" in "lvs.mode && a"`},
		{`a && lvs.mode`, `"&&" needs a number or boolean, got string "nat" in "a && lvs.mode"`},
		{`b or "x"`, `"||" needs a number or boolean, got string "x" in "b or \"x\""`},
		{`1e308 * 10`, `result of "1e308 * 10" is not a finite number`},
	}
	for _, tt := range tests {
		_, err := MustParse(tt.src).Eval(testEnv)
		if err == nil || err.Error() != tt.msg {
			t.Errorf("Eval(%q) error = %v, want %q", tt.src, err, tt.msg)
		}
	}
	// Bool refuses strings even where Eval is happy to return one.
	if _, err := MustParse("lvs.mode").Bool(testEnv); err == nil ||
		err.Error() != `result needs a number or boolean, got string "nat" in "lvs.mode"` {
		t.Errorf("Bool(string) error = %v", err)
	}
	if got, err := MustParse("clients.net.ipv4.tcp_timestamps").Bool(testEnv); err != nil || !got {
		t.Errorf("Bool(knob \"1\") = %v, %v; want true", got, err)
	}
	nan := mapEnv(map[string]Value{"n": Num(math.NaN())})
	if _, err := MustParse("n").Bool(nan); err == nil {
		t.Errorf("Bool(NaN): want error")
	}
	if _, err := MustParse("!n").Eval(nan); err == nil {
		t.Errorf("!NaN: want error")
	}
	// A string that spells NaN is text, so it equals itself.
	if ok, err := MustParse(`"nan" == "nan"`).Bool(nil); err != nil || !ok {
		t.Errorf(`"nan" == "nan" = %v, %v`, ok, err)
	}
}

func TestNames(t *testing.T) {
	tests := []struct {
		src  string
		want []string
	}{
		{"1 + 2", nil},
		{"true || false", nil},
		{"syn.in - syn.synack_out >= 10", []string{"syn.in", "syn.synack_out"}},
		{"b + a + b + a.b", []string{"a", "a.b", "b"}},
		{"server.net.ipv4.tcp_rfc1337 in [0, x, y + x] && !(lvs.mode == \"fullnat\")",
			[]string{"lvs.mode", "server.net.ipv4.tcp_rfc1337", "x", "y"}},
		{`"not.a.name" == c1.Tcp.OutRsts`, []string{"c1.Tcp.OutRsts"}},
	}
	for _, tt := range tests {
		e := MustParse(tt.src)
		got := e.Names()
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Names(%q) = %q, want %q", tt.src, got, tt.want)
		}
		if len(got) > 0 {
			got[0] = "mutated"
			if e.Names()[0] == "mutated" {
				t.Errorf("Names(%q) shares its slice with the Expr", tt.src)
			}
		}
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		src  string
		want CheckResult
	}{
		{"load.connect_ms.p99 < 50", CheckResult{OK: true, Left: Num(42.5), Right: Num(50), HasRight: true, Op: "<"}},
		{"load.connect_ms.p99 < 40", CheckResult{OK: false, Left: Num(42.5), Right: Num(40), HasRight: true, Op: "<"}},
		{"syn.in - syn.synack_out >= 10", CheckResult{OK: true, Left: Num(15), Right: Num(10), HasRight: true, Op: ">="}},
		{"server.TcpExt.PAWSTimewait > 100", CheckResult{Left: Num(12), Right: Num(100), HasRight: true, Op: ">"}},
		{"load.failures.timeout == 0", CheckResult{OK: true, Left: Num(0), Right: Num(0), HasRight: true, Op: "=="}},
		{"( load.failures.timeout != 0 )", CheckResult{Left: Num(0), Right: Num(0), HasRight: true, Op: "!="}},
		{`lvs.mode == "fullnat"`, CheckResult{Left: Str("nat"), Right: Str("fullnat"), HasRight: true, Op: "=="}},
		{"clients.net.ipv4.tcp_timestamps <= 1", CheckResult{OK: true, Left: Str("1"), Right: Num(1), HasRight: true, Op: "<="}},
		{"2 * syn.in > syn.synack_out + 1", CheckResult{OK: true, Left: Num(200), Right: Num(86), HasRight: true, Op: ">"}},
		// Not a comparison at the top: Left is the whole value.
		{"a < 1 || b", CheckResult{Left: Num(0)}},
		{"server.TcpExt.PAWSTimewait", CheckResult{OK: true, Left: Num(12)}},
		{"load.failures.timeout", CheckResult{Left: Num(0)}},
		{`lvs.mode in ["nat"]`, CheckResult{OK: true, Left: Num(1)}},
		{"!(a > 0)", CheckResult{Left: Num(0)}},
	}
	for _, tt := range tests {
		got, err := MustParse(tt.src).Check(testEnv)
		if err != nil {
			t.Errorf("Check(%q): %v", tt.src, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Check(%q) = %+v, want %+v", tt.src, got, tt.want)
		}
	}

	// Errors keep what was evaluated before the failure.
	got, err := MustParse("syn.in > no.such.name").Check(testEnv)
	var un *UnknownNameError
	if !errors.As(err, &un) || got.Left != Num(100) || got.HasRight || got.Op != ">" {
		t.Errorf("Check with unknown right side = %+v, %v", got, err)
	}
	got, err = MustParse("lvs.mode").Check(testEnv)
	if err == nil || got.Left != Str("nat") || got.OK {
		t.Errorf("Check(string) = %+v, %v; want error with Left set", got, err)
	}
	if _, err := MustParse("lvs.mode < 1").Check(testEnv); err == nil {
		t.Errorf("Check ordering a string: want error")
	}
}

func TestValueString(t *testing.T) {
	tests := []struct {
		v    Value
		want string
	}{
		{Num(3), "3"},
		{Num(0.25), "0.25"},
		{Num(-7), "-7"},
		{Num(0), "0"},
		{Num(math.Copysign(0, -1)), "0"},
		{Num(1234567), "1234567"},
		{Num(1e20), "100000000000000000000"},
		{Num(1e21), "1e+21"},
		{Num(0.0001), "0.0001"},
		{Num(0.00001), "1e-05"},
		{Num(42.5), "42.5"},
		{Num(1.0 / 3), "0.3333333333333333"},
		{Num(math.Inf(1)), "+Inf"},
		{Str("fullnat"), "fullnat"},
		{Str("1"), "1"},
		{Str(""), ""},
		{Value{}, ""},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestStringAndMustParse(t *testing.T) {
	if got := MustParse("  a  &&  b \n").String(); got != "a  &&  b" {
		t.Errorf("String() = %q", got)
	}
	defer func() {
		if recover() == nil {
			t.Errorf("MustParse of bad input did not panic")
		}
	}()
	MustParse("a &&")
}

// The zero Expr and a nil *Expr report errors instead of panicking, since a
// caller may hold one when a scenario failed to load.
func TestZeroExpr(t *testing.T) {
	var e Expr
	if _, err := e.Eval(testEnv); err == nil {
		t.Error("zero Expr Eval: want error")
	}
	if _, err := e.Bool(testEnv); err == nil {
		t.Error("zero Expr Bool: want error")
	}
	if _, err := e.Check(testEnv); err == nil {
		t.Error("zero Expr Check: want error")
	}
	var np *Expr
	if np.String() != "" || np.Names() != nil {
		t.Error("nil Expr String/Names")
	}
	if _, err := np.Eval(nil); err == nil {
		t.Error("nil Expr Eval: want error")
	}
}

func TestFormatRoundTrip(t *testing.T) {
	tests := []struct{ src, want string }{
		{"a || b && c", "a || b && c"},
		{"(a || b) && c", "(a || b) && c"},
		{"a - (b - c)", "a - (b - c)"},
		{"(a - b) - c", "a - b - c"},
		{"a / (b * c)", "a / (b * c)"},
		{"-(a + b)", "-(a + b)"},
		{"- - a", "--a"},
		{"not (a and b)", "!(a && b)"},
		{"!a == b", "!a == b"},
		{"(!a) == b", "(!a) == b"},
		{"(a < b) == (c < d)", "(a < b) == (c < d)"},
		{"x not in [1, -2]", "x not in [1, -2]"},
		{"-(x in [1]) * 2", "-(x in [1]) * 2"},
		{`s == "q\"\\"`, `s == "q\"\\"`},
		{"true + 1e3", "1 + 1000"},
		{"((((1))))", "1"},
	}
	for _, tt := range tests {
		got := format(MustParse(tt.src).root)
		if got != tt.want {
			t.Errorf("format(%q) = %q, want %q", tt.src, got, tt.want)
		}
		if again := format(MustParse(got).root); again != got {
			t.Errorf("format not stable: %q -> %q", got, again)
		}
	}
}
