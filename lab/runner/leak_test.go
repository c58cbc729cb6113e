package runner_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/twlab/twlab/lab/report"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/runner"
	"github.com/twlab/twlab/lab/scenario"
	"github.com/twlab/twlab/lab/topo"
)

// leakScenario expands to 100 cells (10 ports x 10 seeds, both harmless)
// of a small lab: 2 clients, 5 connections each cell.
var leakScenario = func() string {
	var ports, seeds []string
	for i := 0; i < 10; i++ {
		ports = append(ports, strconv.Itoa(8080+i))
		seeds = append(seeds, strconv.Itoa(1+i))
	}
	return `name: leak
description: 100 small cells; the process must end the run with what it started with.
clients:
  count: 2
lvs:
  mode: snat
server:
  port: 8080
  close: server
load:
  connections: 5
  duration: 2s
  connect_timeout: 3s        # a first SYN lost while the lab settles is retried after 1 s
matrix:
  server.port: [` + strings.Join(ports, ", ") + `]
  seed: [` + strings.Join(seeds, ", ") + `]
expect:
  - name: every connection succeeds
    assert:
      - load.ok == 5
`
}()

// TestLeak100Cells runs 100 cells in this process and checks that open
// files, goroutines and threads come back to what they were, and that no
// namespace of the run is left: a leak of one fd, goroutine or namespace
// reference per cell shows a hundredfold.
func TestLeak100Cells(t *testing.T) {
	roottest.Skip(t)
	if testing.Short() {
		t.Skip("skipped under -short: runs 100 real cells (about 20 s)")
	}
	plan, err := scenario.Load("leak.yaml", []byte(leakScenario), scenario.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Cells) != 100 {
		t.Fatalf("plan has %d cells, want 100", len(plan.Cells))
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	opt := runner.Options{Log: quiet, Artifacts: report.WriteArtifacts}

	// One cell first, so that what the process creates once and keeps
	// (the runtime's poller, lazily started goroutines) is in the baseline.
	warm, err := scenario.Load("leak.yaml", []byte(leakScenario), scenario.Options{Only: "server.port == 8080 && seed == 1"})
	if err != nil {
		t.Fatal(err)
	}
	opt.OutDir = t.TempDir()
	if r, _, err := runner.Run(context.Background(), warm, opt); err != nil || r.Status != result.RunOK {
		t.Fatalf("warm-up run: %v %+v", err, r)
	}
	settleGoroutines(0)
	fdsBefore, grBefore := openFDs(t), runtime.NumGoroutine()
	netBefore := threadNetns(t)
	if len(netBefore) != 1 {
		t.Fatalf("before the run, threads are in %d network namespaces: %v", len(netBefore), netBefore)
	}

	opt.OutDir = t.TempDir()
	var durs []float64
	opt.Progress = func(done, total int, c *result.Cell) { durs = append(durs, c.DurationS) }
	begin := time.Now()
	r, _, err := runner.Run(context.Background(), plan, opt)
	elapsed := time.Since(begin)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != result.RunOK || len(r.Cells) != 100 {
		t.Errorf("run: status %s with %d cells, want ok with 100", r.Status, len(r.Cells))
	}
	retried := 0
	for _, c := range r.Cells {
		if c.Status != result.CellOK {
			t.Errorf("cell %s: %s (%s)", c.ID, c.Status, c.Reason)
		}
		if c.Nodes["clients"] != nil && c.Nodes["clients"].Counters["TcpExt.TCPSynRetrans"] > 0 {
			retried++
		}
	}
	if retried > 0 {
		t.Logf("%d of %d cells had to send a SYN again (no PAWS in this scenario: a first SYN was lost)", retried, len(r.Cells))
	}

	grAfter := settleGoroutines(grBefore + 2)
	fdsAfter := openFDs(t)
	t.Logf("100 cells in %v (cell %.3f s first ten, %.3f s last ten); fds %d -> %d, goroutines %d -> %d",
		elapsed.Round(time.Millisecond), mean(durs[:min(10, len(durs))]), mean(durs[max(0, len(durs)-10):]),
		len(fdsBefore), len(fdsAfter), grBefore, grAfter)
	if len(fdsAfter) > len(fdsBefore)+2 {
		t.Errorf("open files: %d before the run, %d after; new: %s", len(fdsBefore), len(fdsAfter), newFDs(fdsBefore, fdsAfter))
	}
	if grAfter > grBefore+2 {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("goroutines: %d before the run, %d after\n%s", grBefore, grAfter, buf)
	}
	for ino, tids := range threadNetns(t) {
		if _, ok := netBefore[ino]; !ok {
			t.Errorf("threads %v are still in network namespace %s after the run", tids, ino)
		}
	}
	names, err := topo.ListNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if id, _ := topo.RunIDOf(n); id == r.RunID {
			t.Errorf("namespace %s left behind", n)
		}
	}
}

// settleGoroutines waits up to 5 s for the goroutine count to drop to want
// (0: just a short settle) and returns it.
func settleGoroutines(want int) int {
	deadline := time.Now().Add(5 * time.Second)
	time.Sleep(100 * time.Millisecond)
	for {
		n := runtime.NumGoroutine()
		if n <= want || want == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// openFDs maps this process's open fds to what they point at.
func openFDs(t *testing.T) map[string]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		out[e.Name()] = target
	}
	return out
}

func newFDs(before, after map[string]string) string {
	var s []string
	for fd, target := range after {
		if before[fd] != target {
			s = append(s, fd+"->"+target)
		}
	}
	if len(s) > 20 {
		s = append(s[:20], fmt.Sprintf("… %d more", len(s)-20))
	}
	return strings.Join(s, " ")
}

// threadNetns maps the network namespaces this process's threads are in to
// the thread ids in each.
func threadNetns(t *testing.T) map[string][]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, e := range ents {
		ns, err := os.Readlink(filepath.Join("/proc/self/task", e.Name(), "ns/net"))
		if err != nil {
			continue // the thread exited meanwhile
		}
		out[ns] = append(out[ns], e.Name())
	}
	return out
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
