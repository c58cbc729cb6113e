package report

import (
	"testing"

	"github.com/twlab/twlab/lab/result"
)

// An assertion that is no comparison (a || b) has a truth, not a measured
// figure: a failed one read "measured 0, wanted <nil>", and 0 looked like
// the PAWS count. Large figures are written out, not in exponent form.
func TestExpectFigures(t *testing.T) {
	for _, tc := range []struct {
		e    result.Expect
		m, w string
	}{
		{result.Expect{Expr: "server.paws > 50 || load.conn_per_s < 3000", Value: 0.0, OK: false}, "false", "true"},
		{result.Expect{Expr: "server.paws > 50 || load.conn_per_s < 3000", Value: 1.0, OK: true}, "true", "true"},
		{result.Expect{Expr: "load.ok >= 1000000", Value: 1234567.0, Bound: 1000000.0, OK: true}, "1234567", "1000000"},
		{result.Expect{Expr: "skew.c2.offset_ms == -60000", Value: -60000.0, Bound: -60000.0, OK: true}, "-60000", "-60000"},
		{result.Expect{Expr: "load.bogus > 0", Error: "unknown name"}, "–", ""},
	} {
		if m, w := expectFigures(tc.e); m != tc.m || w != tc.w {
			t.Errorf("%s: measured %q wanted %q; want %q, %q", tc.e.Expr, m, w, tc.m, tc.w)
		}
	}
}

// A pipe, even in a code span, ends a GFM table cell; a newline ends the row.
func TestMarkdownCell(t *testing.T) {
	if got := mdCell("a || b\nc"); got != `a \|\| b c` {
		t.Errorf("mdCell = %q", got)
	}
}

// A text field of cells.csv that a spreadsheet would run as a formula is
// kept text; numbers stay numbers.
func TestCSVTextCell(t *testing.T) {
	for in, want := range map[string]string{"=HYPERLINK(\"x\")": "'=HYPERLINK(\"x\")", "@SUM(A1)": "'@SUM(A1)", "-1": "-1", "+5": "+5",
		"tw_recycle=0": "tw_recycle=0", "": "", "-cmd|x": "'-cmd|x"} {
		if got := textCell(in); got != want {
			t.Errorf("textCell(%q) = %q, want %q", in, got, want)
		}
	}
}

// Text from a run folder stays text in Markdown: a line break cannot start
// a heading, a backtick cannot close its code span and let HTML through.
func TestMarkdownInert(t *testing.T) {
	if got := mdText("ok\n# run OK <img src=x> [a](b) `c` |"); got != "ok # run OK \\<img src=x\\> \\[a\\](b) \\`c\\` \\|" {
		t.Errorf("mdText = %q", got)
	}
	for in, want := range map[string]string{"# run OK": `\# run OK`, "686 SYNs": "686 SYNs", "1. x": `1\. x`, "12) x": `12\) x`, "> q": `\> q`} {
		if got := mdLine(in); got != want {
			t.Errorf("mdLine(%q) = %q, want %q", in, got, want)
		}
	}
	// GitHub links bare web addresses by itself (cmark-gfm's autolink):
	// an escaped dot or colon keeps them text.
	if got := mdText("see www.x.example or https://y.example/z"); got != `see www\.x.example or https\://y.example/z` {
		t.Errorf("mdText = %q", got)
	}
	for _, c := range []struct{ in, want string }{
		{"tw_recycle=1", "`tw_recycle=1`"},
		{"a`<img src=x>`b", "`` a`<img src=x>`b ``"},
		{"x``y\nz|w", "``` x``y z|w ```"},
		{"", "`  `"},
	} {
		if got := mdCode(c.in); got != c.want {
			t.Errorf("mdCode(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
