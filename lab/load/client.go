package load

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/vishvananda/netns"
)

// Client is one client namespace the generator dials from.
type Client struct {
	Name string
	NS   netns.NsHandle
	Addr net.IP
}

// Config bounds and shapes the load. Connections and Duration are hard
// limits: whichever is reached first ends the load.
type Config struct {
	Clients           []Client
	Target            net.IP
	Port              int // first server port
	Ports             int // chain k dials Port + k%Ports
	Connections       int
	Duration          time.Duration
	Rate              float64 // new connections per second over all chains; 0 = unpaced
	Concurrency       int     // parallel chains
	Order             Order
	Seed              uint64
	ConnectTimeout    time.Duration
	IOTimeout         time.Duration
	BindPort          int // clients bind BindPort+k on chain k; 0 = kernel picks
	Gap               time.Duration
	KeepaliveRequests int
	Close             CloseMode // who closes: the client behaves accordingly
	// SocketOffsets, when set, is every client's timestamp clock offset in
	// ticks (by client index), set on each socket before connect
	// (SetSocketOffset): fixed skew on kernels before 4.10 without eBPF.
	SocketOffsets []int32
	// Live, if set, counts outcomes as they happen, for a sampler to read
	// while the load runs.
	Live *Live
}

// Live counts outcomes while the load runs; safe to read concurrently.
type Live struct {
	Attempts, OK, Failed atomic.Int64
}

// Run fires the load and returns when a bound is reached or ctx ends.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if len(cfg.Clients) == 0 {
		return nil, errors.New("load: no clients")
	}
	if cfg.Connections <= 0 || cfg.Duration <= 0 {
		return nil, errors.New("load: connections and duration must be bounded")
	}
	cfg.Concurrency = max(cfg.Concurrency, 1)
	cfg.Ports = max(cfg.Ports, 1)
	cfg.KeepaliveRequests = max(cfg.KeepaliveRequests, 1)
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = time.Second
	}
	if cfg.IOTimeout <= 0 {
		cfg.IOTimeout = 2 * time.Second
	}
	defer raiseProcs()()
	makers := make([]*sockMaker, len(cfg.Clients))
	defer func() {
		for _, m := range makers {
			if m != nil {
				m.close()
			}
		}
	}()
	for i, c := range cfg.Clients {
		th, err := netnsutil.NewThread(c.NS)
		if err != nil {
			return nil, fmt.Errorf("load: client %s: %w", c.Name, err)
		}
		makers[i] = &sockMaker{th: th, batch: sockBatch(len(cfg.Clients))}
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var pace *pacer
	if cfg.Rate > 0 {
		pace = newPacer(cfg.Rate, time.Now())
	}

	var budget atomic.Int64
	budget.Store(int64(cfg.Connections))
	res := newResult(cfg.Clients)
	// errMu guards the error texts only: the failure path, not every
	// connection.
	var errMu sync.Mutex
	errSeen := map[string]bool{}
	noteError := func(client string, err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if len(res.Errors) < 8 {
			if t := err.Error(); !errSeen[t] {
				errSeen[t] = true
				res.Errors = append(res.Errors, client+": "+t)
			}
		}
	}
	chains := make([]*chainStats, cfg.Concurrency)
	for k := range chains {
		chains[k] = newChainStats(len(cfg.Clients))
	}

	start := time.Now()
	var wg sync.WaitGroup
	for k := 0; k < cfg.Concurrency; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			defer func() {
				// A bug in a chain ends that chain, not the process (and so
				// not the lab's teardown); the error is kept for the reader.
				if p := recover(); p != nil {
					errMu.Lock()
					res.Errors = append(res.Errors, fmt.Sprintf("chain %d: internal error (panic): %v", k, p))
					errMu.Unlock()
				}
			}()
			st := chains[k]
			d := newDialer(&cfg, cfg.Port+k%cfg.Ports)
			defer d.watch(ctx)()
			if cfg.BindPort > 0 {
				d.bind = cfg.BindPort + k
			}
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(k)))
			prev := -1
			for j := 0; ; j++ {
				if ctx.Err() != nil || expired(ctx) || budget.Add(-1) < 0 {
					return
				}
				if pace != nil && !pace.wait(ctx) {
					return
				}
				ci := (j + k) % len(cfg.Clients)
				if cfg.Order == OrderRandom {
					ci = rng.IntN(len(cfg.Clients))
				}
				c := &cfg.Clients[ci]
				o := d.dialOnce(ctx, makers[ci], c, ci)
				st.record(prev, ci, &o)
				if o.cutShort {
					return // the cell ended; the chain with it
				}
				if live := cfg.Live; live != nil {
					live.Attempts.Add(1)
					if o.class == OK {
						live.OK.Add(1)
					} else {
						live.Failed.Add(1)
					}
				}
				if o.err != nil {
					noteError(c.Name, o.err)
				}
				prev = ci
				if cfg.Gap > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(cfg.Gap):
					}
				}
			}
		}(k)
	}
	wg.Wait()
	el := time.Since(start)
	merge(res, cfg.Clients, chains)
	res.Elapsed = round3(el.Seconds())
	if el > 0 {
		res.ConnPerS = math.Round(float64(res.OK)/el.Seconds()*10) / 10
	}
	// Sorted once, in place: both the percentiles and the CDF read it.
	slices.Sort(res.lat)
	res.ConnectMS = percentilesSorted(res.lat)
	res.ConnectCDF = cdfSorted(res.lat)
	return res, nil
}

// expired says whether ctx's deadline has passed, even if its timer has not
// cancelled it yet.
func expired(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}
