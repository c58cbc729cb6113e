package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Order is how clients take turns on a chain.
type Order string

const (
	OrderRoundRobin Order = "round-robin"
	OrderRandom     Order = "random"
)

// ParseOrder validates an order name.
func ParseOrder(s string) (Order, error) {
	switch o := Order(s); o {
	case OrderRoundRobin, OrderRandom:
		return o, nil
	}
	return "", fmt.Errorf("order %q: want round-robin or random", s)
}

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

// Outcome classes of one connection.
const (
	OK       = "ok"
	Timeout  = "timeout"
	Refused  = "refused"
	Reset    = "reset"
	AddrFail = "addr" // EADDRNOTAVAIL / EADDRINUSE: no local port to use
	// Response: connected, but no complete response within io_timeout
	// (e.g. the connection waits in a full accept queue).
	Response = "response"
	Other    = "other"
)

// FailureClasses lists every failure class, in report order.
var FailureClasses = []string{Timeout, Refused, Reset, AddrFail, Response, Other}

// ClientStats counts one client's outcomes.
type ClientStats struct {
	Attempts int            `json:"attempts"`
	OK       int            `json:"ok"`
	Failures map[string]int `json:"failures"`
	CutShort int            `json:"cut_short"`
}

// Result is what the load measured.
type Result struct {
	Attempts int            `json:"attempts"`
	OK       int            `json:"ok"`
	Failed   int            `json:"failed"`
	Failures map[string]int `json:"failures"`
	// CutShort are connections still in progress (connecting, or
	// exchanging after the handshake) when the cell's time bound or an
	// interrupt ended the load: neither attempts that failed nor successes.
	CutShort  int                     `json:"cut_short"`
	Requests  int                     `json:"requests"`
	ConnectMS Percentiles             `json:"connect_ms"`
	ConnPerS  float64                 `json:"conn_per_s"`
	Elapsed   float64                 `json:"elapsed_s"`
	PerClient map[string]*ClientStats `json:"per_client"`
	// Handoffs count connections by the client that used the chain before:
	// "c1_to_c2" is c2 connecting right after c1 on the same chain, i.e. onto
	// the 4-tuple c1 just left in TIME_WAIT when the NAT maps both alike.
	Handoffs map[string]*Handoff `json:"handoffs"`
	// Errors keeps the first few distinct error texts for the reader.
	Errors []string `json:"errors,omitempty"`
	// ConnectCDF is the distribution of successful connect latencies as
	// [quantile, ms] points (every connect up to CDFPoints of them, else
	// quantiles with a finer grid in the tail), so reports can draw it.
	ConnectCDF [][2]float64 `json:"connect_cdf,omitempty"`
	// latencies of successful connects, ns; not serialised.
	lat []int64
}

// Handoff counts one (previous client, next client) pair on a chain.
type Handoff struct {
	Attempts int `json:"attempts"`
	// Retried: the connection succeeded but its SYN had to be sent again
	// (TCP_INFO total_retrans at connect time), i.e. the first SYN was
	// rejected or lost.
	Retried int `json:"retried"`
	Failed  int `json:"failed"`
}

// HandoffKey names the pair prev→next.
func HandoffKey(prev, next string) string { return prev + "_to_" + next }

// Percentiles of connect latency in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Latencies returns the connect latencies of successful connections.
func (r *Result) Latencies() []time.Duration {
	out := make([]time.Duration, len(r.lat))
	for i, v := range r.lat {
		out[i] = time.Duration(v)
	}
	return out
}

// ComputePercentiles uses the nearest-rank method on a sorted copy.
func ComputePercentiles(ns []int64) Percentiles {
	s := slices.Clone(ns)
	slices.Sort(s)
	return percentilesSorted(s)
}

// percentilesSorted is ComputePercentiles of an already sorted slice.
func percentilesSorted(s []int64) Percentiles {
	if len(s) == 0 {
		return Percentiles{}
	}
	rank := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		i = max(0, min(i, len(s)-1))
		return round3(float64(s[i]) / 1e6)
	}
	return Percentiles{P50: rank(50), P90: rank(90), P99: rank(99), Max: round3(float64(s[len(s)-1]) / 1e6)}
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// CDFPoints bounds ConnectCDF: up to this many connects every latency is
// kept; above it, quantiles.
const CDFPoints = 256

// ComputeCDF returns the empirical distribution of ns as [quantile, ms]
// points: q = i/n for the i-th smallest of n values when n <= CDFPoints,
// else the nearest-rank values at q = 0, 0.005, …, 0.99 and a finer tail
// grid up to 0.9999 and 1 (the maximum), so p99 and beyond stay visible.
func ComputeCDF(ns []int64) [][2]float64 {
	s := slices.Clone(ns)
	slices.Sort(s)
	return cdfSorted(s)
}

// cdfSorted is ComputeCDF of an already sorted slice.
func cdfSorted(s []int64) [][2]float64 {
	if len(s) == 0 {
		return nil
	}
	n := len(s)
	ms := func(v int64) float64 { return math.Round(float64(v)/1e3) / 1e3 }
	if n <= CDFPoints {
		out := make([][2]float64, n)
		for i, v := range s {
			out[i] = [2]float64{math.Round(float64(i+1)/float64(n)*1e6) / 1e6, ms(v)}
		}
		return out
	}
	var qs []float64
	for i := 1; i <= 198; i++ {
		qs = append(qs, float64(i)/200)
	}
	qs = append(qs, 0.991, 0.992, 0.993, 0.994, 0.995, 0.996, 0.997, 0.998, 0.999, 0.9995, 0.9999, 1)
	out := make([][2]float64, 0, len(qs)+1)
	out = append(out, [2]float64{1 / float64(n), ms(s[0])}) // the minimum
	for _, q := range qs {
		i := int(math.Ceil(q*float64(n))) - 1
		i = max(0, min(i, n-1))
		out = append(out, [2]float64{q, ms(s[i])})
	}
	return out
}

// sockMaker creates a client's sockets inside its namespace. A socket
// keeps the namespace it was created in, and everything after socket(2)
// (bind, connect, I/O) may happen on any thread, so sockets are made in
// batches on the namespace's pinned thread and handed out from a pool: one
// thread switch per batch instead of one per connection (the switch, a
// futex wake-up of the locked thread and back, cost about a quarter of the
// generator's CPU when it was done per connection).
type sockMaker struct {
	th    *netnsutil.Thread
	batch int
	mu    sync.Mutex
	fds   []int
}

// socket returns a fresh non-blocking TCP socket of the maker's namespace.
func (m *sockMaker) socket() (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.fds) == 0 {
		err := m.th.Run(func() error {
			for len(m.fds) < m.batch {
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					if len(m.fds) > 0 {
						return nil // out of descriptors: use what there is
					}
					return fmt.Errorf("socket: %w", err)
				}
				m.fds = append(m.fds, fd)
			}
			return nil
		})
		if err != nil {
			return -1, err
		}
	}
	fd := m.fds[len(m.fds)-1]
	m.fds = m.fds[:len(m.fds)-1]
	return fd, nil
}

// close closes the unused sockets and stops the thread.
func (m *sockMaker) close() {
	m.mu.Lock()
	for _, fd := range m.fds {
		unix.Close(fd)
	}
	m.fds = nil
	m.mu.Unlock()
	if m.th != nil {
		m.th.Close()
	}
}

// sockBatch is how many sockets a client's maker creates at once: enough to
// make the thread switch rare, few enough that 64 clients hold at most 512
// unused descriptors.
func sockBatch(clients int) int { return min(32, max(8, 512/max(clients, 1))) }

// classIndex maps an outcome class to its slot in a chain's counters.
func classIndex(class string) int {
	switch class {
	case OK:
		return 0
	case Timeout:
		return 1
	case Refused:
		return 2
	case Reset:
		return 3
	case AddrFail:
		return 4
	case Response:
		return 5
	}
	return 6 // Other
}

// classNames lists the classes by classIndex.
var classNames = [...]string{OK, Timeout, Refused, Reset, AddrFail, Response, Other}

// clientCount is one client's outcomes within one chain.
type clientCount struct {
	attempts int
	cutShort int
	classes  [len(classNames)]int
}

// handoffCount is one (previous, next) pair within one chain.
type handoffCount struct {
	attempts, retried, failed int
}

// chainStats is what one chain counted. Every chain counts on its own, with
// no lock on the hot path; Run adds the chains up when the load ends.
type chainStats struct {
	requests int
	clients  []clientCount
	handoffs []handoffCount // [prev*len(clients)+next]
	lat      []int64        // successful connect latencies, ns
}

func newChainStats(clients int) *chainStats {
	return &chainStats{clients: make([]clientCount, clients), handoffs: make([]handoffCount, clients*clients)}
}

// record counts one connection of client ci, made right after client prev
// on the chain (prev < 0: the chain's first connection).
func (st *chainStats) record(prev, ci int, o *outcome) {
	cc := &st.clients[ci]
	if o.cutShort {
		cc.cutShort++
		return
	}
	c := classIndex(o.class)
	cc.attempts++
	cc.classes[c]++
	st.requests += o.requests
	if prev >= 0 {
		h := &st.handoffs[prev*len(st.clients)+ci]
		h.attempts++
		switch {
		case c != 0:
			h.failed++
		case o.synRetrans > 0:
			h.retried++
		}
	}
	if c == 0 {
		st.lat = append(st.lat, int64(o.connect))
	}
}

// merge adds the chains' counts into res.
func merge(res *Result, clients []Client, chains []*chainStats) {
	n := len(clients)
	total := 0
	for _, st := range chains {
		total += len(st.lat)
	}
	res.lat = make([]int64, 0, total)
	for _, st := range chains {
		res.Requests += st.requests
		res.lat = append(res.lat, st.lat...)
		for ci := range st.clients {
			cc := &st.clients[ci]
			pc := res.PerClient[clients[ci].Name]
			pc.Attempts += cc.attempts
			pc.OK += cc.classes[0]
			pc.CutShort += cc.cutShort
			res.CutShort += cc.cutShort
			res.Attempts += cc.attempts
			res.OK += cc.classes[0]
			for k := 1; k < len(classNames); k++ {
				if v := cc.classes[k]; v > 0 {
					pc.Failures[classNames[k]] += v
					res.Failures[classNames[k]] += v
					res.Failed += v
				}
			}
		}
		for i, h := range st.handoffs {
			if h.attempts == 0 {
				continue
			}
			k := HandoffKey(clients[i/n].Name, clients[i%n].Name)
			t := res.Handoffs[k]
			if t == nil {
				t = &Handoff{}
				res.Handoffs[k] = t
			}
			t.Attempts += h.attempts
			t.Retried += h.retried
			t.Failed += h.failed
		}
	}
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
	var pace <-chan time.Time
	if cfg.Rate > 0 {
		tk := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
		defer tk.Stop()
		pace = tk.C
	}

	var budget atomic.Int64
	budget.Store(int64(cfg.Connections))
	res := &Result{Failures: map[string]int{}, PerClient: map[string]*ClientStats{}, Handoffs: map[string]*Handoff{}}
	for _, c := range cfg.Clients {
		res.PerClient[c.Name] = &ClientStats{Failures: map[string]int{}}
	}
	for _, f := range FailureClasses {
		res.Failures[f] = 0
	}
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
			if cfg.BindPort > 0 {
				d.bind = cfg.BindPort + k
			}
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(k)))
			prev := -1
			for j := 0; ; j++ {
				if ctx.Err() != nil || expired(ctx) || budget.Add(-1) < 0 {
					return
				}
				if pace != nil {
					select {
					case <-ctx.Done():
						return
					case <-pace:
					}
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

// loadProcs is how many Ps the runtime has while a load runs: twice the
// CPUs (see raiseProcs).
var loadProcs = 2 * runtime.NumCPU()

var procsMu sync.Mutex
var procsUsers int
var procsBefore int

// raiseProcs gives the runtime more Ps than CPUs while a load runs and
// returns the function that restores the previous setting. Most of the
// generator's CPU time is kernel work inside connect, write and close (the
// packets cross veth, bridge, NAT and the server's TCP stack within the
// syscall), and a goroutine in a syscall keeps its P: with one P per CPU,
// the other chains and the server's handlers, ready to run, wait for a P
// while a CPU is free. The profile showed the process at ~1.3 of 2 CPUs
// with all chains ready; with 2 Ps per CPU it uses both (twlab bench load:
// ~27k -> ~31k connections/s on 2 cores; 3, 4, 6 and 8 Ps measured alike).
func raiseProcs() func() {
	procsMu.Lock()
	defer procsMu.Unlock()
	if procsUsers == 0 {
		procsBefore = runtime.GOMAXPROCS(0)
		if loadProcs > procsBefore {
			runtime.GOMAXPROCS(loadProcs)
		}
	}
	procsUsers++
	return func() {
		procsMu.Lock()
		defer procsMu.Unlock()
		procsUsers--
		if procsUsers == 0 && runtime.GOMAXPROCS(0) != procsBefore {
			runtime.GOMAXPROCS(procsBefore)
		}
	}
}

// expired says whether ctx's deadline has passed, even if its timer has not
// cancelled it yet.
func expired(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

type outcome struct {
	// cutShort: the cell's end (its time bound or an interrupt) stopped
	// this connection; it is counted apart, never as a failure.
	cutShort   bool
	class      string
	connect    time.Duration
	synRetrans int // SYNs sent again before the handshake completed
	requests   int
	err        error
}

// TCP states as TCP_INFO reports them (include/net/tcp_states.h).
const (
	tcpSynSent = 2
	tcpClose   = 7
)

var errClosedInHandshake = errors.New("socket closed during the handshake")

// dialer is one chain's connection maker: its target, its bind port and the
// buffers every connection of the chain reuses.
type dialer struct {
	cfg    *Config
	target unix.SockaddrInet4
	local  unix.SockaddrInet4
	bind   int
	buf    []byte // response bytes read so far
	rd     []byte // read buffer
}

func newDialer(cfg *Config, port int) *dialer {
	d := &dialer{cfg: cfg, target: unix.SockaddrInet4{Port: port}, buf: make([]byte, 0, 512), rd: make([]byte, 512)}
	copy(d.target.Addr[:], cfg.Target.To4())
	return d
}

// dialOnce makes one connection: a socket of the client's namespace (and a
// bind), then a non-blocking connect completed through Go's poller so that
// no goroutine sits on a locked thread while the handshake runs.
func (d *dialer) dialOnce(ctx context.Context, m *sockMaker, c *Client, ci int) outcome {
	cfg := d.cfg
	fd, err := m.socket()
	if err != nil {
		return outcome{class: classify(err), err: err}
	}
	if cfg.SocketOffsets != nil {
		if err := SetSocketOffset(fd, cfg.SocketOffsets[ci]); err != nil {
			unix.Close(fd)
			return outcome{class: Other, err: err}
		}
	}
	if d.bind > 0 {
		// SO_REUSEADDR lets a bound port be reused while its TIME_WAIT
		// proves (by timestamps) that the new connection is newer. A
		// socket's namespace is fixed at creation, so bind needs no switch.
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		d.local.Port = d.bind
		copy(d.local.Addr[:], c.Addr.To4())
		if err := unix.Bind(fd, &d.local); err != nil {
			unix.Close(fd)
			err = fmt.Errorf("bind %s:%d: %w", c.Addr, d.bind, err)
			return outcome{class: classify(err), err: err}
		}
	}
	f := os.NewFile(uintptr(fd), "tcp")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return outcome{class: Other, err: err}
	}
	start := time.Now()
	// Ctrl-C must not wait out connect_timeout (up to 60 s) or io_timeout:
	// cancelling the run expires this socket's deadlines at once, and a
	// deadline set after that stays expired (setDeadline).
	var ended atomic.Bool
	stop := context.AfterFunc(ctx, func() {
		ended.Store(true)
		f.SetDeadline(time.Now())
	})
	defer stop()
	setDeadline := func(set func(time.Time) error, t time.Time) {
		set(t)
		if ended.Load() {
			f.SetDeadline(time.Now())
		}
	}
	// cut tells a deadline that the cell's end set from a network timeout.
	cut := func(err error) bool {
		return errors.Is(err, os.ErrDeadlineExceeded) && (ended.Load() || expired(ctx))
	}
	deadline := start.Add(cfg.ConnectTimeout)
	// boundFirst: the cell's time bound comes before connect_timeout, so a
	// timeout means the cell ended, not that the network failed. (ctx.Err()
	// cannot tell: the poller's deadline may fire before the context's own
	// timer has cancelled it.)
	boundFirst := false
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline, boundFirst = dl, true
	}
	var cerr error
	rc.Control(func(fd uintptr) { cerr = unix.Connect(int(fd), &d.target) })
	if cerr != nil && !errors.Is(cerr, unix.EINPROGRESS) {
		return outcome{class: classify(cerr), err: fmt.Errorf("connect: %w", cerr)}
	}
	// One TCP_INFO read per check tells both whether the handshake is done
	// and how many SYNs it took (right after the handshake only the SYN can
	// have been retransmitted); SO_ERROR is read only when it failed. Through
	// veth the handshake has usually completed within connect(2) itself, so
	// the first check, before any wait, succeeds.
	var soErr error
	synRetrans := 0
	check := func(fd uintptr) bool {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			soErr = err
			return true
		}
		switch info.State {
		case tcpSynSent:
			return false // still in the handshake
		case tcpClose:
			v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
			switch {
			case err != nil:
				soErr = err
			case v != 0:
				soErr = unix.Errno(v)
			default:
				soErr = errClosedInHandshake
			}
			return true
		}
		synRetrans = int(info.Total_retrans)
		return true
	}
	if cerr == nil {
		rc.Control(func(fd uintptr) { check(fd) })
	} else {
		setDeadline(f.SetWriteDeadline, deadline)
		werr := rc.Write(check)
		if werr != nil {
			if errors.Is(werr, os.ErrDeadlineExceeded) {
				if boundFirst || cut(werr) && time.Now().Before(start.Add(cfg.ConnectTimeout)) {
					return outcome{cutShort: true, class: Timeout, err: context.DeadlineExceeded}
				}
				return outcome{class: Timeout, err: fmt.Errorf("connect: no answer within %s", cfg.ConnectTimeout)}
			}
			return outcome{class: Other, err: werr}
		}
	}
	if soErr != nil {
		return outcome{class: classify(soErr), err: fmt.Errorf("connect: %w", soErr)}
	}
	o := outcome{class: OK, connect: time.Since(start), synRetrans: synRetrans}
	o.requests, err = d.exchange(f, setDeadline)
	if err != nil && cut(err) {
		// Connected, and the cell ended before the exchange did: the
		// server was not too slow, the cell was over.
		o.cutShort, o.err = true, nil
		return o
	}
	if err != nil {
		o.class = classify(err)
		if o.class == Timeout {
			o.class = Response // the handshake completed; the answer did not come
		}
		o.err = err
	} else if d.bind > 0 && cfg.Close == CloseServer {
		finishClose(rc)
	}
	return o
}

// finishClose sends the client's FIN and waits (up to 3 s) until the server
// has acknowledged it, i.e. the socket reached CLOSED. A chain that binds a
// fixed port is the reuse experiment: the next client's SYN must find the
// server's TIME_WAIT and the box's conntrack entry of this connection gone
// (TIME_WAIT with timeout 0). A plain close returns while that last ACK may
// still be on its way through the box, and a SYN that overtakes it meets a
// live entry: the NAT then picks another port (no reuse) or, with a one-port
// range, drops the SYN on the box. SO_LINGER would wait too, but its wait
// ends early on any signal, which a busy VM makes likely.
func finishClose(rc syscall.RawConn) {
	rc.Control(func(fd uintptr) {
		if unix.Shutdown(int(fd), unix.SHUT_WR) != nil {
			return
		}
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Microsecond) {
			info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			if err != nil || info.State == tcpClose {
				return
			}
		}
	})
}

var request = []byte("GET / HTTP/1.1\r\nHost: twlab\r\nUser-Agent: twlab\r\n\r\n")
var requestClose = []byte("GET / HTTP/1.1\r\nHost: twlab\r\nUser-Agent: twlab\r\nConnection: close\r\n\r\n")

// exchange sends the requests of one connection and ends it the way the
// close mode says: in server mode it reads to EOF first, so that the server's
// FIN is the first one and TIME_WAIT lands there.
func (d *dialer) exchange(f *os.File, setDeadline func(func(time.Time) error, time.Time)) (int, error) {
	cfg := d.cfg
	setDeadline(f.SetDeadline, time.Now().Add(cfg.IOTimeout))
	done := 0
	for i := 1; i <= cfg.KeepaliveRequests; i++ {
		req := request
		if i == cfg.KeepaliveRequests && cfg.Close == CloseServer {
			req = requestClose
		}
		if _, err := f.Write(req); err != nil {
			return done, fmt.Errorf("write request: %w", err)
		}
		// Requests are not pipelined: nothing follows a response, so every
		// read starts at the front of the chain's buffer.
		_, err := readResponse(f, d.buf[:0], d.rd)
		if err != nil {
			if cfg.Close == CloseReset && i == cfg.KeepaliveRequests && isReset(err) {
				return done + 1, nil
			}
			return done, fmt.Errorf("read response: %w", err)
		}
		done++
	}
	switch cfg.Close {
	case CloseServer, CloseReset:
		// Wait for the server's FIN (or RST) before closing.
		for {
			_, err := f.Read(d.rd)
			if err != nil {
				if errors.Is(err, io.EOF) || isReset(err) {
					return done, nil
				}
				return done, fmt.Errorf("wait for server close: %w", err)
			}
		}
	}
	return done, nil
}

// readResponse reads one response with a Content-Length body.
func readResponse(f *os.File, buf, rd []byte) ([]byte, error) {
	for {
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			cl := contentLength(buf[:i])
			if len(buf) >= i+4+cl {
				return buf[i+4+cl:], nil
			}
		}
		if len(buf) > 16<<10 {
			return nil, errors.New("response too large")
		}
		n, err := f.Read(rd)
		buf = append(buf, rd[:n]...)
		if err != nil {
			return nil, err
		}
	}
}

func contentLength(head []byte) int {
	for len(head) > 0 {
		var line []byte
		line, head, _ = bytes.Cut(head, []byte("\r\n"))
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("content-length")) {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err == nil && n >= 0 {
				return n
			}
		}
	}
	return 0
}

func classify(err error) string {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, unix.ETIMEDOUT), errors.Is(err, os.ErrDeadlineExceeded):
		return Timeout
	case errors.Is(err, unix.ECONNREFUSED):
		return Refused
	case errors.Is(err, unix.ECONNRESET), errors.Is(err, unix.EPIPE):
		return Reset
	case errors.Is(err, unix.EADDRNOTAVAIL), errors.Is(err, unix.EADDRINUSE):
		return AddrFail
	}
	return Other
}
