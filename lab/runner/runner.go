// Package runner executes a plan: for every cell it builds a fresh lab, sets
// the knobs, fires the load, measures, evaluates expectations and tears the
// lab down again, whatever happens.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twlab/twlab/lab/capture"
	"github.com/twlab/twlab/lab/kernel"
	"github.com/twlab/twlab/lab/load"
	"github.com/twlab/twlab/lab/nat"
	"github.com/twlab/twlab/lab/probe"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/runstate"
	"github.com/twlab/twlab/lab/scenario"
	"github.com/twlab/twlab/lab/skew"
	"github.com/twlab/twlab/lab/sysctl"
	"github.com/twlab/twlab/lab/topo"
)

// EnvError means this machine cannot run the lab (not root, no netns …).
type EnvError struct{ Msg string }

func (e *EnvError) Error() string { return e.Msg }

// Options configure a run.
type Options struct {
	OutDir      string // exact output folder; "" = ResultsRoot/<scenario>/<UTC time>
	ResultsRoot string // default "results"
	Log         *slog.Logger
	// Progress receives every finished cell; nil discards.
	Progress func(done, total int, c *result.Cell)
	// OnCellStart is told when a cell begins (for live progress).
	OnCellStart func(index, total int, id string)
	// Artifacts writes cells.csv, summary.md … next to run.json; nil = none.
	Artifacts func(dir string, r *result.Run) error
	Overrides []string
	Only      string
	// Pcap captures the server's link of every cell into DIR/pcap/;
	// PcapClients adds every client's link.
	Pcap, PcapClients bool
	// VM: this process runs as the init of a twlab VM, where the whole
	// machine is the lab; knobs that are global on this kernel are written
	// in the initial namespace instead of making the cell n/a.
	VM bool
}

// Sample interval of TIME_WAIT counts.
const sampleEvery = 100 * time.Millisecond

// settle lets the last close handshakes finish before counters are read.
const settle = 150 * time.Millisecond

// waitStill reads a count every interval until it no longer grows (a fall
// is TIME_WAIT expiring, not a close still under way), an error, ctx's end
// or limit.
func waitStill(ctx context.Context, read func() (int, error), every, limit time.Duration) {
	end := time.Now().Add(limit)
	prev, err := read()
	for err == nil && time.Now().Before(end) {
		select {
		case <-time.After(every):
		case <-ctx.Done():
			return
		}
		var n int
		if n, err = read(); err == nil && n <= prev {
			return
		}
		prev = n
	}
}

// CheckEnv says whether this machine can run labs at all.
func CheckEnv() error {
	if os.Geteuid() != 0 {
		return &EnvError{"twlab builds network namespaces and needs root: run it with sudo"}
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return &EnvError{"this kernel has no network namespaces (/proc/self/ns/net missing): twlab cannot build a lab here"}
	}
	return nil
}

// Run executes plan. It returns the run document (also when interrupted) and
// the folder it was written to.
func Run(ctx context.Context, plan *scenario.Plan, opt Options) (*result.Run, string, error) {
	if err := CheckEnv(); err != nil {
		return nil, "", err
	}
	log := opt.Log
	if log == nil {
		log = slog.Default()
	}
	// What killed runs left (SIGKILL, power loss) is removed before this run
	// starts; only namespaces of runs whose process is gone are touched.
	if left, err := runstate.Leftovers(); err == nil && len(left) > 0 {
		removed, cerr := runstate.Cleanup(false, log)
		log.Warn("removed the leftovers of killed twlab runs", "runs", len(left), "namespaces and files", len(removed), "err", cerr)
	}
	id, err := runstate.NewRunID()
	if err != nil {
		return nil, "", err
	}
	started := time.Now().UTC()
	dir := opt.OutDir
	if dir == "" {
		root := opt.ResultsRoot
		if root == "" {
			root = "results"
		}
		if dir, err = newRunDir(filepath.Join(root, plan.Scenario.Name), started.Format("20060102T150405Z")); err != nil {
			return nil, "", fmt.Errorf("results folder: %w", err)
		}
	}
	// The registry names the results folder: should this process be
	// killed while writing a file there, the next run or `twlab cleanup`
	// removes the temporary file it leaves.
	abs, err := runstate.ResultsPath(dir)
	if err != nil {
		return nil, "", fmt.Errorf("results folder: %w", err)
	}
	if err := runstate.RegisterRun(id, plan.File, abs); err != nil {
		return nil, "", err
	}
	defer runstate.Unregister(id)
	if err := runstate.CheckResults(id, dir, abs); err != nil {
		return nil, "", err
	}

	if err := result.MkdirAll(dir); err != nil {
		return nil, "", fmt.Errorf("results folder: %w", err)
	}
	ClearStale(dir, log)
	host, _ := os.Hostname()
	scen, err := recordScenario(plan.Scenario)
	if err != nil {
		return nil, "", err
	}
	run := &result.Run{
		Schema: result.Schema, Tool: "twlab", RunID: id, ScenarioFile: plan.File, Scenario: scen,
		Overrides: opt.Overrides, Only: opt.Only, Kernel: kernel.Release(),
		Host:    result.Host{Hostname: host, CPUs: runtime.NumCPU(), VM: opt.VM},
		Started: started, Status: result.RunRunning, Cells: []*result.Cell{}, CellsPlanned: len(plan.Cells),
	}
	// Detected, not guessed from the version string: scenarios select
	// expectations by kernel.* facts, and readers see what this kernel does.
	facts, ferr := kernel.Detect(ctx, kernel.Options{VM: opt.VM})
	if ferr != nil {
		log.Warn("kernel detection incomplete", "err", ferr)
	}
	run.KernelFeatures = recordKernel(facts)
	kvars := facts.Vars()
	if facts.NAT != "ok" {
		if facts.NAT == "" && ferr != nil {
			// Detection stopped before it could try NAT: that is the cause.
			return nil, "", &EnvError{"cannot find out what this kernel can do: " + ferr.Error()}
		}
		return nil, "", &EnvError{"nftables NAT does not work on this kernel (" + facts.NAT + "): the lab's box cannot be built; check nf_tables, nft_chain_nat and nf_nat"}
	}
	// An interrupt ends the parent; the bound ends only ctx. The two are
	// told apart: a run that hit its bound failed, it was not interrupted.
	parent := ctx
	bound := Bound(plan)
	ctx, cancelBound := context.WithTimeout(ctx, bound)
	defer cancelBound()
	jsonPath := filepath.Join(dir, "run.json")
	pcapLeft := pcapRunBudget
	run.Timeseries = timeseriesFile(plan)
	if err := result.CreateTimeseries(filepath.Join(dir, result.TimeseriesName)); err != nil {
		return nil, dir, err
	}
	if err := run.WriteJSON(jsonPath); err != nil {
		return nil, dir, err
	}
	log.Info("run started", "run_id", id, "scenario", plan.Scenario.Name, "cells", len(plan.Cells), "out", dir)

	for _, c := range plan.Cells {
		if ctx.Err() != nil {
			if parent.Err() == nil && !slices.ContainsFunc(run.Cells, func(c *result.Cell) bool { return c.Status == result.CellFailed }) {
				// The bound came between two cells: the run did not do
				// what it was asked, and must not read as a success.
				run.Error = fmt.Sprintf("the run reached its bound of %s before cell %s; %d of %d cells ran", bound, c.ID, len(run.Cells), len(plan.Cells))
			}
			break
		}
		if opt.OnCellStart != nil {
			opt.OnCellStart(len(run.Cells), len(plan.Cells), c.ID)
		}
		rc, end := runCell(ctx, id, c, log, cellOpts{dir: dir, pcap: opt.Pcap, pcapClients: opt.PcapClients, pcapLeft: &pcapLeft, facts: facts, kernelVars: kvars, vm: opt.VM})
		if end == endCutShort && rc.Status != result.CellNA {
			if parent.Err() == nil {
				// The run's own bound, not the user: the cell hung, which
				// is a failure, and it is recorded as one.
				rc.Status, rc.Reason = result.CellFailed, fmt.Sprintf("the run reached its bound of %s (each cell's duration and timeouts plus 30 s) before this cell finished; its figures are incomplete", bound)
				run.Cells = append(run.Cells, rc)
				log.Error("run bound reached", "cell", c.ID, "bound", bound)
				break
			}
			// A cell cut short measured nothing meaningful; run.json keeps
			// the finished cells only, and the run's status says why. Its
			// captures go too: nothing in run.json would point to them.
			log.Warn("cell interrupted before its figures were complete; not recorded", "cell", c.ID)
			if caps, _ := filepath.Glob(filepath.Join(dir, "pcap", pcapName(c.Index, "*"))); len(caps) > 0 {
				for _, p := range caps {
					os.Remove(p)
				}
			}
			break
		}
		if end == endInTeardown && rc.Status != result.CellNA && parent.Err() == nil {
			// The run's bound, not the user, ended the teardown: the
			// figures and the verdict stand, and the run failed to finish
			// in time (which the error says, and the status shows).
			run.Error = fmt.Sprintf("the run reached its bound of %s during the teardown of cell %s", bound, c.ID)
			log.Error("run bound reached during a teardown", "cell", c.ID, "bound", bound)
		} else if end == endInTeardown && rc.Status != result.CellNA {
			// Every figure was read before the interrupt; only the
			// teardown was under way (and finished, as it always does).
			// The figures are kept, and the status says the cell did not
			// end as usual.
			outcome := "every expectation held"
			if rc.Status == result.CellFailed {
				outcome = rc.Reason
			}
			rc.Status, rc.Reason = result.CellInterrupted, "interrupted during teardown; the figures are complete ("+outcome+")"
			log.Warn("cell interrupted during teardown; its figures are recorded", "cell", c.ID)
		}
		run.Cells = append(run.Cells, rc)
		recordSeries(dir, rc, log)
		// Each finished cell is on disk at once: an interrupted run keeps it.
		if err := run.WriteJSON(jsonPath); err != nil {
			log.Error("write run.json", "err", err)
		}
		if opt.Progress != nil {
			opt.Progress(len(run.Cells), len(plan.Cells), rc)
		}
	}
	fin := time.Now().UTC()
	run.Finished = &fin
	switch {
	case parent.Err() != nil:
		run.Status = result.RunInterrupted
	case run.Error != "", slices.ContainsFunc(run.Cells, func(c *result.Cell) bool { return c.Status == result.CellFailed }):
		run.Status = result.RunFailed
	case !slices.ContainsFunc(run.Cells, func(c *result.Cell) bool { return c.Status != result.CellNA }):
		// Nothing was measured: not a success, whatever held.
		run.Status = result.RunNA
	default:
		run.Status = result.RunOK
	}
	var errs []error
	if err := run.WriteJSON(jsonPath); err != nil {
		errs = append(errs, err)
	}
	if opt.Artifacts != nil {
		if err := opt.Artifacts(dir, run); err != nil {
			errs = append(errs, err)
		}
	}
	return run, dir, errors.Join(errs...)
}

// cellOpts are the run options a cell needs.
type cellOpts struct {
	dir               string
	pcap, pcapClients bool
	pcapLeft          *int64 // bytes the run's captures may still write
	facts             *kernel.Facts
	kernelVars        map[string]string
	vm                bool
}

// tsHz is the detected timestamp clock rate; 0 when unknown.
func (o cellOpts) tsHz() int {
	if o.facts == nil {
		return 0
	}
	return o.facts.TSHz
}

// socketSkew says whether a socket's timestamp offset survives connect.
func (o cellOpts) socketSkew() bool { return o.facts != nil && o.facts.SocketSkew }

// twByDiag says whether TIME_WAIT must be counted through sock_diag because
// sockstat's count is not this namespace's own (or not known to be).
func (o cellOpts) twByDiag() bool { return o.facts == nil || o.facts.TWCount != kernel.TWPerNetns }

// cellRun holds one cell's live state.
type cellRun struct {
	id  string // the run id, part of every name
	c   *scenario.Cell
	s   *scenario.Scenario
	rc  *result.Cell
	opt cellOpts
	log *slog.Logger
	// lab holds everything the cell acquires; its Close is the teardown.
	lab *cellLab
	// socketOffsets: fixed skew set on each socket by the generator
	// (kernels before 4.10 without eBPF), by client index.
	socketOffsets []int32
	knobs         []*plannedKnob
	// measured: every figure was read and evaluated before any interrupt.
	measured bool
}

// cellEnd says when, if at all, an interrupt of the run came to a cell.
type cellEnd int

const (
	endNormal     cellEnd = iota // the cell ended before any interrupt
	endInTeardown                // after its figures were read: during teardown
	endCutShort                  // before its figures were complete
	// endFailed: the cell had failed on its own (an error, a panic) before
	// the interrupt or the bound came; its verdict and reason stand.
	endFailed
)

// onTeardown is called as a cell's teardown begins (tests interrupt there).
var onTeardown func()

// staleArtifacts are the files an earlier run into the same folder may have
// left that this run's run.json would not describe: the reports
// (report.WriteArtifacts writes them only when a run ends, so a run killed
// before then sat beside the old ones) and captures (cell numbers change
// with --only: pcap/cell-03-server.pcap was another run's cell 3).
var staleArtifacts = []string{"report.html", "summary.md", "cells.csv", filepath.Join("pcap", "cell-*.pcap")}

// ClearStale removes an earlier run's artifacts from dir, and the files
// named in also (twlab vm: the run.json and timeseries.csv a guest that
// sends nothing this time would otherwise leave in place).
func ClearStale(dir string, log *slog.Logger, also ...string) {
	for _, pat := range append(slices.Clone(staleArtifacts), also...) {
		paths, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, p := range paths {
			if err := os.Remove(p); err != nil {
				log.Warn("an earlier run's file could not be removed", "file", p, "err", err)
			}
		}
	}
}

// pcapRunBudget bounds what one run's captures write in all: each file has
// its own bound (capture.DefaultLimits), but 256 cells of 65 captured nodes
// could otherwise fill 270 GB.
var pcapRunBudget int64 = 1 << 30

// minCapture is the least a capture is started with: a file smaller than
// this would hold a few hundred frames of the cell's start and mislead.
const minCapture = 1 << 20

// captureLimits are the limits of a cell's n captures within what the run
// has left; false when too little is left to capture the cell at all.
func captureLimits(left *int64, n int) (capture.Limits, bool) {
	lim := capture.DefaultLimits
	if left == nil {
		return lim, true
	}
	per := *left / int64(n)
	if per < minCapture {
		return lim, false
	}
	lim.MaxBytes = min(lim.MaxBytes, per)
	return lim, true
}

// spendCapture takes a finished capture's size from the run's budget.
func spendCapture(left *int64, st capture.Stats) {
	if left != nil {
		*left -= st.Bytes
	}
}

// onCapturing is called once a cell's captures run, before its load; an
// error fails the cell there (tests: a failure in the middle of a
// measurement).
var onCapturing func() error

func runCell(ctx context.Context, runID string, c *scenario.Cell, log *slog.Logger, opt cellOpts) (rc *result.Cell, end cellEnd) {
	s := c.S
	rc = &result.Cell{ID: c.ID, Index: c.Index, Started: time.Now().UTC(),
		Knobs: map[string]string{}, Matrix: map[string]string{}, Expect: []result.Expect{}}
	for _, kv := range c.Matrix {
		rc.Matrix[kv.Key] = kv.Value
		if !isSysctlKey(kv.Key) {
			rc.Knobs[kv.Key] = kv.Value
		}
	}
	for role, ks := range s.Sysctl {
		for _, k := range ks {
			rc.Knobs[role+"."+k.Name] = sysctl.Normalize(k.Value)
		}
	}
	cr := &cellRun{id: runID, c: c, s: s, rc: rc, opt: opt, log: log.With("cell", c.ID), lab: &cellLab{}}
	start := time.Now()
	defer func() { rc.DurationS = round3(time.Since(start).Seconds()) }()
	var failedFirst bool // the cell failed before any interrupt or bound
	// Teardown is registered first so that it runs last, after recover.
	defer func() {
		if onTeardown != nil {
			onTeardown()
		}
		if err := cr.lab.Close(); err != nil {
			cr.log.Error("teardown", "err", err)
			rc.Notes = append(rc.Notes, "teardown: "+err.Error())
			if rc.Status == result.CellOK {
				rc.Status, rc.Reason = result.CellFailed, "teardown failed: "+err.Error()
			}
		}
		switch {
		case ctx.Err() == nil:
			end = endNormal
		case cr.measured:
			end = endInTeardown
		case failedFirst:
			end = endFailed
		default:
			end = endCutShort
		}
	}()
	defer func() {
		if p := recover(); p != nil {
			failedFirst = ctx.Err() == nil
			rc.Status, rc.Reason, rc.ErrorKind = result.CellFailed, fmt.Sprintf("internal error (panic): %v", p), result.ErrorInternal
			cr.log.Error("panic in cell", "panic", p)
		}
	}()
	if err := cr.run(ctx); err != nil {
		failedFirst = ctx.Err() == nil
		rc.Status, rc.Reason = result.CellFailed, "error: "+err.Error()
		if IsInputError(err) {
			rc.ErrorKind, rc.Reason = result.ErrorInput, "bad input: "+err.Error()
		}
		if ctx.Err() == nil || !errors.Is(err, context.Canceled) {
			// An interrupt is reported once, by the caller that drops or
			// keeps the cell; "cell failed: context canceled" told nothing.
			// The reason is the cell's (its progress line, the Failed list,
			// run.json): a log line at the default level only repeated it.
			cr.log.Info("cell failed", "err", err)
		}
	}
	return rc, end
}

func isSysctlKey(k string) bool {
	role, rest, _ := strings.Cut(k, ".")
	return slices.Contains(scenario.Roles, role) && strings.HasPrefix(rest, "net.")
}

func (cr *cellRun) run(ctx context.Context) error {
	if err := cr.setup(ctx); err != nil || cr.rc.Status == result.CellNA {
		return err
	}
	return cr.measure(ctx)
}

// setup builds the cell's lab up to a listening server: topology, NAT,
// knobs, skew. A knob or feature this kernel lacks leaves the cell n/a.
func (cr *cellRun) setup(ctx context.Context) error {
	s, rc := cr.s, cr.rc
	var vip net.IP
	if s.LVS.Mode == nat.ModeFullNAT {
		vip = net.ParseIP(s.LVS.VIP).To4()
	}
	var err error
	// A partly built lab is kept: Destroy removes the namespaces it has.
	cr.lab.topo, err = topo.Build(ctx, topo.Spec{RunID: cr.id, Clients: s.Clients.Count, VIP: vip}, cr.log)
	if err != nil {
		return fmt.Errorf("build lab: %w", err)
	}
	lab := cr.lab.topo
	ncfg := nat.Config{Mode: s.LVS.Mode, OutLink: lab.BackLink, SNATAddr: topo.LVSBack,
		Random: s.LVS.Random, VIP: vip, Server: topo.ServerAddr,
		PortsFrom: uint16(s.Server.Port), PortsTo: uint16(s.Server.Port + s.Server.Ports - 1)}
	if s.LVS.SNATPorts > 0 {
		ncfg.PortMin, ncfg.PortMax = uint16(s.LVS.SNATPortBase), uint16(s.LVS.SNATPortBase+s.LVS.SNATPorts-1)
	}
	// NAT first: it loads nf_conntrack, whose sysctls the knobs may name.
	if err := nat.Apply(lab.LVS.NS, ncfg); err != nil {
		return fmt.Errorf("lvs: %w", err)
	}

	if cr.knobs, err = cr.applyKnobs(); err != nil || rc.Status == result.CellNA {
		return err
	}

	if s.Clients.TSSkew == skew.ModeFixed {
		rc.Skew = &result.Skew{Mode: s.Clients.TSSkew.String(), Clients: map[string]*result.SkewClient{}}
		// Offsets given as durations become ticks of this kernel's
		// timestamp clock: milliseconds since 4.13, jiffies before.
		hz := cr.opt.tsHz()
		if hz == 0 {
			rc.Status, rc.Reason = result.CellNA, "n/a: fixed clock skew needs the kernel's timestamp clock rate, which detection could not measure"
			return nil
		}
		offs := s.Clients.Offsets(hz)
		rc.Skew.Method = result.SkewEBPF
		for i, c := range lab.Clients {
			rc.Skew.Clients[c.Name] = &result.SkewClient{OffsetTicks: offs[i], TSHz: hz, OffsetMS: int64(offs[i]) * 1000 / int64(hz)}
		}
		if err := cr.lab.attachSkews(offs); err != nil {
			if !cr.opt.socketSkew() {
				rc.Status, rc.Reason = result.CellNA, "n/a: fixed clock skew needs eBPF on tc (clsact, cls_bpf; Linux 4.5+) or a kernel that keeps a socket's timestamp offset through connect (before 4.10): "+err.Error()
				return nil
			}
			// 4.4: no clsact, but the socket's own offset survives
			// connect: the generator sets it on every socket. An
			// attachment left behind would add its offset on top.
			if cerr := cr.lab.dropSkews(); cerr != nil {
				return fmt.Errorf("skew: detach before falling back to socket offsets: %w", cerr)
			}
			cr.socketOffsets = offs
			rc.Skew.Method = result.SkewSocket
			rc.Notes = append(rc.Notes, "Fixed clock skew by the sockets' own timestamp offset (TCP_REPAIR, TCP_TIMESTAMP before connect), since eBPF on tc cannot run here: "+err.Error())
		}
	} else {
		rc.Skew = &result.Skew{Mode: s.Clients.TSSkew.String()}
	}

	if err := nat.InstallSYNCounters(lab.Server.NS); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	cr.lab.srv, err = load.StartServer(lab.Server.NS, load.ServerConfig{Addr: topo.ServerAddr, Port: s.Server.Port,
		Ports: s.Server.Ports, Close: s.Server.Close, KeepaliveRequests: s.Server.KeepaliveRequests,
		IdleTimeout: s.Load.IOTimeout.D() + time.Second, Backlog: s.Server.Backlog, Stalled: s.Server.Accept == load.AcceptStalled}, cr.log)
	return err
}

// measure fires the load on a set-up lab and fills the cell's figures.
func (cr *cellRun) measure(ctx context.Context) error {
	s, rc, lab := cr.s, cr.rc, cr.lab.topo
	var err error
	if err := cr.lab.openProbes(cr.opt.twByDiag()); err != nil {
		return err
	}
	// What the kernel holds as the load starts, read back in every node.
	if rc.KnobsActual, err = cr.readBack(cr.knobs); err != nil {
		return err
	}
	before := map[string]map[string]int64{}
	for _, p := range cr.lab.probes {
		if before[p.Name], err = p.Counters(); err != nil {
			return err
		}
	}
	srvProbe := cr.lab.probe(lab.Server.Name)
	synBefore, retransBefore, pairedBefore, err := synCounters(lab.Server.NS, srvProbe)
	if err != nil {
		return err
	}
	var pcapNodes []*topo.Node
	if cr.opt.pcap {
		pcapNodes = append(pcapNodes, lab.Server)
	}
	if cr.opt.pcapClients {
		pcapNodes = append(pcapNodes, lab.Clients...)
	}
	if len(pcapNodes) > 0 {
		// A cell that fails after its captures began keeps them in its
		// record: they show what went wrong, and a file run.json does not
		// name would be left in pcap/ with nothing pointing to it. (The
		// normal path stops them below, and this finds none.)
		defer func() {
			caps, _ := cr.lab.stopCaptures(cr.opt.dir)
			for _, st := range caps {
				spendCapture(cr.opt.pcapLeft, st)
				rc.Pcap = append(rc.Pcap, recordCapture(st))
			}
		}()
		lim, ok := captureLimits(cr.opt.pcapLeft, len(pcapNodes))
		if !ok {
			rc.Notes = append(rc.Notes, fmt.Sprintf("No capture of this cell: the run's captures reached their bound of %d MiB in the cells before it.", pcapRunBudget>>20))
		} else if err := cr.lab.startCaptures(cr.opt.dir, cr.c.Index, pcapNodes, lim); err != nil {
			return err
		}
	}
	if onCapturing != nil {
		if err := onCapturing(); err != nil {
			return err
		}
	}
	live := &load.Live{}
	cr.lab.startSampler(ctx, sampleEvery, maxSamples(s), cr.seriesSources(live, synBefore, before)...)

	var clients []load.Client
	for _, c := range lab.Clients {
		clients = append(clients, load.Client{Name: c.Name, NS: c.NS, Addr: c.Addr})
	}
	target := topo.ServerAddr
	if s.LVS.Mode == nat.ModeFullNAT {
		target = net.ParseIP(s.LVS.VIP).To4()
	}
	lres, err := load.Run(ctx, load.Config{Clients: clients, Target: target, Port: s.Server.Port, Ports: s.Server.Ports,
		Connections: s.Load.Connections, Duration: s.Load.Duration.D(), Rate: s.Load.Rate, Concurrency: s.Load.Concurrency,
		Order: s.Load.Order, Seed: s.Seed, ConnectTimeout: s.Load.ConnectTimeout.D(), IOTimeout: s.Load.IOTimeout.D(),
		BindPort: s.Load.BindPort, Gap: s.Load.Gap.D(), KeepaliveRequests: s.Server.KeepaliveRequests, Close: s.Server.Close, Live: live,
		SocketOffsets: cr.socketOffsets})
	if err != nil {
		// Close stops the sampler, before anything it reads goes.
		return err
	}
	rc.Load = recordLoad(lres)
	select {
	case <-time.After(settle):
	case <-ctx.Done():
	}
	if srv := cr.lab.probe("server"); srv != nil {
		// On a loaded machine the last closes can take longer than settle
		// to reach TIME_WAIT (keepalive-pool on a busy host's VM read 1971
		// of 2000, TcpExt.TW 2000 a moment later): wait, bounded, until the
		// server's count stops growing.
		waitStill(ctx, srv.TimeWait, 50*time.Millisecond, 2*time.Second)
	}
	tw, extra, serr := cr.lab.stopSampler()
	rc.Series = cr.cellSeries(tw, extra)
	caps, err := cr.lab.stopCaptures(cr.opt.dir)
	for _, st := range caps {
		spendCapture(cr.opt.pcapLeft, st)
		rc.Pcap = append(rc.Pcap, recordCapture(st))
		// A capture that lacks frames is said where people read, not only
		// in run.json: counts taken from it would be short.
		if st.Truncated {
			rc.Notes = append(rc.Notes, fmt.Sprintf("The capture %s reached its size limit: its last %d frames (the end of the cell) are not in the file; count from run.json, not from it.", st.Path, st.NotWritten))
		}
		if st.UserTimestamps > 0 {
			rc.Notes = append(rc.Notes, fmt.Sprintf("%d frames of the capture %s came without a kernel timestamp and carry the time they were read (late by the reader's delay).", st.UserTimestamps, st.Path))
		}
		if st.KernelDrops > 0 {
			rc.Notes = append(rc.Notes, fmt.Sprintf("The kernel dropped %d frames of the capture %s (it could not keep up): the file lacks them.", st.KernelDrops, st.Path))
		}
	}
	if err != nil {
		// The cell's counters do not depend on its captures: a full disk
		// cost the cell every figure when this failed it.
		rc.Notes = append(rc.Notes, fmt.Sprintf("A capture could not be written and was discarded (%v); the cell's counters do not depend on it.", err))
	}
	if cr.socketOffsets != nil {
		for name, pc := range lres.PerClient {
			if sc := rc.Skew.Clients[name]; sc != nil {
				sc.Sockets = int64(pc.Offsets)
			}
		}
	}
	for name, a := range cr.lab.skews {
		st, err := a.Stats()
		if err != nil {
			return err
		}
		rc.Skew.Clients[name].SkewStats = recordSkew(st)
	}
	if serr != nil {
		cr.log.Warn("time_wait sampling", "err", serr)
		// The figures of a node read at only some ticks are lower bounds:
		// the reader of run.json must know, not only the log.
		for _, n := range lab.Nodes() {
			if st := tw[n.Name]; st != nil && st.Failed > 0 {
				rc.Notes = append(rc.Notes, fmt.Sprintf("time_wait of %s could not be read at %d ticks (first error: %v); its max and final are of the other ticks",
					n.Name, st.Failed, serr))
			}
		}
	}
	if n := cr.lab.srcFailed; n > 0 {
		// A series with gaps read as complete: only TIME_WAIT's were said.
		rc.Notes = append(rc.Notes, fmt.Sprintf("%d readings of the time series (load, nftables or PAWS counters) failed and are missing from timeseries.csv (first error: %v)", n, cr.lab.srcErr))
	}
	synAfter, retransAfter, pairedAfter, err := synCounters(lab.Server.NS, srvProbe)
	if err != nil {
		return err
	}
	if !pairedBefore || !pairedAfter {
		rc.Notes = append(rc.Notes, "The server sent SYN-ACKs again while its SYN counters were read (four tries): syn.synack_retrans may be off by the few sent between the reads.")
	}
	rc.SYN = &result.SYN{
		In:            int64(synAfter[nat.CounterSYNIn] - synBefore[nat.CounterSYNIn]),
		SynAckOut:     int64(synAfter[nat.CounterSYNACKOut] - synBefore[nat.CounterSYNACKOut]),
		SynAckRetrans: retransAfter - retransBefore,
		RSTIn:         int64(synAfter[nat.CounterRSTIn] - synBefore[nat.CounterRSTIn]),
		RSTOut:        int64(synAfter[nat.CounterRSTOut] - synBefore[nat.CounterRSTOut]),
	}
	rc.SYN.Unanswered = max(0, rc.SYN.In-rc.SYN.SynAckOut)
	rc.Nodes = map[string]*result.Node{}
	clientsSum := &result.Node{Counters: map[string]int64{}}
	for _, p := range cr.lab.probes {
		after, err := p.Counters()
		if err != nil {
			return err
		}
		n := &result.Node{Counters: probe.Delta(before[p.Name], after)}
		if st := tw[p.Name]; st != nil {
			n.TimeWait = result.TimeWait{Max: st.Max, Final: st.Final, Samples: len(st.Series)}
			for _, smp := range st.Series {
				n.TimeWait.Series = append(n.TimeWait.Series, [2]int{int(smp.T.Milliseconds()), smp.TW})
			}
		}
		n.Summarize()
		rc.Nodes[p.Name] = n
		if lab.Node(p.Name).Role == topo.RoleClient {
			for k, v := range n.Counters {
				clientsSum.Counters[k] += v
			}
			clientsSum.TimeWait.Max += n.TimeWait.Max
			clientsSum.TimeWait.Final += n.TimeWait.Final
		}
	}
	// The clients' peak is the peak of their sum (the "clients" series),
	// not the sum of peaks reached at different ticks; the sum of peaks
	// stays only where no tick read every client.
	for _, se := range rc.Series {
		if se.Name == result.SeriesTimeWait && se.Node == "clients" && len(se.V) > 0 {
			clientsSum.TimeWait.Max = int(slices.Max(se.V))
			// samples: the ticks that read every client (it said 0, as if
			// the clients' TIME_WAIT had never been sampled); the series
			// itself is timeseries.csv's, the clients' own are under c1 ….
			clientsSum.TimeWait.Samples = len(se.V)
		}
	}
	clientsSum.Summarize()
	rc.Nodes["clients"] = clientsSum

	if need := s.Load.NeedsRate; need > 0 && lres.ConnPerS < need {
		// Too slow a machine to show the mechanism: an honest n/a, not a
		// failed expectation; the figures stay for the reader.
		rc.Status = result.CellNA
		why := "a busy or slow machine"
		if cr.opt.vm {
			why = "a VM under software emulation is tens of times slower than the host"
		}
		rc.Reason = fmt.Sprintf("n/a: this machine made %.0f new connections/s and the scenario needs %.0f (load.needs_rate) to show its mechanism; %s", lres.ConnPerS, need, why)
		return nil
	}
	rc.Expect = Evaluate(cr.c, rc, cr.opt.kernelVars)
	rc.Status = result.CellOK
	for _, e := range rc.Expect {
		if !e.OK {
			rc.Status = result.CellFailed
			rc.Reason = "expectation failed: " + e.Expr
			if e.Error != "" {
				rc.Reason += " (" + e.Error + ")"
			}
			break
		}
	}
	rc.Notes = append(rc.Notes, Explain(cr.c, rc)...)
	// An interrupt cuts the load short and the settling pause; one that
	// comes now finds the figures complete.
	cr.measured = ctx.Err() == nil
	return nil
}

func dedupe(s []string) []string {
	var out []string
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// Bound is the hard bound on a whole run, whatever a cell does: every
// cell's load duration plus a generous allowance for building and tearing
// down. twlab vm waits longer than this for its guest, so that a guest
// that hits it still sends the cells it finished.
func Bound(plan *scenario.Plan) time.Duration {
	var bound time.Duration
	for _, c := range plan.Cells {
		bound += c.S.Load.Duration.D() + c.S.Load.ConnectTimeout.D() + c.S.Load.IOTimeout.D() + 30*time.Second
	}
	return bound
}

// newRunDir makes a new, empty folder base/stamp for a run's results, or
// base/stamp-2, -3 … when that exists: two runs of one scenario started
// within the same second (or two scenarios that share a name) each get
// their own, instead of the second overwriting the first's run.json.
func newRunDir(base, stamp string) (string, error) {
	if err := result.MkdirAll(base); err != nil {
		return "", err
	}
	for i := 1; i <= 1000; i++ {
		dir := filepath.Join(base, stamp)
		if i > 1 {
			dir += "-" + strconv.Itoa(i)
		}
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			result.ChownToSudoUser(dir)
			return dir, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("%s: 1000 runs named %s already", base, stamp)
}

// IsInputError tells an error that the scenario's own values caused: a
// value the kernel refused for a knob. A cell records it as bad input, and
// `twlab up` exits with 2 for it, as `twlab run` does.
func IsInputError(err error) bool {
	var re *sysctl.RefusedError
	return errors.As(err, &re)
}
