package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/runner"
	"github.com/twlab/twlab/lab/runstate"
	"github.com/twlab/twlab/lab/scenario"
)

// notifyEnv tells a detached `twlab up` child which fd reports readiness.
const notifyEnv = "TWLAB_UP_NOTIFY_FD"

func cmdUp(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("twlab up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cellSel := fs.String("cell", "", "the cell to build: its id or its 1-based index (default: the first)")
	detach := fs.Bool("d", false, "detach: return once the lab is up; `twlab down` tears it down")
	var sets multiFlag
	fs.Var(&sets, "set", "override a field or sysctl, `path=value` (repeatable)")
	var verbose countFlag
	fs.Var(&verbose, "v", "log to stderr")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: twlab up [flags] SCENARIO\n\nFlags:")
		fs.PrintDefaults()
	}
	pos, code, ok := parseFlags(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "twlab up: want exactly one SCENARIO")
		return exitUsage
	}
	file, _, plan, ok := loadPlan(pos[0], scenario.Options{Set: sets}, stderr)
	if !ok {
		return exitUsage
	}
	cell, err := pickCell(plan, *cellSel)
	if err != nil {
		fmt.Fprintln(stderr, "twlab up:", err)
		return exitUsage
	}
	if err := runner.CheckEnv(); err != nil {
		fmt.Fprintln(stderr, "twlab:", err)
		return exitEnv
	}
	if *detach && os.Getenv(notifyEnv) == "" {
		return detachUp(args, stdout, stderr)
	}

	ctx, cancel := signalContext(stderr, "tearing the lab down")
	defer cancel()
	var notify *os.File
	if fd, err := strconv.Atoi(os.Getenv(notifyEnv)); err == nil {
		notify = os.NewFile(uintptr(fd), "notify")
	}
	var upID string
	err = runner.Up(ctx, file, cell, newLogger(stderr, int(verbose)), func(l *runstate.Lab) error {
		upID = l.RunID
		if notify != nil {
			fmt.Fprintf(notify, "ok %s\n", l.RunID)
			notify.Close()
			return nil
		}
		printLab(stdout, l, false)
		fmt.Fprintln(stdout, "\nThe lab stays up until Ctrl-C here or `sudo twlab down` elsewhere.")
		return nil
	}, func(occ []runstate.Occupant) {
		// Ctrl-C here ends the lab as down does, and says as down does
		// what the user started inside and is left running.
		warnOccupants(stderr, "twlab up", upID, occ)
	})
	if err == nil && notify != nil {
		// A detached lab that came up and went down cleanly leaves no log
		// behind (a failure keeps it: the user was pointed to it).
		os.Remove(runstate.UpLogPath(os.Getpid()))
	}
	if err != nil {
		code := exitFailed
		var ee *runner.EnvError
		switch {
		case ctx.Err() != nil && upID == "":
			// Ctrl-C while the lab was being built: an interrupt, as in
			// run and up -d, not a failure ("build lab: context canceled").
			// Once the lab was up, an error is its teardown's, and said.
			code, err = exitStopped, errors.New("interrupted before the lab was up; nothing is left of it")
		case errors.As(err, &ee):
			code = exitEnv
		case runner.IsInputError(err):
			code, err = exitUsage, fmt.Errorf("bad input: %w", err)
		}
		if notify != nil {
			// The code travels too: `up -d` exits as `up` would.
			fmt.Fprintf(notify, "err %d %s\n", code, strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		fmt.Fprintln(stderr, "twlab up:", err)
		return code
	}
	return exitOK
}

func pickCell(plan *scenario.Plan, sel string) (*scenario.Cell, error) {
	if sel == "" {
		return plan.Cells[0], nil
	}
	for _, c := range plan.Cells {
		if c.ID == sel {
			return c, nil
		}
	}
	if n, err := strconv.Atoi(sel); err == nil && n >= 1 && n <= len(plan.Cells) {
		return plan.Cells[n-1], nil
	}
	ids := make([]string, len(plan.Cells))
	for i, c := range plan.Cells {
		ids[i] = fmt.Sprintf("%d: %s", i+1, c.ID)
	}
	return nil, fmt.Errorf("no cell %q; the cells are:\n  %s", sel, strings.Join(ids, "\n  "))
}

// detachUp starts `twlab up` again in its own session and waits until it
// reports the lab up (or its failure) on a pipe.
func detachUp(args []string, stdout, stderr io.Writer) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "twlab up:", err)
		return exitFailed
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(stderr, "twlab up:", err)
		return exitFailed
	}
	// Named by the child's pid once it runs; until then a name cleanup
	// cannot read as a pid (CreateTemp's random digits would be one).
	logf, err := os.CreateTemp("", runstate.UpLogNew+"*.log")
	if err != nil {
		fmt.Fprintln(stderr, "twlab up:", err)
		return exitFailed
	}
	cmd := exec.Command(self, append([]string{"up"}, args...)...)
	cmd.Env = append(os.Environ(), notifyEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Signals are caught before the child exists: one arriving between
	// its start and Notify would kill this process and leave the child
	// building a lab no one hears of.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, stopSignals...)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "twlab up:", err)
		return exitFailed
	}
	w.Close()
	logf.Close()
	pid := cmd.Process.Pid
	cmd.Process.Release()
	// Named by the child's PID from now on (it keeps writing to the same
	// file): it removes its log when it ends cleanly, and cleanup removes
	// that of one that died.
	logName := logf.Name()
	if os.Rename(logName, runstate.UpLogPath(pid)) == nil {
		logName = runstate.UpLogPath(pid)
	}
	// A Ctrl-C while the lab is being built must not leave it up with no
	// one told: the child (its own session, so the signal does not reach
	// it) is asked to stop, and its answer awaited.
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		lines <- line
	}()
	var line string
	select {
	case line = <-lines:
	case <-sigs:
		fmt.Fprintf(stderr, "twlab up: interrupted; stopping the lab process (its log: %s)\n", logName)
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case line = <-lines:
			if l := strings.TrimSpace(strings.TrimPrefix(line, "ok ")); strings.HasPrefix(line, "ok ") {
				// It came up just before the signal: take it down.
				if lab, err := runstate.FindLab(l); err == nil {
					runstate.StopLab(lab, 10*time.Second)
				}
			}
		case <-time.After(15 * time.Second):
			fmt.Fprintf(stderr, "twlab up: the lab process did not answer; `sudo twlab cleanup` removes what it leaves; see %s\n", logName)
		}
		r.Close()
		return exitStopped
	}
	r.Close()
	switch {
	case strings.HasPrefix(line, "ok "):
		l, err := runstate.FindLab(strings.TrimSpace(strings.TrimPrefix(line, "ok ")))
		if err != nil {
			fmt.Fprintln(stderr, "twlab up:", err)
			return exitFailed
		}
		printLab(stdout, l, true)
		fmt.Fprintf(stdout, "\nLog: %s\n", logName)
		return exitOK
	case strings.HasPrefix(line, "err "):
		code, msg, _ := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "err ")), " ")
		fmt.Fprintf(stderr, "twlab up: %s (log: %s)\n", msg, logName)
		if c, err := strconv.Atoi(code); err == nil && c > 0 {
			return c
		}
	default:
		fmt.Fprintf(stderr, "twlab up: the lab process ended without reporting (killed?); see %s, and `sudo twlab cleanup` removes what it left\n", logName)
	}
	return exitFailed
}

func printLab(w io.Writer, l *runstate.Lab, detached bool) {
	fmt.Fprintf(w, "lab %s is up: %s, cell %s\n\n", l.RunID, l.Scenario, l.Cell)
	for _, n := range l.Nodes {
		fmt.Fprintf(w, "  %-7s %-12s netns %-20s link %s\n", n.Name, n.Addr, n.Netns, n.Link)
	}
	if len(l.Knobs) > 0 {
		fmt.Fprintln(w, "\nIn force (read back from each node):")
		for _, k := range slices.Sorted(maps.Keys(l.Knobs)) {
			fmt.Fprintf(w, "  %s = %s\n", k, l.Knobs[k])
		}
	}
	// With another lab up, a hint without the lab's id would be refused.
	sel := ""
	if labs, _ := runstate.Labs(); len(labs) > 1 {
		sel = "--lab " + l.RunID + " "
	}
	fmt.Fprintf(w, "\nThe server answers HTTP on %s (clients reach it through the box).\nTry:\n", l.Target)
	fmt.Fprintf(w, "  sudo twlab exec %sc1 -- curl -s http://%s/\n", sel, l.Target)
	fmt.Fprintf(w, "  sudo twlab exec %sserver -- ss -tan\n", sel)
	if srv, ok := l.Node("server"); ok {
		fmt.Fprintf(w, "  sudo ip netns exec %s tcpdump -ni %s tcp\n", srv.Netns, srv.Link)
	}
	if detached {
		// The id always: another lab may come up before this hint is used.
		fmt.Fprintln(w, "Tear it down with: sudo twlab down "+l.RunID)
	}
}

func cmdExec(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("twlab exec", flag.ContinueOnError)
	fs.SetOutput(stderr)
	labID := fs.String("lab", "", "the lab's run id (default: the only lab that is up)")
	fs.Usage = func() { fmt.Fprintln(stderr, "Usage: twlab exec [--lab ID] NODE -- CMD [ARGS...]") }
	// A -- preceded by flags and one node is twlab's: flags may come
	// anywhere before it ("c1 --lab ID -- ss" took --lab for the command).
	// Otherwise ("c1 grep -r -- x", the command's own --) flags stop at
	// NODE, so the command's own flags (ss -tan) pass through.
	var rest []string
	if k := slices.Index(args, "--"); k >= 0 {
		probe := flag.NewFlagSet("", flag.ContinueOnError)
		probe.SetOutput(io.Discard)
		probe.String("lab", "", "")
		if pos, err := parseInterspersed(probe, args[:k]); err == nil && len(pos) == 1 {
			if _, err := parseInterspersed(fs, args[:k]); err != nil {
				return usageCode(err)
			}
			rest = append(pos, append([]string{"--"}, args[k+1:]...)...)
		}
	}
	if rest == nil {
		if err := fs.Parse(args); err != nil {
			return usageCode(err)
		}
		rest = fs.Args()
	}
	if len(rest) < 2 {
		fs.Usage()
		return exitUsage
	}
	node, cmdArgs := rest[0], rest[1:]
	if cmdArgs[0] == "--" {
		cmdArgs = cmdArgs[1:]
	}
	if len(cmdArgs) == 0 {
		fs.Usage()
		return exitUsage
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "twlab exec enters a network namespace and needs root: run it with sudo")
		return exitEnv
	}
	l, err := runstate.FindLab(*labID)
	if err != nil {
		fmt.Fprintln(stderr, "twlab exec:", err)
		return exitUsage
	}
	if l.Dead {
		fmt.Fprintf(stderr, "twlab exec: the owner of lab %s died; its namespaces are leftovers, not a lab: `sudo twlab down %s` removes them\n", l.RunID, l.RunID)
		return exitUsage
	}
	n, ok := l.Node(node)
	if !ok {
		names := make([]string, len(l.Nodes))
		for i, x := range l.Nodes {
			names[i] = x.Name
		}
		fmt.Fprintf(stderr, "twlab exec: lab %s has no node %q; nodes: %s\n", l.RunID, node, strings.Join(names, ", "))
		return exitUsage
	}
	env := append(os.Environ(), "TWLAB_NODE="+n.Name, "TWLAB_LAB="+l.RunID)
	if os.Getenv("NSTAT_HISTORY") == "" {
		env = append(env, "NSTAT_HISTORY="+runstate.NstatHistory(l.RunID, n.Name))
	}
	err = netnsutil.Exec(n.Netns, cmdArgs, env)
	fmt.Fprintln(stderr, "twlab exec:", err)
	// As a shell says it: 127 not found, 126 found but not runnable
	// (a directory, no permission, not a program); twlab's own failures
	// are its codes: the lab gone (2), the node not entered (1).
	switch {
	case errors.Is(err, netnsutil.ErrNoNamespace):
		return exitUsage
	case errors.Is(err, netnsutil.ErrExecSetup):
		return exitFailed
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, os.ErrNotExist):
		return 127
	}
	return 126
}

func cmdDown(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("twlab down", flag.ContinueOnError)
	fs.SetOutput(stderr)
	labID := fs.String("lab", "", "the lab's run id (default: the only lab that is up)")
	all := fs.Bool("all", false, "tear down every lab that is up")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageCode(err)
	}
	// `twlab down ID` names the lab as --lab does: ignoring it took down
	// whichever lab was up, someone else's included.
	switch {
	case len(pos) > 1:
		fmt.Fprintf(stderr, "twlab down: one lab id at most, got %q\n", pos)
		return exitUsage
	case len(pos) == 1 && (*labID != "" || *all):
		fmt.Fprintln(stderr, "twlab down: a lab id, --lab or --all: one of them")
		return exitUsage
	case len(pos) == 1:
		*labID = pos[0]
	case *labID != "" && *all:
		fmt.Fprintln(stderr, "twlab down: --lab or --all, not both")
		return exitUsage
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "twlab down removes network namespaces and needs root: run it with sudo")
		return exitEnv
	}
	var labs []*runstate.Lab
	// What a run or an up killed before it recorded a lab left is no lab
	// down can stop; it is said, with what removes it, instead of "no lab".
	left := func(id string) string {
		m, err := runstate.Leftovers()
		if err != nil {
			return ""
		}
		n, ids := 0, []string{}
		for rid, ns := range m {
			if len(ns) > 0 && (id == "" || rid == id) {
				n += len(ns)
				ids = append(ids, rid)
			}
		}
		if n == 0 {
			return ""
		}
		slices.Sort(ids)
		return fmt.Sprintf("%d namespaces that no lab or live run owns (of runs %s, killed or torn down only in part): `sudo twlab cleanup` removes them", n, strings.Join(ids, ", "))
	}
	if *all {
		var err error
		if labs, err = runstate.Labs(); err != nil {
			fmt.Fprintln(stderr, "twlab down:", err)
			return exitFailed
		}
		if len(labs) == 0 {
			fmt.Fprintln(stdout, "no lab is up")
			if msg := left(""); msg != "" {
				fmt.Fprintln(stderr, "twlab down:", msg)
			}
		}
	} else {
		l, err := runstate.FindLab(*labID)
		if all, lerr := runstate.Labs(); err != nil && *labID == "" && lerr == nil && len(all) == 1 {
			l, err = all[0], nil // the only lab there is, its owner dead: down is what removes it
		}
		if err != nil {
			if msg := left(*labID); msg != "" {
				fmt.Fprintln(stderr, "twlab down:", msg)
				return exitUsage
			}
			fmt.Fprintln(stderr, "twlab down:", err)
			return exitUsage
		}
		labs = []*runstate.Lab{l}
	}
	code := exitOK
	for _, l := range labs {
		// Looked for before the owner tears the lab down: afterwards the
		// namespaces have no name to compare with.
		occ := runstate.Occupants(l)
		if err := runstate.StopLab(l, 10*time.Second); err != nil {
			fmt.Fprintln(stderr, "twlab down:", err)
			code = exitFailed
			continue
		}
		fmt.Fprintf(stdout, "lab %s is down\n", l.RunID)
		warnOccupants(stderr, "twlab down", l.RunID, occ)
	}
	if *all && len(labs) > 0 {
		// --all took every lab down; leftovers of killed runs are no lab,
		// and only cleanup removes them: said here as with no lab up.
		if msg := left(""); msg != "" {
			fmt.Fprintln(stderr, "twlab down:", msg)
		}
	}
	return code
}

// warnOccupants names the processes that were inside the lab's namespaces
// and still run there: down does not kill what the user started.
func warnOccupants(w io.Writer, cmd, id string, occ []runstate.Occupant) {
	var live, pids []string
	for _, o := range occ {
		if syscall.Kill(o.PID, 0) == nil {
			live = append(live, fmt.Sprintf("%d %s (%s)", o.PID, o.Comm, o.Node))
			pids = append(pids, strconv.Itoa(o.PID))
		}
	}
	if len(live) == 0 {
		return
	}
	were := "1 process was"
	if len(live) > 1 {
		were = fmt.Sprintf("%d processes were", len(live))
	}
	fmt.Fprintf(w, "%s: lab %s: %s still inside its namespaces, which live on with them, without a name and without the lab's links: %s; `sudo kill %s` ends them\n",
		cmd, id, were, strings.Join(live, ", "), strings.Join(pids, " "))
}

func cmdLabs(stdout, stderr io.Writer) int {
	labs, err := runstate.Labs()
	if err != nil {
		fmt.Fprintln(stderr, "twlab labs:", err)
		return exitFailed
	}
	left, lerr := runstate.Leftovers()
	var leftIDs []string
	if lerr == nil {
		for _, id := range slices.Sorted(maps.Keys(left)) {
			if len(left[id]) > 0 && !slices.ContainsFunc(labs, func(l *runstate.Lab) bool { return l.RunID == id }) {
				leftIDs = append(leftIDs, id)
			}
		}
	}
	if len(labs) == 0 && len(leftIDs) == 0 {
		fmt.Fprintln(stdout, "no lab is up")
	}
	for _, l := range labs {
		if l.Broken != "" {
			nodes := make([]string, len(l.Nodes))
			for i, n := range l.Nodes {
				nodes[i] = n.Name
			}
			owner := "owner unknown"
			switch {
			case l.Dead:
				owner = "owner gone"
			case l.PID > 0:
				owner = fmt.Sprintf("pid %d", l.PID)
			}
			fmt.Fprintf(stdout, "%s  %s  nodes %s  (%s; `sudo twlab down %s` removes the lab)\n", l.RunID, owner, strings.Join(nodes, ", "), l.Broken, l.RunID)
			continue
		}
		dead := ""
		if l.Dead {
			dead = fmt.Sprintf("  (owner gone: `sudo twlab down %s` removes what it left)", l.RunID)
		}
		fmt.Fprintf(stdout, "%s  pid %d  %s  cell %s  since %s%s\n", l.RunID, l.PID, l.Scenario, l.Cell, l.Started.Format(time.RFC3339), dead)
	}
	// Namespaces of a run or up killed before it recorded a lab: no lab,
	// but not nothing either ("no lab is up" hid them).
	for _, id := range leftIDs {
		fmt.Fprintf(stdout, "%s  leftovers of a killed run: %d namespaces (`sudo twlab cleanup` removes them)\n", id, len(left[id]))
	}
	return exitOK
}
