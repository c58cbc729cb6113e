// Command twlab builds reproducible NAT labs in network namespaces and
// measures how TCP timestamps, TIME_WAIT and PAWS interact behind them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/twlab/twlab/lab/bench"
	"github.com/twlab/twlab/lab/report"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/runner"
	"github.com/twlab/twlab/lab/runstate"
	"github.com/twlab/twlab/lab/scenario"
	"github.com/twlab/twlab/lab/vm"
	"github.com/twlab/twlab/scenarios"
	"golang.org/x/sys/unix"
)

// Exit codes (documented in the README).
const (
	exitOK      = 0 // every expectation held
	exitFailed  = 1 // an expectation failed or a cell broke
	exitUsage   = 2 // bad input or usage
	exitEnv     = 3 // this machine cannot run the lab (not root, no netns …)
	exitNothing = 4 // every cell was n/a on this kernel: nothing was measured
	exitStopped = 130
)

var version = "dev"

func main() {
	if vm.IsGuest() {
		vm.GuestMain() // twlab is the init of a twlab VM; never returns
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `twlab: reproducible NAT labs for TCP timestamps, TIME_WAIT and PAWS

Usage:
  twlab run [flags] SCENARIO...  build the lab, run every cell, write results
  twlab list                     shipped scenarios
  twlab show SCENARIO            print a scenario (shipped or a file)
  twlab validate FILE...         check scenarios without running them (no root needed)
  twlab doctor [--json]          what this kernel can do for twlab
  twlab vm --kernel K... run SCENARIO   run a scenario on other kernels under QEMU
  twlab kernel build SRC         a kernel tree or tarball -> a bzImage twlab vm boots (old kernels)
  twlab up [flags] SCENARIO      build one cell's lab and leave it running (teaching, debugging)
  twlab exec [--lab ID] NODE -- CMD...   run CMD inside a node of a lab that is up (c1, lvs, server …)
  twlab down [--lab ID]          tear a lab down
  twlab labs                     list labs that are up
  twlab cleanup [--force]        remove what killed runs left behind
  twlab report DIR...            write report.html, summary.md, cells.csv again from a run folder (no root)
  twlab compare [--md|--json] [--html FILE] DIR...   runs of a scenario side by side, differences marked
  twlab bench [load|lab|probe|memory|all] [--json]   twlab against wrk and an ip/nft script on this machine
  twlab version

SCENARIO is a file path or the name of a shipped scenario (e.g. nat-paws.yaml).
Run 'twlab run -h' for the run flags.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "list":
		if code, ok := noArgs("list", args[1:], stdout, stderr); !ok {
			return code
		}
		return cmdList(stdout)
	case "show":
		return cmdShow(args[1:], stdout, stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "cleanup":
		return cmdCleanup(args[1:], stdout, stderr)
	case "up":
		return cmdUp(args[1:], stdout, stderr)
	case "exec":
		return cmdExec(args[1:], stderr)
	case "down":
		return cmdDown(args[1:], stdout, stderr)
	case "labs":
		if code, ok := noArgs("labs", args[1:], stdout, stderr); !ok {
			return code
		}
		return cmdLabs(stdout, stderr)
	case "vm":
		return cmdVM(args[1:], stdout, stderr)
	case "doctor":
		return cmdDoctor(args[1:], stdout, stderr)
	case "report":
		return cmdReport(args[1:], stdout, stderr)
	case "compare":
		return cmdCompare(args[1:], stdout, stderr)
	case "bench":
		return cmdBench(args[1:], stdout, stderr)
	case "kernel":
		return cmdKernel(args[1:], stdout, stderr)
	case bench.ServerCommand: // the load bench's server process; not for users
		return bench.ServeMain(args[1:], stdout, stderr)
	case "version", "--version":
		if code, ok := noArgs(args[0], args[1:], stdout, stderr); !ok {
			return code
		}
		fmt.Fprintln(stdout, "twlab", version)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "twlab: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

// parseInterspersed lets flags follow the positional arguments
// (`twlab run nat-paws.yaml --out x`), as users type them.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// stopSignals end a run the way Ctrl-C does. SIGPIPE is among them: Go
// kills a process whose write to a closed stdout or stderr fails unless
// SIGPIPE is caught, so `twlab run x.yaml | head` died mid-cell, leaving
// run.json "running" and its registration for cleanup to find. Caught, the
// write only fails and the run stops cleanly with what it finished.
var stopSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE}

// signalContext is cancelled by the first of stopSignals. It never stops
// listening: a signal arriving after notification was stopped would take
// its default action and kill the process in the middle of teardown or of
// writing results (seen: Ctrl-C held down at exit). Later signals are
// acknowledged once, not once each.
func signalContext(stderr io.Writer, what string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, stopSignals...)
	go func() {
		n, pipe := 0, false
		for s := range sigs {
			if s == syscall.SIGPIPE {
				// Caught, SIGPIPE comes from a write to any closed pipe or
				// socket, not only the output: a load connection written
				// after the server's RST, QEMU's input after it exited.
				// Only a closed stdout or stderr stops the run.
				if pipe || !outputClosed() {
					continue // (and every later write to a closed output raises one)
				}
				pipe = true
			}
			n++
			switch n {
			case 1:
				if s == syscall.SIGPIPE {
					fmt.Fprintf(stderr, "\ntwlab: output closed (broken pipe): %s\n", what)
				} else {
					fmt.Fprintf(stderr, "\ntwlab: %s: %s\n", s, what)
				}
				cancel()
			case 2:
				// Teardown is bounded; cutting it in half would leave a lab.
				fmt.Fprintf(stderr, "twlab: %s: teardown in progress, please wait\n", s)
			}
		}
	}()
	return ctx, cancel
}

// usageCode is the exit code of a flag error: -h asked for help (0), any
// other is a usage error (2), the same for every command.
// noArgs refuses arguments to a command that takes none (they were
// ignored, and a typo looked like success); -h prints the usage.
func noArgs(cmd string, args []string, stdout, stderr io.Writer) (int, bool) {
	if len(args) == 0 {
		return exitOK, true
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		fmt.Fprint(stdout, usage)
		return exitOK, false
	}
	fmt.Fprintf(stderr, "twlab %s: unexpected argument %q; it takes none\n", cmd, args[0])
	return exitUsage, false
}

func usageCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

// parseFlags parses interspersed flags; when ok is false the command returns
// code (0 after -h, 2 after a bad flag, which the flag package reported).
func parseFlags(fs *flag.FlagSet, args []string) (pos []string, code int, ok bool) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, exitOK, false
		}
		return nil, exitUsage, false
	}
	return pos, 0, true
}

// loadPlan reads and validates one scenario; on failure it prints the
// error (file:line:col and field) and ok is false.
func loadPlan(name string, opt scenario.Options, stderr io.Writer) (file string, src []byte, plan *scenario.Plan, ok bool) {
	file, src, err := loadScenario(name)
	if err != nil {
		fmt.Fprintln(stderr, "twlab:", err)
		return file, nil, nil, false
	}
	plan, err = scenario.Load(file, src, opt)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return file, src, nil, false
	}
	for _, w := range plan.Warnings {
		fmt.Fprintf(stderr, "twlab: %s: warning: %s\n", file, w)
	}
	return file, src, plan, true
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// loadScenario finds SCENARIO as a file, else as a shipped scenario. A
// folder of the bare name (`--out nat-paws` made one) does not hide the
// shipped scenario.
func loadScenario(name string) (file string, src []byte, err error) {
	st, serr := os.Stat(name)
	isDir := serr == nil && st.IsDir()
	if serr == nil && !isDir || strings.ContainsRune(name, '/') {
		if isDir {
			return name, nil, &scenario.Error{File: name, Msg: "is a directory, want a scenario YAML file"}
		}
		src, err = scenario.ReadFile(name)
		return name, src, err
	}
	if b, ok := scenarios.Read(name); ok {
		n := name
		if !strings.HasSuffix(n, ".yaml") {
			n += ".yaml"
		}
		return n, b, nil
	}
	if isDir {
		return name, nil, &scenario.Error{File: name, Msg: "is a directory and no shipped scenario has that name; want a scenario YAML file (`twlab list` shows the shipped ones)"}
	}
	return name, nil, &scenario.Error{File: name, Msg: "no such file and no shipped scenario of that name; `twlab list` shows the shipped ones"}
}

func newLogger(w io.Writer, verbose int) *slog.Logger {
	lvl := slog.LevelWarn
	switch {
	case verbose == 1:
		lvl = slog.LevelInfo
	case verbose > 1:
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}

type countFlag int

func (c *countFlag) String() string   { return fmt.Sprint(int(*c)) }
func (c *countFlag) Set(string) error { *c++; return nil }
func (c *countFlag) IsBoolFlag() bool { return true }

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("twlab run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "write results exactly into `DIR` (default results/<scenario>/<UTC time>; with several scenarios DIR/<scenario>)")
	root := fs.String("results", "results", "results root `DIR` when --out is not given")
	only := fs.String("only", "", "run only the cells for which `EXPR` holds, e.g. 'server.net.ipv4.tcp_rfc1337 == 1'")
	junit := fs.String("junit", "", "also write JUnit XML to `FILE`: one test case per cell, n/a cells skipped")
	var sets multiFlag
	fs.Var(&sets, "set", "override a scenario field or sysctl, `path=value` (repeatable), e.g. load.connections=50")
	var verbose countFlag
	fs.Var(&verbose, "v", "log progress (-v) or debug details (-v -v) to stderr")
	quiet := fs.Bool("q", false, "print only the final table")
	pcap := fs.Bool("pcap", false, "capture the server's link of every cell into <results>/pcap/ (bounded: 160-byte frames, 16 MiB per file)")
	pcapClients := fs.Bool("pcap-clients", false, "capture every client's link too")
	asJSON := fs.Bool("json", false, "print the run document (run.json) to stdout for tooling; everything else goes to stderr")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: twlab run [flags] SCENARIO...\n\nFlags:")
		fs.PrintDefaults()
	}
	pos, code, ok := parseFlags(fs, args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		fmt.Fprintln(stderr, "twlab run: want a SCENARIO (a file or a shipped name such as nat-paws.yaml)")
		return exitUsage
	}
	// Every scenario is validated before anything runs.
	var plans []*scenario.Plan
	for _, name := range pos {
		_, _, plan, ok := loadPlan(name, scenario.Options{Set: sets, Only: *only}, stderr)
		if !ok {
			return exitUsage
		}
		plans = append(plans, plan)
	}
	if err := runner.CheckEnv(); err != nil {
		fmt.Fprintln(stderr, "twlab:", err)
		return exitEnv
	}
	log := newLogger(stderr, int(verbose))
	// --json: stdout carries only the run documents; the human output
	// (progress, table, paths) goes to stderr.
	jsonOut := io.Discard
	if *asJSON {
		jsonOut, stdout = stdout, stderr
	}

	ctx, cancel := signalContext(stderr, "stopping; tearing the lab down and keeping finished cells")
	defer cancel()

	live := !*quiet && isTerminal(stdout) && os.Getenv("CI") == ""
	var outcome runOutcome
	var runs []*result.Run
	// junitRuns are runs plus a failed stand-in for every scenario that
	// could not start: CI must not read green XML for a scenario that never
	// ran while the exit code says it failed.
	var junitRuns []*result.Run
	outNames := map[string]bool{}
	for i, plan := range plans {
		if ctx.Err() != nil {
			outcome.stopped = true // interrupted between two scenarios
			break
		}
		dir := *out
		if dir != "" && len(plans) > 1 {
			// Two scenarios may share a name (a copy being edited): each
			// gets a folder of its own, in order: NAME, NAME-2, …
			name := plan.Scenario.Name
			for k := 2; outNames[name]; k++ {
				name = fmt.Sprintf("%s-%d", plan.Scenario.Name, k)
			}
			outNames[name] = true
			dir = filepath.Join(dir, name)
		}
		if !*quiet {
			fmt.Fprintf(stdout, "twlab: %s, %s\n", plan.Scenario.Name, cellCount(len(plan.Cells)))
		}
		prog := newProgress(stdout, live, *quiet)
		opt := runner.Options{OutDir: dir, ResultsRoot: *root, Log: log, Overrides: sets, Only: *only,
			Artifacts: report.WriteArtifacts, Pcap: *pcap, PcapClients: *pcapClients,
			Progress: prog.cellDone, OnCellStart: prog.cellStart}
		r, rdir, err := runner.Run(ctx, plan, opt)
		prog.stop()
		if err != nil && r == nil {
			// The scenarios before it keep their results (and the JUnit
			// file its suites).
			fmt.Fprintln(stderr, "twlab:", err)
			junitRuns = append(junitRuns, notStarted(pos[i], "(scenario)", err.Error()))
			var ee *runner.EnvError
			if errors.As(err, &ee) {
				outcome.env = true
			} else {
				outcome.failed = true
			}
			continue
		}
		if err != nil {
			fmt.Fprintln(stderr, "twlab: writing results:", err)
			outcome.failed = true
		}
		runs = append(runs, r)
		junitRuns = append(junitRuns, r)
		fmt.Fprintln(stdout)
		fmt.Fprint(stdout, report.Table(r))
		if fe := report.FailedExpectations(r); len(fe) > 0 {
			fmt.Fprintln(stdout, "\nFailed:")
			for _, f := range fe {
				fmt.Fprintln(stdout, "  "+f)
			}
		}
		fmt.Fprintf(stdout, "\nresults: %s\nreport:  %s\n", filepath.Join(rdir, "run.json"), filepath.Join(rdir, report.ReportName))
		fmt.Fprintln(stdout, report.StatusLine(r))
		if *asJSON {
			if err := writeRunJSON(jsonOut, r); err != nil {
				fmt.Fprintln(stderr, "twlab: --json:", err)
				outcome.failed = true
			}
		}
		switch r.Status {
		case result.RunInterrupted:
			outcome.stopped = true
		case result.RunNA:
			outcome.nothing = true
		case result.RunFailed:
			outcome.failed = true
			for _, c := range r.Cells {
				if c.ErrorKind == result.ErrorInput {
					outcome.input = true // the kernel refused a value the scenario asked for
				}
			}
		}
		if len(plans) > 1 {
			fmt.Fprintln(stdout)
		}
	}
	if *junit != "" && len(junitRuns) > 0 {
		b, err := report.JUnit(junitRuns)
		if err == nil {
			err = result.WriteUserFile(*junit, b)
		}
		if err != nil {
			fmt.Fprintln(stderr, "twlab: junit:", err)
			outcome.failed = true
		} else if !*quiet {
			fmt.Fprintf(stdout, "junit: %s\n", *junit)
		}
	}
	return outcome.code()
}

// runOutcome collects what the scenarios of one `twlab run` came to; the
// exit code is decided once, at the end: one scenario whose cells were all
// n/a must not hide another's failure (exit 4 where 1 was due).
type runOutcome struct {
	stopped, input, env, failed, nothing bool
}

func (o runOutcome) code() int {
	switch {
	case o.stopped:
		return exitStopped
	case o.input:
		return exitUsage
	case o.env:
		return exitEnv
	case o.failed:
		return exitFailed
	case o.nothing:
		return exitNothing
	}
	return exitOK
}

func cmdList(stdout io.Writer) int {
	for _, n := range scenarios.Names() {
		b, _ := scenarios.Read(n)
		fmt.Fprintf(stdout, "%-28s %s\n", n, scenarios.Summary(b))
	}
	return exitOK
}

func cmdShow(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: twlab show SCENARIO")
		return exitUsage
	}
	_, src, err := loadScenario(args[0])
	if err != nil {
		fmt.Fprintln(stderr, "twlab:", err)
		return exitUsage
	}
	stdout.Write(src)
	return exitOK
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("twlab validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sets multiFlag
	fs.Var(&sets, "set", "apply `path=value` before validating (repeatable)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageCode(err)
	}
	if len(pos) == 0 {
		fmt.Fprintln(stderr, "usage: twlab validate FILE...")
		return exitUsage
	}
	code := exitOK
	for _, name := range pos {
		file, src, err := loadScenario(name)
		if err == nil {
			var plan *scenario.Plan
			plan, err = scenario.Load(file, src, scenario.Options{Set: sets})
			if err == nil {
				for _, w := range plan.Warnings {
					fmt.Fprintf(stderr, "twlab: %s: warning: %s\n", file, w)
				}
				fmt.Fprintf(stdout, "%s: ok (%s)\n", file, cellCount(len(plan.Cells)))
				continue
			}
		}
		fmt.Fprintln(stderr, err)
		code = exitUsage
	}
	return code
}

func cmdCleanup(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("twlab cleanup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	force := fs.Bool("force", false, "stop live runs and labs first (SIGTERM, as Ctrl-C), then remove every twlab namespace")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageCode(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "twlab cleanup takes no arguments (got %q); it removes what dead runs left, or with --force every twlab lab\n", pos)
		return exitUsage
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "twlab: cleanup removes network namespaces and needs root: run it with sudo")
		return exitEnv
	}
	removed, err := runstate.Cleanup(*force, newLogger(stderr, 0))
	removed = append(removed, vm.RemoveStaleInitrds()...) // a killed twlab vm's guest image
	for _, n := range removed {
		fmt.Fprintln(stdout, "removed", n)
	}
	if err != nil {
		fmt.Fprintln(stderr, "twlab cleanup:", err)
		return exitFailed
	}
	if len(removed) == 0 {
		fmt.Fprintln(stdout, "nothing to clean up")
	}
	return exitOK
}

// notStarted is the run document that stands in, in JUnit XML, for a
// scenario (or a kernel) that ended without one: one failed case, id, with
// the reason.
func notStarted(file, id, reason string) *result.Run {
	return &result.Run{ScenarioFile: file, Status: result.RunFailed, Cells: []*result.Cell{
		{ID: id, Status: result.CellFailed, Reason: reason}}}
}

// outputClosed says whether standard output or error has lost its reader:
// poll(2) flags the write end of such a pipe or socket with an error.
func outputClosed() bool {
	fds := []unix.PollFd{{Fd: 1, Events: unix.POLLOUT}, {Fd: 2, Events: unix.POLLOUT}}
	if _, err := unix.Poll(fds, 0); err != nil {
		return false
	}
	for _, f := range fds {
		if f.Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
			return true
		}
	}
	return false
}

// cellCount is "1 cell" or "N cells".
func cellCount(n int) string {
	if n == 1 {
		return "1 cell"
	}
	return fmt.Sprintf("%d cells", n)
}
