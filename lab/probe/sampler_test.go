package probe_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/probe"
)

// The first sample is taken before StartSampler returns, i.e. before the
// load the caller starts next; and within a tick the sources are read last
// first, so that an effect (listed after its cause) is never read after it.
func TestSamplerFirstSampleAndReadOrder(t *testing.T) {
	var cause, effect atomic.Int64
	var order []string
	s := probe.StartSampler(context.Background(), nil, time.Hour, 100,
		func() ([]probe.Value, error) {
			order = append(order, "cause")
			return []probe.Value{{Series: "attempts", Node: "clients", V: cause.Load()}}, nil
		},
		func() ([]probe.Value, error) {
			order = append(order, "effect")
			return []probe.Value{{Series: "syn_in", Node: "server", V: effect.Load()}}, nil
		})
	cause.Add(5) // the load starts
	effect.Add(5)
	if _, err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	ex := s.Extra()
	if len(ex) != 2 || ex[0].Name != "attempts" || ex[1].Name != "syn_in" {
		t.Fatalf("series %v, want attempts then syn_in (the order given)", ex)
	}
	if p := ex[0].Points; len(p) != 2 || p[0].V != 0 || p[1].V != 5 {
		t.Errorf("attempts %v: want 0 before the load and 5 at the end", p)
	}
	if len(order) < 2 || order[0] != "effect" || order[1] != "cause" {
		t.Errorf("read order %v, want the effect first", order)
	}
}

// A source that fails leaves gaps in its series: they are counted.
func TestSamplerCountsSourceFailures(t *testing.T) {
	var n atomic.Int64
	s := probe.StartSampler(context.Background(), nil, time.Hour, 100, func() ([]probe.Value, error) {
		if n.Add(1) == 1 {
			return nil, errors.New("nft: no such table")
		}
		return []probe.Value{{Series: "syn_in", Node: "server", V: 1}}, nil
	})
	s.Stop()
	failed, err := s.SourceFailures()
	if failed != 1 || err == nil || !strings.Contains(err.Error(), "no such table") {
		t.Errorf("failures %d, %v; want 1 and the error", failed, err)
	}
}

// A source that panics in the last sample, which Stop takes on the caller's
// goroutine, is an error of the sampler, as in its loop: not a crash of the
// run that is tearing its lab down.
func TestSamplerStopSurvivesAPanic(t *testing.T) {
	var n atomic.Int64
	s := probe.StartSampler(context.Background(), nil, time.Hour, 100, func() ([]probe.Value, error) {
		if n.Add(1) == 2 {
			var m map[string]int
			m["boom"]++ // a nil map write: a runtime panic
		}
		return []probe.Value{{Series: "syn_in", Node: "server", V: n.Load()}}, nil
	})
	_, err := s.Stop()
	if err == nil || !strings.Contains(err.Error(), "panic") {
		t.Fatalf("Stop after a panicking source: %v, want the panic as an error", err)
	}
	if p := s.Extra(); len(p) != 1 || len(p[0].Points) != 1 {
		t.Errorf("series %v: want the first sample kept", p)
	}
}
