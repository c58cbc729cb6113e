package report_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/twlab/twlab/lab/load"
	"github.com/twlab/twlab/lab/report"
	"github.com/twlab/twlab/lab/result"
)

// syntheticRun is a run of three cells as the runner writes it: one that
// recovered from PAWS rejects, one whose client was locked out, one n/a;
// with the time series of the two that ran.
func syntheticRun() (*result.Run, map[int][]*result.Series) {
	scen := json.RawMessage(`{"name": "demo", "description": "Two clients behind one SNAT port.\n\nThe server closes first & holds <TIME_WAIT>.",
		"matrix": [{"key": "server.net.ipv4.tcp_rfc1337", "values": ["0", "1"]}]}`)
	mk := func(i int, id, rfc string, ok, failed int, paws int64) *result.Cell {
		var lat []int64
		for j := 0; j < ok; j++ {
			lat = append(lat, int64(100_000+j%2*12_000_000))
		}
		c := &result.Cell{ID: id, Index: i, Status: result.CellOK, DurationS: 2,
			Knobs: map[string]string{"server.net.ipv4.tcp_rfc1337": rfc}, Matrix: map[string]string{"server.net.ipv4.tcp_rfc1337": rfc},
			KnobsActual: map[string]string{"server.net.ipv4.tcp_rfc1337": rfc},
			Load: &result.Load{Attempts: ok + failed, OK: ok, Failed: failed, Failures: map[string]int{result.FailTimeout: failed},
				ConnectMS: result.Percentiles(load.ComputePercentiles(lat)), ConnectCDF: load.ComputeCDF(lat), ConnPerS: 100, Elapsed: 2},
			SYN: &result.SYN{In: int64(ok) + paws, SynAckOut: int64(ok), Unanswered: paws, RSTIn: paws},
			Nodes: map[string]*result.Node{
				"server":  {Counters: map[string]int64{"TcpExt.PAWSTimewait": paws, "TcpExt.TW": int64(ok), "Tcp.PassiveOpens": int64(ok), "Tcp.InSegs": 600}, TimeWait: result.TimeWait{Max: 1, Final: 1}},
				"clients": {Counters: map[string]int64{"TcpExt.TCPSynRetrans": paws, "Tcp.OutRsts": paws, "Tcp.ActiveOpens": int64(ok + failed)}},
				"lvs":     {Counters: map[string]int64{}},
			},
			Expect: []result.Expect{{Expr: "server.paws > 0", OK: true, Value: float64(paws), Bound: "> 0"}},
			Notes:  []string{"PAWS rejected the SYNs of the client whose clock is behind <c2>."}}
		for _, n := range c.Nodes {
			n.Summarize()
		}
		return c
	}
	a := mk(0, "rfc1337=0", "0", 200, 0, 100)
	b := mk(1, "rfc1337=1", "1", 6, 5, 17)
	b.Status, b.Reason = result.CellFailed, "expectation failed: load.failed == 0"
	na := &result.Cell{ID: "tw_recycle=1", Index: 2, Status: result.CellNA, Reason: "n/a: net.ipv4.tcp_tw_recycle does not exist"}
	r := &result.Run{Schema: result.Schema, Tool: "twlab", RunID: "ab12", ScenarioFile: "demo.yaml", Scenario: scen, Kernel: "6.18.0",
		Status: result.RunFailed, Started: time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC), Cells: []*result.Cell{a, b, na},
		Timeseries: &result.TimeseriesFile{Path: result.TimeseriesName, Format: "long", Columns: result.TimeseriesColumns, IntervalMS: 100}}
	ts := map[int][]*result.Series{}
	for _, c := range []*result.Cell{a, b} {
		var ss []*result.Series
		add := func(name, node string, f func(k int) int64) {
			s := &result.Series{Name: name, Node: node}
			for k := 0; k <= 20; k++ {
				s.T = append(s.T, int64(k*100))
				s.V = append(s.V, f(k))
			}
			ss = append(ss, s)
		}
		att := int64(c.Load.Attempts)
		add(result.SeriesTimeWait, "server", func(k int) int64 { return int64(k % 2) })
		add(result.SeriesTimeWait, "clients", func(int) int64 { return 0 })
		add(result.SeriesTimeWait, "lvs", func(int) int64 { return 0 })
		add(result.SeriesOK, "clients", func(k int) int64 { return int64(c.Load.OK) * int64(k) / 20 })
		add(result.SeriesFailed, "clients", func(k int) int64 { return int64(c.Load.Failed) * int64(k) / 20 })
		add(result.SeriesAttempts, "clients", func(k int) int64 { return att * int64(k) / 20 })
		add(result.SeriesSYNIn, "server", func(k int) int64 { return c.SYN.In * int64(k) / 20 })
		add(result.SeriesSYNACKOut, "server", func(k int) int64 { return c.SYN.SynAckOut * int64(k) / 20 })
		add(result.SeriesRSTIn, "server", func(k int) int64 { return c.SYN.RSTIn * int64(k) / 20 })
		add(result.SeriesPAWS, "server", func(k int) int64 { return c.Nodes["server"].Summary["paws"] * int64(k) / 20 })
		ts[c.Index] = ss
	}
	return r, ts
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if strings.EqualFold(a.Key, key) {
			return a.Val
		}
	}
	return ""
}

func walk(n *html.Node, f func(*html.Node)) {
	f(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, f)
	}
}

func text(n *html.Node) string {
	var b strings.Builder
	walk(n, func(m *html.Node) {
		if m.Type == html.TextNode {
			b.WriteString(m.Data)
		}
	})
	return b.String()
}

// TestHTMLReport writes report.html the way a run does (through
// WriteArtifacts, from run.json's document and timeseries.csv on disk),
// parses it, and checks that every cell that ran has every plot as an SVG
// with drawn lines and labels, that n/a cells have none, that the page
// opens with the scenario's description and explains the cells and
// counters, and that it loads nothing from elsewhere.
func TestHTMLReport(t *testing.T) {
	r, ts := syntheticRun()
	dir := t.TempDir()
	p := filepath.Join(dir, result.TimeseriesName)
	if err := result.CreateTimeseries(p); err != nil {
		t.Fatal(err)
	}
	for i, ss := range ts {
		if _, err := result.AppendTimeseries(p, i, ss); err != nil {
			t.Fatal(err)
		}
	}
	if err := report.WriteArtifacts(dir, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, report.ReportName))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]*html.Node{}
	var matrixRows []*html.Node
	walk(doc, func(n *html.Node) {
		if n.Type != html.ElementNode {
			return
		}
		if n.Data == "section" && strings.Contains(attr(n, "class"), "cell") {
			sections[attr(n, "data-cell")] = n
		}
		if n.Data == "tr" && attr(n, "data-cell") != "" {
			matrixRows = append(matrixRows, n)
		}
		switch n.Data {
		case "script", "img", "iframe", "object", "embed":
			t.Errorf("report has a <%s>: it must be self-contained and static", n.Data)
		case "link":
			t.Errorf("report links %q: it must be self-contained", attr(n, "href"))
		}
		for _, a := range n.Attr {
			if (a.Key == "src" || a.Key == "href" || a.Key == "xlink:href") && !strings.HasPrefix(a.Val, "#") {
				t.Errorf("<%s %s=%q>: the report must load nothing", n.Data, a.Key, a.Val)
			}
		}
	})
	if len(sections) != len(r.Cells) {
		t.Fatalf("%d cell sections, want %d", len(sections), len(r.Cells))
	}
	if len(matrixRows) != len(r.Cells) {
		t.Errorf("%d matrix rows, want %d", len(matrixRows), len(r.Cells))
	}
	for i, row := range matrixRows {
		if want := map[string]string{result.CellOK: "ok", result.CellFailed: "failed", result.CellNA: "na"}[r.Cells[i].Status]; attr(row, "class") != want {
			t.Errorf("matrix row %d class %q, want %q (coloured by outcome)", i, attr(row, "class"), want)
		}
	}
	for _, c := range r.Cells {
		sec := sections[c.ID]
		if sec == nil {
			t.Errorf("no section for cell %s", c.ID)
			continue
		}
		var kinds []string
		walk(sec, func(n *html.Node) {
			if n.Type == html.ElementNode && n.Data == "svg" {
				k := attr(n, "data-plot")
				kinds = append(kinds, k)
				paths, texts := 0, 0
				walk(n, func(m *html.Node) {
					if m.Type == html.ElementNode && m.Data == "path" {
						paths++
					}
					if m.Type == html.ElementNode && m.Data == "text" {
						texts++
					}
				})
				if paths < 5 || texts < 5 || attr(n, "viewbox") == "" {
					t.Errorf("cell %s, plot %s: %d paths, %d texts, viewBox %q: not a drawn plot", c.ID, k, paths, texts, attr(n, "viewbox"))
				}
			}
			if n.Type == html.ElementNode && strings.Contains(attr(n, "class"), "noplot") {
				t.Errorf("cell %s: plot %s not drawn: %s", c.ID, attr(n, "data-plot"), text(n))
			}
		})
		want := report.PlotKinds
		if c.Status == result.CellNA {
			want = nil
		}
		if !slices.Equal(kinds, want) {
			t.Errorf("cell %s: plots %v, want %v", c.ID, kinds, want)
		}
		st := text(sec)
		for _, n := range c.Notes {
			if !strings.Contains(st, n) {
				t.Errorf("cell %s: note %q missing", c.ID, n)
			}
		}
		if c.Reason != "" && !strings.Contains(st, c.Reason) {
			t.Errorf("cell %s: reason missing", c.ID)
		}
		if c.Load != nil {
			for _, frag := range []string{"TcpExt.PAWSTimewait", report.CounterMeanings["TcpExt.PAWSTimewait"], "Tcp.OutRsts", report.CounterMeanings["TcpExt.TCPSynRetrans"], "syn.unanswered"} {
				if !strings.Contains(st, frag) {
					t.Errorf("cell %s: counters lack %q", c.ID, frag)
				}
			}
		}
	}
	page := text(doc)
	for _, frag := range []string{"What this scenario demonstrates", "Two clients behind one SNAT port.", "The server closes first & holds <TIME_WAIT>.", "rfc1337"} {
		if !strings.Contains(page, frag) {
			t.Errorf("page lacks %q", frag)
		}
	}
	if i, j := strings.Index(page, "What this scenario demonstrates"), strings.Index(page, "The matrix"); i < 0 || j < i {
		t.Error("the page must open with what the scenario demonstrates, before the matrix")
	}
	for _, f := range []string{"summary.md", "cells.csv"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}

// TestHTMLReportWithoutTimeseries: a run folder from before timeseries.csv
// still gets a report; the time plots say why they are missing.
func TestHTMLReportWithoutTimeseries(t *testing.T) {
	r, _ := syntheticRun()
	b, err := report.HTML(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if n := strings.Count(s, `class="noplot" data-plot="timewait"`); n != 2 {
		t.Errorf("%d TIME_WAIT placeholders, want one per cell that ran", n)
	}
	if n := strings.Count(s, `data-plot="cdf" role="img"`); n != 2 {
		t.Errorf("%d CDF plots, want 2 (they come from run.json)", n)
	}
}

// TestHTMLReportDamaged: data a plot cannot be drawn from says so in the
// plot's place, and what could not be read is listed at the top; every
// cell is still in the page.
func TestHTMLReportDamaged(t *testing.T) {
	r, ts := syntheticRun()
	r.Warnings = []string{"run.json: cells[].load.ok holds string where int belongs; such values were left out"}
	s := ts[0][0]
	for k := 0; k < 40_000; k++ {
		s.T, s.V = append(s.T, int64(k)), append(s.V, 1)
	}
	r.Cells[1].Load.ConnectCDF = [][2]float64{{0.5, 1e308}, {1, 1e308}} // once a panic of the log scale
	r.Cells[2].Index = 1                                                // two cells claim index 1
	b, err := report.HTML(r, ts)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	page := text(doc)
	for _, frag := range []string{"What could not be read", r.Warnings[0], "could not be drawn from this data", "40021 points",
		"time series not shown: run.json gives this cell index 1, which another cell has too"} {
		if !strings.Contains(page, frag) {
			t.Errorf("page lacks %q", frag)
		}
	}
	if n := strings.Count(string(b), `<section class="cell`); n != len(r.Cells) {
		t.Errorf("%d cell sections, want %d", n, len(r.Cells))
	}
	if n := strings.Count(string(b), `data-plot="cdf" role="img"`); n != 2 {
		t.Errorf("%d CDF plots drawn, want 2", n)
	}
}

// TestReportBoundedLists: millions of tiny elements (a damaged run.json
// can hold them) do not become millions of rows: the lists end with what
// was left out, and the page stays small.
func TestReportBoundedLists(t *testing.T) {
	r, ts := syntheticRun()
	for _, c := range r.Cells[:2] {
		c.Expect = make([]result.Expect, 120_000)
		for i := range c.Expect {
			c.Expect[i] = result.Expect{Expr: "x > 0", Value: i}
		}
	}
	b, err := report.HTML(r, ts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "not listed (a report lists at most") || len(b) > 40<<20 {
		t.Errorf("page of %d bytes; lists cut short: %v", len(b), strings.Contains(string(b), "not listed"))
	}
	if md := report.Markdown(r); !strings.Contains(md, "not listed") || len(md) > 20<<20 {
		t.Errorf("summary.md of %d bytes", len(md))
	}
}
