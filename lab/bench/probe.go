package bench

import (
	"context"
	"errors"
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

// probeSlice is the length of one slice of the probe bench: sampling is
// on in every other slice of one load run.
const probeSlice = 500 * time.Millisecond

// benchProbe measures what 10 Hz sampling costs the load. Separate runs
// with and without it differ by more than that cost (the rate moves ±7 %
// between runs here, from one lab to the next and with whatever else the
// machine does), so sampling is switched on and off in slices of one run
// instead: each slice with sampling is compared with the mean of the
// slices on either side of it, which cancels what drifts slower than a
// second (TIME_WAIT filling up, the machine's load). It also times one
// sampling tick.
func benchProbe(ctx context.Context, opt Options) ([]Result, error) {
	prof := newProfiler(opt.CPUProfile)
	var pairs, with, without []float64
	var tickCost time.Duration
	ticks := 0
	measure := func(first bool) error {
		l, err := newLoadLab(ctx, ProbeClients, opt.Concurrency, "", opt.Log)
		if err != nil {
			return err
		}
		defer l.close()
		live := &load.Live{}
		sg, err := l.openSampling(live)
		if err != nil {
			return err
		}
		defer sg.close()
		o := opt
		o.Duration = max(opt.Duration, 4*probeSlice) + probeSlice // the first slice warms up
		done := make(chan error, 1)
		if first {
			prof.start("probe")
		}
		go func() {
			_, err := l.runTwlab(ctx, o, live)
			done <- err
		}()
		var rates []float64 // slice k has sampling on when k is odd
		slice := func(on bool) error {
			t0, ok0 := time.Now(), live.OK.Load()
			end := t0.Add(probeSlice)
			for now := t0; now.Before(end); now = time.Now() {
				if !on {
					pause(ctx, end.Sub(now))
					break
				}
				if err := sg.tick(); err != nil {
					return err
				}
				ticks++
				pause(ctx, min(sampleEvery-time.Since(now), end.Sub(time.Now())))
			}
			if err := ctx.Err(); err != nil {
				return err // Ctrl-C must not wait out --duration
			}
			rates = append(rates, float64(live.OK.Load()-ok0)/time.Since(t0).Seconds())
			return nil
		}
		pause(ctx, probeSlice) // warm-up: not counted
		n := int((o.Duration - 2*probeSlice) / probeSlice)
		if n%2 == 0 {
			n-- // off, on, off, …, off: every on slice has two neighbours
		}
		for k := 0; k < n; k++ {
			if err := slice(k%2 == 1); err != nil {
				<-done // the load runs in this lab until its end (bounded) or the cancel
				if first {
					prof.stop()
				}
				return err
			}
		}
		err = <-done
		if first {
			prof.stop()
		}
		if err != nil {
			return err
		}
		var on, off []float64
		for k, r := range rates {
			if k%2 == 1 {
				on = append(on, r)
				if nb := (rates[k-1] + rates[k+1]) / 2; nb > 0 {
					pairs = append(pairs, r/nb)
				}
			} else {
				off = append(off, r)
			}
		}
		with, without = append(with, round(mean(on), 0)), append(without, round(mean(off), 0))
		fmt.Fprintf(opt.Progress, "probe: sampling on %.0f conn/s, off %.0f conn/s (%d slices of %s, alternating)\n",
			mean(on), mean(off), len(rates), probeSlice)
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
		return nil
	}
	for i := 0; i < opt.Repeat; i++ {
		if err := measure(i == 0); err != nil {
			return nil, err
		}
		pause(ctx, time.Second)
	}
	if len(pairs) == 0 {
		return nil, errors.New("bench probe: no slice with sampling had neighbours without it to compare against (runs too short?)")
	}
	// Overhead under 5 %: above 0.95, judged as shown (0.950 is not met).
	ratio := ratio3(median(pairs))
	nodes := ProbeClients + 2
	cpu := float64(tickCost) * float64(time.Second/sampleEvery) / float64(time.Second) * 100
	res := Result{Name: "probe", Unit: "conn/s", Twlab: round(median(with), 0), Reference: ptr(round(median(without), 0)),
		RefTool: "no sampling", Ratio: ptr(round(ratio, 3)), Goal: "overhead < 5% (ratio > 0.95)", Met: ratio > 0.95,
		TwlabRuns: with, ReferenceRuns: without,
		Note: fmt.Sprintf("%d clients, %d server ports; sampling on and off in alternate %s slices of each run, each on slice against its neighbours: overhead %.1f%% (median of %d pairs; the twlab and reference columns are the runs' mean rates with and without sampling, which keep the drift the pairs cancel); one tick (TIME_WAIT of %d nodes, load, nft and PAWS counters) takes %s, i.e. %.2f%% of one core at 10 Hz; %d ticks",
			ProbeClients, opt.Concurrency, probeSlice, (1-ratio)*100, len(pairs), nodes, tickCost.Round(time.Microsecond), cpu, ticks)}
	return []Result{res}, nil
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
