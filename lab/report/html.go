package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"image/color"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/twlab/twlab/lab/load"
	"github.com/twlab/twlab/lab/result"
)

// ReportName is the HTML report of a run folder.
const ReportName = "report.html"

// Plot kinds, in the order each cell shows them (data-plot attributes).
var PlotKinds = []string{"timewait", "outcomes", "server", "cdf"}

// scenarioText is what the report needs of run.json's scenario object.
type scenarioText struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Matrix      []struct {
		Key string `json:"key"`
	} `json:"matrix"`
}

func scenarioOf(r *result.Run) scenarioText {
	var s scenarioText
	if b, err := json.Marshal(r.Scenario); err == nil {
		json.Unmarshal(b, &s)
	}
	if s.Name == "" {
		s.Name = strings.TrimSuffix(filepath.Base(r.ScenarioFile), ".yaml")
	}
	return s
}

// matrixKeys are the run's matrix keys: the scenario's axes in order, then
// keys only some cells have (include entries), sorted.
func matrixKeys(r *result.Run) []string {
	var keys []string
	for _, a := range scenarioOf(r).Matrix {
		keys = append(keys, a.Key)
	}
	var extra []string
	for _, c := range r.Cells {
		for k := range c.Matrix {
			if !slices.Contains(keys, k) && !slices.Contains(extra, k) {
				extra = append(extra, k)
			}
		}
	}
	slices.Sort(extra)
	return append(keys, extra...)
}

type htmlKey struct{ Short, Role, Full string }

type htmlRow struct {
	Num                             int
	Anchor, ID, Status, StatusClass string
	Knobs                           []string
	Conns, ConnsClass, Fail         string
	P50, P99                        string
	SYNIn, Unans, UnansClass        string
	PAWS, PAWSClass, TWMax, Expect  string
}

type htmlFigure struct{ Name, Value string }

type htmlCounter struct {
	Name, Meaning        string
	Server, Clients, LVS string
}

type htmlCell struct {
	Num                             int
	Anchor, ID, Status, StatusClass string
	Reason                          string
	Notes                           []string
	Knobs                           string
	Figures                         []htmlFigure
	Expect                          []result.Expect
	Plots                           []template.HTML
	Story, Other                    []htmlCounter
	SYN                             []htmlCounter
	Ran                             bool
}

type htmlPage struct {
	Title, Scenario, ScenarioFile string
	Description                   []string
	Status, StatusClass           string
	Kernel, Started, Duration     string
	RunID, Host, Overrides, Only  string
	Facts                         []string
	Keys                          []htmlKey
	Rows                          []htmlRow
	Failed                        []string
	Cells                         []htmlCell
	Timeseries                    string
	Tool                          string
}

func statusClass(s string) string {
	switch s {
	case result.CellOK:
		return "ok"
	case result.CellFailed:
		return "failed"
	case result.CellNA:
		return "na"
	}
	return "other"
}

// loadClass colours a cell's connections by how many failed.
func loadClass(l *load.Result) string {
	switch {
	case l == nil || l.Attempts == 0:
		return ""
	case l.Failed == 0:
		return "good"
	case 2*l.Failed < l.Attempts:
		return "some"
	}
	return "bad"
}

func nonzero(v int64) string {
	if v != 0 {
		return "warn"
	}
	return ""
}

// HTML renders report.html: what the scenario demonstrates, the matrix
// coloured by outcome, and per cell the explanation, the plots (TIME_WAIT
// over time, connection outcomes over time, the server's SYNs and PAWS
// rejects over time, the connect-latency CDF) and the counters that moved
// with their meaning. ts holds timeseries.csv per cell index (nil: none).
// The page needs no network: CSS and SVG are inline.
func HTML(r *result.Run, ts map[int][]*result.Series) ([]byte, error) {
	sc := scenarioOf(r)
	pg := htmlPage{Title: "twlab: " + sc.Name, Scenario: sc.Name, ScenarioFile: r.ScenarioFile,
		Status: r.Status, StatusClass: statusClass(r.Status), Kernel: r.Kernel, RunID: r.RunID,
		Started: r.Started.UTC().Format("2006-01-02 15:04:05 UTC"), Only: r.Only, Tool: r.Tool}
	for _, p := range strings.Split(strings.TrimSpace(sc.Description), "\n\n") {
		if p = strings.TrimSpace(p); p != "" {
			pg.Description = append(pg.Description, p)
		}
	}
	if r.Finished != nil {
		pg.Duration = r.Finished.Sub(r.Started).Round(100 * time.Millisecond).String()
	}
	pg.Host = fmt.Sprintf("%s, %d CPUs", r.Host.Hostname, r.Host.CPUs)
	if r.Host.VM {
		pg.Host += ", VM guest"
	}
	pg.Overrides = strings.Join(r.Overrides, " ")
	pg.Facts = kernelFacts(r.KernelFeatures)
	keys := matrixKeys(r)
	for _, k := range keys {
		role, _, _ := strings.Cut(k, ".")
		short := k[strings.LastIndex(k, ".")+1:]
		if !strings.Contains(k, ".net.") {
			role, short = "", k
		}
		pg.Keys = append(pg.Keys, htmlKey{Short: short, Role: role, Full: k})
	}
	if r.Timeseries != nil {
		pg.Timeseries = r.Timeseries.Path
	}
	pg.Failed = FailedExpectations(r)
	for _, c := range r.Cells {
		anchor := fmt.Sprintf("cell-%d", c.Index+1)
		row := htmlRow{Num: c.Index + 1, Anchor: anchor, ID: c.ID, Status: c.Status, StatusClass: statusClass(c.Status), Expect: expectCol(c)}
		for _, k := range keys {
			v, ok := c.Matrix[k]
			if !ok {
				v = "–"
			}
			row.Knobs = append(row.Knobs, v)
		}
		if l := c.Load; l != nil {
			row.Conns = fmt.Sprintf("%d / %d", l.OK, l.Attempts)
			row.ConnsClass = loadClass(l)
			row.Fail = failures(l)
			row.P50, row.P99 = ms(l.ConnectMS.P50), ms(l.ConnectMS.P99)
		}
		if s := c.SYN; s != nil {
			row.SYNIn, row.Unans, row.UnansClass = num(s.In), num(s.Unanswered), nonzero(s.Unanswered)
		}
		if n := c.Nodes["server"]; n != nil {
			row.PAWS, row.PAWSClass = num(n.Summary["paws"]), nonzero(n.Summary["paws"])
			row.TWMax = num(int64(n.TimeWait.Max))
		}
		pg.Rows = append(pg.Rows, row)
		hc, err := htmlCellOf(c, anchor, ts[c.Index])
		if err != nil {
			return nil, fmt.Errorf("cell %s: %w", c.ID, err)
		}
		pg.Cells = append(pg.Cells, hc)
	}
	var b bytes.Buffer
	if err := pageTmpl.Execute(&b, pg); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// kernelFacts picks the detected facts a reader of the report needs.
func kernelFacts(kf any) []string {
	var f struct {
		TSOffsets    string   `json:"ts_offsets"`
		PAWSCounters []string `json:"paws_counters"`
		EBPF         string   `json:"ebpf"`
		Knobs        []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"knobs"`
	}
	b, err := json.Marshal(kf)
	if err != nil || json.Unmarshal(b, &f) != nil {
		return nil
	}
	var out []string
	if f.TSOffsets != "" {
		out = append(out, "timestamp offsets: "+f.TSOffsets)
	}
	if len(f.PAWSCounters) > 0 {
		out = append(out, "PAWS counters: "+strings.Join(f.PAWSCounters, ", "))
	}
	var missing []string
	for _, k := range f.Knobs {
		if k.State == "missing" {
			missing = append(missing, k.Name)
		}
	}
	if len(missing) > 0 {
		out = append(out, "knobs this kernel lacks: "+strings.Join(missing, ", "))
	}
	if f.EBPF != "" && f.EBPF != "ok" {
		out = append(out, "eBPF: "+f.EBPF)
	}
	return out
}

func htmlCellOf(c *result.Cell, anchor string, ss []*result.Series) (htmlCell, error) {
	hc := htmlCell{Num: c.Index + 1, Anchor: anchor, ID: c.ID, Status: c.Status, StatusClass: statusClass(c.Status),
		Reason: c.Reason, Notes: c.Notes, Expect: c.Expect, Ran: c.Load != nil}
	if len(c.KnobsActual) > 0 {
		var kv []string
		for _, k := range sortedKeys(c.KnobsActual) {
			kv = append(kv, k+"="+c.KnobsActual[k])
		}
		hc.Knobs = strings.Join(kv, "  ")
	}
	if l := c.Load; l != nil {
		hc.Figures = append(hc.Figures,
			htmlFigure{"connections", fmt.Sprintf("%d ok of %d", l.OK, l.Attempts)},
			htmlFigure{"failed", failures(l)},
			htmlFigure{"connect", connectText(l)},
			htmlFigure{"rate", fmt.Sprintf("%.0f conn/s over %.2f s", l.ConnPerS, l.Elapsed)})
	}
	if s := c.SYN; s != nil {
		vals := map[string]int64{"in": s.In, "synack_out": s.SynAckOut, "unanswered": s.Unanswered, "rst_in": s.RSTIn, "rst_out": s.RSTOut}
		for _, m := range synMeanings {
			if v := vals[m.key]; v != 0 || m.key == "in" {
				hc.SYN = append(hc.SYN, htmlCounter{Name: m.name, Meaning: m.meaning, Server: num(v)})
			}
		}
	}
	hc.Story, hc.Other = movedCounters(c)
	if !hc.Ran {
		return hc, nil
	}
	for _, ch := range cellCharts(c, ss) {
		h, err := ch.svg()
		if err != nil {
			return hc, err
		}
		hc.Plots = append(hc.Plots, h)
	}
	return hc, nil
}

func connectText(l *load.Result) string {
	if l.OK == 0 {
		return "no successful connect"
	}
	return fmt.Sprintf("p50 %s ms, p99 %s ms, max %s ms", ms(l.ConnectMS.P50), ms(l.ConnectMS.P99), ms(l.ConnectMS.Max))
}

// movedCounters lists the counters that moved in the server, the clients
// (sum) or the box: the story counters first, then the others.
func movedCounters(c *result.Cell) (story, other []htmlCounter) {
	nodes := []string{"server", "clients", "lvs"}
	moved := map[string]bool{}
	for _, n := range nodes {
		if nd := c.Nodes[n]; nd != nil {
			for k, v := range nd.Counters {
				if v != 0 {
					moved[k] = true
				}
			}
		}
	}
	val := func(node, k string) string {
		nd := c.Nodes[node]
		if nd == nil {
			return ""
		}
		v, ok := nd.Counters[k]
		if !ok {
			return "–"
		}
		return num(v)
	}
	row := func(k string) htmlCounter {
		return htmlCounter{Name: k, Meaning: CounterMeanings[k], Server: val("server", k), Clients: val("clients", k), LVS: val("lvs", k)}
	}
	for _, k := range storyCounters {
		if moved[k] {
			story = append(story, row(k))
			delete(moved, k)
		}
	}
	for _, k := range sortedKeys(moved) {
		other = append(other, row(k))
	}
	return story, other
}

func seriesMap(ss []*result.Series) map[string]*result.Series {
	m := map[string]*result.Series{}
	for _, s := range ss {
		m[s.Key()] = s
	}
	return m
}

// cellCharts are a cell's four plots, in PlotKinds order.
func cellCharts(c *result.Cell, ss []*result.Series) []*chart {
	m := seriesMap(ss)
	noTS := "no time series recorded for this cell (a run made before timeseries.csv existed, or the file is missing)"
	tw := &chart{kind: "timewait", title: "TIME_WAIT sockets", xLabel: "seconds since the load started", yLabel: "sockets",
		intY: true, legend: true, xMin0: true, emptyMessage: noTS}
	tw.lines = append(tw.lines, seriesLine(m["time_wait@server"], "server", colServer, false),
		seriesLine(m["time_wait@clients"], "clients (sum)", colClients, false))
	if s := m["time_wait@lvs"]; s != nil && slices.ContainsFunc(s.V, func(v int64) bool { return v != 0 }) {
		tw.lines = append(tw.lines, seriesLine(s, "lvs", colLVS, false))
	}
	for i := range tw.lines {
		tw.lines[i].step = true // a gauge read every 100 ms: held until the next reading
	}
	if n := c.Nodes["server"]; n != nil {
		tw.caption = fmt.Sprintf("max on the server %d, at the end %d", n.TimeWait.Max, n.TimeWait.Final)
		if cl := c.Nodes["clients"]; cl != nil {
			tw.caption += fmt.Sprintf("; on the clients max %d, at the end %d", cl.TimeWait.Max, cl.TimeWait.Final)
		}
	}
	out := &chart{kind: "outcomes", title: "Connections (cumulative)", xLabel: "seconds since the load started", yLabel: "connections",
		intY: true, legend: true, xMin0: true, emptyMessage: noTS}
	out.lines = append(out.lines, seriesLine(m["ok@clients"], "succeeded", colOK, false),
		seriesLine(m["failed@clients"], "failed", colFailed, false))
	if l := c.Load; l != nil {
		out.caption = fmt.Sprintf("%d of %d succeeded; failed: %s", l.OK, l.Attempts, failures(l))
	}
	// The SYNs the server left unanswered (SYNs in minus SYN-ACKs out), not
	// the two totals: at thousands of connections per second the totals
	// hide a few dozen rejects.
	srv := &chart{kind: "server", title: "Server: SYNs left unanswered, PAWS rejects, RSTs in (cumulative)", xLabel: "seconds since the load started", yLabel: "packets",
		intY: true, legend: true, xMin0: true, emptyMessage: noTS}
	unans := line{name: "SYNs unanswered (in − SYN-ACKs out)", color: colServer}
	if in, out := m["syn_in@server"], m["synack_out@server"]; in != nil && out != nil && len(in.T) == len(out.T) {
		for i := range in.T {
			unans.xs = append(unans.xs, float64(in.T[i])/1000)
			unans.ys = append(unans.ys, float64(max(0, in.V[i]-out.V[i])))
		}
	}
	srv.lines = append(srv.lines, unans,
		seriesLine(m["rst_in@server"], "RSTs in", colRST, false),
		seriesLine(m["paws@server"], "PAWS rejects", colFailed, true))
	srv.lines[0].wide = true
	srv.lines[1].dotted = true // often equal to the others: wide, dotted and dashed keep all three visible
	if s := c.SYN; s != nil {
		srv.caption = fmt.Sprintf("%d SYNs in, %d SYN-ACKs out: %d unanswered", s.In, s.SynAckOut, s.Unanswered)
		if n := c.Nodes["server"]; n != nil {
			srv.caption += fmt.Sprintf("; %d PAWS rejects", n.Summary["paws"])
		}
	}
	cdf := &chart{kind: "cdf", title: "Connect latency (successful connects)", xLabel: "connect time, ms (log scale)", yLabel: "fraction of connects ≤ x",
		logX: true, yMax1: true, emptyMessage: "no successful connect (or a run made before the distribution was recorded)"}
	if l := c.Load; l != nil && len(l.ConnectCDF) > 0 {
		cl := line{name: "CDF", color: colServer, step: true}
		// Start the steps at 0 left of the fastest connect.
		cl.xs = append(cl.xs, l.ConnectCDF[0][1])
		cl.ys = append(cl.ys, 0)
		for _, p := range l.ConnectCDF {
			cl.xs = append(cl.xs, max(p[1], 0.001))
			cl.ys = append(cl.ys, p[0])
		}
		cdf.lines = []line{cl}
		cdf.caption = fmt.Sprintf("%d connects: p50 %s ms, p90 %s ms, p99 %s ms, max %s ms", l.OK, ms(l.ConnectMS.P50), ms(l.ConnectMS.P90), ms(l.ConnectMS.P99), ms(l.ConnectMS.Max))
	}
	return []*chart{tw, out, srv, cdf}
}

func seriesLine(s *result.Series, name string, c color.Color, dashed bool) line {
	l := line{name: name, color: c, dashed: dashed}
	if s == nil {
		return l
	}
	for i := range s.T {
		l.xs = append(l.xs, float64(s.T[i])/1000)
		l.ys = append(l.ys, float64(s.V[i]))
	}
	return l
}

// WriteHTML writes report.html into dir from run.json's document and the
// folder's timeseries.csv (if any).
func WriteHTML(dir string, r *result.Run) error {
	name := result.TimeseriesName
	if r.Timeseries != nil && r.Timeseries.Path != "" {
		name = r.Timeseries.Path
	}
	ts, err := result.ReadTimeseries(filepath.Join(dir, filepath.Clean("/" + name)[1:]))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	b, err := HTML(r, ts)
	if err != nil {
		return fmt.Errorf("%s: %w", ReportName, err)
	}
	return result.WriteFileAtomic(filepath.Join(dir, ReportName), b)
}
