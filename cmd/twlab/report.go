package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/twlab/twlab/lab/report"
	"github.com/twlab/twlab/lab/result"
)

// readRunDir reads DIR/run.json (DIR may also name the run.json itself)
// and returns the folder and the run.
func readRunDir(arg string) (string, *result.Run, error) {
	dir := arg
	if filepath.Base(arg) == "run.json" {
		dir = filepath.Dir(arg)
	}
	r, err := result.ReadRun(filepath.Join(dir, "run.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return dir, nil, fmt.Errorf("%s: no run.json here; want a run folder such as results/nat-paws/20261125T134705Z", arg)
	}
	return dir, r, err
}

// cmdReport writes cells.csv, summary.md and report.html again from a run
// folder's run.json and timeseries.csv. It needs no root. The folder may
// come from anywhere: exit 0 when the report was written (what could not be
// read is listed in it and on stderr), 2 for a folder that is not a run, 1
// when a file could not be written.
func cmdReport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("twlab report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: twlab report DIR...\n\nWrites DIR/report.html, DIR/summary.md and DIR/cells.csv again from DIR/run.json and DIR/timeseries.csv.")
	}
	pos, code, ok := parseFlags(fs, args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		fmt.Fprintln(stderr, "usage: twlab report DIR...")
		return exitUsage
	}
	code = exitOK
	for _, arg := range pos {
		dir, r, err := readRunDir(arg)
		if err != nil {
			fmt.Fprintln(stderr, "twlab report:", err)
			code = max(code, exitUsage)
			continue
		}
		warnings, err := report.WriteReport(dir, r)
		for _, w := range warnings {
			fmt.Fprintf(stderr, "twlab report: %s: warning: %s\n", arg, w)
		}
		if err != nil {
			fmt.Fprintln(stderr, "twlab report:", err)
			code = max(code, exitFailed)
			continue
		}
		fmt.Fprintln(stdout, filepath.Join(dir, report.ReportName))
	}
	return code
}

// cmdCompare merges several runs of a scenario into one matrix.
func cmdCompare(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("twlab compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	md := fs.Bool("md", false, "print Markdown instead of the terminal table")
	htmlFile := fs.String("html", "", "also write the comparison as a self-contained HTML page to `FILE`")
	asJSON := fs.Bool("json", false, "print the comparison as JSON instead of the terminal table")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: twlab compare [--md] [--json] [--html FILE] DIR...\n\nRows are cells, columns are runs (the first is the baseline); differing figures are marked.\n\nFlags:")
		fs.PrintDefaults()
	}
	pos, code, ok := parseFlags(fs, args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		fmt.Fprintln(stderr, "usage: twlab compare [--md] [--json] [--html FILE] DIR...")
		return exitUsage
	}
	var runs []report.CompareRun
	for _, arg := range pos {
		dir, r, err := readRunDir(arg)
		if err != nil {
			fmt.Fprintln(stderr, "twlab compare:", err)
			return exitUsage
		}
		runs = append(runs, report.CompareRun{Dir: dir, Run: r})
	}
	cmp := report.Compare(runs)
	if *asJSON || *md {
		// The terminal table carries its warnings; a document for tools
		// carries them too, and a person sees them here.
		for _, w := range cmp.Warnings {
			fmt.Fprintln(stderr, "twlab compare: warning:", w)
		}
	}
	switch {
	case *asJSON:
		b, err := json.MarshalIndent(cmp, "", "  ")
		if err != nil {
			fmt.Fprintln(stderr, "twlab compare:", err)
			return exitFailed
		}
		stdout.Write(append(b, '\n'))
	case *md:
		fmt.Fprint(stdout, cmp.Markdown())
	default:
		fmt.Fprint(stdout, cmp.Text())
	}
	if *htmlFile != "" {
		b, err := cmp.HTML()
		if err == nil {
			err = result.WriteUserFile(*htmlFile, b)
		}
		if err != nil {
			fmt.Fprintln(stderr, "twlab compare:", err)
			return exitFailed
		}
	}
	return exitOK
}

// writeRunJSON prints a run document as run.json has it (for --json).
func writeRunJSON(w io.Writer, r *result.Run) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
