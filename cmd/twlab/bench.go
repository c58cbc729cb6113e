package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twlab/twlab/lab/bench"
	"github.com/twlab/twlab/lab/runner"
	"github.com/twlab/twlab/lab/scenario"
)

func cmdBench(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("twlab bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the results as a JSON list instead of the table")
	repeat := fs.Int("repeat", 3, "measure every figure `N` times and report the median")
	dur := fs.Duration("duration", 5*time.Second, "length of one load measurement (whole seconds, as wrk takes them)")
	conc := fs.Int("concurrency", 8, "concurrent connections of twlab's generator and of wrk (-c)")
	wrkThreads := fs.String("wrk-threads", "1,2", "wrk's threads (-t), a `LIST`: each is a reference line of its own")
	cpuprof := fs.String("cpuprofile", "", "profile twlab's side of the first repeat of each bench into `PREFIX`-<bench>.pprof")
	var verbose countFlag
	fs.Var(&verbose, "v", "log lab details to stderr")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: twlab bench [flags] [%s|all]...\n\n", joinBar(bench.Benches))
		fmt.Fprintln(stderr, "Measures twlab against reference tools on this machine: load (vs wrk, Debian package wrk),")
		fmt.Fprintln(stderr, "lab (build+teardown vs an ip/nft script: iproute2, nftables), probe (10 Hz sampling overhead),")
		fmt.Fprintln(stderr, "memory (peak RSS of a 64-client run). Exit 0: every goal met; 1: a goal missed;")
		fmt.Fprintln(stderr, "3: a bench could not measure (a tool missing or failing, a lab not built); 130: interrupted.")
		fmt.Fprintln(stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	var names []string
	everything := len(pos) == 0 // or "all": what cannot run is skipped, not the lot
	for _, p := range pos {
		switch {
		case p == "all":
			everything = true
			names = append(names, bench.Benches...)
		case slices.Contains(bench.Benches, p):
			names = append(names, p)
		default:
			fmt.Fprintf(stderr, "twlab bench: unknown bench %q: want %s or all\n", p, joinBar(bench.Benches))
			return exitUsage
		}
	}
	if len(names) == 0 {
		names = bench.Benches
	}
	// "lab all" ran lab twice: Compact only drops neighbours.
	seen := map[string]bool{}
	names = slices.DeleteFunc(names, func(n string) bool {
		dup := seen[n]
		seen[n] = true
		return dup
	})
	var threads []int
	for _, f := range strings.Split(*wrkThreads, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > *conc {
			threads = nil
			break
		}
		threads = append(threads, n)
	}
	// wrk takes whole seconds: 1.5s would run twlab 1.5 s and wrk 2.
	// The memory bench runs a scenario, whose duration is bounded: a
	// longer one failed only after the other benches had run for hours.
	if slices.Contains(names, "memory") && *dur > scenario.MaxDuration {
		fmt.Fprintf(stderr, "twlab bench: the memory bench runs a scenario, whose duration is at most %s; give a shorter --duration or leave memory out\n", scenario.MaxDuration)
		return exitUsage
	}
	if *repeat < 1 || *dur < time.Second || *dur%time.Second != 0 || *conc < 1 || *conc > 64 || len(threads) == 0 {
		fmt.Fprintln(stderr, "twlab bench: want --repeat >= 1, --duration whole seconds >= 1s, --concurrency 1..64 and --wrk-threads a list of 1..concurrency")
		return exitUsage
	}
	if err := runner.CheckEnv(); err != nil {
		fmt.Fprintln(stderr, "twlab:", err)
		return exitEnv
	}
	skipped := false
	if everything {
		// wrk missing stopped lab, probe and memory too, which do not
		// use it: those run, the bench that cannot is named, and the exit
		// code still says a goal went unmeasured.
		names = slices.DeleteFunc(names, func(n string) bool {
			err := bench.CheckTools([]string{n})
			if err != nil {
				fmt.Fprintf(stderr, "twlab bench: skipping %s: %v\n", n, err)
				skipped = true
			}
			return err != nil
		})
	}
	if err := bench.CheckTools(names); err != nil {
		fmt.Fprintln(stderr, "twlab bench:", err)
		return exitEnv
	}
	// signalContext, not signal.NotifyContext: with SIGPIPE caught, a load
	// connection written after the server's reset stopped the whole bench.
	ctx, cancel := signalContext(stderr, "stopping the bench; tearing the lab down")
	defer cancel()
	self, _ := os.Executable()
	fmt.Fprintf(stderr, "twlab bench: %v, %d repeats, medians (other load on this machine shows up as noise)\n", names, *repeat)
	rs, err := bench.Run(ctx, names, bench.Options{Repeat: *repeat, Duration: *dur, Concurrency: *conc,
		WrkThreads: threads, CPUProfile: *cpuprof, Self: self, Log: newLogger(stderr, int(verbose)), Progress: stderr})
	if *asJSON {
		if rs == nil {
			rs = []bench.Result{}
		}
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // goals read "ratio >= 5", not "ratio \u003e= 5"
		if jerr := enc.Encode(rs); jerr != nil {
			// a figure that is not a number (NaN, ±Inf) has no JSON form
			fmt.Fprintln(stderr, "twlab bench: --json:", jerr)
			return exitFailed
		}
		fmt.Fprint(stdout, b.String())
	} else if len(rs) > 0 {
		fmt.Fprintln(stdout)
		bench.Table(stdout, rs)
	}
	if err != nil {
		fmt.Fprintln(stderr, "twlab bench:", err)
		if ctx.Err() != nil {
			return exitStopped
		}
		// Not 1: a CI job must tell a bench that could not measure (wrk
		// failed, a lab could not be built) from a goal missed.
		return exitEnv
	}
	for _, r := range rs {
		if !r.Met {
			return exitFailed
		}
	}
	if skipped {
		return exitEnv
	}
	return exitOK
}

func joinBar(s []string) string { return strings.Join(s, "|") }
