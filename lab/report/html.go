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
	"strconv"
	"strings"
	"time"

	"github.com/twlab/twlab/lab/result"
)

// ReportName is the HTML report of a run folder.
const ReportName = "report.html"

// Plot kinds, in the order each cell shows them (data-plot attributes).
var PlotKinds = []string{"timewait", "outcomes", "server", "cdf"}

// scenarioOf is the run's scenario as the report names it: a run.json
// without a name takes the scenario file's.
func scenarioOf(r *result.Run) result.ScenarioView {
	s := r.ScenarioView()
	if s.Name == "" {
		s.Name = strings.TrimSuffix(filepath.Base(r.ScenarioFile), ".yaml")
	}
	return s
}

// Bounds of one report, whatever run.json and timeseries.csv hold: what is
// beyond them says so in its place. twlab's largest runs stay within them.
const (
	// maxPlottedCells: a scenario has at most 256 cells.
	maxPlottedCells = 256
	// maxReportPoints: a run of 1 h of load draws about 500 000.
	maxReportPoints = 2_000_000
	// maxMatrixKeys: columns of the matrix (a scenario has a few axes).
	maxMatrixKeys = 64
)

// matrixKeys are the run's matrix keys: the scenario's axes in order, then
// keys only some cells have (include entries), sorted; at most
// maxMatrixKeys, and how many more there were.
func matrixKeys(r *result.Run) (keys []string, more int) {
	seen := map[string]bool{}
	for _, a := range scenarioOf(r).Matrix {
		if !seen[a.Key] {
			seen[a.Key] = true
			keys = append(keys, a.Key)
		}
	}
	var extra []string
	for _, c := range r.Cells {
		for k := range c.Matrix {
			if !seen[k] {
				seen[k] = true
				extra = append(extra, k)
			}
		}
	}
	slices.Sort(extra)
	keys = append(keys, extra...)
	if len(keys) > maxMatrixKeys {
		return keys[:maxMatrixKeys], len(keys) - maxMatrixKeys
	}
	return keys, 0
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

// htmlExpect is an expectation with its figures written for people
// (expectFigures).
type htmlExpect struct {
	Name, Expr, Value, Bound, Error string
	OK                              bool
}

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
	Expect                          []htmlExpect
	Plots                           []template.HTML
	Story, Other                    []htmlCounter
	SYN                             []htmlCounter
	Ran                             bool
	// NotListed says what of the cell's lists was cut short.
	NotListed []string
}

type htmlPage struct {
	Title, Scenario, ScenarioFile string
	Description                   []string
	Status, StatusClass           string
	Kernel, Started, Duration     string
	RunNote                       string // why the run failed or stopped, beyond its cells
	RunID, Host, Overrides, Only  string
	Facts                         []string
	Keys                          []htmlKey
	Rows                          []htmlRow
	Failed                        []string
	Problems                      []string
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
func loadClass(l *result.Load) string {
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
	b, _, err := renderHTML(r, ts, nil)
	return b, err
}

// pageState is what rendering one page has used up of its bounds.
type pageState struct {
	points, plotted int
	rows            *rows
	warnings        []string
}

// renderHTML is HTML for a run read from a folder: problems (run.json's
// warnings, a damaged timeseries.csv) are shown at the top of the page, and
// returned together with what the page itself could not show.
func renderHTML(r *result.Run, ts map[int][]*result.Series, problems []string) ([]byte, []string, error) {
	st := &pageState{rows: newRows(), warnings: slices.Concat(r.Warnings, problems)}
	sc := scenarioOf(r)
	pg := htmlPage{Title: "twlab: " + sc.Name, Scenario: sc.Name, ScenarioFile: r.ScenarioFile,
		Status: r.Status, StatusClass: statusClass(r.Status), Kernel: r.Kernel, RunID: r.RunID,
		Started: startedText(r.Started, "2006-01-02 15:04:05 UTC"), Only: r.Only, Tool: r.Tool}
	for _, p := range strings.Split(strings.TrimSpace(sc.Description), "\n\n") {
		if p = strings.TrimSpace(p); p != "" {
			pg.Description = append(pg.Description, p)
		}
	}
	if r.Finished != nil && !r.Started.IsZero() && !r.Finished.Before(r.Started) {
		pg.Duration = r.Finished.Sub(r.Started).Round(100 * time.Millisecond).String()
	}
	pg.RunNote = runNote(r)
	pg.Host = fmt.Sprintf("%s, %d CPUs", r.Host.Hostname, r.Host.CPUs)
	if r.Host.VM {
		// A twlab guest has no hostname of its own ("(none)"); the machine
		// is what matters there.
		pg.Host = fmt.Sprintf("VM guest, %d CPUs", r.Host.CPUs)
		if v := r.VM; v != nil && v.Machine != "" {
			pg.Host += fmt.Sprintf(" (%s, %s)", v.Accel, v.Machine)
		}
	}
	pg.Overrides = strings.Join(r.Overrides, " ")
	pg.Facts = kernelFacts(r.KernelFeatures)
	keys, moreKeys := matrixKeys(r)
	base := baseValues(r, keys)
	if moreKeys > 0 {
		st.warnings = append(st.warnings, fmt.Sprintf("run.json: the cells have %d matrix keys; the matrix shows the first %d", len(keys)+moreKeys, len(keys)))
	}
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
	pg.Failed = failedExpectations(r, st.rows)
	// A cell's rows in timeseries.csv are found by its index: an index
	// that two cells claim, or a negative one, finds nobody's for sure.
	claims := map[int]int{}
	for _, c := range r.Cells {
		claims[c.Index]++
	}
	var badIndex []string
	for pos, c := range r.Cells {
		cellNum, anchor := c.Index+1, fmt.Sprintf("cell-%d", c.Index+1)
		series, noTS := ts[c.Index], ""
		if c.Index < 0 || claims[c.Index] > 1 {
			cellNum, anchor = pos+1, fmt.Sprintf("cell-at-%d", pos+1)
			series = nil
			noTS = fmt.Sprintf("time series not shown: run.json gives this cell index %d, which %s, so its rows in timeseries.csv cannot be told apart", c.Index,
				map[bool]string{true: "is negative (or no index at all)", false: "another cell has too"}[c.Index < 0])
			if len(badIndex) < 5 {
				badIndex = append(badIndex, fmt.Sprintf("%q (index %d)", clip(c.ID, 60), c.Index))
			}
		}
		row := htmlRow{Num: cellNum, Anchor: anchor, ID: c.ID, Status: c.Status, StatusClass: statusClass(c.Status), Expect: expectCol(c)}
		for _, k := range keys {
			v, ok := c.Matrix[k]
			if !ok {
				if v, ok = base[k]; !ok {
					v = "–"
				}
			}
			row.Knobs = append(row.Knobs, v)
		}
		if l := c.Load; l != nil {
			row.Conns = fmt.Sprintf("%d / %d", l.OK, l.Attempts)
			row.ConnsClass = loadClass(l)
			row.Fail = failures(l)
			row.P50, row.P99 = latency(l, l.ConnectMS.P50), latency(l, l.ConnectMS.P99)
		}
		if s := c.SYN; s != nil {
			row.SYNIn, row.Unans, row.UnansClass = num(s.In), num(s.Unanswered), nonzero(s.Unanswered)
		}
		if n := c.Nodes["server"]; n != nil {
			row.PAWS, row.PAWSClass = num(n.Summary["paws"]), nonzero(n.Summary["paws"])
			row.TWMax = num(int64(n.TimeWait.Max))
		}
		pg.Rows = append(pg.Rows, row)
		pg.Cells = append(pg.Cells, htmlCellOf(c, cellNum, anchor, series, noTS, twCounterOf(r), st))
	}
	if len(badIndex) > 0 {
		st.warnings = append(st.warnings, "run.json: cells with an index that is negative or not their own, whose time series are not shown: "+strings.Join(badIndex, ", "))
	}
	st.warnings = append(st.warnings, st.rows.warning()...)
	if st.plotted > maxPlottedCells {
		st.warnings = append(st.warnings, fmt.Sprintf("run.json: %d cells ran; plots are drawn for the first %d (a scenario has at most %d cells)", st.plotted, maxPlottedCells, maxPlottedCells))
	}
	pg.Problems = st.warnings
	var b bytes.Buffer
	if err := pageTmpl.Execute(&b, pg); err != nil {
		return nil, nil, err
	}
	return b.Bytes(), st.warnings, nil
}

// kernelFacts picks the detected facts a reader of the report needs.
func kernelFacts(f *result.KernelFeatures) []string {
	if f == nil {
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
		if k.State == result.KnobMissing {
			missing = append(missing, k.Name)
		}
	}
	if len(missing) > 0 {
		out = append(out, "knobs this kernel lacks: "+strings.Join(missing, ", "))
	}
	if f.EBPF != "" && f.EBPF != "ok" {
		out = append(out, "eBPF: "+f.EBPF)
	}
	if w := ClockWarning(f); w != "" {
		out = append(out, w)
	}
	return out
}

// ClockWarning says, for a run on a kernel that kept time with jiffies,
// what that does to its figures; "" otherwise.
func ClockWarning(f *result.KernelFeatures) string {
	if f == nil || !result.CoarseClock(f.Clocksource) {
		return ""
	}
	return "clock: " + f.Clocksource + " (the kernel could not calibrate a finer one): every time this run measured is a multiple of the kernel's tick, so connect latencies below it read as 0"
}

func htmlCellOf(c *result.Cell, cellNum int, anchor string, ss []*result.Series, noTS, twCounter string, st *pageState) htmlCell {
	hc := htmlCell{Num: cellNum, Anchor: anchor, ID: c.ID, Status: c.Status, StatusClass: statusClass(c.Status),
		Reason: c.Reason, Ran: c.Load != nil}
	// Every list of the cell gets what is left of the page's rows.
	list := func(what string, n int) int {
		k := st.rows.take(n)
		if k < n {
			hc.NotListed = append(hc.NotListed, fmt.Sprintf("%s: %s", what, notListed(n-k)))
		}
		return k
	}
	hc.Notes = c.Notes[:list("notes", len(c.Notes))]
	for _, e := range c.Expect[:list("expectations", len(c.Expect))] {
		m, w := expectFigures(e)
		hc.Expect = append(hc.Expect, htmlExpect{Name: e.Name, Expr: e.Expr, OK: e.OK, Error: e.Error, Value: m, Bound: w})
	}
	if len(c.KnobsActual) > 0 {
		var kv []string
		keys := sortedKeys(c.KnobsActual)
		for _, k := range keys[:list("knobs", len(keys))] {
			kv = append(kv, k+"="+c.KnobsActual[k])
		}
		hc.Knobs = strings.Join(kv, "  ")
	}
	if l := c.Load; l != nil {
		hc.Figures = append(hc.Figures,
			htmlFigure{"connections", fmt.Sprintf("%d ok of %d", l.OK, l.Attempts)},
			htmlFigure{"failed", failures(l)},
			htmlFigure{"connect", connectText(l)},
			htmlFigure{"rate", fmt.Sprintf("%s conn/s over %.2f s", rate(l.ConnPerS), l.Elapsed)})
	}
	if s := c.SYN; s != nil {
		vals := map[string]int64{"in": s.In, "synack_out": s.SynAckOut, "synack_retrans": s.SynAckRetrans, "unanswered": s.Unanswered, "rst_in": s.RSTIn, "rst_out": s.RSTOut}
		for _, m := range synMeanings {
			if v := vals[m.key]; v != 0 || m.key == "in" {
				hc.SYN = append(hc.SYN, htmlCounter{Name: m.name, Meaning: m.meaning, Server: num(v)})
			}
		}
	}
	hc.Story, hc.Other = movedCounters(c, twCounter)
	hc.Story = hc.Story[:list("counters", len(hc.Story))]
	hc.Other = hc.Other[:list("other counters", len(hc.Other))]
	if !hc.Ran {
		return hc
	}
	st.plotted++
	for _, ch := range cellCharts(c, ss, noTS) {
		switch n := ch.points(); {
		case st.plotted > maxPlottedCells:
			hc.Plots = append(hc.Plots, ch.note(fmt.Sprintf("not drawn: this report draws the plots of the first %d cells that ran (a scenario has at most %d)", maxPlottedCells, maxPlottedCells)))
		case st.points+n > maxReportPoints:
			hc.Plots = append(hc.Plots, ch.note(fmt.Sprintf("not drawn: %d points, and this report already draws %d of the %d it draws at most", n, st.points, maxReportPoints)))
		default:
			st.points += n
			hc.Plots = append(hc.Plots, ch.svg())
		}
	}
	return hc
}

func connectText(l *result.Load) string {
	if l.OK == 0 {
		return "no connection completed (a handshake that got no answer after it is a failure, and has no latency here)"
	}
	t := fmt.Sprintf("p50 %s ms, p99 %s ms, max %s ms", ms(l.ConnectMS.P50), ms(l.ConnectMS.P99), ms(l.ConnectMS.Max))
	if l.OK < 100 {
		t += fmt.Sprintf(" (of %d connections: below 100, p99 is the slowest)", l.OK)
	}
	return t
}

// movedCounters lists the counters that moved in the server, the clients
// (sum) or the box: the story counters first, then the others.
func movedCounters(c *result.Cell, twCounter string) (story, other []htmlCounter) {
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
		return htmlCounter{Name: k, Meaning: counterMeaning(k, twCounter), Server: val("server", k), Clients: val("clients", k), LVS: val("lvs", k)}
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

// cellCharts are a cell's four plots, in PlotKinds order. noTS says why
// the time plots are empty when the cell has no series ("": none recorded).
func cellCharts(c *result.Cell, ss []*result.Series, noTS string) []*chart {
	m := seriesMap(ss)
	if noTS == "" {
		noTS = "no time series recorded for this cell (a run made before timeseries.csv existed, or the file is missing)"
	}
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
		if s.SynAckRetrans > 0 {
			srv.caption = fmt.Sprintf("%d SYNs in, %d SYN-ACKs out (%d of them sent again, answering no new SYN if on the server's timer): %d unanswered", s.In, s.SynAckOut, s.SynAckRetrans, s.Unanswered)
		}
		if n := c.Nodes["server"]; n != nil {
			srv.caption += fmt.Sprintf("; %d PAWS rejects", n.Summary["paws"])
		}
	}
	cdf := &chart{kind: "cdf", title: "Connect latency (successful connects)", xLabel: "connect time, ms (log scale)", yLabel: "fraction of connects ≤ x",
		logX: true, yMax1: true, emptyMessage: "no connection completed (or a run made before the distribution was recorded)"}
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
	ts, problems := readSeries(dir, r)
	b, _, err := renderHTML(r, ts, problems)
	if err != nil {
		return fmt.Errorf("%s: %w", ReportName, err)
	}
	return result.WriteFileAtomic(filepath.Join(dir, ReportName), b)
}

// readSeries reads the folder's timeseries.csv for the plots. The file may
// be missing (a run made before it existed) or damaged: problems says what
// could not be used, and the plots say so in their place.
func readSeries(dir string, r *result.Run) (map[int][]*result.Series, []string) {
	name := result.TimeseriesName
	if r.Timeseries != nil && r.Timeseries.Path != "" {
		name = r.Timeseries.Path
	}
	// run.json names the file; it cannot name one outside the folder.
	rel := filepath.Clean("/" + name)[1:]
	ts, problems, err := result.ReadTimeseriesTolerantIn(dir, rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, []string{fmt.Sprintf("%s cannot be read, so the time plots are empty: %v", clip(rel, 100), err)}
	}
	for i, p := range problems {
		problems[i] = clip(rel, 100) + ": " + p
	}
	return ts, problems
}

// clip shortens what a run folder says before it is quoted back.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

// baseValues are the scenario's own values (run.json's scenario: defaults
// and --set, before the matrix) of keys, for the cells whose matrix does
// not set them: an include's bind_port=0 made a column in which nat-paws'
// other cells showed "–", though they bound port 50000.
func baseValues(r *result.Run, keys []string) map[string]string {
	out := map[string]string{}
	var sc map[string]any
	if json.Unmarshal(r.Scenario, &sc) != nil {
		return out
	}
	for _, k := range keys {
		path := strings.Split(k, ".")
		if role, rest, _ := strings.Cut(k, "."); strings.HasPrefix(rest, "net.") {
			path = []string{"sysctl", role, rest}
		}
		var v any = sc
		for _, seg := range path {
			m, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = m[seg]
		}
		switch x := v.(type) {
		case string:
			// The scenario is kept raw, past the reader's checks of
			// run.json's strings, and the value repeats in every row.
			out[k] = clip(result.Printable(x), result.MaxRunString)
		case float64:
			out[k] = strconv.FormatFloat(x, 'f', -1, 64)
		case bool:
			out[k] = strconv.FormatBool(x)
		}
	}
	return out
}
