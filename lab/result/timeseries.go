package result

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// TimeseriesName is the time-series file of a run folder.
const TimeseriesName = "timeseries.csv"

// TimeseriesColumns is the header of timeseries.csv (long format: one row
// per reading).
var TimeseriesColumns = []string{"cell", "t_ms", "series", "node", "value"}

// Series names in timeseries.csv. Every value is a gauge (time_wait) or a
// count since the start of the cell's load (all others).
const (
	SeriesTimeWait  = "time_wait"  // TIME_WAIT sockets now (node: c1…, lvs, server, clients = sum)
	SeriesAttempts  = "attempts"   // connections finished (node: clients)
	SeriesOK        = "ok"         // connections that succeeded (node: clients)
	SeriesFailed    = "failed"     // connections that failed (node: clients)
	SeriesSYNIn     = "syn_in"     // SYNs that reached the server (node: server)
	SeriesSYNACKOut = "synack_out" // SYN-ACKs the server sent (node: server)
	SeriesRSTIn     = "rst_in"     // RSTs that reached the server (node: server)
	SeriesRSTOut    = "rst_out"    // RSTs the server sent (node: server)
	SeriesPAWS      = "paws"       // PAWS rejects, the PAWS* counters summed (node: server)
)

// TimeseriesFile describes timeseries.csv in run.json.
type TimeseriesFile struct {
	Path       string   `json:"path"`        // relative to the run folder
	Format     string   `json:"format"`      // "long": one row per reading
	Columns    []string `json:"columns"`     // cell (= cells[].index), t_ms, series, node, value
	IntervalMS int      `json:"interval_ms"` // the sampling interval asked for
	// MaxPoints bounds every series of a cell (the cell's duration at the
	// interval, plus a margin); per-client TIME_WAIT series are written only
	// for up to MaxClientSeries clients (the "clients" sum always).
	MaxPoints       int `json:"max_points_per_series"`
	MaxClientSeries int `json:"max_client_series"`
}

// CellTimeseries says what a cell contributed to timeseries.csv.
type CellTimeseries struct {
	Samples int      `json:"samples"` // readings per series (the longest)
	Rows    int      `json:"rows"`    // rows written for the cell
	RateHz  float64  `json:"rate_hz"` // achieved: (samples-1) / span of the readings
	Series  []string `json:"series"`  // "name@node" present, in file order
}

// Series is one figure of one node over a cell.
type Series struct {
	Name, Node string
	T          []int64 // ms since the cell's load started
	V          []int64
}

// Key is "name@node".
func (s *Series) Key() string { return s.Name + "@" + s.Node }

// CreateTimeseries writes an empty timeseries.csv (the header), replacing
// what an earlier run left in the same folder.
func CreateTimeseries(path string) error {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write(TimeseriesColumns)
	w.Flush()
	return WriteFileAtomic(path, b.Bytes())
}

// AppendTimeseries appends a cell's series in one write and returns the
// rows written.
func AppendTimeseries(path string, cell int, ss []*Series) (int, error) {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	rows := 0
	ci := strconv.Itoa(cell)
	for _, s := range ss {
		for i := range s.T {
			w.Write([]string{ci, strconv.FormatInt(s.T[i], 10), s.Name, s.Node, strconv.FormatInt(s.V[i], 10)})
			rows++
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return 0, fmt.Errorf("append %s: %w", path, err)
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return 0, fmt.Errorf("append %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, fmt.Errorf("sync %s: %w", path, err)
	}
	return rows, f.Close()
}

// ReadTimeseries reads timeseries.csv into series per cell index, in file
// order. A torn last line (a run killed while appending) is ignored.
func ReadTimeseries(path string) (map[int][]*Series, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseTimeseries(bufio.NewReader(f))
}

// ParseTimeseries parses the CSV text of timeseries.csv.
func ParseTimeseries(r io.Reader) (map[int][]*Series, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("timeseries: header: %w", err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[h] = i
	}
	for _, c := range TimeseriesColumns {
		if _, ok := col[c]; !ok {
			return nil, fmt.Errorf("timeseries: no column %q", c)
		}
	}
	out := map[int][]*Series{}
	idx := map[int]map[string]*Series{}
	var bad error
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if bad != nil {
			return nil, bad // a bad line that was not the last one
		}
		if err != nil {
			bad = fmt.Errorf("timeseries: line %d: %w", line, err)
			continue
		}
		if len(rec) != len(head) {
			bad = fmt.Errorf("timeseries: line %d: %d fields, want %d", line, len(rec), len(head))
			continue
		}
		cell, e1 := strconv.Atoi(rec[col["cell"]])
		t, e2 := strconv.ParseInt(rec[col["t_ms"]], 10, 64)
		v, e3 := strconv.ParseInt(rec[col["value"]], 10, 64)
		if err := errors.Join(e1, e2, e3); err != nil {
			bad = fmt.Errorf("timeseries: line %d: %w", line, err)
			continue
		}
		name, node := rec[col["series"]], rec[col["node"]]
		m := idx[cell]
		if m == nil {
			m = map[string]*Series{}
			idx[cell] = m
		}
		k := name + "@" + node
		s := m[k]
		if s == nil {
			s = &Series{Name: name, Node: node}
			m[k] = s
			out[cell] = append(out[cell], s)
		}
		s.T = append(s.T, t)
		s.V = append(s.V, v)
	}
	return out, nil
}
