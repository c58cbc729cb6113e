package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/twlab/twlab/lab/load"
	"github.com/twlab/twlab/lab/nat"
	"github.com/twlab/twlab/lab/probe"
	"github.com/twlab/twlab/lab/runner"
)

// ProbeClients is the lab size of the probe bench: every node's TIME_WAIT
// is read at every tick, so more clients cost more per tick. The server
// listens on one port per chain, as in nat-paws-load, so that the rate
// stays high (eight clients behind one address on one port collide in
// TIME_WAIT often, and every collision stalls a chain for ~15 ms).
const ProbeClients = 8

// sampleEvery is the runner's sampling interval (10 Hz).
const sampleEvery = 100 * time.Millisecond

// sampling opens what the runner samples at every tick of a cell (see
// runner.seriesSources): TIME_WAIT of every node, the generator's live
// counters, the server's nftables SYN/RST counters and its PAWS counters.
type sampling struct {
	prbs []*probe.Node
	srcs []probe.Source
}

func (l *loadLab) openSampling(live *load.Live) (*sampling, error) {
	s := &sampling{}
	for _, n := range l.lab.Nodes() {
		p, err := probe.Open(n.Name, n.NS, probe.Options{Link: n.Link})
		if err != nil {
			s.close()
			return nil, err
		}
		s.prbs = append(s.prbs, p)
	}
	srvProbe := s.prbs[len(s.prbs)-1] // Nodes lists the server last
	base, err := srvProbe.Counters()
	if err != nil {
		s.close()
		return nil, err
	}
	srvNS := l.lab.Server.NS
	synBefore, err := nat.ReadSYNCounters(srvNS)
	if err != nil {
		s.close()
		return nil, err
	}
	s.srcs = runner.SeriesSources(live, srvNS, synBefore, srvProbe, base)
	return s, nil
}

// tick does by hand what one sampler tick does.
func (s *sampling) tick() error {
	for _, p := range s.prbs {
		if _, err := p.TimeWait(); err != nil {
			return err
		}
	}
	for _, src := range s.srcs {
		if _, err := src(); err != nil {
			return err
		}
	}
	return nil
}

func (s *sampling) close() {
	for _, p := range s.prbs {
		p.Close()
	}
}

// benchProbe measures the load rate with and without 10 Hz sampling, in
// alternating order, a fresh lab each, and times one sampling tick.
func benchProbe(ctx context.Context, opt Options) ([]Result, error) {
	prof := newProfiler(opt.CPUProfile)
	var with, without []float64
	var tickCost time.Duration
	var ticks []int
	measure := func(sample bool) error {
		l, err := newLoadLab(ctx, ProbeClients, opt.Concurrency, "", opt.Log)
		if err != nil {
			return err
		}
		defer l.close()
		var live *load.Live
		var smp *probe.Sampler
		var sg *sampling
		if sample {
			live = &load.Live{}
			if sg, err = l.openSampling(live); err != nil {
				return err
			}
			defer sg.close()
			maxLen := int(opt.Duration/sampleEvery) + 64
			smp = probe.StartSampler(ctx, sg.prbs, sampleEvery, maxLen, sg.srcs...)
			prof.start("probe")
		}
		res, err := l.runTwlab(ctx, opt, live)
		if smp != nil {
			prof.stop()
			tw, serr := smp.Stop()
			if serr != nil {
				return serr
			}
			ticks = append(ticks, len(tw["server"].Series))
		}
		if err != nil {
			return err
		}
		if sample {
			with = append(with, res.ConnPerS)
			// The cost of one tick, timed on this lab right after the load
			// (its TIME_WAIT table still full): the median of 50.
			var ds []float64
			for range 50 {
				t0 := time.Now()
				if err := sg.tick(); err != nil {
					return err
				}
				ds = append(ds, float64(time.Since(t0)))
			}
			tickCost = time.Duration(median(ds))
			fmt.Fprintf(opt.Progress, "probe: with 10 Hz sampling    %.0f conn/s (%d ticks)\n", res.ConnPerS, ticks[len(ticks)-1])
		} else {
			without = append(without, res.ConnPerS)
			fmt.Fprintf(opt.Progress, "probe: without sampling       %.0f conn/s\n", res.ConnPerS)
		}
		return nil
	}
	for i := 0; i < opt.Repeat; i++ {
		order := []bool{true, false}
		if i%2 == 1 {
			order = []bool{false, true}
		}
		for _, s := range order {
			if err := measure(s); err != nil {
				return nil, err
			}
			pause(ctx, time.Second)
		}
	}
	// The ratio is the median of each repeat's own ratio: the two runs of a
	// repeat are adjacent in time, so what others do on the machine moves
	// both alike (a ratio of medians mixes runs minutes apart).
	var pairs []float64
	for i := range with {
		pairs = append(pairs, with[i]/without[i])
	}
	ratio := median(pairs)
	w, wo := median(with), median(without)
	nodes := ProbeClients + 2
	cpu := float64(tickCost) * float64(time.Second/sampleEvery) / float64(time.Second) * 100
	res := Result{Name: "probe", Unit: "conn/s", Twlab: round(w, 0), Reference: ptr(round(wo, 0)),
		RefTool: "no sampling", Ratio: ptr(round(ratio, 3)), Goal: "overhead < 5% (ratio > 0.95)", Met: ratio > 0.95,
		TwlabRuns: with, ReferenceRuns: without,
		Note: fmt.Sprintf("%d clients, %d server ports; overhead %.1f%% by rate (median of the repeats' ratios); one tick (TIME_WAIT of %d nodes, load, nft and PAWS counters) takes %s, i.e. %.2f%% of one core at 10 Hz; ticks per run %v",
			ProbeClients, opt.Concurrency, (1-ratio)*100, nodes, tickCost.Round(time.Microsecond), cpu, ticks)}
	return []Result{res}, nil
}
