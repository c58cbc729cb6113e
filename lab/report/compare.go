package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/twlab/twlab/lab/result"
)

// CompareRun is one run folder given to Compare.
type CompareRun struct {
	Dir string
	Run *result.Run
}

// Comparison is several runs of a scenario merged into one matrix: a row
// per cell id (in the order they first appear), a column per run. The first
// run is the baseline every other column is compared with.
type Comparison struct {
	Scenario string
	Columns  []CompareColumn
	Rows     []CompareRow
	Warnings []string
}

// CompareColumn labels one run.
type CompareColumn struct {
	Label, Dir, Kernel, RunID, Status, Started string
}

// CompareRow is one cell across the runs.
type CompareRow struct {
	ID      string
	Entries []*CompareEntry // nil: the run has no such cell
	// Changed lists what differs from the baseline in any run: "status",
	// "absent", "ok/attempts", "paws", "unanswered", "p99".
	Changed []string
}

// CompareEntry is one cell of one run: status and the key figures, and
// which of them differ from the baseline.
type CompareEntry struct {
	Status       string
	HasLoad      bool
	OK, Attempts int
	HasSYN       bool
	Unanswered   int64
	HasPAWS      bool
	PAWS         int64
	P99          float64
	HasP99       bool // a connect succeeded: P99 is a latency, not a 0
	// ExpectOK of ExpectTotal assertions held; FailedExpect are the ones
	// that did not (or could not be checked), by expression.
	ExpectOK, ExpectTotal int
	FailedExpect          []string
	Diff                  map[string]bool
}

// Tolerances of Compare: a figure differs from the baseline when it crosses
// zero or moves by more than these, so that run-to-run noise in latency
// does not flag every cell.
const (
	CompareFailedFraction = 0.10 // failed/attempts, absolute
	CompareCountRelative  = 0.25 // paws, unanswered: |a-b| / max(a, b)
	CompareP99Ratio       = 2.0  // p99: max/min, and ...
	CompareP99MinMS       = 1.0  // ... at least this many ms apart
)

func entryOf(c *result.Cell) *CompareEntry {
	e := &CompareEntry{Status: c.Status, Diff: map[string]bool{}}
	if l := c.Load; l != nil {
		e.HasLoad, e.OK, e.Attempts, e.P99 = true, l.OK, l.Attempts, l.ConnectMS.P99
		e.HasP99 = l.OK > 0 // with no successful connect there is no latency, not a 0
	}
	if s := c.SYN; s != nil {
		e.HasSYN, e.Unanswered = true, s.Unanswered
	}
	if n := c.Nodes["server"]; n != nil {
		e.HasPAWS, e.PAWS = true, n.Summary["paws"]
	}
	for _, x := range c.Expect {
		e.ExpectTotal++
		if x.OK {
			e.ExpectOK++
		} else {
			e.FailedExpect = append(e.FailedExpect, x.Expr)
		}
	}
	slices.Sort(e.FailedExpect)
	return e
}

func countDiffers(a, b int64) bool {
	if (a == 0) != (b == 0) {
		return true
	}
	hi := math.Max(float64(a), float64(b))
	return hi > 0 && math.Abs(float64(a-b))/hi > CompareCountRelative
}

func failedFraction(e *CompareEntry) float64 {
	if e.Attempts == 0 {
		return 0
	}
	return float64(e.Attempts-e.OK) / float64(e.Attempts)
}

// differences returns what of e differs from the baseline b.
func differences(b, e *CompareEntry) []string {
	var out []string
	if b.Status != e.Status {
		out = append(out, "status")
	}
	// An n/a cell's figures (if it has any) are ones twlab itself called
	// meaningless: between two n/a cells only the status can differ, and
	// against an n/a cell the status says it all.
	if b.Status == result.CellNA || e.Status == result.CellNA {
		return out
	}
	if b.HasLoad != e.HasLoad {
		if b.HasLoad || e.HasLoad {
			out = append(out, "ok/attempts")
		}
	} else if b.HasLoad {
		fb, fe := failedFraction(b), failedFraction(e)
		if (fb == 0) != (fe == 0) || math.Abs(fb-fe) > CompareFailedFraction || (b.Attempts == 0) != (e.Attempts == 0) {
			out = append(out, "ok/attempts")
		}
		lo, hi := math.Min(b.P99, e.P99), math.Max(b.P99, e.P99)
		if b.HasP99 && e.HasP99 && hi-lo >= CompareP99MinMS && (lo <= 0 || hi/lo >= CompareP99Ratio) {
			out = append(out, "p99")
		}
	}
	if b.HasPAWS && e.HasPAWS && countDiffers(b.PAWS, e.PAWS) {
		out = append(out, "paws")
	}
	if b.HasSYN && e.HasSYN && countDiffers(b.Unanswered, e.Unanswered) {
		out = append(out, "unanswered")
	}
	// Two runs that both failed, but on different assertions, are not
	// the same result.
	if b.ExpectTotal > 0 && e.ExpectTotal > 0 && !slices.Equal(b.FailedExpect, e.FailedExpect) {
		out = append(out, "expectations")
	}
	return out
}

// Compare merges runs into one matrix. Runs of different scenarios are
// merged all the same, with a warning.
func Compare(runs []CompareRun) *Comparison {
	cmp := &Comparison{}
	names := map[string]bool{}
	for _, cr := range runs {
		r := cr.Run
		name := scenarioOf(r).Name
		if cmp.Scenario == "" {
			cmp.Scenario = name
		}
		names[name] = true
		col := CompareColumn{Dir: cr.Dir, Kernel: r.Kernel, RunID: r.RunID, Status: r.Status,
			Started: startedText(r.Started, "2006-01-02 15:04"), Label: strings.TrimSpace(r.Kernel + " " + r.RunID)}
		cmp.Columns = append(cmp.Columns, col)
	}
	// Labels must tell the columns apart: fall back to the folder's name,
	// then its whole path (a/r and b/r were both "r"), then a number (one
	// folder given twice).
	for _, label := range []func(c *CompareColumn) string{
		func(c *CompareColumn) string { return filepath.Base(filepath.Clean(c.Dir)) },
		func(c *CompareColumn) string { return filepath.Clean(c.Dir) },
	} {
		dup := map[string]int{}
		for _, c := range cmp.Columns {
			dup[c.Label]++
		}
		for i := range cmp.Columns {
			if c := &cmp.Columns[i]; dup[c.Label] > 1 || c.Label == "" {
				c.Label = label(c)
			}
		}
	}
	seen := map[string]int{}
	for i := range cmp.Columns {
		c := &cmp.Columns[i]
		if seen[c.Label]++; seen[c.Label] > 1 {
			c.Label = fmt.Sprintf("%s #%d", c.Label, seen[c.Label])
		}
	}
	if len(names) > 1 {
		var ns []string
		for _, cr := range runs {
			ns = append(ns, scenarioOf(cr.Run).Name)
		}
		cmp.Warnings = append(cmp.Warnings, "the runs are of different scenarios ("+strings.Join(ns, ", ")+"): cells are matched by id only")
	}
	// Cells are matched by id; a --set changes what a cell measures without
	// changing its id, so runs made with different overrides compare
	// different experiments under one name.
	for i, cr := range runs {
		if i == 0 {
			continue
		}
		base := runs[0].Run
		if !slices.Equal(cr.Run.Overrides, base.Overrides) {
			cmp.Warnings = append(cmp.Warnings, fmt.Sprintf("%s was run %s, the baseline %s: the cells' ids match, their settings may not",
				clip(cr.Dir, 200), setsText(cr.Run.Overrides), setsText(base.Overrides)))
		} else if scenarioOf(cr.Run).Name == scenarioOf(base).Name && !sameJSON(cr.Run.Scenario, base.Scenario) {
			cmp.Warnings = append(cmp.Warnings, fmt.Sprintf("%s ran a scenario of the same name that differs from the baseline's (an edited file?): the cells' ids match, their settings may not", clip(cr.Dir, 200)))
		}
		if cr.Run.Only != base.Only {
			cmp.Warnings = append(cmp.Warnings, fmt.Sprintf("%s ran %s, the baseline %s: cells one of them left out are absent there", clip(cr.Dir, 200), onlyText(cr.Run.Only), onlyText(base.Only)))
		}
	}
	for _, cr := range runs {
		if left := NotFinished(cr.Run); left > 0 {
			cmp.Warnings = append(cmp.Warnings, fmt.Sprintf("%s was %s: %d of its %d cells did not finish and are absent there", clip(cr.Dir, 200), cr.Run.Status, left, cr.Run.CellsPlanned))
		}
	}
	// What could not be read of a run is part of the comparison: a figure
	// left out of a damaged run.json would otherwise pass for a change.
	for _, cr := range runs {
		for _, w := range cr.Run.Warnings {
			cmp.Warnings = append(cmp.Warnings, clip(cr.Dir, 200)+": "+w)
		}
	}
	index := map[string]int{}
	for i, cr := range runs {
		for _, c := range cr.Run.Cells {
			k, ok := index[c.ID]
			if !ok {
				k = len(cmp.Rows)
				index[c.ID] = k
				cmp.Rows = append(cmp.Rows, CompareRow{ID: c.ID, Entries: make([]*CompareEntry, len(runs))})
			}
			if cmp.Rows[k].Entries[i] != nil {
				// twlab never writes two cells of one id: the first stays.
				cmp.Warnings = append(cmp.Warnings, fmt.Sprintf("%s has more than one cell %s; only the first is compared", clip(cr.Dir, 200), clip(c.ID, 200)))
				continue
			}
			cmp.Rows[k].Entries[i] = entryOf(c)
		}
	}
	for ri := range cmp.Rows {
		row := &cmp.Rows[ri]
		seen := map[string]bool{}
		add := func(what string) {
			if !seen[what] {
				seen[what] = true
				row.Changed = append(row.Changed, what)
			}
		}
		base := row.Entries[0]
		for _, e := range row.Entries[1:] {
			switch {
			case base == nil && e == nil:
			case base == nil || e == nil:
				add("absent")
			default:
				for _, d := range differences(base, e) {
					e.Diff[d] = true
					add(d)
				}
			}
		}
	}
	return cmp
}

// ChangedRows counts the rows with a difference.
func (c *Comparison) ChangedRows() int {
	n := 0
	for _, r := range c.Rows {
		if len(r.Changed) > 0 {
			n++
		}
	}
	return n
}

// figure is one part of an entry's text, marked when it differs.
type figure struct {
	text string
	diff bool
}

func (e *CompareEntry) figures() []figure {
	if e == nil {
		return []figure{{"absent", true}}
	}
	out := []figure{{e.Status, e.Diff["status"]}}
	if e.HasLoad {
		out = append(out, figure{fmt.Sprintf("%d/%d", e.OK, e.Attempts), e.Diff["ok/attempts"]})
	}
	if e.HasPAWS {
		out = append(out, figure{fmt.Sprintf("paws %d", e.PAWS), e.Diff["paws"]})
	}
	if e.HasSYN {
		out = append(out, figure{fmt.Sprintf("unans %d", e.Unanswered), e.Diff["unanswered"]})
	}
	if e.HasLoad {
		p99 := "-"
		if e.HasP99 {
			p99 = ms(e.P99)
		}
		out = append(out, figure{"p99 " + p99, e.Diff["p99"]})
	}
	if e.ExpectTotal > 0 {
		out = append(out, figure{fmt.Sprintf("expect %d/%d", e.ExpectOK, e.ExpectTotal), e.Diff["expectations"]})
	}
	return out
}

// sameJSON says whether two JSON documents hold the same values, whatever
// their key order or spacing (a twlab vm host writes the guest's scenario
// with sorted keys).
func sameJSON(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(va, vb)
}

func onlyText(only string) string {
	if only == "" {
		return "without --only"
	}
	return "with --only " + strconv.Quote(clip(only, 200))
}

func (e *CompareEntry) text(mark func(string) string) string {
	var parts []string
	for _, f := range e.figures() {
		if f.diff {
			parts = append(parts, mark(f.text))
		} else {
			parts = append(parts, f.text)
		}
	}
	return strings.Join(parts, " ")
}

func (c *Comparison) legend() string {
	return fmt.Sprintf("Each entry: status, ok/attempts, server PAWS rejects, SYNs unanswered, connect p99 ms, assertions that held. "+
		"The first run is the baseline; a figure differs when the status differs, a count crosses zero or moves by more than %.0f%%, "+
		"the failed share moves by more than %.0f points, p99 moves %.0fx and at least %.0f ms, or other assertions failed.",
		CompareCountRelative*100, CompareFailedFraction*100, CompareP99Ratio, CompareP99MinMS)
}

// Text is the terminal table; a differing figure is marked with "*".
func (c *Comparison) Text() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "twlab compare: %s, %d runs, %d cells, %d changed\n", oneLine(c.Scenario), len(c.Columns), len(c.Rows), c.ChangedRows())
	for _, w := range c.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", oneLine(w))
	}
	for i, col := range c.Columns {
		role := ""
		if i == 0 {
			role = "  (baseline)"
		}
		fmt.Fprintf(&b, "  %s: %s, %s, started %s%s\n", oneLine(col.Label), oneLine(col.Dir), oneLine(col.Status), col.Started, role)
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	head := []string{"cell"}
	for _, col := range c.Columns {
		head = append(head, oneLine(col.Label))
	}
	head = append(head, "changed")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, r := range c.Rows {
		row := []string{oneLine(r.ID)}
		for _, e := range r.Entries {
			row = append(row, e.text(func(s string) string { return s + "*" }))
		}
		ch := "-"
		if len(r.Changed) > 0 {
			ch = "CHANGED: " + strings.Join(r.Changed, ", ")
		}
		row = append(row, ch)
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	b.WriteString("\n" + c.legend() + "\n")
	return b.String()
}

// Markdown is the table in Markdown; a differing figure is bold.
func (c *Comparison) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# twlab compare: %s\n\n%d runs, %d cells, **%d changed**.\n\n", mdText(c.Scenario), len(c.Columns), len(c.Rows), c.ChangedRows())
	for _, w := range c.Warnings {
		fmt.Fprintf(&b, "> warning: %s\n\n", mdText(w))
	}
	for i, col := range c.Columns {
		role := ""
		if i == 0 {
			role = " (baseline)"
		}
		fmt.Fprintf(&b, "- %s: %s, %s, started %s%s\n", mdCode(col.Label), mdCode(col.Dir), mdText(col.Status), mdText(col.Started), role)
	}
	b.WriteString("\n| cell |")
	for _, col := range c.Columns {
		b.WriteString(" " + mdText(col.Label) + " |")
	}
	b.WriteString(" changed |\n|---|")
	for range c.Columns {
		b.WriteString("---|")
	}
	b.WriteString("---|\n")
	for _, r := range c.Rows {
		fmt.Fprintf(&b, "| %s |", mdCell(mdCode(r.ID)))
		for _, e := range r.Entries {
			b.WriteString(" " + mdCell(e.text(func(s string) string { return "**" + s + "**" })) + " |")
		}
		if len(r.Changed) > 0 {
			b.WriteString(" **changed**: " + strings.Join(r.Changed, ", ") + " |\n")
		} else {
			b.WriteString(" – |\n")
		}
	}
	b.WriteString("\n" + c.legend() + "\n")
	return b.String()
}

// mdCell makes s one cell of a Markdown table: a pipe, even inside a code
// span, ends a GFM cell unless escaped, and a line break ends the row.
func mdCell(s string) string {
	return strings.NewReplacer("|", `\|`, "\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

type htmlCmpFigure struct {
	Text string
	Diff bool
}

type htmlCmpEntry struct {
	Absent      bool
	StatusClass string
	Figures     []htmlCmpFigure
}

type htmlCmpRow struct {
	ID      string
	Entries []htmlCmpEntry
	Changed string
}

// HTML is the comparison as a self-contained page: differing figures and
// changed rows highlighted, statuses coloured as in report.html.
func (c *Comparison) HTML() ([]byte, error) {
	data := struct {
		*Comparison
		Changed int
		Legend  string
		HRows   []htmlCmpRow
	}{Comparison: c, Changed: c.ChangedRows(), Legend: c.legend()}
	for _, r := range c.Rows {
		hr := htmlCmpRow{ID: r.ID, Changed: strings.Join(r.Changed, ", ")}
		for _, e := range r.Entries {
			if e == nil {
				hr.Entries = append(hr.Entries, htmlCmpEntry{Absent: true})
				continue
			}
			he := htmlCmpEntry{StatusClass: statusClass(e.Status)}
			for _, f := range e.figures() {
				he.Figures = append(he.Figures, htmlCmpFigure{f.text, f.diff})
			}
			hr.Entries = append(hr.Entries, he)
		}
		data.HRows = append(data.HRows, hr)
	}
	var b bytes.Buffer
	if err := compareTmpl.Execute(&b, data); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

var compareTmpl = template.Must(template.New("compare").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>twlab compare: {{.Scenario}}</title>
<style>
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "Liberation Sans", Arial, sans-serif; color: #1d232b; margin: 0; background: #fafbfc; }
main { max-width: 1400px; margin: 0 auto; padding: 24px 28px; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #d9dde2; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f2f5; font-size: 13px; }
code { font: 13px ui-monospace, "Liberation Mono", monospace; }
td.entry { white-space: nowrap; font-variant-numeric: tabular-nums; }
.st { font-weight: 600; padding: 0 6px; border-radius: 8px; }
.st.ok { background: #e3f4e1; color: #1b5e20; }
.st.failed { background: #fbe0df; color: #8e1b1b; }
.st.na, .st.other { background: #eee; color: #555; }
.diff { background: #ffd54f; border-radius: 3px; padding: 0 3px; font-weight: 600; }
tr.changed td:first-child { border-left: 5px solid #e65100; }
tr.changed td.what { color: #e65100; font-weight: 600; }
td.absent { color: #999; font-style: italic; }
.legend, .meta { color: #5c6670; font-size: 13px; }
.warn { color: #8e1b1b; }
</style>
</head>
<body><main>
<h1>twlab compare: {{.Scenario}}</h1>
<p>{{len .Columns}} runs, {{len .Rows}} cells, <b>{{.Changed}} changed</b>.</p>
{{range .Warnings}}<p class="warn">warning: {{.}}</p>{{end}}
<ul class="meta">{{range $i, $c := .Columns}}<li><b>{{$c.Label}}</b>: <code>{{$c.Dir}}</code>, {{$c.Status}}, started {{$c.Started}}{{if eq $i 0}} (baseline){{end}}</li>{{end}}</ul>
<table>
<thead><tr><th>cell</th>{{range .Columns}}<th>{{.Label}}</th>{{end}}<th>changed</th></tr></thead>
<tbody>
{{range .HRows}}<tr{{if .Changed}} class="changed"{{end}} data-cell="{{.ID}}"><td><code>{{.ID}}</code></td>{{range .Entries}}{{if .Absent}}<td class="entry absent"><span class="diff">absent</span></td>{{else}}{{$sc := .StatusClass}}<td class="entry">{{range $i, $f := .Figures}}{{if eq $i 0}}<span class="st {{$sc}}{{if $f.Diff}} diff{{end}}">{{$f.Text}}</span>{{else}} {{if $f.Diff}}<span class="diff">{{$f.Text}}</span>{{else}}{{$f.Text}}{{end}}{{end}}{{end}}</td>{{end}}{{end}}<td class="what">{{if .Changed}}changed: {{.Changed}}{{else}}–{{end}}</td></tr>
{{end}}</tbody>
</table>
<p class="legend">{{.Legend}}</p>
</main></body>
</html>
`))

// setsText says which --set overrides a run was made with.
func setsText(o []string) string {
	if len(o) == 0 {
		return "without --set"
	}
	return fmt.Sprintf("with --set %q", o)
}

// oneLine keeps a table row one row: a line break or tab in a cell id or a
// label from a run folder made rows of its own in the terminal table.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, s)
}
