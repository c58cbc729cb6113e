package runner_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/capture"
	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/twlab/twlab/lab/report"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/runner"
	"github.com/twlab/twlab/lab/scenario"
	"github.com/twlab/twlab/lab/topo"
)

// snapshotHost reads the host's net sysctls that a lab could touch by
// mistake; a run must leave every one as it was.
func snapshotHost(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, dir := range []string{"/proc/sys/net/ipv4", "/proc/sys/net/core", "/proc/sys/net/netfilter"} {
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if strings.Contains(p, "/conf/") || strings.Contains(p, "/neigh/") {
				return nil // per-interface entries come and go with links
			}
			b, err := os.ReadFile(p)
			if err == nil {
				out[p] = string(b)
			}
			return nil
		})
	}
	return out
}

func loadPlan(t *testing.T, set []string, only string) *scenario.Plan {
	t.Helper()
	src, err := os.ReadFile("../../scenarios/nat-paws.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := scenario.Load("nat-paws.yaml", src, scenario.Options{Set: set, Only: only})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestNatPaws runs the shipped scenario (shortened) against the real kernel
// and asserts on measured counters: PAWS rejects with timestamps on, none
// with timestamps off, tw_recycle=1 cells n/a on kernels without it; nothing
// of the lab left and the host's sysctls untouched.
func TestNatPaws(t *testing.T) {
	roottest.Skip(t)
	before := snapshotHost(t)
	plan := loadPlan(t, []string{"load.connections=40"}, "server.net.ipv4.tcp_rfc1337 == 0")
	out := t.TempDir()
	r, dir, err := runner.Run(context.Background(), plan, runner.Options{OutDir: out, Log: slog.Default(), Artifacts: report.WriteArtifacts})
	if err != nil {
		t.Fatal(err)
	}
	if dir != out {
		t.Errorf("results in %s, want %s", dir, out)
	}
	cells := map[string]*result.Cell{}
	for _, c := range r.Cells {
		cells[c.ID] = c
		t.Logf("%s", report.CellLine(c.Index+1, len(r.Cells), c))
	}
	on := cells["tw_recycle=0,timestamps=2,rfc1337=0"]
	off := cells["tw_recycle=0,timestamps=0,rfc1337=0"]
	if on == nil || off == nil {
		t.Fatalf("cells missing: %v", cells)
	}
	if on.Status != result.CellOK || off.Status != result.CellOK {
		t.Fatalf("status on=%s (%s) off=%s (%s)", on.Status, on.Reason, off.Status, off.Reason)
	}
	if got := on.Nodes["server"].Counters["TcpExt.PAWSTimewait"] + on.Nodes["server"].Counters["TcpExt.PAWSEstab"]; got == 0 {
		t.Errorf("timestamps on: server PAWS rejects = 0, want > 0")
	}
	if on.SYN.Unanswered == 0 || on.Nodes["clients"].Counters["TcpExt.TCPSynRetrans"] == 0 {
		t.Errorf("timestamps on: unanswered SYNs %d, client SYN retransmits %d; want both > 0", on.SYN.Unanswered, on.Nodes["clients"].Counters["TcpExt.TCPSynRetrans"])
	}
	if cl, c1 := on.Nodes["clients"].TimeWait, on.Nodes["c1"].TimeWait; cl.Samples == 0 || c1.Samples == 0 || cl.Samples > c1.Samples {
		t.Errorf("TIME_WAIT samples: clients %d, c1 %d; want the clients' sum sampled (at most as often as each client)", cl.Samples, c1.Samples)
	}
	if on.Load.OK != 40 {
		t.Errorf("timestamps on, rfc1337=0: %d/40 ok, want all (RST kills the TIME_WAIT)", on.Load.OK)
	}
	if p := off.Nodes["server"].Summary["paws"]; p != 0 {
		t.Errorf("timestamps off: server PAWS = %d, want 0", p)
	}
	if on.KnobsActual["clients.net.ipv4.tcp_timestamps"] != "2" || off.KnobsActual["clients.net.ipv4.tcp_timestamps"] != "0" {
		t.Errorf("knobs in force: on %v off %v", on.KnobsActual, off.KnobsActual)
	}
	if _, err := os.Stat("/proc/sys/net/ipv4/tcp_tw_recycle"); os.IsNotExist(err) {
		na := cells["tw_recycle=1,timestamps=2,rfc1337=0,bind_port=0"]
		if na == nil || na.Status != result.CellNA || !strings.Contains(na.Reason, "tcp_tw_recycle does not exist") {
			t.Errorf("tw_recycle=1 cell: %+v, want n/a with the reason", na)
		}
		if on.KnobsActual["server.net.ipv4.tcp_tw_recycle"] != "absent" {
			t.Errorf("tw_recycle=0 cell should run with the knob absent: %v", on.KnobsActual)
		}
	}
	for _, f := range []string{"run.json", "cells.csv", "summary.md"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	back, err := result.ReadRun(filepath.Join(out, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	if back.Status != result.RunOK || len(back.Cells) != len(r.Cells) {
		t.Errorf("run.json: status %s, %d cells", back.Status, len(back.Cells))
	}

	assertNoLab(t, r.RunID)
	after := snapshotHost(t)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("host sysctl %s changed: %q -> %q", k, strings.TrimSpace(v), strings.TrimSpace(after[k]))
		}
	}
}

// TestInterruptKeepsFinishedCells cancels a run after the first cell: the run
// must end as interrupted with that cell on disk and no lab left.
func TestInterruptKeepsFinishedCells(t *testing.T) {
	roottest.Skip(t)
	plan := loadPlan(t, []string{"load.connections=20"}, "server.net.ipv4.tcp_tw_recycle == 0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := t.TempDir()
	r, _, err := runner.Run(ctx, plan, runner.Options{OutDir: out, Progress: func(done, total int, c *result.Cell) {
		if done == 1 {
			cancel()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != result.RunInterrupted || len(r.Cells) != 1 {
		t.Fatalf("status %s with %d cells, want interrupted with 1", r.Status, len(r.Cells))
	}
	back, err := result.ReadRun(filepath.Join(out, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	if back.Status != result.RunInterrupted || len(back.Cells) != 1 || back.Cells[0].Status != result.CellOK {
		t.Errorf("run.json after interrupt: status %s, cells %d", back.Status, len(back.Cells))
	}
	assertNoLab(t, r.RunID)
}

// assertNoLab fails if any namespace of run id is still there. Other
// packages' tests may have labs up at the same time; only ours count.
func assertNoLab(t *testing.T, id string) {
	t.Helper()
	ns, err := topo.ListNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if rid, _ := topo.RunIDOf(n); rid == id {
			t.Errorf("namespace %s left behind", n)
		}
	}
}

// TestFixedSkewExactHandoffs runs the fixed-skew scenario (rfc1337=0) with a
// capture: every c1->c2 handoff must be rejected by PAWS and no c2->c1 one,
// and the pcap must show c2's SYNs exactly 60 000 ticks behind c1's.
func TestFixedSkewExactHandoffs(t *testing.T) {
	roottest.Skip(t)
	src, err := os.ReadFile("../../scenarios/nat-paws-fixed-skew.yaml")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := scenario.Load("nat-paws-fixed-skew.yaml", src, scenario.Options{Set: []string{"load.connections=30", "server.net.ipv4.tcp_rfc1337=0"}})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	r, _, err := runner.Run(context.Background(), plan, runner.Options{OutDir: out, Pcap: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Cells) != 1 {
		t.Fatalf("%d cells", len(r.Cells))
	}
	c := r.Cells[0]
	if c.Status != result.CellOK {
		t.Fatalf("status %s: %s", c.Status, c.Reason)
	}
	h := c.Load.Handoffs
	if h["c1_to_c2"] == nil || h["c1_to_c2"].Retried != h["c1_to_c2"].Attempts || h["c1_to_c2"].Attempts != 15 {
		t.Errorf("c1->c2 handoffs %+v: want 15, all retried", h["c1_to_c2"])
	}
	if h["c2_to_c1"] == nil || h["c2_to_c1"].Retried != 0 || h["c2_to_c1"].Failed != 0 {
		t.Errorf("c2->c1 handoffs %+v: want none rejected", h["c2_to_c1"])
	}
	if got := c.Nodes["server"].Counters["TcpExt.PAWSTimewait"] + c.Nodes["server"].Counters["TcpExt.PAWSEstab"]; got != 15 {
		t.Errorf("server PAWS rejects %d, want 15", got)
	}
	if len(c.Pcap) != 1 {
		t.Fatalf("pcap: %+v", c.Pcap)
	}
	frames, err := capture.ReadFile(filepath.Join(out, c.Pcap[0].Path))
	if err != nil {
		t.Fatal(err)
	}
	// Through the NAT both clients share one source address and port; the
	// round-robin order tells them apart: the first SYN is c1's, the second
	// c2's, sent a fraction of a millisecond later.
	var tsvals []uint32
	var times []time.Time
	for _, f := range frames {
		s, ok := capture.ParseTCP(f.Data)
		if ok && s.Flags&(capture.FlagSYN|capture.FlagACK) == capture.FlagSYN && s.HasTS {
			tsvals = append(tsvals, s.TSval)
			times = append(times, f.Time)
		}
	}
	if len(tsvals) < 3 {
		t.Fatalf("only %d SYNs captured", len(tsvals))
	}
	// c2's SYN comes a few ms after c1's (the scenario pauses 20 ms between
	// connections): its clock moved on by that much, 1 tick per ms here.
	elapsed := int64(times[1].Sub(times[0]) / time.Millisecond)
	if gap := int64(int32(tsvals[0]-tsvals[1])) + elapsed; gap < 59997 || gap > 60003 {
		t.Errorf("TSval of c1's first SYN minus c2's, with the %d ms between them = %d ticks, want 60000 (±3)", elapsed, gap)
	}
}

// TestConcurrentRuns starts two runs of the same scenario at once: both must
// succeed with their own run ids and leave nothing behind.
func TestConcurrentRuns(t *testing.T) {
	roottest.Skip(t)
	type out struct {
		r   *result.Run
		err error
	}
	res := make(chan out, 2)
	for i := 0; i < 2; i++ {
		go func() {
			plan := loadPlan(t, []string{"load.connections=30"}, "server.net.ipv4.tcp_rfc1337 == 0 && clients.net.ipv4.tcp_timestamps == 2")
			r, _, err := runner.Run(context.Background(), plan, runner.Options{OutDir: t.TempDir()})
			res <- out{r, err}
		}()
	}
	ids := map[string]bool{}
	for i := 0; i < 2; i++ {
		o := <-res
		if o.err != nil {
			t.Fatal(o.err)
		}
		if o.r.Status != result.RunOK {
			for _, c := range o.r.Cells {
				t.Logf("%s: %s %s", c.ID, c.Status, c.Reason)
			}
			t.Errorf("run %s: status %s", o.r.RunID, o.r.Status)
		}
		ids[o.r.RunID] = true
		assertNoLab(t, o.r.RunID)
	}
	if len(ids) != 2 {
		t.Errorf("run ids %v: two runs shared an id", ids)
	}
}

// TestHostGlobalKnob: a knob that is not per-namespace on this kernel (here
// net.core.message_cost, on every kernel) exists only in the host, which
// twlab never writes. A cell asking for the value the host holds runs, with
// the knob recorded as the host's; one asking for another value is n/a and
// says what the host holds. Before, both were n/a, and on a 4.10 host
// tcp_tw_recycle=0 ran under the host's tw_recycle=1 labelled as 0.
func TestHostGlobalKnob(t *testing.T) {
	roottest.Skip(t)
	const knob = "net.core.message_cost"
	b, err := os.ReadFile("/proc/sys/net/core/message_cost")
	if err != nil {
		t.Skipf("no %s on this kernel: %v", knob, err)
	}
	host := strings.TrimSpace(string(b))
	other := "7"
	if host == other {
		other = "8"
	}
	before := snapshotHost(t)
	for _, tc := range []struct {
		value  string
		status string
	}{{host, result.CellOK}, {other, result.CellNA}} {
		plan := loadPlan(t, []string{"load.connections=5", "server." + knob + "=" + tc.value},
			"clients.net.ipv4.tcp_timestamps == 2 && server.net.ipv4.tcp_rfc1337 == 0 && server.net.ipv4.tcp_tw_recycle == 0")
		r, _, err := runner.Run(context.Background(), plan, runner.Options{OutDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Cells) != 1 {
			t.Fatalf("%d cells, want 1", len(r.Cells))
		}
		c := r.Cells[0]
		t.Logf("%s=%s: %s %s; actual %q; notes %q", knob, tc.value, c.Status, c.Reason, c.KnobsActual["server."+knob], c.Notes)
		switch {
		case c.Status != tc.status:
			t.Errorf("%s=%s (host %s): cell %s %s, want %s", knob, tc.value, host, c.Status, c.Reason, tc.status)
		case tc.status == result.CellOK && c.KnobsActual["server."+knob] != host+" (global)":
			t.Errorf("read back %q, want %q", c.KnobsActual["server."+knob], host+" (global)")
		case tc.status == result.CellNA && !strings.Contains(c.Reason, "the host holds "+host+", not "+other):
			t.Errorf("reason %q does not say what the host holds", c.Reason)
		}
	}
	after := snapshotHost(t)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("host sysctl %s changed: %q -> %q", k, v, after[k])
		}
	}
}

// A cell Ctrl-C stops during its load is not recorded, and its captures go
// with it: nothing in run.json would point to them.
func TestInterruptedCellLeavesNoCapture(t *testing.T) {
	roottest.Skip(t)
	plan := loadPlan(t, []string{"load.connections=20"}, "server.net.ipv4.tcp_tw_recycle == 0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := t.TempDir()
	r, _, err := runner.Run(ctx, plan, runner.Options{OutDir: out, Pcap: true, OnCellStart: func(done, total int, id string) {
		if done == 1 {
			time.AfterFunc(1500*time.Millisecond, cancel) // inside the second cell's load
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != result.RunInterrupted || len(r.Cells) != 1 {
		t.Fatalf("status %s with %d cells, want interrupted with 1", r.Status, len(r.Cells))
	}
	caps, _ := filepath.Glob(filepath.Join(out, "pcap", "*.pcap"))
	if len(caps) != 1 || filepath.Base(caps[0]) != "cell-01-server.pcap" {
		t.Errorf("captures %v, want only cell 1's", caps)
	}
	assertNoLab(t, r.RunID)
}
