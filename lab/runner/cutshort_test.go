package runner_test

import (
	"context"
	"testing"

	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/runner"
	"github.com/twlab/twlab/lab/scenario"
)

// plainSNAT ends every cell on its time bound in the middle of full-rate
// load: connections still connecting or exchanging then are cut short by the
// cell, not failed by the network.
const plainSNAT = `name: plain-snat
description: Plain SNAT at full rate, ended by the time bound.
clients:
  count: 2
lvs:
  mode: snat
server:
  port: 8080
  ports: 8
  close: server
load:
  connections: 1000000
  duration: 1s
  concurrency: 8
expect:
  - name: nothing fails; what the bound cuts is counted apart
    assert:
      - load.failed == 0
`

// TestTimeBoundIsNoFailure runs the plain-SNAT cell ten times: every run
// must pass with load.failed == 0 (before cut-short connections were
// counted apart, each run had 1-3 "response" failures), and in total some
// connections must have been cut short, or the test proves nothing.
func TestTimeBoundIsNoFailure(t *testing.T) {
	roottest.Skip(t)
	plan, err := scenario.Load("plain-snat.yaml", []byte(plainSNAT), scenario.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cut := 0
	for i := range 10 {
		r, _, err := runner.Run(context.Background(), plan, runner.Options{OutDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		c := r.Cells[0]
		if c.Status != result.CellOK || c.Load.Failed != 0 {
			t.Errorf("run %d: %s %s; failures %v %v", i+1, c.Status, c.Reason, c.Load.Failures, c.Load.Errors)
		}
		cut += c.Load.CutShort
	}
	if cut == 0 {
		t.Error("no connection was cut short in 10 runs: the bound never hit a connection in progress")
	}
	t.Logf("%d connections cut short by the time bound in 10 runs", cut)
}
