package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twlab/twlab/lab/load"
	"github.com/twlab/twlab/lab/nat"
	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/runstate"
	"github.com/twlab/twlab/lab/sysctl"
	"github.com/twlab/twlab/lab/topo"
	"github.com/vishvananda/netns"
)

// serverPort is where the bench's server listens (one port, as wrk dials one).
const serverPort = 8080

// loadLab is a lab as a cell of nat-paws-load sets it up: clients behind
// one SNAT address with the kernel's full port range, the server's SYN
// counters installed, and twlab's HTTP server closing first.
type loadLab struct {
	ports int // the server listens on serverPort…+ports-1; chain k dials port k
	id    string
	lab   *topo.Lab
	srv   *load.Server // in this process (the probe bench), or
	proc  *serverProc  // a process of its own (the load bench: the same for every arm)
	unreg func()
}

// newRunID picks and registers a run id, so that a concurrent `twlab
// cleanup` never takes the bench's namespaces for a killed run's leftovers.
func newRunID() (string, func(), error) {
	id, err := runstate.NewRunID()
	if err != nil {
		return "", nil, err
	}
	if err := runstate.Register(id, "bench"); err != nil {
		return "", nil, err
	}
	return id, func() { runstate.Unregister(id) }, nil
}

// buildLab builds the topology, the box's NAT and ip_forward: what both the
// load benches and the lab bench call "the lab".
func buildLab(ctx context.Context, id string, clients int, log *slog.Logger) (*topo.Lab, error) {
	lab, err := topo.Build(ctx, topo.Spec{RunID: id, Clients: clients}, log)
	if err != nil {
		return lab, err
	}
	if err := nat.Apply(lab.LVS.NS, nat.Config{Mode: nat.ModeSNAT, OutLink: lab.BackLink, SNATAddr: topo.LVSBack}); err != nil {
		return lab, fmt.Errorf("lvs: %w", err)
	}
	if _, err := sysctl.Apply(lab.LVS.NS, []sysctl.Setting{{Name: "net.ipv4.ip_forward", Requested: "1"}}); err != nil {
		return lab, fmt.Errorf("lvs: %w", err)
	}
	return lab, nil
}

// newLoadLab builds a load lab; with self (the twlab binary) the server runs
// in a process of its own, else in this one.
func newLoadLab(ctx context.Context, clients, ports int, self string, log *slog.Logger) (*loadLab, error) {
	id, unreg, err := newRunID()
	if err != nil {
		return nil, err
	}
	l := &loadLab{id: id, unreg: unreg, ports: ports}
	l.lab, err = buildLab(ctx, id, clients, log)
	if err == nil {
		err = nat.InstallSYNCounters(l.lab.Server.NS)
	}
	if err == nil && self != "" {
		l.proc, err = startServer(ctx, self, l.lab.Server.NS, serverPort, ports)
	} else if err == nil {
		l.srv, err = load.StartServer(l.lab.Server.NS, load.ServerConfig{Addr: topo.ServerAddr, Port: serverPort,
			Ports: ports, Close: load.CloseServer, IdleTimeout: 3 * time.Second}, log)
	}
	if err != nil {
		l.close()
		return nil, fmt.Errorf("build lab: %w", err)
	}
	return l, nil
}

func (l *loadLab) close() error {
	var errs []error
	if l.srv != nil {
		errs = append(errs, l.srv.Close())
	}
	if l.proc != nil {
		l.proc.stop()
	}
	errs = append(errs, l.lab.Destroy())
	l.unreg()
	return errors.Join(errs...)
}

func (l *loadLab) clients() []load.Client {
	var cs []load.Client
	for _, c := range l.lab.Clients {
		cs = append(cs, load.Client{Name: c.Name, NS: c.NS, Addr: c.Addr})
	}
	return cs
}

// runTwlab fires twlab's generator for opt.Duration with opt.Concurrency
// chains, `Connection: close` and the server closing first, exactly as a
// nat-paws-load cell does.
func (l *loadLab) runTwlab(ctx context.Context, opt Options, live *load.Live) (*load.Result, error) {
	return load.Run(ctx, load.Config{Clients: l.clients(), Target: topo.ServerAddr, Port: serverPort, Ports: l.ports,
		Connections: 50_000_000, Duration: opt.Duration, Concurrency: opt.Concurrency, Order: load.OrderRoundRobin,
		ConnectTimeout: time.Second, IOTimeout: 2 * time.Second, Close: load.CloseServer, KeepaliveRequests: 1, Live: live})
}

// wrkResult is what one wrk run reported.
type wrkResult struct {
	Requests   int64
	Seconds    float64
	PerSecond  float64
	SockErrors string // "connect 0, read 0, write 0, timeout 0"
	Non2xx     int64
	Output     string
	CPU        time.Duration // wrk's own user+system time
}

var (
	wrkReqRE    = regexp.MustCompile(`(\d+) requests in ([0-9.]+)(us|ms|s|m)`)
	wrkRateRE   = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkErrRE    = regexp.MustCompile(`Socket errors: (.*)`)
	wrkNon2xxRE = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

func parseWrk(out string) (*wrkResult, error) {
	r := &wrkResult{Output: out}
	m := wrkReqRE.FindStringSubmatch(out)
	rm := wrkRateRE.FindStringSubmatch(out)
	if m == nil || rm == nil {
		return nil, fmt.Errorf("wrk printed no request count: %q", out)
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	r.Seconds, _ = strconv.ParseFloat(m[2], 64)
	switch m[3] {
	case "us":
		r.Seconds /= 1e6
	case "ms":
		r.Seconds /= 1e3
	case "m":
		r.Seconds *= 60
	}
	r.PerSecond, _ = strconv.ParseFloat(rm[1], 64)
	if e := wrkErrRE.FindStringSubmatch(out); e != nil {
		r.SockErrors = e[1]
	}
	if e := wrkNon2xxRE.FindStringSubmatch(out); e != nil {
		r.Non2xx, _ = strconv.ParseInt(e[1], 10, 64)
	}
	return r, nil
}

// sockErrorCount sums wrk's socket errors ("connect 0, read 2, write 0,
// timeout 1" is 3).
func (w *wrkResult) sockErrorCount() int64 {
	var n int64
	for _, part := range strings.Split(w.SockErrors, ",") {
		f := strings.Fields(part)
		if len(f) == 2 {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			n += v
		}
	}
	return n
}

// usable refuses a wrk run that made no request: wrk exits 0 when every
// connect fails, and a rate of 0 would make any twlab figure "infinitely
// better" and the goal met.
func (w *wrkResult) usable(threads int) error {
	if w.Requests == 0 || w.PerSecond <= 0 {
		return fmt.Errorf("wrk -t%d made no request (socket errors: %s): %s", threads, orNone(w.SockErrors), w.Output)
	}
	return nil
}

// wrkArgs is the reference command line (without the binary).
func wrkArgs(opt Options, threads int) []string {
	secs := max(1, int(opt.Duration.Round(time.Second)/time.Second))
	return []string{"-t" + strconv.Itoa(threads), "-c" + strconv.Itoa(opt.Concurrency),
		"-d" + strconv.Itoa(secs) + "s", "-H", "Connection: close",
		fmt.Sprintf("http://%s:%d/", topo.ServerAddr, serverPort)}
}

// startIn starts cmd inside ns, as `ip netns exec` would: the child is
// forked from a thread that has entered ns and inherits its namespace; the
// parent's other threads never leave the host namespace.
func startIn(ns netns.NsHandle, cmd *exec.Cmd) error {
	return netnsutil.Do(ns, func() error { return cmd.Start() })
}

// runWrk runs wrk inside the first client's namespace against the lab's
// server, through the same box twlab's generator goes through.
func (l *loadLab) runWrk(ctx context.Context, opt Options, threads int) (*wrkResult, error) {
	path, err := exec.LookPath("wrk")
	if err != nil {
		return nil, &MissingTool{Tool: "wrk", Package: "wrk", Bench: "load"}
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, wrkArgs(opt, threads)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := startIn(l.lab.Clients[0].NS, cmd); err != nil {
		return nil, fmt.Errorf("start wrk in %s: %w", l.lab.Clients[0].NSName, err)
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("wrk: %w: %s", err, out.String())
	}
	r, err := parseWrk(out.String())
	if err != nil {
		return nil, err
	}
	r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return r, nil
}

// processCPU is this process's user+system CPU time so far: the generator
// and the kernel's packet processing done in its syscalls (the server has a
// process of its own).
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// perConn is CPU microseconds per connection.
func perConn(d time.Duration, n float64) float64 {
	if n <= 0 {
		return 0
	}
	return round(float64(d.Microseconds())/n, 1)
}

// benchLoad compares twlab's generator with wrk: one client namespace each,
// the same concurrency and duration, a fresh lab per measurement, the order
// of the tools rotating between repeats. Each wrk thread count is a
// reference of its own line.
func benchLoad(ctx context.Context, opt Options) ([]Result, error) {
	if opt.Self == "" {
		return nil, errors.New("bench load: no twlab binary to run the server process")
	}
	prof := newProfiler(opt.CPUProfile)
	var tw, twCPU, twSrv []float64 // conn/s; CPU µs per connection (generator; server)
	twFailed, twAttempts := 0, 0
	type ref struct {
		rate, cpu, srv []float64
		errs           []string
		requests       int64
		non2xx         int64 // responses that were not 2xx or 3xx
		sockErrs       int64 // connect, read, write errors and timeouts
	}
	refs := make([]ref, len(opt.WrkThreads))
	measure := func(arm int) error {
		l, err := newLoadLab(ctx, 1, 1, opt.Self, opt.Log) // one port: wrk dials one
		if err != nil {
			return err
		}
		defer l.close()
		if arm < 0 {
			prof.start("load")
			cpu := processCPU()
			res, err := l.runTwlab(ctx, opt, nil)
			cpu = processCPU() - cpu
			prof.stop()
			srv := l.proc.stop()
			if err == nil {
				err = ctx.Err() // a cancelled run returns what it made: not a figure
			}
			if err != nil {
				return err
			}
			tw = append(tw, res.ConnPerS)
			// Per completed connection, as wrk's per completed request: a
			// failed attempt must not make either side look cheaper.
			twCPU = append(twCPU, perConn(cpu, float64(res.OK)))
			twSrv = append(twSrv, perConn(srv, float64(res.OK)))
			twFailed += res.Failed
			twAttempts += res.Attempts
			fmt.Fprintf(opt.Progress, "load: twlab       %.0f conn/s (ok %d, failed %d, connect p99 %.2f ms; CPU %.1f us/conn for the generator + %.1f for the server)\n",
				res.ConnPerS, res.OK, res.Failed, res.ConnectMS.P99, twCPU[len(twCPU)-1], twSrv[len(twSrv)-1])
			return nil
		}
		r, threads := &refs[arm], opt.WrkThreads[arm]
		w, err := l.runWrk(ctx, opt, threads)
		srv := l.proc.stop()
		if err != nil {
			return err
		}
		if err := w.usable(threads); err != nil {
			return err
		}
		r.rate = append(r.rate, w.PerSecond)
		r.requests += w.Requests
		r.non2xx += w.Non2xx
		r.sockErrs += w.sockErrorCount()
		r.cpu = append(r.cpu, perConn(w.CPU, float64(w.Requests)))
		r.srv = append(r.srv, perConn(srv, float64(w.Requests)))
		if w.sockErrorCount() > 0 {
			r.errs = append(r.errs, w.SockErrors)
		}
		fmt.Fprintf(opt.Progress, "load: wrk -t%d -c%d %.0f conn/s (%d requests in %.2fs, socket errors: %s; CPU %.1f us/conn for wrk + %.1f for the server)\n",
			threads, opt.Concurrency, w.PerSecond, w.Requests, w.Seconds, orNone(w.SockErrors), r.cpu[len(r.cpu)-1], r.srv[len(r.srv)-1])
		return nil
	}
	arms := []int{-1} // twlab, then each wrk
	for i := range opt.WrkThreads {
		arms = append(arms, i)
	}
	for i := 0; i < opt.Repeat; i++ {
		for j := range arms {
			if err := measure(arms[(i+j)%len(arms)]); err != nil {
				return nil, err
			}
			pause(ctx, time.Second) // let the kernel finish freeing the last lab
		}
	}
	t := median(tw)
	var out []Result
	for i, threads := range opt.WrkThreads {
		r := refs[i]
		m := median(r.rate)
		ratio, met := atLeast(t/m, 1)
		// Rates of arms that failed compare nothing: wrk counts a 5xx or
		// a broken exchange as a request, twlab counts only the ok.
		var invalid []string
		if twFailed*1000 > twAttempts {
			invalid = append(invalid, fmt.Sprintf("twlab failed %d of %d connections", twFailed, twAttempts))
		}
		if r.non2xx > 0 {
			invalid = append(invalid, fmt.Sprintf("wrk had %d responses that were not 2xx/3xx", r.non2xx))
		}
		if r.sockErrs*1000 > r.requests {
			invalid = append(invalid, fmt.Sprintf("wrk had %d socket errors in %d requests", r.sockErrs, r.requests))
		}
		note := fmt.Sprintf("1 client namespace -> SNAT box -> twlab's server in a process of its own, started afresh, the same way, for every measurement (default scheduler), "+
			"Connection: close, %d concurrent, %s per run, fresh lab per run; CPU per connection (medians): twlab generator %.1f us + server %.1f us, "+
			"wrk %.1f us + server %.1f us; twlab failed %d of %d; wrk non-2xx %d, socket errors %v%s",
			opt.Concurrency, opt.Duration, median(twCPU), median(twSrv), median(r.cpu), median(r.srv), twFailed, twAttempts, r.non2xx, r.errs, balanceNote(opt.Repeat, len(arms)))
		if opt.CPUProfile != "" {
			// 100 Hz SIGPROF slows the profiled side: with 1 or 2
			// repeats that run is the figure, or half of it.
			note += "; twlab's first run was profiled (--cpuprofile) and is in the median"
		}
		if len(invalid) > 0 {
			note = "NOT A VALID COMPARISON (above 0.1 % errors): " + strings.Join(invalid, "; ") + "; " + note
		}
		out = append(out, Result{Name: fmt.Sprintf("load-t%d", threads), Unit: "conn/s", Twlab: round(t, 0), Reference: ptr(round(m, 0)),
			RefTool: fmt.Sprintf("wrk -t%d -c%d", threads, opt.Concurrency), Ratio: ptr(ratio),
			Goal: "ratio >= 1 (twlab >= wrk)", Met: met && len(invalid) == 0, TwlabRuns: tw, ReferenceRuns: r.rate, Note: note})
	}
	return out, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
