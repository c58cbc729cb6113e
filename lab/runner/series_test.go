package runner_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/runner"
)

// TestTimeseries runs one paced cell of nat-paws for about 1.5 s: every
// series must be in timeseries.csv at 10 Hz or more, end at the cell's
// figures in run.json, and run.json must point at the file.
func TestTimeseries(t *testing.T) {
	roottest.Skip(t)
	plan := loadPlan(t, []string{"load.connections=60", "load.rate=40"},
		"server.net.ipv4.tcp_tw_recycle == 0 && clients.net.ipv4.tcp_timestamps == 2 && server.net.ipv4.tcp_rfc1337 == 0")
	out := t.TempDir()
	r, _, err := runner.Run(context.Background(), plan, runner.Options{OutDir: out})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Cells) != 1 || r.Cells[0].Status != result.CellOK {
		t.Fatalf("cells: %+v", r.Cells)
	}
	c := r.Cells[0]
	back, err := result.ReadRun(filepath.Join(out, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	if back.Timeseries == nil || back.Timeseries.Path != result.TimeseriesName || back.Cells[0].Timeseries == nil {
		t.Fatalf("run.json does not describe timeseries.csv: %+v / %+v", back.Timeseries, back.Cells[0].Timeseries)
	}
	ts, err := result.ReadTimeseries(filepath.Join(out, back.Timeseries.Path))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*result.Series{}
	for _, s := range ts[c.Index] {
		got[s.Key()] = s
	}
	want := []string{"time_wait@server", "time_wait@lvs", "time_wait@clients", "time_wait@c1", "time_wait@c2",
		"attempts@clients", "ok@clients", "failed@clients",
		"syn_in@server", "synack_out@server", "rst_in@server", "rst_out@server", "paws@server"}
	for _, k := range want {
		s := got[k]
		if s == nil {
			t.Errorf("series %s missing", k)
			continue
		}
		n := len(s.T)
		span := float64(s.T[n-1]-s.T[0]) / 1000
		if span < 1 {
			t.Errorf("%s spans %.2f s, want the whole load (>= 1 s)", k, span)
			continue
		}
		rate := float64(n-1) / span
		maxGap := int64(0)
		for i := 1; i < n; i++ {
			maxGap = max(maxGap, s.T[i]-s.T[i-1])
		}
		if rate < 10 || maxGap > 150 {
			t.Errorf("%s: %d samples over %.2f s = %.1f Hz, largest gap %d ms; want >= 10 Hz and no gap > 150 ms", k, n, span, rate, maxGap)
		}
	}
	if t.Failed() {
		return
	}
	last := func(k string) int64 { s := got[k]; return s.V[len(s.V)-1] }
	if last("ok@clients") != int64(c.Load.OK) || last("attempts@clients") != int64(c.Load.Attempts) || last("failed@clients") != int64(c.Load.Failed) {
		t.Errorf("load series end at ok %d attempts %d failed %d; run.json says %d %d %d",
			last("ok@clients"), last("attempts@clients"), last("failed@clients"), c.Load.OK, c.Load.Attempts, c.Load.Failed)
	}
	if last("syn_in@server") != c.SYN.In || last("paws@server") != c.Nodes["server"].Summary["paws"] {
		t.Errorf("server series end at syn_in %d paws %d; run.json says %d %d", last("syn_in@server"), last("paws@server"), c.SYN.In, c.Nodes["server"].Summary["paws"])
	}
	if last("paws@server") == 0 {
		t.Error("no PAWS rejects over time in a cell that has them")
	}
	// A node's time_wait.max is the peak of its series; for "clients" the
	// peak of the sum, not a sum of peaks reached at different ticks.
	for _, node := range []string{"server", "lvs", "clients", "c1", "c2"} {
		if s := got["time_wait@"+node]; s != nil && int64(c.Nodes[node].TimeWait.Max) != slices.Max(s.V) {
			t.Errorf("%s.time_wait.max %d, its series peaks at %d", node, c.Nodes[node].TimeWait.Max, slices.Max(s.V))
		}
	}
	t.Logf("%d samples per series at %.2f Hz, %d rows", c.Timeseries.Samples, c.Timeseries.RateHz, c.Timeseries.Rows)
}
