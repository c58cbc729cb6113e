// Package bench measures twlab against reference tools on this machine, side
// by side in one run: the load generator against wrk, the lab build against a
// shell script of ip and nft commands, the cost of 10 Hz sampling, and the
// peak memory of a 64-client run. Every figure is the median of several
// repeats, and every repeat of a load figure runs in a fresh lab, so that no
// TIME_WAIT or conntrack state of one measurement slows the next.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one line of the table.
type Result struct {
	Name string `json:"name"`
	Unit string `json:"unit"`
	// Twlab and Reference are medians over the repeats. Reference is nil
	// when there is no reference tool (memory).
	Twlab     float64  `json:"twlab"`
	Reference *float64 `json:"reference"`
	// RefTool names the reference: "wrk -t1 -c8", "ip+nft script", …
	RefTool string `json:"reference_tool,omitempty"`
	// Ratio says how twlab compares, in the direction the goal states:
	// load twlab/wrk, lab script/twlab (speed-up), probe with/without;
	// rounded to 3 decimals, and Met is decided on this value.
	Ratio *float64 `json:"ratio"`
	Goal  string   `json:"goal"`
	// Met is true for a report-only line too (there is nothing to miss);
	// ReportOnly tells a reader of the JSON that it was not judged.
	Met        bool `json:"met"`
	ReportOnly bool `json:"report_only,omitempty"`
	// Every repeat, for the reader to judge the noise.
	TwlabRuns     []float64 `json:"twlab_runs"`
	ReferenceRuns []float64 `json:"reference_runs,omitempty"`
	Note          string    `json:"note,omitempty"`
}

// Options shape a bench run.
type Options struct {
	// Repeat is how many times each figure is measured (median reported).
	Repeat int
	// Duration of one load measurement.
	Duration time.Duration
	// Concurrency of the load: twlab's chains and wrk's connections.
	Concurrency int
	// WrkThreads lists wrk's -t values: each is a reference of its own
	// (one line each); the default 1 and 2 (one thread per core here).
	WrkThreads []int
	// CPUProfile, when set, is a file name prefix: the twlab side of the
	// first repeat of each bench is profiled into PREFIX-<bench>.pprof.
	CPUProfile string
	// Self is the twlab binary, run as a child for the memory figure.
	Self string
	Log  *slog.Logger
	// Progress gets one line per measurement; nil discards.
	Progress io.Writer
}

func (o *Options) defaults() {
	if o.Repeat <= 0 {
		o.Repeat = 3
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if len(o.WrkThreads) == 0 {
		o.WrkThreads = []int{1, 2}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Benches lists the benches in the order `all` runs them.
var Benches = []string{"load", "lab", "probe", "memory"}

// MissingTool says which Debian package provides a tool a bench needs.
type MissingTool struct {
	Tool, Package, Bench string
}

func (m *MissingTool) Error() string {
	return fmt.Sprintf("bench %s needs %s, which is not installed: apt-get install %s (twlab installs nothing itself)", m.Bench, m.Tool, m.Package)
}

// tools lists, per bench, the reference tools and their Debian packages.
var tools = map[string][][2]string{
	"load": {{"wrk", "wrk"}},
	"lab":  {{"ip", "iproute2"}, {"nft", "nftables"}, {"bash", "bash"}},
}

// CheckTools reports the first missing tool of the named benches.
func CheckTools(benches []string) error {
	var errs []error
	for _, b := range benches {
		for _, t := range tools[b] {
			if _, err := exec.LookPath(t[0]); err != nil {
				errs = append(errs, &MissingTool{Tool: t[0], Package: t[1], Bench: b})
			}
		}
	}
	return errors.Join(errs...)
}

// Run runs the named benches (see Benches) and returns their lines.
func Run(ctx context.Context, names []string, opt Options) ([]Result, error) {
	opt.defaults()
	if err := CheckTools(names); err != nil {
		return nil, err
	}
	var out []Result
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		var rs []Result
		var err error
		switch n {
		case "load":
			rs, err = benchLoad(ctx, opt)
		case "lab":
			rs, err = benchLab(ctx, opt)
		case "probe":
			rs, err = benchProbe(ctx, opt)
		case "memory":
			rs, err = benchMemory(ctx, opt)
		default:
			return out, fmt.Errorf("unknown bench %q (want %s or all)", n, strings.Join(Benches, ", "))
		}
		if cerr := ctx.Err(); cerr != nil {
			// A measurement cut short by Ctrl-C is not a figure: its lines
			// would be read as a finished bench (a 2.4 s load run went into
			// a median, and a probe ratio came from 6 s of a 40 s run).
			return out, fmt.Errorf("bench %s: stopped before it finished: %w", n, cerr)
		}
		out = append(out, rs...)
		if err != nil {
			return out, fmt.Errorf("bench %s: %w", n, err)
		}
	}
	return out, nil
}

// Table prints results as an aligned table.
func Table(w io.Writer, rs []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "name\tunit\ttwlab\treference\tratio\tgoal\tmet\t")
	for _, r := range rs {
		ref, ratio := "-", "-"
		if r.Reference != nil {
			ref = num(*r.Reference)
			if r.RefTool != "" {
				ref += " (" + r.RefTool + ")"
			}
		}
		if r.Ratio != nil {
			// The value met was decided on (ratios are rounded to 3
			// decimals first): "1.00" next to "no" hid 0.9997.
			ratio = strconv.FormatFloat(*r.Ratio, 'f', -1, 64)
		}
		met := "no"
		switch {
		case r.ReportOnly:
			met = "-"
		case r.Met:
			met = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Name, r.Unit, num(r.Twlab), ref, ratio, r.Goal, met)
	}
	tw.Flush()
	for _, r := range rs {
		if r.Note != "" {
			fmt.Fprintf(w, "  %s: %s\n", r.Name, r.Note)
		}
	}
}

func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ptr(v float64) *float64 { return &v }

// ratio3 is a ratio as printed and judged: rounded to 3 decimals.
func ratio3(v float64) float64 { return round(v, 3) }

// atLeast judges a ratio against a goal of at least min, on the value the
// table shows, and returns both.
func atLeast(v, min float64) (float64, bool) {
	r := ratio3(v)
	return r, r >= min
}

// arms warns when the arms' order cannot be balanced: the order rotates
// between repeats, so each arm takes each place equally often only when
// the repeats are a multiple of the arms.
func balanceNote(repeat, arms int) string {
	if repeat%arms == 0 {
		return ""
	}
	return fmt.Sprintf("; order not balanced (%d repeats of %d arms: the first arm ran first more often; use a multiple of %d)", repeat, arms, arms)
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// profiler profiles the twlab side of one measurement per bench.
type profiler struct {
	prefix string
	done   map[string]bool
	f      *os.File
}

func newProfiler(prefix string) *profiler { return &profiler{prefix: prefix, done: map[string]bool{}} }

// start begins a profile for name unless one was taken already; stop ends it.
func (p *profiler) start(name string) {
	if p == nil || p.prefix == "" || p.done[name] || p.f != nil {
		return
	}
	f, err := os.Create(p.prefix + "-" + name + ".pprof")
	if err != nil {
		return
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return
	}
	p.done[name] = true
	p.f = f
}

func (p *profiler) stop() {
	if p == nil || p.f == nil {
		return
	}
	pprof.StopCPUProfile()
	p.f.Close()
	p.f = nil
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
