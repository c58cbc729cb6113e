package result_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/result"
)

// realRun is a trimmed run folder of nat-paws as twlab wrote it (two cells
// that ran, one n/a; counters that stayed 0 and long series cut).
const realRun = "../../testdata/nat-paws-run"

func readReal(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(realRun, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadRunReal(t *testing.T) {
	r, err := result.ReadRun(filepath.Join(realRun, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Warnings) > 0 || len(r.Cells) != 3 || r.Cells[2].Index != 4 || r.Started.IsZero() || r.Finished == nil {
		t.Fatalf("warnings %v, %d cells, started %v", r.Warnings, len(r.Cells), r.Started)
	}
	if c := r.Cells[0]; c.Load == nil || len(c.Load.ConnectCDF) == 0 || c.Nodes["server"].Summary["paws"] == 0 || c.Started.IsZero() {
		t.Errorf("cell 0 lost figures: %+v", c)
	}
	// The free-form objects stay what they were and encode again.
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Scenario struct{ Name string } `json:"scenario"`
	}
	if json.Unmarshal(b, &back); back.Scenario.Name != "nat-paws" {
		t.Errorf("scenario after a round trip: %q", back.Scenario.Name)
	}
}

// TestReadRunUntrusted: what cannot be a run is a *NotRunError, quickly;
// what is a run with damage is read with the damage left out and said.
func TestReadRunUntrusted(t *testing.T) {
	real := readReal(t, "run.json")
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(real, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	cell := func(m map[string]any, i int) map[string]any { return m["cells"].([]any)[i].(map[string]any) }
	notRun := map[string][]byte{
		"empty":      nil,
		"truncated":  real[:len(real)/2],
		"array":      []byte(`[1, 2]`),
		"null":       []byte(`null`),
		"schema v2":  bytes.Replace(real, []byte(result.Schema), []byte("twlab.run/v2"), 1),
		"no schema":  edit(func(m map[string]any) { delete(m, "schema") }),
		"deep":       []byte(`{"schema":"twlab.run/v1","x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`),
		"many cells": []byte(`{"schema":"twlab.run/v1","cells":[` + strings.Repeat("{},", result.MaxRunCells) + `{}]}`),
		// The decoder matches keys without regard to case or escapes.
		"many Cells":   []byte(`{"schema":"twlab.run/v1","C\u0065LLS":[` + strings.Repeat("1,", result.MaxRunCells) + `1]}`),
		"many values":  []byte(`{"schema":"twlab.run/v1","x":[` + strings.Repeat(`[`+strings.Repeat(`0,`, result.MaxRunJSONElems-1)+`0],`, result.MaxRunJSONValues/result.MaxRunJSONElems) + `[]]}`),
		"long array":   []byte(`{"schema":"twlab.run/v1","notes":[` + strings.Repeat(`"",`, result.MaxRunJSONElems) + `""]}`),
		"wrong schema": edit(func(m map[string]any) { m["schema"] = 1 }),
	}
	why := map[string]string{"deep": "nested more than", "many cells": "more than 4096 cells", "many Cells": "more than 4096 cells",
		"many values": "more than 2097152 values", "long array": "values in one array"}
	for name, b := range notRun {
		r, err := result.ParseRun("run.json", b)
		var nr *result.NotRunError
		if !errors.As(err, &nr) || r != nil || !strings.Contains(err.Error(), why[name]) {
			t.Errorf("%s: run %v, error %v; want a *NotRunError (%s)", name, r != nil, err, why[name])
		}
	}
	damaged := map[string]struct {
		b     []byte
		warn  string
		check func(r *result.Run) bool
	}{
		"string count": {edit(func(m map[string]any) { cell(m, 0)["load"].(map[string]any)["ok"] = "NaN" }), "cells[0].load.ok holds string where an integer belongs",
			// The load is left out whole: with ok alone dropped, its 0 would
			// read as measured.
			func(r *result.Run) bool { return len(r.Cells) == 3 && r.Cells[0].Load == nil && r.Cells[1].Load != nil }},
		"huge number": {bytes.Replace(real, []byte(`"p99": `), []byte(`"p99": 1e999, "x": `), 1), "number 1e999",
			func(r *result.Run) bool { return len(r.Cells) == 3 }},
		"bad time": {edit(func(m map[string]any) { m["started"] = "yesterday"; cell(m, 1)["started"] = 12 }), "not a time",
			func(r *result.Run) bool {
				return r.Started.IsZero() && r.Cells[1].Started.IsZero() && !r.Cells[0].Started.IsZero()
			}},
		"negative time": {edit(func(m map[string]any) { m["finished"] = "-0001-01-01T00:00:00Z" }), "finished is not a time",
			func(r *result.Run) bool { return r.Finished == nil }},
		"null cell": {edit(func(m map[string]any) { m["cells"] = append(m["cells"].([]any), nil, "x", 3) }), "3 of 6 cells",
			func(r *result.Run) bool { return len(r.Cells) == 3 }},
		"cells object": {edit(func(m map[string]any) { m["cells"] = map[string]any{"a": 1} }), "cells",
			func(r *result.Run) bool { return len(r.Cells) == 0 }},
		"long strings": {edit(func(m map[string]any) {
			c := cell(m, 0)
			c["id"] = strings.Repeat("é", 1<<20)
			c["nodes"].(map[string]any)["server"].(map[string]any)["counters"].(map[string]any)[strings.Repeat("k", 5000)] = 1
			c["expect"].([]any)[0].(map[string]any)["value"] = []any{strings.Repeat("v", 5000)}
		}), "3 strings longer than 4096 bytes were cut",
			func(r *result.Run) bool {
				c := r.Cells[0]
				v, _ := c.Expect[0].Value.([]any)
				cut := false
				for k := range c.Nodes["server"].Counters {
					cut = cut || strings.HasPrefix(k, "kkkk") && len(k) <= result.MaxRunString+3
				}
				return cut && len(c.ID) <= result.MaxRunString+3 && len(v) == 1 && len(v[0].(string)) <= result.MaxRunString+3
			}},
		"escape codes": {edit(func(m map[string]any) {
			c := cell(m, 0)
			c["id"] = "a\x1b]52;c;cm0gLXJmIH4=\x07b"
			c["reason"] = "\x1b[2J\u009b31m"
			m["scenario_file"] = "x\x1b[8m"
		}), "3 strings held control characters",
			func(r *result.Run) bool {
				b, _ := json.Marshal(r)
				return !bytes.Contains(b, []byte(`\u001b`)) && !bytes.Contains(b, []byte("\u009b")) && strings.HasPrefix(r.Cells[0].ID, "a\uFFFD]52")
			}},
		"null nodes": {edit(func(m map[string]any) { cell(m, 0)["nodes"] = map[string]any{"server": nil, "x": 1} }), "cells[0].nodes holds number where an object belongs",
			func(r *result.Run) bool { return r.Cells[0].Nodes["server"] == nil }},
	}
	for name, tc := range damaged {
		r, err := result.ParseRun("run.json", tc.b)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !strings.Contains(strings.Join(r.Warnings, "\n"), tc.warn) || !tc.check(r) {
			t.Errorf("%s: warnings %q (want one about %q), cells %d", name, r.Warnings, tc.warn, len(r.Cells))
		}
		if _, err := json.Marshal(r); err != nil {
			t.Errorf("%s: the run read does not encode again: %v", name, err)
		}
	}
}

// TestReadRunNotAFile: a FIFO or a folder named run.json is refused at once
// (a plain read of a FIFO waits for a writer for ever), and a file larger
// than any run is refused before it is read.
func TestReadRunNotAFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo", "run.json")
	os.MkdirAll(filepath.Dir(fifo), 0o755)
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "folder", "run.json"), 0o755)
	big := filepath.Join(dir, "big", "run.json")
	os.MkdirAll(filepath.Dir(big), 0o755)
	if err := os.WriteFile(big, readReal(t, "run.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, result.MaxRunJSONBytes+1); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, filepath.Join(dir, "folder", "run.json"), big} {
		done := make(chan error, 1)
		go func() { _, err := result.ReadRun(p); done <- err }()
		select {
		case err := <-done:
			var nr *result.NotRunError
			if !errors.As(err, &nr) {
				t.Errorf("%s: %v, want a *NotRunError", p, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: ReadRun still reading after 5 s", p)
		}
		done2 := make(chan error, 1)
		go func() { _, _, err := result.ReadTimeseriesTolerant(p); done2 <- err }()
		select {
		case err := <-done2:
			if err == nil && p != big {
				t.Errorf("%s: timeseries read without an error", p)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: ReadTimeseriesTolerant still reading after 5 s", p)
		}
	}
}

func TestTimeseriesTolerant(t *testing.T) {
	real := readReal(t, result.TimeseriesName)
	lines := strings.Split(strings.TrimSuffix(string(real), "\n"), "\n")
	bad := slices.Clone(lines)
	bad[5] = "0,x,ok,clients,1"
	bad[9] = `0,"100,ok`
	bad[12] = "1,2,3"
	p := filepath.Join(t.TempDir(), result.TimeseriesName)
	os.WriteFile(p, []byte(strings.Join(bad, "\n")+"\n"), 0o644)
	ts, problems, err := result.ReadTimeseriesTolerant(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || !strings.Contains(problems[0], "lines could not be read") || !strings.Contains(problems[0], "line 6") {
		t.Errorf("problems %q", problems)
	}
	if len(ts[0]) == 0 || len(ts[1]) == 0 {
		t.Errorf("series of the good lines lost: %d, %d", len(ts[0]), len(ts[1]))
	}
	if _, err := result.ReadTimeseries(p); err == nil {
		t.Error("the strict reader took a file with bad lines")
	}
	// More distinct series than any run writes: the first are kept.
	var b strings.Builder
	b.WriteString("cell,t_ms,series,node,value\n")
	for i := 0; i <= result.MaxTimeseriesSeries; i++ {
		b.WriteString("0,0,s,n" + strconv.Itoa(i) + ",1\n")
	}
	ts, problems, err = result.ReadTimeseriesTolerant(write(t, b.String()))
	if err != nil || len(ts[0]) != result.MaxTimeseriesSeries || len(problems) != 1 {
		t.Errorf("%d series, problems %q, %v", len(ts[0]), problems, err)
	}
	for _, s := range []string{"", "a,b\n", "cell,t_ms,series,node\n0,0,a,b\n"} {
		if _, _, err := result.ReadTimeseriesTolerant(write(t, s)); err == nil {
			t.Errorf("%q: no error for a file without the columns", s)
		}
	}
}

func write(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), result.TimeseriesName)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A run folder is untrusted and twlab report runs as root: a symbolic link
// in it that leads out of the folder is not followed (its target here is a
// valid run, which would be read); a link within the folder is.
func TestReadersStayInTheRunFolder(t *testing.T) {
	outside := t.TempDir()
	for _, name := range []string{"run.json", result.TimeseriesName} {
		if err := os.WriteFile(filepath.Join(outside, name), readReal(t, name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	for _, name := range []string{"run.json", result.TimeseriesName} {
		if err := os.Symlink(filepath.Join(outside, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := result.ReadRun(filepath.Join(dir, "run.json")); err == nil || !strings.Contains(err.Error(), "symbolic link that leads out of the run folder") {
		t.Errorf("run.json linked out of the folder: run %v, error %v", r != nil, err)
	}
	if ts, _, err := result.ReadTimeseriesTolerantIn(dir, result.TimeseriesName); err == nil || len(ts) > 0 {
		t.Errorf("timeseries linked out of the folder: %d cells read, error %v", len(ts), err)
	}
	// A subfolder that is a link out of the folder is refused too.
	if err := os.Symlink(outside, filepath.Join(dir, "sub")); err != nil {
		t.Fatal(err)
	}
	if ts, _, err := result.ReadTimeseriesTolerantIn(dir, "sub/"+result.TimeseriesName); err == nil || len(ts) > 0 {
		t.Errorf("timeseries in a linked subfolder: %d cells read, error %v", len(ts), err)
	}

	in := t.TempDir()
	if err := os.WriteFile(filepath.Join(in, "real.json"), readReal(t, "run.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.json", filepath.Join(in, "run.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := result.ReadRun(filepath.Join(in, "run.json")); err != nil {
		t.Errorf("run.json linked within the folder: %v", err)
	}
}

// Every member of the wrong type is reported with its cell and left out
// whole (decoding in one go reported the first only and left the others'
// objects as zeros that read as measured); a cell without an index takes no
// other cell's time series; a run without cells or status says so.
func TestReadRunReportsEveryWrongType(t *testing.T) {
	real := readReal(t, "run.json")
	var m map[string]any
	if err := json.Unmarshal(real, &m); err != nil {
		t.Fatal(err)
	}
	cells := m["cells"].([]any)
	cells[0].(map[string]any)["load"] = "nope"
	cells[1].(map[string]any)["syn"] = []any{1, 2}
	delete(cells[2].(map[string]any), "index")
	cells[2].(map[string]any)["nodes"] = "x"
	b, _ := json.Marshal(m)
	r, err := result.ParseRun("run.json", b)
	if err != nil {
		t.Fatal(err)
	}
	warn := strings.Join(r.Warnings, "\n")
	for _, w := range []string{"cells[0].load holds string where an object belongs", "cells[1].syn holds array where an object belongs", "cells[2].nodes holds string"} {
		if !strings.Contains(warn, w) {
			t.Errorf("warnings lack %q:\n%s", w, warn)
		}
	}
	if len(r.Cells) != 3 || r.Cells[0].Load != nil || r.Cells[1].SYN != nil || r.Cells[2].Nodes != nil {
		t.Errorf("damaged members not left out: %d cells", len(r.Cells))
	}
	if r.Cells[0].SYN == nil || r.Cells[1].Load == nil || r.Cells[2].ID == "" {
		t.Error("members beside the damaged ones were lost")
	}
	if r.Cells[2].Index != -1 {
		t.Errorf("cell without an index has index %d, want -1 (no time series)", r.Cells[2].Index)
	}

	r, err = result.ParseRun("run.json", []byte(`{"schema":"twlab.run/v1"}`))
	if err != nil {
		t.Fatal(err)
	}
	warn = strings.Join(r.Warnings, "\n")
	for _, w := range []string{"no status", "no cells"} {
		if !strings.Contains(warn, w) {
			t.Errorf("a run.json with only its schema: warnings lack %q: %q", w, r.Warnings)
		}
	}
}

// A run.json that is no JSON says where, as an editor counts.
func TestReadRunSyntaxPosition(t *testing.T) {
	_, err := result.ParseRun("run.json", []byte("{\"schema\":\"twlab.run/v1\",\n \"x\": NaN}"))
	if err == nil || !strings.Contains(err.Error(), "not JSON at line 2, column 7") {
		t.Errorf("error %v; want the position of NaN", err)
	}
}

// Of two keys the decoder takes for one field ("LOAD", "load"), the result
// does not depend on map order: a bad one is left out, the good one kept,
// every time; a "Cells" key counts as cells.
func TestReadRunCaseFoldedKeys(t *testing.T) {
	doc := []byte(`{"schema":"twlab.run/v1","status":"ok","Cells":[{"id":"a","status":"ok","index":0,"LOAD":"nope","load":{"attempts":5,"ok":5}}]}`)
	for range 20 {
		r, err := result.ParseRun("run.json", doc)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Cells) != 1 || r.Cells[0].Load == nil || r.Cells[0].Load.Attempts != 5 {
			t.Fatalf("cells %+v: want the good load kept", r.Cells)
		}
		if w := strings.Join(r.Warnings, "\n"); strings.Contains(w, "no cells") || !strings.Contains(w, "cells[0].load holds string") {
			t.Fatalf("warnings %q", r.Warnings)
		}
	}
}

// "paws" counts the PAWS rejects of SYNs and at TIME_WAIT: where the kernel
// has PAWSTimewait (6.16+), PAWSEstab holds only established sockets'
// discards (a stale ACK delivered late) and stays out; before, it is where
// the TIME_WAIT rejects are, and counts.
func TestPAWSFigure(t *testing.T) {
	n := &result.Node{Counters: map[string]int64{"TcpExt.PAWSTimewait": 192, "TcpExt.PAWSEstab": 1, "TcpExt.PAWSPassive": 0, "TcpExt.PAWSActive": 0}}
	n.Summarize()
	if n.Summary["paws"] != 192 {
		t.Errorf("6.16+: paws %d, want 192 (PAWSTimewait; the established discard left out)", n.Summary["paws"])
	}
	old := &result.Node{Counters: map[string]int64{"TcpExt.PAWSEstab": 233, "TcpExt.PAWSPassive": 7, "TcpExt.PAWSActive": 0}}
	old.Summarize()
	if old.Summary["paws"] != 240 {
		t.Errorf("before 6.16: paws %d, want 240 (PAWSEstab + PAWSPassive)", old.Summary["paws"])
	}
	if d := result.PAWS(n.Counters, map[string]int64{"TcpExt.PAWSTimewait": 100, "TcpExt.PAWSEstab": 1}); d != 92 {
		t.Errorf("delta %d, want 92", d)
	}
}
