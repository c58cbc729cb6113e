package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/result"
)

// writeRun writes a small run folder: one cell that ran (with paws PAWS
// rejects) and one n/a cell.
func writeRun(t *testing.T, kernel, id string, paws int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ran := &result.Cell{ID: "timestamps=1", Status: result.CellOK, Matrix: map[string]string{"clients.net.ipv4.tcp_timestamps": "1"},
		Load:  &result.Load{Attempts: 100, OK: 100, Failures: map[string]int{}, ConnectMS: result.Percentiles{P50: 0.1, P99: 12}, ConnectCDF: [][2]float64{{0.5, 0.1}, {1, 12}}},
		SYN:   &result.SYN{In: 100 + paws, SynAckOut: 100, Unanswered: paws},
		Nodes: map[string]*result.Node{"server": {Counters: map[string]int64{"TcpExt.PAWSTimewait": paws}}}}
	ran.Nodes["server"].Summarize()
	na := &result.Cell{ID: "tw_recycle=1", Index: 1, Status: result.CellNA, Reason: "n/a: no such knob"}
	r := &result.Run{Schema: result.Schema, Tool: "twlab", RunID: id, ScenarioFile: "nat-paws.yaml",
		Scenario: json.RawMessage(`{"name": "nat-paws", "description": "The classic case."}`), Kernel: kernel,
		Status: result.RunOK, Started: time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC), Cells: []*result.Cell{ran, na}}
	if err := r.WriteJSON(filepath.Join(dir, "run.json")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestReportCommand(t *testing.T) {
	dir := writeRun(t, "6.18.0", "ab12", 50)
	code, out, errs := twlab(t, "report", dir)
	if code != exitOK || out != filepath.Join(dir, "report.html")+"\n" || errs != "" {
		t.Fatalf("code %d, stdout %q, stderr %q", code, out, errs)
	}
	for _, f := range []string{"report.html", "summary.md", "cells.csv"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	if !strings.Contains(string(b), "The classic case.") || !strings.Contains(string(b), `data-plot="cdf"`) {
		t.Error("report.html lacks the description or the latency plot")
	}
	// run.json itself may be named.
	if code, _, errs = twlab(t, "report", filepath.Join(dir, "run.json")); code != exitOK {
		t.Errorf("report DIR/run.json: code %d, %s", code, errs)
	}
	code, _, errs = twlab(t, "report", t.TempDir())
	if code != exitUsage || !strings.Contains(errs, "no run.json here") {
		t.Errorf("empty folder: code %d, stderr %q", code, errs)
	}
	if code, _, _ = twlab(t, "report"); code != exitUsage {
		t.Errorf("no folder: code %d", code)
	}
}

func TestCompareCommand(t *testing.T) {
	a := writeRun(t, "6.18.0", "ab12", 50)
	b := writeRun(t, "6.1.0", "cd34", 0) // the PAWS rejects are gone: a changed cell
	code, out, errs := twlab(t, "compare", a, b)
	if code != exitOK || errs != "" {
		t.Fatalf("code %d, stderr %q", code, errs)
	}
	var changedLine, naLine string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "timestamps=1 ") {
			changedLine = l
		}
		if strings.HasPrefix(l, "tw_recycle=1 ") {
			naLine = l
		}
	}
	if !strings.Contains(out, "6.18.0 ab12") || !strings.Contains(out, "6.1.0 cd34") || !strings.Contains(out, "1 changed") {
		t.Errorf("head:\n%s", out)
	}
	// Only the run that differs from the baseline is marked.
	if strings.Contains(changedLine, "paws 50*") || !strings.Contains(changedLine, "paws 0*") || !strings.Contains(changedLine, "CHANGED: paws, unanswered") {
		t.Errorf("changed cell not shown as changed: %q\n%s", changedLine, out)
	}
	if naLine == "" || strings.Contains(naLine, "CHANGED") {
		t.Errorf("unchanged cell: %q", naLine)
	}

	html := filepath.Join(t.TempDir(), "cmp.html")
	code, out, _ = twlab(t, "compare", "--md", a, b, "--html", html)
	if code != exitOK || !strings.Contains(out, "| `timestamps=1` |") || !strings.Contains(out, "**paws 0**") || strings.Contains(out, "**paws 50**") {
		t.Errorf("--md: code %d\n%s", code, out)
	}
	if hb, err := os.ReadFile(html); err != nil || !strings.Contains(string(hb), `class="changed" data-cell="timestamps=1"`) {
		t.Errorf("--html: %v", err)
	}
	code, out, _ = twlab(t, "compare", "--json", a, b)
	var doc struct {
		Rows []struct {
			ID      string
			Changed []string
		}
	}
	if code != exitOK || json.Unmarshal([]byte(out), &doc) != nil || len(doc.Rows) != 2 || len(doc.Rows[0].Changed) == 0 {
		t.Errorf("--json: code %d\n%s", code, out)
	}
	if code, _, errs = twlab(t, "compare", a, filepath.Join(t.TempDir(), "nope")); code != exitUsage || !strings.Contains(errs, "no run.json") {
		t.Errorf("missing run: code %d, stderr %q", code, errs)
	}
}

// A warning is said once: in the terminal table (not also on stderr), and
// on stderr beside a document for tools.
func TestCompareWarnsOnce(t *testing.T) {
	a := writeRun(t, "6.18.0", "ab12", 50)
	b := writeRun(t, "6.1.0", "cd34", 50)
	doc, err := os.ReadFile(filepath.Join(b, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	doc = []byte(strings.ReplaceAll(string(doc), "nat-paws", "other"))
	if err := os.WriteFile(filepath.Join(b, "run.json"), doc, 0o644); err != nil {
		t.Fatal(err)
	}
	const w = "different scenarios"
	code, out, errs := twlab(t, "compare", a, b)
	if code != exitOK || strings.Count(out+errs, w) != 1 || !strings.Contains(out, w) {
		t.Errorf("table: code %d, the warning %d times in stdout, %d in stderr", code, strings.Count(out, w), strings.Count(errs, w))
	}
	code, out, errs = twlab(t, "compare", "--json", a, b)
	if code != exitOK || !strings.Contains(errs, w) || !strings.Contains(out, w) {
		t.Errorf("--json: code %d, stderr %q", code, errs)
	}
}

// TestRunJSON runs one short cell with --json: stdout must be exactly the
// run document (as in run.json), the human output on stderr.
func TestRunJSON(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds real network namespaces (run `sudo make test`)")
	}
	out := t.TempDir()
	code, stdout, stderr := twlab(t, "run", "nat-paws.yaml", "--json", "--out", out, "--set", "load.connections=20",
		"--only", "server.net.ipv4.tcp_tw_recycle == 0 && clients.net.ipv4.tcp_timestamps == 2 && server.net.ipv4.tcp_rfc1337 == 0")
	if code != exitOK {
		t.Fatalf("code %d, stderr:\n%s", code, stderr)
	}
	var r result.Run
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%.300s", err, stdout)
	}
	file, err := os.ReadFile(filepath.Join(out, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	if stdout != string(file) {
		t.Error("stdout differs from run.json")
	}
	if r.Schema != result.Schema || len(r.Cells) != 1 || r.Timeseries == nil {
		t.Errorf("document: schema %q, %d cells, timeseries %v", r.Schema, len(r.Cells), r.Timeseries)
	}
	if !strings.Contains(stderr, "twlab: nat-paws, 1 cell") || !strings.Contains(stderr, "report:") {
		t.Errorf("human output not on stderr:\n%s", stderr)
	}
	for _, f := range []string{"report.html", "timeseries.csv"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
}
