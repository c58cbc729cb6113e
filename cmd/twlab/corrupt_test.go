package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// realRun is a trimmed run folder of nat-paws as twlab wrote it.
const realRun = "../../testdata/nat-paws-run"

// caseBound is how long one report or compare of a damaged folder may
// take: they take milliseconds; this is for a machine busy with other work.
const caseBound = 30 * time.Second

// TestCorruptedRunFolders makes hundreds of damaged copies of a real run
// folder — truncated, bytes flipped, values replaced by huge, negative,
// NaN-like or wrongly typed ones, keys removed, cells duplicated or given
// absurd indexes, huge arrays, odd time series, missing or unreadable
// files — and runs `twlab report` and `twlab compare` on each, in process.
// None may panic or hang; report must exit 0 with a report written, or 2
// for a folder that is not a run; compare must agree with it.
func TestCorruptedRunFolders(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 60
	}
	runJSON, err := os.ReadFile(filepath.Join(realRun, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := os.ReadFile(filepath.Join(realRun, "timeseries.csv"))
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	good := filepath.Join(base, "good")
	writeFolder(t, good, runJSON, ts)
	rng := rand.New(rand.NewPCG(17, uint64(n)))
	codes := map[string]map[int]int{}
	var slowest time.Duration
	var slowestWhat string
	begin := time.Now()
	for i := 0; i < n; i++ {
		v := corrupt(t, rng, i, runJSON, ts)
		dir := filepath.Join(base, fmt.Sprintf("v%03d", i))
		writeFolder(t, dir, v.runJSON, v.ts)
		if v.prepare != nil {
			v.prepare(t, dir)
		}
		what := fmt.Sprintf("variant %d (%s)", i, v.what)
		start := time.Now()
		code, _, errs := runBounded(t, what+": report", "report", dir)
		if took := time.Since(start); took > slowest {
			slowest, slowestWhat = took, what
		}
		if codes[v.kind] == nil {
			codes[v.kind] = map[int]int{}
		}
		codes[v.kind][code]++
		switch code {
		case exitOK:
			checkReport(t, what, dir)
		case exitUsage:
			if v.mustRead {
				t.Errorf("%s: report exit 2, but run.json is still a run: %s", what, errs)
			}
		default:
			t.Errorf("%s: report exit %d, want 0 or 2: %s", what, code, errs)
		}
		ccode, _, cerrs := runBounded(t, what+": compare", "compare", good, dir)
		if ccode != code {
			t.Errorf("%s: compare exit %d, report %d: %s", what, ccode, code, cerrs)
		}
		hcode, _, herrs := runBounded(t, what+": compare --json --html", "compare", "--json", "--html", filepath.Join(dir, "compare.html"), dir, good)
		if hcode != code {
			t.Errorf("%s: compare --json --html exit %d, report %d: %s", what, hcode, code, herrs)
		}
		if t.Failed() {
			break
		}
	}
	var kinds []string
	for k := range codes {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var summary []string
	for _, k := range kinds {
		summary = append(summary, fmt.Sprintf("%s %v", k, codes[k]))
	}
	t.Logf("%d damaged folders in %v, slowest report %v (%s); exit codes by kind: %s",
		n, time.Since(begin).Round(time.Millisecond), slowest.Round(time.Millisecond), slowestWhat, strings.Join(summary, ", "))
}

func writeFolder(t *testing.T, dir string, runJSON, ts []byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if runJSON != nil {
		if err := os.WriteFile(filepath.Join(dir, "run.json"), runJSON, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if ts != nil {
		if err := os.WriteFile(filepath.Join(dir, "timeseries.csv"), ts, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// runBounded runs twlab in process with a time bound and turns a panic
// into a test failure with its stack.
func runBounded(t *testing.T, what string, args ...string) (int, string, string) {
	t.Helper()
	type res struct {
		code      int
		out, errs string
		panicked  string
	}
	done := make(chan res, 1)
	go func() {
		var out, errb bytes.Buffer
		defer func() {
			if p := recover(); p != nil {
				done <- res{code: -1, panicked: fmt.Sprintf("%v\n%s", p, debug.Stack())}
			}
		}()
		code := run(args, &out, &errb)
		done <- res{code: code, out: out.String(), errs: errb.String()}
	}()
	select {
	case r := <-done:
		if r.panicked != "" {
			t.Fatalf("%s: panic: %s", what, r.panicked)
		}
		return r.code, r.out, r.errs
	case <-time.After(caseBound):
		t.Fatalf("%s: still running after %v", what, caseBound)
	}
	return 0, "", ""
}

// checkReport: the three files are there and the page parses.
func checkReport(t *testing.T, what, dir string) {
	t.Helper()
	for _, f := range []string{"cells.csv", "summary.md"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: exit 0 but %v", what, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Errorf("%s: exit 0 but %v", what, err)
		return
	}
	if _, err := html.Parse(bytes.NewReader(b)); err != nil || !bytes.Contains(b, []byte("</html>")) {
		t.Errorf("%s: report.html does not parse: %v", what, err)
	}
}

// variant is one damaged copy of the run folder.
type variant struct {
	kind, what  string
	runJSON, ts []byte
	// mustRead: run.json is still a twlab run document (schema intact,
	// valid JSON): report must write a report.
	mustRead bool
	prepare  func(t *testing.T, dir string) // after the files are written
}

// odd values put in place of a figure, a name or a whole object; raw ones
// are JSON text.
var oddValues = []any{
	0, -1, -1e308, 1e308, int64(9223372036854775807), int64(-9223372036854775808), 1.5, 5e-324,
	"NaN", "Infinity", "-Inf", "", "x", "<script>alert(1)</script>", true, nil,
	[]any{}, map[string]any{}, []any{nil, "a", -1}, map[string]any{"a": []any{1}},
	rawJSON("1e400"), rawJSON("-1e400"), rawJSON("123456789012345678901234567890"),
}

type rawJSON string

func corrupt(t *testing.T, rng *rand.Rand, i int, runJSON, ts []byte) variant {
	t.Helper()
	doc := func() map[string]any {
		d := json.NewDecoder(bytes.NewReader(runJSON))
		d.UseNumber()
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	enc := func(m map[string]any) []byte {
		raws := map[string]string{}
		var fix func(v any) any
		fix = func(v any) any {
			switch x := v.(type) {
			case rawJSON:
				k := fmt.Sprintf("__raw%d__", len(raws))
				raws[k] = string(x)
				return k
			case map[string]any:
				for k, e := range x {
					x[k] = fix(e)
				}
			case []any:
				for k, e := range x {
					x[k] = fix(e)
				}
			}
			return v
		}
		fix(m)
		b, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		for k, raw := range raws {
			b = bytes.Replace(b, []byte(`"`+k+`"`), []byte(raw), 1)
		}
		return b
	}
	cells := func(m map[string]any) []any { c, _ := m["cells"].([]any); return c }
	tsLines := strings.Split(strings.TrimSuffix(string(ts), "\n"), "\n")
	tsJoin := func(lines []string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }
	pick := func(vals []any) any { return vals[rng.IntN(len(vals))] }

	switch kind := i % 12; kind {
	case 0: // run.json cut short anywhere
		at := rng.IntN(len(runJSON))
		return variant{kind: "truncated", what: fmt.Sprintf("run.json cut at %d of %d", at, len(runJSON)), runJSON: runJSON[:at], ts: ts}
	case 1: // bytes flipped
		b := bytes.Clone(runJSON)
		k := 1 + rng.IntN(8)
		for j := 0; j < k; j++ {
			b[rng.IntN(len(b))] = byte(rng.IntN(256))
		}
		return variant{kind: "flipped", what: fmt.Sprintf("%d bytes of run.json flipped", k), runJSON: b, ts: ts}
	case 2, 3, 4: // one value anywhere replaced by an odd one
		m := doc()
		slots := collect(m, "")
		s := slots[rng.IntN(len(slots))]
		v := pick(oddValues)
		s.set(v)
		return variant{kind: "value", what: fmt.Sprintf("%s = %v", s.path, v), runJSON: enc(m), ts: ts, mustRead: s.path != ".schema"}
	case 5: // several keys removed
		m := doc()
		slots := collect(m, "")
		var gone []string
		for j := 0; j < 1+rng.IntN(5); j++ {
			s := slots[rng.IntN(len(slots))]
			if s.del() {
				gone = append(gone, s.path)
			}
		}
		return variant{kind: "removed", what: "removed " + strings.Join(gone, ", "), runJSON: enc(m), ts: ts, mustRead: !strings.Contains(strings.Join(gone, " "), ".schema")}
	case 6: // cells duplicated, given absurd or shared indexes, reordered
		m := doc()
		cs := cells(m)
		idx := []any{-1, 0, 1, int64(1) << 62, int64(-9223372036854775808), 2147483648, "3", 1.5, nil}
		var out []any
		for j := 0; j < 1+rng.IntN(6); j++ {
			c := clone(cs[rng.IntN(len(cs))]).(map[string]any)
			c["index"] = pick(idx)
			out = append(out, c)
		}
		m["cells"] = out
		return variant{kind: "cells", what: fmt.Sprintf("%d cells with indexes %v", len(out), indexes(out)), runJSON: enc(m), ts: ts, mustRead: true}
	case 7: // odd latency distributions
		m := doc()
		cdfs := [][]any{
			{[]any{0.5, 0}, []any{1, 0}},
			{[]any{0.5, -3}, []any{1, -1e308}},
			{[]any{1, 1e308}},
			{[]any{0.5, 1e308}, []any{1, 1e308}},
			{[]any{-1, 5}, []any{2, 1}, []any{0.5, 3}},
			{[]any{1}, []any{}, []any{1, 2, 3}},
			{[]any{0.5, 5e-324}, []any{1, 5e-324}},
			bigCDF(120_000),
		}
		cdf := cdfs[rng.IntN(len(cdfs))]
		for _, c := range cells(m) {
			if l, ok := c.(map[string]any)["load"].(map[string]any); ok {
				l["connect_cdf"] = cdf
				l["connect_ms"] = map[string]any{"p50": pick(oddValues), "p99": -1}
			}
		}
		return variant{kind: "cdf", what: fmt.Sprintf("connect_cdf of %d points", len(cdf)), runJSON: enc(m), ts: ts, mustRead: true}
	case 8: // huge arrays, strings and maps where small ones belong
		m := doc()
		c := cells(m)[rng.IntN(2)].(map[string]any)
		var what string
		switch rng.IntN(4) {
		case 0:
			notes := make([]any, 100_000)
			for j := range notes {
				notes[j] = "n"
			}
			c["notes"], what = notes, "100 000 notes"
		case 1:
			c["id"], what = strings.Repeat("é|<", 300_000), "an id of 900 000 bytes"
		case 2:
			mx := map[string]any{}
			for j := 0; j < 20_000; j++ {
				mx[fmt.Sprintf("k%d", j)] = "1"
			}
			c["matrix"], c["knobs"], what = mx, mx, "20 000 matrix keys and knobs"
		case 3:
			series := make([]any, 120_000)
			for j := range series {
				series[j] = []any{j, j}
			}
			c["nodes"].(map[string]any)["server"].(map[string]any)["time_wait"].(map[string]any)["series"], what = series, "120 000 TIME_WAIT samples"
		}
		return variant{kind: "huge", what: what, runJSON: enc(m), ts: ts, mustRead: true}
	case 9: // odd time series
		lines := append([]string(nil), tsLines...)
		var what string
		switch rng.IntN(7) {
		case 0:
			at := rng.IntN(len(ts))
			return variant{kind: "timeseries", what: fmt.Sprintf("timeseries.csv cut at %d", at), runJSON: runJSON, ts: ts[:at], mustRead: true}
		case 1:
			for j := 1; j < len(lines); j++ {
				f := strings.Split(lines[j], ",")
				f[1] = pick([]any{"-9223372036854775808", "9223372036854775807", "-5", "0"}).(string)
				f[4] = pick([]any{"-9223372036854775808", "9223372036854775807", "-1"}).(string)
				lines[j] = strings.Join(f, ",")
			}
			what = "extreme times and values"
		case 2:
			for j := 1; j < len(lines); j++ {
				f := strings.Split(lines[j], ",")
				f[0] = pick([]any{"-1", "99999", "1", "x", ""}).(string)
				lines[j] = strings.Join(f, ",")
			}
			what = "absurd cell indexes"
		case 3:
			lines = append(lines, lines[1:]...)
			what = "every row twice"
		case 4:
			for j := 0; j < 100_000; j++ {
				lines = append(lines, fmt.Sprintf("0,%d,time_wait,server,%d", j, j%7))
			}
			what = "100 000 more rows of one series"
		case 5:
			lines[1+rng.IntN(len(lines)-1)] = `0,"1`
			lines[1+rng.IntN(len(lines)-1)] = strings.Repeat("9", 200_000)
			what = "a stray quote and a line of 200 000 bytes"
		case 6:
			lines[0] = "a,b,c"
			what = "no header"
		}
		return variant{kind: "timeseries", what: what, runJSON: runJSON, ts: tsJoin(lines), mustRead: true}
	case 10: // files missing or not files
		cases := []variant{
			{what: "no run.json", ts: ts},
			{what: "no timeseries.csv", runJSON: runJSON, mustRead: true},
			{what: "run.json is a folder", ts: ts, prepare: func(t *testing.T, dir string) { os.Mkdir(filepath.Join(dir, "run.json"), 0o755) }},
			{what: "run.json is a FIFO", ts: ts, prepare: func(t *testing.T, dir string) { syscall.Mkfifo(filepath.Join(dir, "run.json"), 0o644) }},
			{what: "timeseries.csv is a FIFO", runJSON: runJSON, mustRead: true, prepare: func(t *testing.T, dir string) {
				syscall.Mkfifo(filepath.Join(dir, "timeseries.csv"), 0o644)
			}},
			{what: "timeseries.csv is a folder", runJSON: runJSON, mustRead: true, prepare: func(t *testing.T, dir string) {
				os.Mkdir(filepath.Join(dir, "timeseries.csv"), 0o755)
			}},
			{what: "run.json empty", runJSON: []byte{}, ts: ts},
		}
		v := cases[rng.IntN(len(cases))]
		v.kind = "files"
		return v
	default: // where run.json says the time series are
		m := doc()
		m["timeseries"].(map[string]any)["path"] = pick([]any{"../../../../etc/passwd", "/dev/zero", "/proc/self/mem", ".", "", "run.json", strings.Repeat("a/", 2000)})
		return variant{kind: "tspath", what: fmt.Sprintf("timeseries.path %.40v", m["timeseries"].(map[string]any)["path"]), runJSON: enc(m), ts: ts, mustRead: true}
	}
}

func bigCDF(n int) []any {
	out := make([]any, n)
	for j := range out {
		out[j] = []any{float64(j) / float64(n), float64(n - j)}
	}
	return out
}

func indexes(cs []any) []any {
	var out []any
	for _, c := range cs {
		out = append(out, c.(map[string]any)["index"])
	}
	return out
}

func clone(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, e := range x {
			m[k] = clone(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for k, e := range x {
			s[k] = clone(e)
		}
		return s
	}
	return v
}

// slot is one place in a JSON document: a key of an object or an element
// of an array.
type slot struct {
	path string
	obj  map[string]any
	key  string
	arr  []any
	idx  int
}

func (s slot) set(v any) {
	if s.obj != nil {
		s.obj[s.key] = v
	} else {
		s.arr[s.idx] = v
	}
}

// del removes an object's key (array elements stay: null instead).
func (s slot) del() bool {
	if s.obj != nil {
		delete(s.obj, s.key)
		return true
	}
	s.arr[s.idx] = nil
	return true
}

// collect lists every slot of v, sorted by path so that a seed gives the
// same variants every time.
func collect(v any, path string) []slot {
	var out []slot
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := path + "." + k
			out = append(out, slot{path: p, obj: x, key: k})
			out = append(out, collect(x[k], p)...)
		}
	case []any:
		for k := range x {
			p := fmt.Sprintf("%s[%d]", path, k)
			out = append(out, slot{path: p, arr: x, idx: k})
			out = append(out, collect(x[k], p)...)
		}
	}
	return out
}
