package runner

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/scenario"
	"github.com/twlab/twlab/lab/topo"
)

// twoCells is a short scenario of two cells.
const twoCells = `name: two-cells
description: Two short cells.
clients:
  count: 2
lvs:
  mode: snat
server:
  port: 8080
  close: server
load:
  connections: 20
  duration: 5s
matrix:
  server.net.ipv4.tcp_rfc1337: [0, 1]
expect:
  - assert:
      - load.attempts > 0
`

// TestInterruptDuringTeardown interrupts the run as the first cell's
// teardown begins: its figures were all read, so run.json keeps the cell
// with them (status interrupted, the outcome in the reason) and its time
// series; the lab is gone all the same and the second cell never starts.
func TestInterruptDuringTeardown(t *testing.T) {
	roottest.Skip(t)
	plan, err := scenario.Load("two-cells.yaml", []byte(twoCells), scenario.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	onTeardown = cancel
	defer func() { onTeardown = nil }()
	out := t.TempDir()
	r, _, err := Run(ctx, plan, Options{OutDir: out})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != result.RunInterrupted || len(r.Cells) != 1 {
		t.Fatalf("run %s with %d cells, want interrupted with 1", r.Status, len(r.Cells))
	}
	c := r.Cells[0]
	if c.Status != result.CellInterrupted || !strings.Contains(c.Reason, "interrupted during teardown") || !strings.Contains(c.Reason, "every expectation held") {
		t.Errorf("cell %s: %s", c.Status, c.Reason)
	}
	if c.Load == nil || c.Load.Attempts == 0 || c.SYN == nil || c.Nodes["server"] == nil || len(c.Expect) != 1 || !c.Expect[0].OK || c.Timeseries == nil {
		t.Errorf("the interrupted cell lost figures: load %+v, syn %v, nodes %d, expect %v, timeseries %v", c.Load, c.SYN != nil, len(c.Nodes), c.Expect, c.Timeseries)
	}
	disk, err := result.ReadRun(filepath.Join(out, "run.json"))
	if err != nil || len(disk.Cells) != 1 || disk.Cells[0].Status != result.CellInterrupted || disk.Status != result.RunInterrupted {
		t.Fatalf("run.json: %v", err)
	}
	ts, err := result.ReadTimeseries(filepath.Join(out, result.TimeseriesName))
	if err != nil || len(ts[0]) == 0 {
		t.Errorf("timeseries.csv: %d series of the cell, %v", len(ts[0]), err)
	}
	noNamespacesOf(t, r.RunID)
}

// A cell that failed on its own (a value the kernel refused) before the
// interrupt came is kept with its verdict and reason: it was taken for one
// cut short and dropped, and run.json said interrupted with 0 cells.
func TestFailedCellSurvivesAnInterruptInItsTeardown(t *testing.T) {
	roottest.Skip(t)
	refused := strings.Replace(twoCells, "server.net.ipv4.tcp_rfc1337: [0, 1]", "server.net.ipv4.tcp_ecn: [banana, 1]", 1)
	plan, err := scenario.Load("refused.yaml", []byte(refused), scenario.Options{})
	if err != nil {
		t.Skipf("the scenario checker refuses the value before any kernel does: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	onTeardown = cancel
	defer func() { onTeardown = nil }()
	r, _, err := Run(ctx, plan, Options{OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != result.RunInterrupted || len(r.Cells) != 1 {
		t.Fatalf("run %s with %d cells, want interrupted with the failed cell", r.Status, len(r.Cells))
	}
	if c := r.Cells[0]; c.Status != result.CellFailed || c.ErrorKind != result.ErrorInput || !strings.Contains(c.Reason, "tcp_ecn") {
		t.Errorf("cell %s (%s): %s; want failed, input, with the kernel's refusal", c.Status, c.ErrorKind, c.Reason)
	}
}

// A cell that fails in the middle of its measurement keeps its captures in
// its record: before, the files stayed in pcap/ with nothing in run.json
// naming them.
func TestFailedCellKeepsCaptures(t *testing.T) {
	roottest.Skip(t)
	plan, err := scenario.Load("two-cells.yaml", []byte(twoCells), scenario.Options{Only: "server.net.ipv4.tcp_rfc1337 == 0"})
	if err != nil {
		t.Fatal(err)
	}
	onCapturing = func() error { return errors.New("injected failure") }
	defer func() { onCapturing = nil }()
	out := t.TempDir()
	r, _, err := Run(context.Background(), plan, Options{OutDir: out, Pcap: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Cells) != 1 || r.Cells[0].Status != result.CellFailed || !strings.Contains(r.Cells[0].Reason, "injected failure") {
		t.Fatalf("cells %+v", r.Cells)
	}
	files, _ := filepath.Glob(filepath.Join(out, "pcap", "*.pcap"))
	var named []string
	for _, p := range r.Cells[0].Pcap {
		named = append(named, filepath.Join(out, p.Path))
	}
	if len(files) != 1 || !slices.Equal(files, named) {
		t.Errorf("pcap/ holds %v, run.json names %v", files, named)
	}
	noNamespacesOf(t, r.RunID)
}

// A run's captures together stay within its budget: each file had a bound
// of its own, but nothing bounded their sum. A cell that would start with
// too little left is not captured, and says so.
func TestCaptureBudgetPerRun(t *testing.T) {
	roottest.Skip(t)
	plan, err := scenario.Load("two-cells.yaml", []byte(twoCells), scenario.Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := pcapRunBudget
	pcapRunBudget = minCapture + 4<<10 // room for the first cell's start only
	defer func() { pcapRunBudget = old }()
	out := t.TempDir()
	r, _, err := Run(context.Background(), plan, Options{OutDir: out, Pcap: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Cells) != 2 {
		t.Fatalf("%d cells", len(r.Cells))
	}
	first, second := r.Cells[0], r.Cells[1]
	if len(first.Pcap) != 1 || first.Pcap[0].Bytes > pcapRunBudget {
		t.Errorf("first cell's capture %+v, want one within %d bytes", first.Pcap, pcapRunBudget)
	}
	if len(second.Pcap) != 0 || !slices.ContainsFunc(second.Notes, func(n string) bool { return strings.Contains(n, "No capture of this cell") }) {
		t.Errorf("second cell: captures %+v, notes %q", second.Pcap, second.Notes)
	}
	if lim, ok := captureLimits(new(int64(100<<20)), 4); !ok || lim.MaxBytes != 16<<20 {
		t.Errorf("a roomy budget: %+v %v", lim, ok)
	}
	if lim, ok := captureLimits(new(int64(10<<20)), 4); !ok || lim.MaxBytes != 10<<20/4 {
		t.Errorf("a tight budget is shared: %+v %v", lim, ok)
	}
}

// noNamespacesOf fails if a namespace of run id is left.
func noNamespacesOf(t *testing.T, id string) {
	t.Helper()
	names, _ := topo.ListNamespaces()
	for _, n := range names {
		if rid, _ := topo.RunIDOf(n); rid == id {
			t.Errorf("namespace %s left", n)
		}
	}
}

// A run into a folder an earlier run used leaves none of that run's
// reports or captures beside its own run.json: --only renumbers cells, and
// pcap/cell-03-server.pcap was the old run's cell 3.
func TestReusedFolderHoldsOnlyThisRun(t *testing.T) {
	roottest.Skip(t)
	plan, err := scenario.Load("two-cells.yaml", []byte(twoCells), scenario.Options{Only: "server.net.ipv4.tcp_rfc1337 == 0"})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	os.MkdirAll(filepath.Join(out, "pcap"), 0o755)
	stale := []string{"report.html", "summary.md", "cells.csv", "pcap/cell-01-server.pcap", "pcap/cell-03-server.pcap"}
	for _, f := range stale {
		os.WriteFile(filepath.Join(out, f), []byte("an earlier run's"), 0o644)
	}
	mine := filepath.Join(out, "notes.txt") // not twlab's: kept
	os.WriteFile(mine, []byte("mine"), 0o644)
	r, _, err := Run(context.Background(), plan, Options{OutDir: out})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Cells) != 1 {
		t.Fatalf("%d cells", len(r.Cells))
	}
	for _, f := range stale {
		if _, err := os.Stat(filepath.Join(out, f)); err == nil {
			t.Errorf("%s of the earlier run is still there", f)
		}
	}
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("a file that is not twlab's was removed: %v", err)
	}
}
