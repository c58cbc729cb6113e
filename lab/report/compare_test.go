package report_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/twlab/twlab/lab/report"
	"github.com/twlab/twlab/lab/result"
)

// twoRuns are the synthetic run and a second run of it on another kernel
// in which cell rfc1337=1 changed (no PAWS rejects, every connect ok) and
// cell rfc1337=0 only has latency noise.
func twoRuns() []report.CompareRun {
	a, _ := syntheticRun()
	b, _ := syntheticRun()
	b.Kernel, b.RunID = "6.1.0", "cd34"
	b.Cells[0].Load.ConnectMS.P99 *= 1.3 // noise, not a change
	c := b.Cells[1]
	c.Status, c.Reason = result.CellOK, ""
	c.Load.OK, c.Load.Failed, c.Load.Attempts = 11, 0, 11
	c.SYN.Unanswered = 0
	c.Nodes["server"].Counters["TcpExt.PAWSTimewait"] = 0
	c.Nodes["server"].Summarize()
	return []report.CompareRun{{Dir: "results/demo/a", Run: a}, {Dir: "results/demo/b", Run: b}}
}

func TestCompareMarksTheChangedCell(t *testing.T) {
	cmp := report.Compare(twoRuns())
	if len(cmp.Rows) != 3 || len(cmp.Columns) != 2 {
		t.Fatalf("%d rows, %d columns", len(cmp.Rows), len(cmp.Columns))
	}
	if cmp.Columns[0].Label != "6.18.0 ab12" || cmp.Columns[1].Label != "6.1.0 cd34" {
		t.Errorf("labels %q %q, want kernel and run id", cmp.Columns[0].Label, cmp.Columns[1].Label)
	}
	changed := map[string][]string{}
	for _, r := range cmp.Rows {
		changed[r.ID] = r.Changed
	}
	if got := strings.Join(changed["rfc1337=1"], ","); got != "status,ok/attempts,paws,unanswered" {
		t.Errorf("rfc1337=1 changed %q, want status,ok/attempts,paws,unanswered", got)
	}
	if len(changed["rfc1337=0"]) != 0 || len(changed["tw_recycle=1"]) != 0 {
		t.Errorf("unchanged cells marked: %v", changed)
	}
	if cmp.ChangedRows() != 1 {
		t.Errorf("%d changed rows, want 1", cmp.ChangedRows())
	}

	txt := cmp.Text()
	for _, line := range strings.Split(txt, "\n") {
		switch {
		case strings.HasPrefix(line, "rfc1337=1 "):
			if !strings.Contains(line, "CHANGED: status, ok/attempts, paws, unanswered") || strings.Contains(line, "paws 17*") || !strings.Contains(line, "paws 0*") || strings.Contains(line, "failed*") {
				t.Errorf("changed row not marked: %q", line)
			}
		case strings.HasPrefix(line, "rfc1337=0 "), strings.HasPrefix(line, "tw_recycle=1 "):
			if strings.Contains(line, "*") || strings.Contains(line, "CHANGED") {
				t.Errorf("unchanged row marked: %q", line)
			}
		}
	}
	if !strings.Contains(txt, "1 changed") {
		t.Errorf("text head: %s", txt)
	}

	md := cmp.Markdown()
	// Only the run that differs from the baseline is marked (results/README.md):
	// with three runs a marked baseline looked like the one that changed.
	if !strings.Contains(md, "| `rfc1337=1` | failed 6/11 paws 17 unans 17 p99 12.1 expect 1/1 | **ok** **11/11** **paws 0** **unans 0**") || !strings.Contains(md, "**changed**: status, ok/attempts, paws, unanswered") {
		t.Errorf("markdown:\n%s", md)
	}

	b, err := cmp.HTML()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]*html.Node{}
	walk(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "tr" && attr(n, "data-cell") != "" {
			rows[attr(n, "data-cell")] = n
		}
	})
	if len(rows) != 3 {
		t.Fatalf("%d rows in the HTML table", len(rows))
	}
	for id, n := range rows {
		diffs := 0
		walk(n, func(m *html.Node) {
			if m.Type == html.ElementNode && strings.Contains(attr(m, "class"), "diff") {
				diffs++
			}
		})
		if id == "rfc1337=1" {
			if attr(n, "class") != "changed" || diffs != 4 {
				t.Errorf("HTML row %s: class %q, %d highlighted figures; want changed and 4 (the second run's)", id, attr(n, "class"), diffs)
			}
		} else if attr(n, "class") != "" || diffs != 0 {
			t.Errorf("HTML row %s: class %q, %d highlighted", id, attr(n, "class"), diffs)
		}
	}
}

func TestCompareAbsentCellAndSameLabels(t *testing.T) {
	runs := twoRuns()
	runs[1].Run.Kernel, runs[1].Run.RunID = runs[0].Run.Kernel, runs[0].Run.RunID
	runs[1].Run.Cells = runs[1].Run.Cells[:2]
	cmp := report.Compare(runs)
	if cmp.Columns[0].Label != "a" || cmp.Columns[1].Label != "b" {
		t.Errorf("labels %q %q: equal kernel+id must fall back to the folder names", cmp.Columns[0].Label, cmp.Columns[1].Label)
	}
	// Folders of one name (a/r, b/r), and one folder given twice.
	runs[0].Dir, runs[1].Dir = "x/a/r", "x/b/r"
	if cmp := report.Compare(runs); cmp.Columns[0].Label != "x/a/r" || cmp.Columns[1].Label != "x/b/r" {
		t.Errorf("labels %q %q: folders of one name must fall back to their paths", cmp.Columns[0].Label, cmp.Columns[1].Label)
	}
	runs[1].Dir = runs[0].Dir
	if cmp := report.Compare(runs); cmp.Columns[0].Label == cmp.Columns[1].Label {
		t.Errorf("one folder given twice: both columns labelled %q", cmp.Columns[0].Label)
	}
	last := cmp.Rows[2]
	if last.ID != "tw_recycle=1" || last.Entries[1] != nil || strings.Join(last.Changed, ",") != "absent" {
		t.Errorf("cell missing from the second run: %+v", last)
	}
}

// Two n/a cells are unchanged whatever figures they carry (twlab called
// them meaningless), and a cell without a successful connect has no p99 to
// compare: "p99 0" against a real latency is no regression.
func TestCompareNAAndNoLatency(t *testing.T) {
	runs := twoRuns()
	a, b := runs[0].Run, runs[1].Run
	// Both n/a; one of them kept the figures of its too slow load.
	b.Cells[2].Load = &result.Load{OK: 5, Attempts: 10}
	a.Cells[0].Load.OK, a.Cells[0].Load.ConnectMS.P99 = 0, 0
	a.Cells[0].Load.Failed = a.Cells[0].Load.Attempts
	cmp := report.Compare(runs)
	for _, r := range cmp.Rows {
		switch r.ID {
		case a.Cells[2].ID:
			if len(r.Changed) != 0 {
				t.Errorf("two n/a cells marked changed: %v", r.Changed)
			}
		case a.Cells[0].ID:
			for _, c := range r.Changed {
				if c == "p99" {
					t.Errorf("p99 marked changed against a cell with no successful connect: %v", r.Changed)
				}
			}
		}
	}
	if txt := cmp.Text(); !strings.Contains(txt, "p99 -") {
		t.Errorf("no successful connect should read p99 -:\n%s", txt)
	}
}

// A run made with --set compares another experiment under the same cell
// ids: compare says so.
func TestCompareWarnsOfOverrides(t *testing.T) {
	runs := twoRuns()
	runs[1].Run.Overrides = []string{"load.connections=300"}
	if w := strings.Join(report.Compare(runs).Warnings, "\n"); !strings.Contains(w, "load.connections=300") {
		t.Errorf("no warning about the override: %q", w)
	}
	if w := report.Compare(twoRuns()).Warnings; len(w) != 0 {
		t.Errorf("warnings for runs made alike: %q", w)
	}
}

// What compare used to pass over: two failed runs that failed different
// assertions, runs of different --only, an interrupted run's cells that
// never started, and two cells of one id in one run.
func TestCompareSeesWhatDiffers(t *testing.T) {
	a, b := sampleRun(), sampleRun()
	b.Cells[1].Expect = []result.Expect{{Expr: "load.failed == 0", OK: true}, {Expr: "server.paws > 0", OK: false}}
	b.Only = "clients.net.ipv4.tcp_timestamps == 1"
	b.Status, b.CellsPlanned = result.RunInterrupted, 5
	b.Cells = append(b.Cells, b.Cells[0])
	cmp := report.Compare([]report.CompareRun{{Dir: "a", Run: a}, {Dir: "b", Run: b}})
	var row *report.CompareRow
	for i := range cmp.Rows {
		if cmp.Rows[i].ID == "timestamps=0" {
			row = &cmp.Rows[i]
		}
	}
	if row == nil || !slices.Contains(row.Changed, "expectations") {
		t.Errorf("different failed assertions not a change: %+v", row)
	}
	warn := strings.Join(cmp.Warnings, "\n")
	for _, w := range []string{`b ran with --only "clients.net.ipv4.tcp_timestamps == 1", the baseline without --only`, "b was interrupted: 1 of its 5 cells did not finish",
		"b has more than one cell timestamps=1; only the first is compared"} {
		if !strings.Contains(warn, w) {
			t.Errorf("warnings lack %q:\n%s", w, warn)
		}
	}
	if !strings.Contains(cmp.Text(), "expect 1/2*") {
		t.Errorf("the table does not mark the assertions:\n%s", cmp.Text())
	}
}
