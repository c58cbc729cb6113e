package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// MemoryLimitMiB is the goal for the peak RSS of a 64-client run.
const MemoryLimitMiB = 200

// memScenario is a 64-client cell at the generator's full rate, written to
// a temporary file and run by a child `twlab run`.
const memScenario = `name: bench-memory
description: twlab bench memory - 64 clients behind one SNAT address at full rate, 10 Hz sampling.
clients:
  count: 64
lvs:
  mode: snat
server:
  port: 8080
  ports: 8
  close: server
load:
  connections: 1000000
  duration: %s
  concurrency: 64
  connect_timeout: 1s
`

// benchMemory runs a 64-client scenario in a child twlab and reads the
// child's peak RSS (getrusage ru_maxrss, the same figure as VmHWM).
func benchMemory(ctx context.Context, opt Options) ([]Result, error) {
	self := opt.Self
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "twlab-bench-memory-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "bench-memory.yaml")
	if err := os.WriteFile(file, fmt.Appendf(nil, memScenario, opt.Duration), 0o644); err != nil {
		return nil, err
	}
	var runs []float64
	var conns []int
	for i := 0; i < opt.Repeat; i++ {
		out := filepath.Join(dir, fmt.Sprint("run", i))
		var buf bytes.Buffer
		cmd := exec.CommandContext(ctx, self, "run", "-q", "--out", out, file)
		cmd.Stdout, cmd.Stderr = &buf, &buf
		// Ctrl-C: the child tears its 64-client lab down (SIGINT, as a
		// terminal would send it) and has WaitDelay for it before it is
		// killed; the default SIGKILL left the lab behind.
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
		cmd.WaitDelay = 10 * time.Second
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
			return nil, fmt.Errorf("twlab run: %w: %s", err, buf.String())
		}
		ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		if !ok {
			return nil, errors.New("no rusage for the child")
		}
		mib := float64(ru.Maxrss) / 1024 // ru_maxrss is in KiB on Linux
		ok2, status := readRunOK(filepath.Join(out, "run.json"))
		if status != "ok" {
			return nil, fmt.Errorf("64-client run: status %q: %s", status, buf.String())
		}
		if ok2 == 0 {
			// A run whose every connection failed measured no load's memory.
			return nil, fmt.Errorf("64-client run: no connection succeeded: %s", buf.String())
		}
		runs = append(runs, round(mib, 1))
		conns = append(conns, ok2)
		fmt.Fprintf(opt.Progress, "memory: 64-client run, %d connections in %s: peak RSS %.1f MiB\n", ok2, opt.Duration, mib)
		pause(ctx, time.Second)
	}
	// A bound on the peak: the worst run, not the median.
	m := slices.Max(runs)
	return []Result{{Name: "memory-64", Unit: "MiB", Twlab: m, Goal: fmt.Sprintf("< %d MiB peak RSS (the largest of the runs)", MemoryLimitMiB),
		Met: m < MemoryLimitMiB, TwlabRuns: runs,
		Note: fmt.Sprintf("child `twlab run` of 64 clients, 64 chains, %s at full rate (or until its 1 000 000 connections) with 10 Hz sampling; connections per run %v", opt.Duration, conns)}}, nil
}

// readRunOK returns the connections that succeeded and the run's status.
func readRunOK(path string) (int, string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, "unreadable: " + err.Error()
	}
	var r struct {
		Status string `json:"status"`
		Cells  []struct {
			Load *struct {
				OK int `json:"ok"`
			} `json:"load"`
		} `json:"cells"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, "unreadable: " + err.Error()
	}
	n := 0
	for _, c := range r.Cells {
		if c.Load != nil {
			n += c.Load.OK
		}
	}
	return n, r.Status
}
