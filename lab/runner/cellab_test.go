package runner

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/probe"
	"github.com/twlab/twlab/lab/topo"
)

var closeOrder = []string{"sampler", "captures", "server", "skew", "probes", "namespaces", "globals"}

// recordSteps makes Close report its steps into the returned slice; panicAt
// names a step whose start panics ("" for none).
func recordSteps(t *testing.T, panicAt string) *[]string {
	t.Helper()
	var steps []string
	onCloseStep = func(s string) {
		steps = append(steps, s)
		if s == panicAt {
			panic("injected")
		}
	}
	t.Cleanup(func() { onCloseStep = nil })
	return &steps
}

func TestCellLabCloseOrderAndTwice(t *testing.T) {
	steps := recordSteps(t, "")
	l := &cellLab{}
	if err := l.Close(); err != nil {
		t.Fatalf("Close of an empty lab: %v", err)
	}
	if !slices.Equal(*steps, closeOrder) {
		t.Fatalf("steps %v, want %v", *steps, closeOrder)
	}
	*steps = nil
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if !slices.Equal(*steps, closeOrder) {
		t.Fatalf("second Close ran %v, want %v", *steps, closeOrder)
	}
}

// TestCellLabClosePanic: a step that panics costs none of the later steps,
// least of all the namespaces, and its panic comes back as an error.
func TestCellLabClosePanic(t *testing.T) {
	steps := recordSteps(t, "server")
	// Parts that need no root: a probe that never opened a file and a lab
	// without nodes.
	l := &cellLab{topo: &topo.Lab{}, probes: []*probe.Node{{Name: "c1"}}}
	err := l.Close()
	if err == nil || !strings.Contains(err.Error(), "server: internal error (panic): injected") {
		t.Fatalf("Close = %v, want the server step's panic", err)
	}
	if !slices.Equal(*steps, closeOrder) {
		t.Fatalf("steps %v, want %v", *steps, closeOrder)
	}
	if l.topo != nil || l.probes != nil {
		t.Fatalf("after Close: topo %v, probes %v; want both released", l.topo, l.probes)
	}
	onCloseStep = nil
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// countingSampler samples nothing but a source that counts its readings;
// an hour's interval leaves only the first sample and Stop's.
func countingSampler(l *cellLab) *atomic.Int64 {
	var n atomic.Int64
	l.startSampler(context.Background(), time.Hour, 10, func() ([]probe.Value, error) {
		n.Add(1)
		return []probe.Value{{Series: "n", Node: "x", V: n.Load()}}, nil
	})
	return &n
}

// TestCellLabSamplerOnce: Stop takes a sample each call, so neither
// stopSampler followed by Close nor Close twice may stop it again.
func TestCellLabSamplerOnce(t *testing.T) {
	l := &cellLab{}
	n := countingSampler(l)
	_, extra, err := l.stopSampler()
	if err != nil {
		t.Fatal(err)
	}
	if len(extra) != 1 || len(extra[0].Points) != 2 || n.Load() != 2 {
		t.Fatalf("stopSampler: %d readings, series %v; want the first sample and Stop's", n.Load(), extra)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if tw, extra, err := l.stopSampler(); tw != nil || extra != nil || err != nil || n.Load() != 2 {
		t.Fatalf("after Close: %d readings (want 2), stopSampler = %v %v %v", n.Load(), tw, extra, err)
	}

	// Left running by a cell that failed: Close stops it, once.
	l = &cellLab{}
	n = countingSampler(l)
	for range 2 {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if l.sampler != nil || n.Load() != 2 {
			t.Fatalf("Close: sampler %v, %d readings; want it stopped after 2", l.sampler, n.Load())
		}
	}
}
