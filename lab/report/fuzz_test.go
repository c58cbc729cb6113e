package report

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/twlab/twlab/lab/result"
)

// realRun is a trimmed run folder of nat-paws as twlab wrote it.
const realRun = "../../testdata/nat-paws-run"

// inputBound is how long one fuzz input may take: far more than any needs,
// on a machine busy with other work.
const inputBound = 20 * time.Second

// watchdog ends the process when an input hangs: the fuzzing engine has no
// time limit of its own, but it keeps an input that crashes its worker.
func watchdog(what string) *time.Timer {
	return time.AfterFunc(inputBound, func() {
		panic(fmt.Sprintf("%s: still rendering after %v", what, inputBound))
	})
}

func readReal(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(realRun, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzReport feeds run.json and timeseries.csv bytes, seeded from a real
// run folder, through the readers to every renderer of `twlab report` and
// `twlab compare`: none may panic (the plotting library's panics included)
// or hang, and the HTML must parse.
func FuzzReport(f *testing.F) {
	strictPlots = true
	f.Cleanup(func() { strictPlots = false })
	runJSON, ts := readReal(f, "run.json"), readReal(f, result.TimeseriesName)
	baseline, err := result.ParseRun("run.json", runJSON)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(runJSON, ts)
	f.Add(bytes.ReplaceAll(runJSON, []byte(`"connect_cdf": [`), []byte(`"connect_cdf": [[0.5, 1e308], [1, 1e308]], "x": [`)), ts)
	f.Add(bytes.ReplaceAll(runJSON, []byte(`"connect_cdf": [`), []byte(`"connect_cdf": [[-1, 0], [0, -5], [2, 5e-324]], "x": [`)), ts)
	f.Add(bytes.ReplaceAll(runJSON, []byte(`"index": 1,`), []byte(`"index": 0,`)), ts)
	f.Add(runJSON, bytes.ReplaceAll(ts, []byte("\n0,"), []byte("\n0,-9000000000000000")))
	f.Add(runJSON, bytes.ReplaceAll(ts, []byte(",server,"), []byte(",server,9223372036854775807")))
	f.Add([]byte(`{"schema":"twlab.run/v1","cells":[{"index":0,"load":{"ok":1,"connect_cdf":[[1,0]]}}]}`),
		[]byte("cell,t_ms,series,node,value\n0,5,time_wait,server,3\n0,5,time_wait,server,-3\n"))
	f.Fuzz(func(t *testing.T, runJSON, ts []byte) {
		defer watchdog(fmt.Sprintf("run.json of %d bytes, timeseries.csv of %d", len(runJSON), len(ts))).Stop()
		r, err := result.ParseRun("run.json", runJSON)
		if err != nil {
			return
		}
		series, problems, err := result.ParseTimeseriesTolerant(bytes.NewReader(ts))
		if err != nil {
			problems = append(problems, err.Error())
		}
		page, _, err := renderHTML(r, series, problems)
		if err != nil {
			t.Fatalf("report.html: %v", err)
		}
		if _, err := html.Parse(bytes.NewReader(page)); err != nil {
			t.Fatalf("report.html does not parse: %v", err)
		}
		if _, _, err := csvOf(r); err != nil {
			t.Fatalf("cells.csv: %v", err)
		}
		markdown(r, problems)
		Table(r)
		FailedExpectations(r)
		StatusLine(r)
		if _, err := JUnit([]*result.Run{r}); err != nil {
			t.Fatalf("junit: %v", err)
		}
		for _, runs := range [][]CompareRun{{{Dir: "a", Run: r}}, {{Dir: "a", Run: baseline}, {Dir: "b", Run: r}}, {{Dir: "b", Run: r}, {Dir: "a", Run: baseline}}} {
			cmp := Compare(runs)
			cmp.Text()
			cmp.Markdown()
			if _, err := cmp.HTML(); err != nil {
				t.Fatalf("compare HTML: %v", err)
			}
			if _, err := json.Marshal(cmp); err != nil {
				t.Fatalf("compare JSON: %v", err)
			}
		}
	})
}

// FuzzChart draws charts of arbitrary points on every kind of axis: the
// plotting library must never panic, whatever the values.
func FuzzChart(f *testing.F) {
	pts := func(v ...float64) []byte {
		b := make([]byte, 0, 8*len(v))
		for _, x := range v {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
		}
		return b
	}
	f.Add(uint8(0), pts(0, 0, 0.1, 1, 0.2, 2))
	f.Add(uint8(1), pts(1e308, 0.5, 1e308, 1))
	f.Add(uint8(1), pts(0, 0, -1, 0.5, math.SmallestNonzeroFloat64, 1))
	f.Add(uint8(2), pts(-9e15, 1, -9e15+1, 2))
	f.Add(uint8(3), pts(9e15, 9e18, 9e15, -9e18, math.NaN(), math.Inf(1)))
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		defer watchdog(fmt.Sprintf("chart of %d bytes", len(b))).Stop()
		var xs, ys []float64
		for i := 0; i+16 <= len(b); i += 16 {
			xs = append(xs, math.Float64frombits(binary.LittleEndian.Uint64(b[i:])))
			ys = append(ys, math.Float64frombits(binary.LittleEndian.Uint64(b[i+8:])))
		}
		c := &chart{kind: "fuzz", title: "fuzz", lines: []line{{name: "a", xs: xs, ys: ys, step: kind&4 != 0}}}
		switch kind % 4 {
		case 0:
			c.intY, c.xMin0, c.legend = true, true, true
		case 1:
			c.logX, c.yMax1 = true, true
		case 2:
			c.intY, c.xMin0 = true, true
			c.lines = append(c.lines, line{name: "b", xs: ys, ys: xs, dashed: true})
		case 3:
			c.legend = true
		}
		if _, err := c.render(); err != nil && len(xs) > 0 && len(xs) <= maxLinePoints {
			for i := range xs {
				if finite(xs[i]) && finite(ys[i]) && kind%4 != 3 {
					t.Fatalf("finite points and no plot: %v", err)
				}
			}
		}
	})
}
