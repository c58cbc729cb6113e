// Package report renders a run for people (terminal lines and table,
// Markdown) and for spreadsheets (CSV). run.json stays the source of truth;
// everything here is derived from it.
package report

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/tmpfile"
)

// column is one figure of the cell table.
type column struct {
	head string
	get  func(c *result.Cell) string
}

func num(v int64) string { return strconv.FormatInt(v, 10) }

// ms shows milliseconds with a decimal, and below 1 ms with two significant
// digits: a connect inside one namespace hop takes 0.03 ms, and "0.0 ms" is
// what the README names as the sign of a broken (jiffies) clock.
func ms(v float64) string {
	digits := 1
	switch a := math.Abs(v); {
	case a == 0 || a >= 1:
	case a >= 0.1:
		digits = 2
	case a >= 0.01:
		digits = 3
	default:
		digits = 4
	}
	return strconv.FormatFloat(v, 'f', digits, 64)
}

func counter(node, key string) func(c *result.Cell) string {
	return func(c *result.Cell) string {
		if n := c.Nodes[node]; n != nil {
			if v, ok := n.Summary[key]; ok {
				return num(v)
			}
			if v, ok := n.Counters[key]; ok {
				return num(v)
			}
			return "-"
		}
		return ""
	}
}

func loadCol(f func(l *result.Load) string) func(c *result.Cell) string {
	return func(c *result.Cell) string {
		if c.Load == nil {
			return ""
		}
		return f(c.Load)
	}
}

func synCol(f func(s *result.SYN) int64) func(c *result.Cell) string {
	return func(c *result.Cell) string {
		if c.SYN == nil {
			return ""
		}
		return num(f(c.SYN))
	}
}

var columns = []column{
	{"status", func(c *result.Cell) string { return c.Status }},
	{"conns", loadCol(func(l *result.Load) string { return num(int64(l.Attempts)) })},
	{"ok", loadCol(func(l *result.Load) string { return num(int64(l.OK)) })},
	{"fail", loadCol(func(l *result.Load) string { return failures(l) })},
	{"p50ms", loadCol(func(l *result.Load) string { return latency(l, l.ConnectMS.P50) })},
	{"p99ms", loadCol(func(l *result.Load) string { return latency(l, l.ConnectMS.P99) })},
	{"conn/s", loadCol(func(l *result.Load) string { return rate(l.ConnPerS) })},
	{"syn_in", synCol(func(s *result.SYN) int64 { return s.In })},
	{"unanswered", synCol(func(s *result.SYN) int64 { return s.Unanswered })},
	{"srv_paws", counter("server", "paws")},
	{"cli_synretrans", counter("clients", "TcpExt.TCPSynRetrans")},
	{"cli_rsts", counter("clients", "Tcp.OutRsts")},
	{"srv_tw_max", func(c *result.Cell) string {
		if n := c.Nodes["server"]; n != nil {
			return num(int64(n.TimeWait.Max))
		}
		return ""
	}},
	{"expect", expectCol},
}

func failures(l *result.Load) string {
	if l.Failed == 0 {
		return "0"
	}
	var parts []string
	for _, k := range result.FailureClasses {
		if v := l.Failures[k]; v > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
	}
	return fmt.Sprintf("%d (%s)", l.Failed, strings.Join(parts, ", "))
}

func expectCol(c *result.Cell) string {
	if len(c.Expect) == 0 {
		return "-"
	}
	ok := 0
	for _, e := range c.Expect {
		if e.OK {
			ok++
		}
	}
	return fmt.Sprintf("%d/%d", ok, len(c.Expect))
}

// CellLine is the one line printed when a cell finishes.
func CellLine(done, total int, c *result.Cell) string {
	w := len(strconv.Itoa(total))
	head := fmt.Sprintf("[%*d/%d] %-5s %s", w, done, total, c.Status, c.ID)
	if c.Load == nil || c.Status == result.CellNA {
		if c.Reason != "" {
			return head + "  " + c.Reason
		}
		return head
	}
	l := c.Load
	s := fmt.Sprintf("%s  %d conns, ok %d, failed %s, connect p50 %s ms p99 %s ms", head, l.Attempts, l.OK, failures(l), ms(l.ConnectMS.P50), ms(l.ConnectMS.P99))
	switch {
	case l.OK == 0:
		s = fmt.Sprintf("%s  %d conns, ok 0, failed %s, no connection completed (no latency)", head, l.Attempts, failures(l))
	case l.OK < 100:
		s += fmt.Sprintf(" (of %d)", l.OK) // below 100 samples p99 is the slowest one
	}
	if l.CutShort > 0 {
		// Not failures, but they explain attempts that the counts of
		// SYNs and sockets hold and conns does not.
		s += fmt.Sprintf(", cut short by the cell's end %d", l.CutShort)
	}
	if c.SYN != nil {
		s += fmt.Sprintf(", SYN in %d unanswered %d", c.SYN.In, c.SYN.Unanswered)
	}
	if n := c.Nodes["server"]; n != nil {
		s += fmt.Sprintf(", server PAWS %d", n.Summary["paws"])
	}
	s += fmt.Sprintf(", expect %s (%.1fs)", expectCol(c), c.DurationS)
	if (c.Status == result.CellFailed || c.Status == result.CellInterrupted) && c.Reason != "" {
		s += "\n        " + c.Reason
	}
	return s
}

// Table is the terminal table of all cells.
func Table(r *result.Run) string {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	heads := []string{"cell"}
	for _, col := range columns {
		heads = append(heads, col.head)
	}
	fmt.Fprintln(tw, strings.Join(heads, "\t"))
	for _, c := range r.Cells {
		row := []string{c.ID}
		for _, col := range columns {
			row = append(row, col.get(c))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	return b.String()
}

// StatusLine is the last line a run prints: the outcome in a word, the
// scenario and kernel, and how many cells ran. A run in which every cell was
// n/a says that nothing was measured, never just "ok".
func StatusLine(r *result.Run) string {
	// A cell that broke (a value the kernel refused, a twlab error) did not
	// run: "4 of 4 cells ran" read as measured when all four were refused.
	ran, na, broke := 0, 0, 0
	for _, c := range r.Cells {
		switch {
		case c.Status == result.CellNA:
			na++
		case c.ErrorKind != "":
			broke++
		default:
			ran++
		}
	}
	name := strings.TrimSuffix(filepath.Base(r.ScenarioFile), ".yaml")
	// The scenario's own name, as the header and the results folder have
	// it; the file as well where it is named otherwise (a copy being edited).
	if n := result.Printable(r.ScenarioView().Name); n != "" && n != name {
		name = n + " (" + filepath.Base(r.ScenarioFile) + ")"
	}
	if r.Status == result.RunNA {
		return fmt.Sprintf("nothing ran: all %d cells of %s are n/a on kernel %s (see the reasons above); exit code 4", na, name, r.Kernel)
	}
	s := fmt.Sprintf("%s: %s (kernel %s), %d of %d cells ran", r.Status, name, r.Kernel, ran, max(ran+na+broke, r.CellsPlanned))
	if na > 0 {
		s += fmt.Sprintf(", %d n/a", na)
	}
	if broke > 0 {
		s += fmt.Sprintf(", %d broke (see what failed)", broke)
	}
	if left := NotFinished(r); left > 0 {
		s += fmt.Sprintf(", %d not finished", left)
	}
	if e := result.Printable(r.Error); e != "" {
		s += ": " + e
	}
	return s
}

// startedText is a run's start time in layout, or "unknown" when run.json
// did not give a readable one (the reader left it out; year 1 would be
// nonsense).
func startedText(t time.Time, layout string) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format(layout)
}

// runNote says what a run's cells do not: how many planned cells it did not
// finish, and why it failed when no cell did (its time bound came between
// cells or in a teardown) or why it stopped.
func runNote(r *result.Run) string {
	var parts []string
	if left := NotFinished(r); left > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d cells not finished", left, r.CellsPlanned))
	}
	if e := result.Printable(r.Error); e != "" {
		parts = append(parts, e)
	}
	return strings.Join(parts, "; ")
}

// NotFinished is how many planned cells a run that stopped early has not
// recorded: those it never started and the one it was in (a cell cut short
// measured nothing and is left out). 0 for run.json written before
// cells_planned existed.
func NotFinished(r *result.Run) int {
	return max(r.CellsPlanned-len(r.Cells), 0)
}

// maxListed bounds the rows one page lists: failed expectations, and per
// cell expectations, notes, counters and knobs. twlab's largest runs list
// some 50 000; a damaged run.json may hold millions of tiny elements, each
// of which would become a row.
const maxListed = 100_000

// rows hands out the rows of one page, up to a bound.
type rows struct{ left, omitted int }

func newRows() *rows { return &rows{left: maxListed} }

// take says how many of n rows may still be listed.
func (b *rows) take(n int) int {
	k := min(n, b.left)
	b.left -= k
	b.omitted += n - k
	return k
}

func (b *rows) warning() []string {
	if b.omitted == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%d rows (expectations, notes, counters, knobs) are not listed: a report lists at most %d", b.omitted, maxListed)}
}

// notListed is what stands at the end of a list cut short.
func notListed(n int) string {
	return fmt.Sprintf("… and %d more, not listed (a report lists at most %d rows)", n, maxListed)
}

// FailedExpectations lists each failed assertion with figure and bound, and
// every cell that broke for another reason (an error, a refused knob).
func FailedExpectations(r *result.Run) []string {
	return failedExpectations(r, &rows{left: math.MaxInt})
}

func failedExpectations(r *result.Run, b *rows) []string {
	var out []string
	more := 0
	for _, c := range r.Cells {
		if c.Status == result.CellFailed && c.Reason != "" && !strings.HasPrefix(c.Reason, "expectation failed") {
			if b.take(1) == 0 {
				more++
				continue
			}
			out = append(out, fmt.Sprintf("cell %s: %s", c.ID, c.Reason))
		}
		for _, e := range c.Expect {
			if e.OK {
				continue
			}
			if b.take(1) == 0 {
				more++
				continue
			}
			s := fmt.Sprintf("cell %s: %s", c.ID, e.Expr)
			if e.Error != "" {
				s += ": " + e.Error
			} else {
				m, w := expectFigures(e)
				s += fmt.Sprintf(": measured %s, wanted %s", m, w)
			}
			if e.Name != "" {
				s += "  [" + e.Name + "]"
			}
			out = append(out, s)
		}
	}
	if more > 0 {
		out = append(out, notListed(more))
	}
	return out
}

// Markdown is summary.md: what ran, the table, what failed, and why.
func Markdown(r *result.Run) string { return markdown(r, r.Warnings) }

// markdown is Markdown, listing problems (what could not be read of the
// run folder) first, and at most maxListed rows.
func markdown(r *result.Run, problems []string) string {
	var b strings.Builder
	rows := newRows()
	name := r.ScenarioFile
	fmt.Fprintf(&b, "# twlab run: %s\n\n", mdText(filepath.Base(name)))
	status := "**" + mdText(r.Status) + "**"
	if n := runNote(r); n != "" {
		status += " (" + mdText(n) + ")"
	}
	fmt.Fprintf(&b, "- status: %s\n- kernel: %s\n- started: %s\n- run id: %s\n", status, mdText(r.Kernel), startedText(r.Started, "2006-01-02 15:04:05 UTC"), mdText(r.RunID))
	if len(r.Overrides) > 0 {
		var o []string
		for _, s := range r.Overrides {
			o = append(o, mdCode(s))
		}
		fmt.Fprintf(&b, "- overrides: %s\n", strings.Join(o, ", "))
	}
	if r.Only != "" {
		fmt.Fprintf(&b, "- only the cells where: %s\n", mdCode(r.Only))
	}
	if w := ClockWarning(r.KernelFeatures); w != "" {
		fmt.Fprintf(&b, "- **%s**\n", mdText(w))
	}
	if len(problems) > 0 {
		b.WriteString("\n## What could not be read\n\nThis run folder is not as twlab writes it (damaged, edited or truncated): what follows leaves out what could not be read.\n\n")
		for _, p := range problems {
			fmt.Fprintf(&b, "- %s\n", mdLine(p))
		}
	}
	b.WriteString("\n## Cells\n\n| cell |")
	for _, col := range columns {
		b.WriteString(" " + col.head + " |")
	}
	b.WriteString("\n|---|")
	for range columns {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, c := range r.Cells {
		fmt.Fprintf(&b, "| %s |", mdCell(mdCode(c.ID)))
		for _, col := range columns {
			b.WriteString(" " + mdText(col.get(c)) + " |")
		}
		b.WriteString("\n")
	}
	if fe := failedExpectations(r, rows); len(fe) > 0 {
		b.WriteString("\n## What failed\n\n")
		for _, f := range fe {
			fmt.Fprintf(&b, "- %s\n", mdLine(f))
		}
	}
	b.WriteString("\n## What happened in each cell\n")
	for _, c := range r.Cells {
		fmt.Fprintf(&b, "\n### %s — %s\n\n", mdCode(c.ID), mdText(c.Status))
		if c.Reason != "" {
			fmt.Fprintf(&b, "%s\n\n", mdLine(c.Reason))
		}
		notes := c.Notes[:rows.take(len(c.Notes))]
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", mdLine(n))
		}
		if len(notes) < len(c.Notes) {
			fmt.Fprintf(&b, "- %s\n", notListed(len(c.Notes)-len(notes)))
		}
		if len(c.KnobsActual) > 0 {
			keys := sortedKeys(c.KnobsActual)
			if k := rows.take(len(keys)); k < len(keys) {
				keys = append(keys[:k], notListed(len(keys)-k))
			}
			b.WriteString("\nKnobs in force: ")
			for i, k := range keys {
				if i > 0 {
					b.WriteString(", ")
				}
				if v, ok := c.KnobsActual[k]; ok {
					b.WriteString(mdCode(k + "=" + v))
				} else {
					b.WriteString(mdText(k))
				}
			}
			b.WriteString("\n")
		}
		if len(c.Expect) > 0 {
			b.WriteString("\n| expectation | measured | result |\n|---|---|---|\n")
			expect := c.Expect[:rows.take(len(c.Expect))]
			for _, e := range expect {
				res := "ok"
				if !e.OK {
					res = "**FAILED**"
					if e.Error != "" {
						res += " " + e.Error
					}
				}
				m, _ := expectFigures(e)
				fmt.Fprintf(&b, "| %s | %s | %s |\n", mdCell(mdCode(e.Expr)), mdText(m), mdText(res))
			}
			if len(expect) < len(c.Expect) {
				fmt.Fprintf(&b, "| %s | | |\n", notListed(len(c.Expect)-len(expect)))
			}
		}
	}
	for _, w := range rows.warning() {
		fmt.Fprintf(&b, "\n%s\n", w)
	}
	return b.String()
}

// figureText writes a measured value as people write numbers: 1234567, not
// 1.234567e+06 (run.json keeps every value as a JSON number, a float64
// once read back).
func figureText(v any) string {
	if f, ok := v.(float64); ok && math.Abs(f) < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// expectFigures is what an expectation measured and wanted, for people. A
// comparison has both sides; any other assertion (a || b) has only its
// truth, which must not read as a measured 0 against a wanted <nil>.
func expectFigures(e result.Expect) (measured, wanted string) {
	if e.Error != "" {
		return "–", figureOrEmpty(e.Bound)
	}
	if e.Bound == nil {
		if e.OK {
			return "true", "true"
		}
		return "false", "true"
	}
	return figureText(e.Value), figureText(e.Bound)
}

func figureOrEmpty(v any) string {
	if v == nil {
		return ""
	}
	return figureText(v)
}

// maxKnobColumns bounds the knob columns of cells.csv: a scenario sets a
// few dozen knobs, and every row has every column.
const maxKnobColumns = 256

// CSV is cells.csv: one row per cell, knobs first, then the figures.
func CSV(r *result.Run) ([]byte, error) {
	b, _, err := csvOf(r)
	return b, err
}

// textCell keeps a text field of cells.csv text in a spreadsheet: one that
// starts with = + - @ (a formula to Excel or LibreOffice, which a crafted
// run.json could plant) gets a leading apostrophe. Numbers, a negative one
// included, stay numbers.
func textCell(s string) string {
	if s == "" || !strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return s
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return s
	}
	return "'" + s
}

// csvOf is CSV, saying what of the run it left out.
func csvOf(r *result.Run) ([]byte, []string, error) {
	knobSet := map[string]bool{}
	for _, c := range r.Cells {
		for k := range c.Knobs {
			knobSet[k] = true
		}
	}
	knobs := sortedKeys(knobSet)
	var warnings []string
	if len(knobs) > maxKnobColumns {
		warnings = append(warnings, fmt.Sprintf("run.json: the cells have %d different knobs; cells.csv has columns for the first %d", len(knobs), maxKnobColumns))
		knobs = knobs[:maxKnobColumns]
	}
	head := []string{"cell", "status", "reason"}
	for _, k := range knobs {
		head = append(head, textCell(k)) // a knob name comes from the run folder too
	}
	head = append(head, "attempts", "ok", "failed")
	for _, f := range result.FailureClasses {
		head = append(head, "fail_"+f)
	}
	head = append(head, "cut_short")
	head = append(head, "connect_p50_ms", "connect_p90_ms", "connect_p99_ms", "connect_max_ms", "conn_per_s",
		"syn_in", "synack_out", "synack_retrans", "syn_unanswered", "rst_in", "rst_out")
	nodeFields := append([]string{"paws"}, result.SummaryFields...)
	for _, node := range []string{"server", "clients", "lvs"} {
		for _, f := range nodeFields {
			head = append(head, node+"."+f)
		}
		head = append(head, node+".time_wait_max", node+".time_wait_final")
	}
	head = append(head, "expect_ok", "expect_total", "duration_s")
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write(head)
	// A knob only some cells set (an include's) has the scenario's own
	// value in the others, as report.html's matrix shows it.
	base := baseValues(r, knobs)
	for _, c := range r.Cells {
		row := []string{textCell(c.ID), textCell(c.Status), textCell(c.Reason)}
		for _, k := range knobs {
			v, ok := c.Knobs[k]
			if !ok {
				v = base[k]
			}
			row = append(row, textCell(v))
		}
		if l := c.Load; l != nil {
			row = append(row, num(int64(l.Attempts)), num(int64(l.OK)), num(int64(l.Failed)))
			for _, f := range result.FailureClasses {
				row = append(row, num(int64(l.Failures[f])))
			}
			row = append(row, num(int64(l.CutShort)))
			if l.OK > 0 {
				row = append(row, fmtF(l.ConnectMS.P50), fmtF(l.ConnectMS.P90), fmtF(l.ConnectMS.P99), fmtF(l.ConnectMS.Max))
			} else {
				row = append(row, "", "", "", "") // no connect succeeded: no latency, not 0 ms
			}
			row = append(row, fmtF(l.ConnPerS))
		} else {
			row = append(row, make([]string, 3+len(result.FailureClasses)+1+5)...)
		}
		if s := c.SYN; s != nil {
			row = append(row, num(s.In), num(s.SynAckOut), num(s.SynAckRetrans), num(s.Unanswered), num(s.RSTIn), num(s.RSTOut))
		} else {
			row = append(row, make([]string, 6)...)
		}
		for _, node := range []string{"server", "clients", "lvs"} {
			n := c.Nodes[node]
			for _, f := range nodeFields {
				v := ""
				if n != nil {
					if x, ok := n.Summary[f]; ok {
						v = num(x)
					}
				}
				row = append(row, v)
			}
			if n != nil {
				row = append(row, num(int64(n.TimeWait.Max)), num(int64(n.TimeWait.Final)))
			} else {
				row = append(row, "", "")
			}
		}
		ok := 0
		for _, e := range c.Expect {
			if e.OK {
				ok++
			}
		}
		row = append(row, num(int64(ok)), num(int64(len(c.Expect))), fmtF(c.DurationS))
		w.Write(row)
	}
	w.Flush()
	return b.Bytes(), warnings, w.Error()
}

func fmtF(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// WriteArtifacts writes cells.csv, summary.md and report.html next to
// run.json (report.html also from the folder's timeseries.csv).
func WriteArtifacts(dir string, r *result.Run) error {
	_, err := WriteReport(dir, r)
	return err
}

// WriteReport is WriteArtifacts for a run folder that may come from
// anywhere: it returns what could not be read or shown (also listed at the
// top of summary.md and report.html). An error means a file could not be
// written.
func WriteReport(dir string, r *result.Run) ([]string, error) {
	// A folder copied from a run that was killed may hold the temporary
	// file of a write it never finished.
	tmpfile.Sweep(dir, "")
	ts, problems := readSeries(dir, r)
	page, warnings, err := renderHTML(r, ts, problems)
	if err != nil {
		return warnings, fmt.Errorf("%s: %w", ReportName, err)
	}
	c, cw, err := csvOf(r)
	if err != nil {
		return warnings, fmt.Errorf("cells.csv: %w", err)
	}
	warnings = append(warnings, cw...)
	if err := result.WriteFileAtomic(filepath.Join(dir, "cells.csv"), c); err != nil {
		return warnings, err
	}
	if err := result.WriteFileAtomic(filepath.Join(dir, "summary.md"), []byte(markdown(r, warnings))); err != nil {
		return warnings, err
	}
	return warnings, result.WriteFileAtomic(filepath.Join(dir, ReportName), page)
}

// latency shows a connect latency figure, or "-" when no connect
// succeeded: run.json then holds 0 for it, which is no measurement.
func latency(l *result.Load, v float64) string {
	if l.OK == 0 {
		return "-"
	}
	return ms(v)
}

// rate shows connections per second: whole above 10, with a decimal below,
// where a slow cell's 0.4 must not read as 0.
func rate(v float64) string {
	if v < 10 {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}
