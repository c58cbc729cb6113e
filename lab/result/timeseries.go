package result

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	// SYN-ACKs the server sent again, TcpExt.TCPSynRetrans (node: server)
	SeriesSYNACKRetrans = "synack_retrans"
	SeriesRSTIn         = "rst_in"  // RSTs that reached the server (node: server)
	SeriesRSTOut        = "rst_out" // RSTs the server sent (node: server)
	SeriesPAWS          = "paws"    // PAWS rejects, the PAWS* counters summed (node: server)
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
// order. A torn last line (a run killed while appending) is ignored; any
// other line that cannot be read is an error.
func ReadTimeseries(path string) (map[int][]*Series, error) {
	f, _, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseTimeseries(bufio.NewReader(f))
}

// ParseTimeseries parses the CSV text of timeseries.csv, strictly as
// ReadTimeseries does.
func ParseTimeseries(r io.Reader) (map[int][]*Series, error) {
	tr, err := parseTimeseries(r)
	if err != nil {
		return nil, err
	}
	if tr.nbad > 0 {
		return nil, tr.bad[0]
	}
	if tr.stopped != "" {
		return nil, errors.New("timeseries: " + tr.stopped)
	}
	return tr.cells, nil
}

// ReadTimeseriesTolerant reads a timeseries.csv that may come from
// anywhere: lines that cannot be read are left out and said so in
// problems, and reading stops at MaxTimeseriesBytes, MaxTimeseriesRows or
// MaxTimeseriesSeries. The error is for a file that holds no time series
// at all (missing, not a regular file, no header).
func ReadTimeseriesTolerant(path string) (map[int][]*Series, []string, error) {
	return ReadTimeseriesTolerantIn(filepath.Dir(path), filepath.Base(path))
}

// ReadTimeseriesTolerantIn is ReadTimeseriesTolerant of the file name
// (which may have subfolders) in the run folder dir, never outside it, even
// through a symbolic link.
func ReadTimeseriesTolerantIn(dir, name string) (map[int][]*Series, []string, error) {
	f, size, err := openRegularIn(dir, name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	ts, problems, err := ParseTimeseriesTolerant(io.LimitReader(f, MaxTimeseriesBytes))
	if err == nil && size > MaxTimeseriesBytes {
		problems = append(problems, fmt.Sprintf("read only the first %d of %d bytes, the most a run writes", MaxTimeseriesBytes, size))
	}
	return ts, problems, err
}

// ParseTimeseriesTolerant parses timeseries.csv's text like
// ReadTimeseriesTolerant.
func ParseTimeseriesTolerant(r io.Reader) (map[int][]*Series, []string, error) {
	tr, err := parseTimeseries(r)
	if err != nil {
		return nil, nil, err
	}
	var problems []string
	if tr.nbad > 0 {
		var first []string
		for _, e := range tr.bad {
			first = append(first, strings.TrimPrefix(e.Error(), "timeseries: "))
		}
		more := ""
		if tr.nbad > len(tr.bad) {
			more = "; …"
		}
		problems = append(problems, fmt.Sprintf("%d lines could not be read and were left out (%s%s)", tr.nbad, strings.Join(first, "; "), more))
	}
	if tr.stopped != "" {
		problems = append(problems, tr.stopped)
	}
	return tr.cells, problems, nil
}

type timeseriesRead struct {
	cells   map[int][]*Series
	nbad    int     // lines that could not be read, but for a torn last line
	bad     []error // the first few of them
	stopped string  // why reading stopped before the end
}

// maxTimeseriesLine bounds a line of timeseries.csv (twlab writes about 30
// bytes); a longer one is skipped as unreadable.
const maxTimeseriesLine = 64 << 10

// parseTimeseries reads timeseries.csv line by line. It splits on commas
// without CSV quoting: twlab's names never need quotes, and in a damaged
// file a stray quote would otherwise swallow every line after it.
func parseTimeseries(r io.Reader) (*timeseriesRead, error) {
	br := bufio.NewReaderSize(r, maxTimeseriesLine)
	var ioErr error // reading failed: the reader would fail again
	// lineNo is the file's line that next returned last: blank lines are
	// skipped, but they are lines of the file all the same.
	lineNo := 0
	// next returns the next non-empty line; eof says it was the last one
	// and had no newline (a torn line, if it does not parse).
	next := func() (fields []string, eof bool, err error) {
		for {
			lineNo++
			b, err := br.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				for errors.Is(err, bufio.ErrBufferFull) {
					_, err = br.ReadSlice('\n')
				}
				return nil, errors.Is(err, io.EOF), fmt.Errorf("longer than %d bytes", maxTimeseriesLine)
			}
			if err != nil && !errors.Is(err, io.EOF) {
				ioErr = err
				return nil, true, io.EOF
			}
			eof = errors.Is(err, io.EOF)
			line := strings.TrimRight(string(b), "\r\n")
			if line == "" {
				if eof {
					return nil, true, io.EOF
				}
				continue
			}
			fields = strings.Split(line, ",")
			for i, f := range fields {
				if len(f) >= 2 && f[0] == '"' && f[len(f)-1] == '"' {
					fields[i] = strings.ReplaceAll(f[1:len(f)-1], `""`, `"`)
				}
			}
			return fields, eof, nil
		}
	}
	head, _, err := next()
	if ioErr != nil {
		err = ioErr
	}
	if err != nil {
		return nil, fmt.Errorf("timeseries: header: %w", err)
	}
	col := map[string]int{}
	for i, h := range head {
		if _, dup := col[h]; !dup {
			col[h] = i
		}
	}
	for _, c := range TimeseriesColumns {
		if _, ok := col[c]; !ok {
			return nil, fmt.Errorf("timeseries: no column %q", c)
		}
	}
	width := len(head)
	tr := &timeseriesRead{cells: map[int][]*Series{}}
	idx := map[int]map[string]*Series{}
	rows, nseries, overSeries := 0, 0, 0
	bad := func(err error) {
		if tr.nbad++; len(tr.bad) < 3 {
			tr.bad = append(tr.bad, err)
		}
	}
	for {
		rec, eof, err := next()
		line := lineNo
		if errors.Is(err, io.EOF) {
			break
		}
		// A bad last line without a newline is a run killed while
		// appending: not a problem of the file.
		if err == nil && len(rec) != width {
			err = fmt.Errorf("%d fields, want %d", len(rec), width)
		}
		var cell int
		var t, v int64
		if err == nil {
			var e1, e2, e3 error
			cell, e1 = strconv.Atoi(rec[col["cell"]])
			t, e2 = strconv.ParseInt(rec[col["t_ms"]], 10, 64)
			v, e3 = strconv.ParseInt(rec[col["value"]], 10, 64)
			if err = errors.Join(e1, e2, e3); err != nil {
				err = errors.New(clip(strings.ReplaceAll(err.Error(), "\n", "; "), 120))
			}
		}
		if err != nil {
			if !eof {
				bad(fmt.Errorf("timeseries: line %d: %w", line, err))
			}
			if eof {
				break
			}
			continue
		}
		if rows++; rows > MaxTimeseriesRows {
			tr.stopped = fmt.Sprintf("read only the first %d rows, the most a run writes", MaxTimeseriesRows)
			break
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
			if nseries >= MaxTimeseriesSeries {
				overSeries++
				continue
			}
			nseries++
			s = &Series{Name: name, Node: node}
			m[k] = s
			tr.cells[cell] = append(tr.cells[cell], s)
		}
		s.T = append(s.T, t)
		s.V = append(s.V, v)
		if eof {
			break
		}
	}
	if ioErr != nil {
		tr.stopped = "stopped reading: " + ioErr.Error()
	}
	if overSeries > 0 && tr.stopped == "" {
		tr.stopped = fmt.Sprintf("%d rows of series beyond the first %d were left out (a run writes at most 19 per cell)", overSeries, MaxTimeseriesSeries)
	}
	return tr, nil
}
