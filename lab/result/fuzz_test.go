package result_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/result"
)

// inputBound is how long one fuzz input may take to read: far more than
// any needs, on a machine busy with other work.
const inputBound = 10 * time.Second

// watchdog ends the process when an input hangs: the fuzzing engine has no
// time limit of its own, but it keeps an input that crashes its worker.
func watchdog(n int) *time.Timer {
	return time.AfterFunc(inputBound, func() {
		panic(fmt.Sprintf("an input of %d bytes is still being read after %v", n, inputBound))
	})
}

// FuzzReadRun feeds run.json bytes, seeded from a real run and damaged
// copies of it, to the reader: it must never panic and always either refuse
// the file as not a run or return a run whose cells are all there to read
// and which encodes again.
func FuzzReadRun(f *testing.F) {
	real := readReal(f, "run.json")
	f.Add(real)
	f.Add(real[:len(real)/3])
	f.Add(bytes.ReplaceAll(real, []byte(`"index": 1`), []byte(`"index": -7`)))
	f.Add(bytes.ReplaceAll(real, []byte(`"connect_cdf": [`), []byte(`"connect_cdf": [[0, -1], [1e308, 0], "NaN", `)))
	f.Add(bytes.ReplaceAll(real, []byte(`"load": {`), []byte(`"load": null, "x": {`)))
	f.Add([]byte(`{"schema":"twlab.run/v1","cells":[null,{},{"index":9e99,"started":-1}],"started":"2026-13-45T99:99:99Z"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		defer watchdog(len(b)).Stop()
		start := time.Now()
		r, err := result.ParseRun("run.json", b)
		if took := time.Since(start); took > inputBound {
			t.Fatalf("%d bytes took %v", len(b), took)
		}
		if err != nil {
			var nr *result.NotRunError
			if !errors.As(err, &nr) || r != nil {
				t.Fatalf("error %T %v with run %v", err, err, r != nil)
			}
			return
		}
		if r.Schema != result.Schema || len(r.Cells) > result.MaxRunCells {
			t.Fatalf("schema %q, %d cells", r.Schema, len(r.Cells))
		}
		for i, c := range r.Cells {
			if c == nil {
				t.Fatalf("cell %d is nil", i)
			}
		}
		if _, err := json.Marshal(r); err != nil {
			t.Fatalf("the run read does not encode: %v", err)
		}
	})
}

// FuzzTimeseries feeds timeseries.csv text, seeded from a real run, to both
// readers: no panic, the tolerant one keeps within its bounds, and where
// the strict one reads the file both read the same.
func FuzzTimeseries(f *testing.F) {
	real := readReal(f, result.TimeseriesName)
	f.Add(real)
	f.Add(real[:len(real)/2])
	f.Add(bytes.Replace(real, []byte("\n0,100,"), []byte("\n0,\"100,"), 1))
	f.Add(bytes.ReplaceAll(real, []byte(",server,"), []byte(",server,-9223372036854775808,")))
	f.Add([]byte("cell,t_ms,series,node,value\n-1,-5,paws,server,99999999999999999999\n"))
	f.Add([]byte("\"cell\",\"t_ms\",series,node,value,extra\r\n0,0,a,b,1,\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		defer watchdog(len(b)).Stop()
		start := time.Now()
		ts, problems, err := result.ParseTimeseriesTolerant(bytes.NewReader(b))
		strict, serr := result.ParseTimeseries(bytes.NewReader(b))
		if took := time.Since(start); took > inputBound {
			t.Fatalf("%d bytes took %v", len(b), took)
		}
		if err != nil {
			if serr == nil {
				t.Fatalf("tolerant: %v; strict read it", err)
			}
			return
		}
		rows, series := 0, 0
		for _, ss := range ts {
			for _, s := range ss {
				if s == nil || len(s.T) != len(s.V) || len(s.T) == 0 {
					t.Fatalf("series %+v", s)
				}
				rows += len(s.T)
				series++
			}
		}
		if rows > result.MaxTimeseriesRows || series > result.MaxTimeseriesSeries {
			t.Fatalf("%d rows, %d series", rows, series)
		}
		if serr == nil && (len(problems) > 0 || !reflect.DeepEqual(strict, ts)) {
			t.Fatalf("strict read %d cells without a problem, tolerant %d with %q", len(strict), len(ts), problems)
		}
	})
}
