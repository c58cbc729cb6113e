package report_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/report"
	"github.com/twlab/twlab/lab/result"
)

func sampleRun() *result.Run {
	ok := &result.Cell{ID: "timestamps=1", Status: result.CellOK, DurationS: 1.5,
		Knobs:  map[string]string{"clients.net.ipv4.tcp_timestamps": "1"},
		Load:   &result.Load{Attempts: 10, OK: 10, Failures: map[string]int{}, ConnectMS: result.Percentiles{P50: 0.2, P99: 15}},
		SYN:    &result.SYN{In: 15, SynAckOut: 10, Unanswered: 5},
		Nodes:  map[string]*result.Node{"server": {Counters: map[string]int64{"TcpExt.PAWSTimewait": 5}}},
		Expect: []result.Expect{{Expr: "server.paws > 0", OK: true, Value: 5.0, Bound: "> 0"}}}
	ok.Nodes["server"].Summarize()
	failed := &result.Cell{ID: "timestamps=0", Status: result.CellFailed, Reason: "expectation failed: load.failed == 0",
		Knobs:  map[string]string{"clients.net.ipv4.tcp_timestamps": "0"},
		Load:   &result.Load{Attempts: 10, OK: 7, Failed: 3, Failures: map[string]int{result.FailTimeout: 3}},
		Expect: []result.Expect{{Expr: "load.failed == 0", OK: false, Value: 3.0, Bound: "== 0"}}}
	na := &result.Cell{ID: "tw_recycle=1", Status: result.CellNA, Reason: "n/a: net.ipv4.tcp_tw_recycle does not exist <here> & \"there\""}
	return &result.Run{Schema: result.Schema, ScenarioFile: "scenarios/demo.yaml", Kernel: "6.18", Status: result.RunFailed,
		Started: time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC), Cells: []*result.Cell{ok, failed, na}}
}

func TestJUnitParsesBack(t *testing.T) {
	b, err := report.JUnit([]*result.Run{sampleRun(), sampleRun()})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Body    string `xml:",chardata"`
				} `xml:"failure"`
				Skipped *struct {
					Message string `xml:"message,attr"`
				} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("not valid XML: %v\n%s", err, b)
	}
	if doc.Tests != 6 || doc.Failures != 2 || doc.Skipped != 2 || len(doc.Suites) != 2 {
		t.Fatalf("tests %d failures %d skipped %d suites %d", doc.Tests, doc.Failures, doc.Skipped, len(doc.Suites))
	}
	s := doc.Suites[0]
	if s.Name != "demo" || len(s.Cases) != 3 {
		t.Fatalf("suite %q with %d cases", s.Name, len(s.Cases))
	}
	if f := s.Cases[1].Failure; f == nil || !strings.Contains(f.Body, "load.failed == 0: measured 3, wanted == 0") {
		t.Errorf("failure of the failed cell: %+v", f)
	}
	if sk := s.Cases[2].Skipped; sk == nil || !strings.Contains(sk.Message, `<here> & "there"`) {
		t.Errorf("skipped cell: %+v", sk)
	}
}

func TestCSVAndMarkdown(t *testing.T) {
	r := sampleRun()
	rows := csvRows(t, r)
	if len(rows) != 4 {
		t.Fatalf("%d rows, want header + 3", len(rows))
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	for _, h := range []string{"cell", "status", "clients.net.ipv4.tcp_timestamps", "syn_unanswered", "server.paws", "fail_timeout"} {
		if _, ok := col[h]; !ok {
			t.Errorf("CSV lacks column %s", h)
		}
	}
	if rows[1][col["server.paws"]] != "5" || rows[1][col["syn_unanswered"]] != "5" || rows[2][col["fail_timeout"]] != "3" {
		t.Errorf("CSV values: %v / %v", rows[1], rows[2])
	}
	md := report.Markdown(r)
	for _, want := range []string{"# twlab run: demo.yaml", "| `timestamps=1` | ok |", "## What failed", "cell timestamps=0: load.failed == 0: measured 3, wanted == 0", "n/a: net.ipv4.tcp_tw_recycle"} {
		if !strings.Contains(md, want) {
			t.Errorf("summary.md lacks %q", want)
		}
	}
	line := report.CellLine(2, 3, r.Cells[1])
	if !strings.Contains(line, "failed 3 (timeout 3)") || !strings.Contains(line, "[2/3]") {
		t.Errorf("cell line: %s", line)
	}
}

// A cell where no connect succeeded shows no latency: not "0.0 ms" in its
// line or the table, and empty latency columns in cells.csv.
func TestNoLatencyWithoutConnects(t *testing.T) {
	r := sampleRun()
	c := r.Cells[1]
	c.Load = &result.Load{Attempts: 64, Failed: 64, Failures: map[string]int{"timeout": 64}}
	line := report.CellLine(2, 3, c)
	if strings.Contains(line, "0.0 ms") || !strings.Contains(line, "no connection completed") {
		t.Errorf("cell line: %s", line)
	}
	for _, row := range strings.Split(report.Table(r), "\n") {
		if f := strings.Fields(row); len(f) > 8 && f[0] == c.ID && (f[7] != "-" || f[8] != "-") {
			t.Errorf("table row p50/p99 %q %q, want - -:\n%s", f[7], f[8], row)
		}
	}
	b, err := report.CSV(r)
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := csv.NewReader(bytes.NewReader(b)).ReadAll()
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	for _, h := range []string{"connect_p50_ms", "connect_p99_ms", "connect_max_ms"} {
		i, ok := col[h]
		if !ok {
			t.Fatalf("CSV lacks %s: %v", h, rows[0])
		}
		if v := rows[2][i]; v != "" {
			t.Errorf("%s = %q for a cell without a connect, want empty", h, v)
		}
	}
}

// An interrupted run says how many planned cells it did not finish (those
// never started and the one cut short): in its status line, summary.md,
// report.html, and as a failed case in JUnit (a property alone left CI's
// view green).
func TestInterruptedRunCountsCellsNotFinished(t *testing.T) {
	r := sampleRun()
	r.Status, r.CellsPlanned = result.RunInterrupted, 6
	if s := report.StatusLine(r); !strings.Contains(s, "of 6 cells ran") || !strings.Contains(s, "3 not finished") {
		t.Errorf("status line: %s", s)
	}
	if md := report.Markdown(r); !strings.Contains(md, "- status: **interrupted** (3 of 6 cells not finished)") {
		t.Errorf("summary.md:\n%s", md)
	}
	if h := renderHTML(t, r); !strings.Contains(h, `<p class="runnote">3 of 6 cells not finished</p>`) {
		t.Errorf("report.html does not say how many cells did not finish")
	}
	b, err := report.JUnit([]*result.Run{r})
	if err != nil {
		t.Fatal(err)
	}
	if x := string(b); !strings.Contains(x, `name="(interrupted)"`) || !strings.Contains(x, "3 of 6 cells not finished") {
		t.Errorf("JUnit:\n%s", x)
	}
}

// A run that failed with no failed cell (its time bound came between two
// cells) says why everywhere, and its JUnit suite has a failure: exit 1
// next to a suite without one reads as green in CI.
func TestRunErrorIsShown(t *testing.T) {
	r := sampleRun()
	for _, c := range r.Cells {
		if c.Status == result.CellFailed {
			c.Status = result.CellOK
			for i := range c.Expect {
				c.Expect[i].OK = true
			}
		}
	}
	why := "the run reached its bound of 2m0s before cell x; 3 of 4 cells ran"
	r.Status, r.Error, r.CellsPlanned = result.RunFailed, why, 4
	if s := report.StatusLine(r); !strings.HasPrefix(s, "failed:") || !strings.HasSuffix(s, "1 not finished: "+why) {
		t.Errorf("status line: %s", s)
	}
	if md := report.Markdown(r); !strings.Contains(md, "- status: **failed** (1 of 4 cells not finished; "+why+")") {
		t.Errorf("summary.md:\n%s", md)
	}
	if h := renderHTML(t, r); !strings.Contains(h, why) {
		t.Errorf("report.html does not give the run's error")
	}
	b, err := report.JUnit([]*result.Run{r})
	if err != nil {
		t.Fatal(err)
	}
	if x := string(b); !strings.Contains(x, `failures="1"`) || !strings.Contains(x, `name="(run)"`) || !strings.Contains(x, why) {
		t.Errorf("JUnit:\n%s", x)
	}
}

// A start time run.json did not give readably (the reader left it out)
// is "unknown", not the year 1 and a run of 2562047 hours.
func TestUnknownStartTime(t *testing.T) {
	r := sampleRun()
	r.Started = time.Time{}
	if md := report.Markdown(r); !strings.Contains(md, "- started: unknown\n") {
		t.Errorf("summary.md:\n%s", md)
	}
	if h := renderHTML(t, r); strings.Contains(h, "0001-01-01") || strings.Contains(h, "2562047h") {
		t.Errorf("report.html shows a nonsense start or duration")
	}
}

// A note that starts like a heading stays a list item's text.
func TestMarkdownNoteIsNoHeading(t *testing.T) {
	r := sampleRun()
	r.Cells[0].Notes = append(r.Cells[0].Notes, "# All good, ignore the failures below")
	if md := report.Markdown(r); !strings.Contains(md, "- \\# All good") {
		t.Errorf("summary.md:\n%s", md)
	}
}

// The status line names the scenario as the header and the results folder
// do (its name:), and the file too when that is named otherwise.
func TestStatusLineNamesTheScenario(t *testing.T) {
	r := sampleRun()
	r.ScenarioFile, r.Scenario = "/tmp/t1.yaml", []byte(`{"name":"nat-paws"}`)
	if s := report.StatusLine(r); !strings.Contains(s, "nat-paws (t1.yaml)") {
		t.Errorf("status line: %s", s)
	}
	r.ScenarioFile = "scenarios/nat-paws.yaml"
	if s := report.StatusLine(r); !strings.Contains(s, ": nat-paws (kernel") {
		t.Errorf("status line: %s", s)
	}
	// A cell the kernel refused a value of did not run.
	r.Cells[1].ErrorKind = "input"
	if s := report.StatusLine(r); !strings.Contains(s, "1 of 3 cells ran, 1 n/a, 1 broke") {
		t.Errorf("status line with a cell that broke: %s", s)
	}
}

// What selected and shaped a run is in every view of it: --only in
// summary.md and JUnit (run.json and report.html had it); a slow cell's
// rate keeps its decimal.
func TestOnlyAndSlowRate(t *testing.T) {
	r := sampleRun()
	r.Only = "server.net.ipv4.tcp_rfc1337 == 1"
	r.Cells[0].Load.ConnPerS = 0.4
	if md := report.Markdown(r); !strings.Contains(md, "- only the cells where: `server.net.ipv4.tcp_rfc1337 == 1`") {
		t.Errorf("summary.md lacks --only:\n%s", md)
	}
	b, _ := report.JUnit([]*result.Run{r})
	if !strings.Contains(string(b), `<property name="only" value="server.net.ipv4.tcp_rfc1337 == 1">`) {
		t.Errorf("JUnit lacks --only:\n%s", b)
	}
	if tab := report.Table(r); !strings.Contains(tab, " 0.4 ") {
		t.Errorf("table lost the rate 0.4:\n%s", tab)
	}
}

// The page says what TcpExt.TW counted on the kernel that measured it, and
// a rate below 10 conn/s keeps its decimal as in every other output.
func TestHTMLTWCounterAndRate(t *testing.T) {
	for _, c := range []struct{ counter, want, not string }{
		{"created", "TIME_WAIT sockets created", "sockets that ended"},
		{"expired", "TIME_WAIT sockets that ended", "sockets created"},
		{"", "kernel_features.tw_counter says which", "sockets that ended"},
	} {
		r := sampleRun()
		r.Cells[0].Nodes["server"].Counters["TcpExt.TW"] = 7
		r.Cells[0].Load.ConnPerS = 0.4
		if c.counter != "" {
			r.KernelFeatures = &result.KernelFeatures{TWCounter: c.counter}
		}
		b, err := report.HTML(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		page := string(b)
		if !strings.Contains(page, c.want) || strings.Contains(page, c.not) {
			t.Errorf("tw_counter %q: page should say %q and not %q", c.counter, c.want, c.not)
		}
		if !strings.Contains(page, "0.4 conn/s") {
			t.Errorf("rate 0.4 not shown as 0.4 conn/s")
		}
	}
}

// A hostile run folder's text stays text in summary.md, cells.csv and the
// compare table (CI appends `compare --md` to its job summary).
func TestHostileTextInert(t *testing.T) {
	r := sampleRun()
	r.Kernel = "6.18\n# run OK"
	r.Cells[0].ID = "x`<img src=https://evil/x.png>`"
	r.Cells[1].ID = "two\nlines"
	r.Cells[0].KnobsActual = map[string]string{"n": "1"}
	r.Cells[0].Knobs[`=HYPERLINK("http://evil","x")`] = "1"
	md := report.Markdown(r)
	if strings.Contains(md, "\n# run OK") || strings.Contains(md, "`<img") && !strings.Contains(md, "`` x`<img") {
		t.Errorf("Markdown lets markup through:\n%s", md)
	}
	b, err := report.CSV(r)
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := strings.Cut(string(b), "\n")
	if strings.Contains(head, `,=HYPERLINK`) || strings.Contains(head, `,"=HYPERLINK`) {
		t.Errorf("cells.csv header has a formula: %s", head)
	}
	cmp := report.Compare([]report.CompareRun{{Dir: "a", Run: sampleRun()}, {Dir: "b", Run: r}})
	for _, line := range strings.Split(cmp.Text(), "\n") {
		if strings.HasPrefix(line, "lines") {
			t.Errorf("a line break in a cell id made a row of its own:\n%s", cmp.Text())
		}
	}
}

// Every time attribute is a number, the interrupted stand-in case's too
// (time="" fails parsers that read it as a float).
func TestJUnitTimesAreNumbers(t *testing.T) {
	r := sampleRun()
	r.Status, r.CellsPlanned = result.RunInterrupted, 5
	b, err := report.JUnit([]*result.Run{r})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "(interrupted)") || strings.Contains(string(b), `time=""`) {
		t.Errorf("JUnit:\n%s", b)
	}
}

// Characters XML cannot hold, in an expectation, a note or a reason, still
// give a JUnit file that parses: CDATA is written as it is.
func TestJUnitIsValidXML(t *testing.T) {
	r := sampleRun()
	bad := "a\x01b\uFFFEc\xffd"
	r.Cells[0].Expect = []result.Expect{{Expr: `lvs.mode != "` + bad + `"`, OK: false, Error: bad}}
	r.Cells[0].Status = result.CellFailed
	r.Cells[0].Notes = append(r.Cells[0].Notes, bad)
	r.Cells[1].Status, r.Cells[1].Reason = result.CellNA, bad
	b, err := report.JUnit([]*result.Run{r})
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		_, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("JUnit XML does not parse: %v\n%s", err, b)
		}
	}
}

// A matrix column that only some cells set (an include's key) shows the
// scenario's own value in the others, not "–".
func TestHTMLMatrixBaseValue(t *testing.T) {
	r := sampleRun()
	r.Scenario = []byte(`{"name":"demo","load":{"bind_port":50000},"matrix":[{"key":"clients.net.ipv4.tcp_timestamps"}]}`)
	r.Cells[0].Matrix = map[string]string{"clients.net.ipv4.tcp_timestamps": "1"}
	r.Cells[1].Matrix = map[string]string{"clients.net.ipv4.tcp_timestamps": "0"}
	r.Cells[2].Matrix = map[string]string{"load.bind_port": "0"}
	b, err := report.HTML(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), ">50000<"); n != 2 {
		t.Errorf("the base bind_port 50000 shows in %d cells of the matrix, want 2", n)
	}
}

// renderHTML is report.html of r.
func renderHTML(t *testing.T, r *result.Run) string {
	t.Helper()
	b, err := report.HTML(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A knob only an include sets shows the scenario's own value in the other
// cells of cells.csv, as report.html's matrix does (it was empty there).
func TestCSVKnobOfAnInclude(t *testing.T) {
	r := sampleRun()
	r.Scenario = []byte(`{"name":"demo","load":{"bind_port":50000}}`)
	r.Cells[2].Knobs = map[string]string{"load.bind_port": "0"}
	rows := csvRows(t, r)
	col := slices.Index(rows[0], "load.bind_port")
	if col < 0 {
		t.Fatalf("no load.bind_port column: %v", rows[0])
	}
	var got []string
	for _, row := range rows[1:] {
		got = append(got, row[col])
	}
	if want := []string{"50000", "50000", "0"}; !slices.Equal(got, want) {
		t.Errorf("load.bind_port column %v, want %v", got, want)
	}
}

// The scenario's own values repeat in every row that does not set the
// key: they are cut and cleaned as run.json's other strings are (a 1 MB
// value with a terminal escape made a 99 MB cells.csv that rewrote the
// title of the terminal it was printed in).
func TestBaseValuesAreCleaned(t *testing.T) {
	r := sampleRun()
	big := "\x1b]0;PWNED\x07" + strings.Repeat("A", 1<<20)
	sc, _ := json.Marshal(map[string]any{"name": "demo", "sysctl": map[string]any{"server": map[string]any{"net.ipv4.tcp_tw_recycle": big}}})
	r.Scenario = sc
	r.Cells[0].Knobs = map[string]string{"server.net.ipv4.tcp_tw_recycle": "0"}
	b, err := report.CSV(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 64<<10 || strings.ContainsAny(string(b), "\x1b\x07") {
		t.Errorf("cells.csv is %d bytes, escape characters in it: %v", len(b), strings.ContainsAny(string(b), "\x1b\x07"))
	}
	h := renderHTML(t, r)
	if len(h) > 512<<10 || strings.ContainsAny(h, "\x1b\x07") {
		t.Errorf("report.html is %d bytes, escape characters in it: %v", len(h), strings.ContainsAny(h, "\x1b\x07"))
	}
}

// csvRows is cells.csv of r, parsed.
func csvRows(t *testing.T, r *result.Run) [][]string {
	t.Helper()
	b, err := report.CSV(r)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// A connect inside the lab takes tens of microseconds: the cell line shows
// it, not "0.0 ms" (which the README names as the sign of a broken clock).
func TestSubMillisecondLatencyShown(t *testing.T) {
	r := sampleRun()
	c := r.Cells[0]
	c.Load.ConnectMS.P50, c.Load.ConnectMS.P99, c.Load.ConnectMS.Max = 0.035, 0.48, 12.34
	line := report.CellLine(1, 3, c)
	for _, want := range []string{"p50 0.035 ms", "p99 0.48 ms"} {
		if !strings.Contains(line, want) {
			t.Errorf("cell line lacks %q: %s", want, line)
		}
	}
	if strings.Contains(line, "0.0 ms") {
		t.Errorf("cell line shows 0.0 ms: %s", line)
	}
}

// A cell that broke on a value the kernel refused is no failed expectation:
// JUnit types it by its error kind, so CI can tell the two apart.
func TestJUnitTypesABrokenCell(t *testing.T) {
	r := sampleRun()
	c := r.Cells[1]
	c.Expect, c.Reason, c.ErrorKind = nil, "bad input: server.net.ipv4.tcp_max_syn_backlog: the kernel refused -5", "input"
	b, err := report.JUnit([]*result.Run{r})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `type="twlab.input"`) || strings.Contains(string(b), `type="twlab.expectation"`) {
		t.Errorf("JUnit of a cell that broke on its input:\n%s", b)
	}
}
