package runner

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/scenario"
)

// A cell where no connect succeeded has no latency: an assertion on it says
// so instead of passing on the 0s run.json holds; a misspelt kernel counter
// (only known once the cell ran) gets a suggestion. (Misspelt load., syn.
// and skew. figures are refused when the scenario is read.)
func TestEvaluateNoLatencyAndTypos(t *testing.T) {
	src := `name: t
clients: {count: 2, ts_skew: fixed}
load: {connections: 10, duration: 2s}
expect:
  - name: e
    assert:
      - load.connect_ms.p99 < 100
      - server.TcpExt.PAWSTimewiat == 0
      - skew.c2.offset_ms == -60000
      - load.failed == 64
`
	plan, err := scenario.Load("t.yaml", []byte(src), scenario.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rc := &result.Cell{Load: &result.Load{Attempts: 64, Failed: 64, Failures: map[string]int{"timeout": 64}},
		SYN:   &result.SYN{In: 118, Unanswered: 106},
		Nodes: map[string]*result.Node{"server": {Counters: map[string]int64{"TcpExt.PAWSTimewait": 3}, Summary: map[string]int64{}}}}
	got := Evaluate(plan.Cells[0], rc, nil)
	want := []string{
		"no connection completed in this cell: there is no latency",
		"did you mean server.TcpExt.PAWSTimewait?",
		"skew figures exist only in cells with clients.ts_skew: fixed",
		"",
	}
	if len(got) != len(want) {
		t.Fatalf("%d results: %+v", len(got), got)
	}
	for i, w := range want {
		if w == "" {
			if got[i].Error != "" || !got[i].OK {
				t.Errorf("%s: %+v, want ok", got[i].Expr, got[i])
			}
			continue
		}
		if got[i].OK || !strings.Contains(got[i].Error, w) {
			t.Errorf("%s: ok %v, error %q; want an error with %q", got[i].Expr, got[i].OK, got[i].Error, w)
		}
	}
}

// A cell whose SYNs went unanswered because of the listener's queues, not
// PAWS, is explained (syn-backlog's cells had no explanation at all).
func TestExplainListenOverflow(t *testing.T) {
	cell := twoClientCell(t, "")
	rc := &result.Cell{
		Load: &result.Load{Attempts: 64, Failed: 64, Failures: map[string]int{"timeout": 55, "response": 9}},
		SYN:  &result.SYN{In: 119, SynAckOut: 9, Unanswered: 110},
		Nodes: map[string]*result.Node{"server": {Counters: map[string]int64{"TcpExt.ListenDrops": 110, "TcpExt.ListenOverflows": 110},
			Summary: map[string]int64{}}},
	}
	got := strings.Join(Explain(cell, rc), "\n")
	for _, want := range []string{"accept queue was full (ListenOverflows 110)", "ListenDrops 110", "9 clients completed the handshake", "55 never got a SYN-ACK"} {
		if !strings.Contains(got, want) {
			t.Errorf("explanation lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "more") {
		t.Errorf("every drop was an overflow, yet others are named:\n%s", got)
	}

	// 4.10's syn-backlog, syncookies off: 37 drops, 22 of them overflows,
	// none of a full SYN queue; the other 15 are the proven-peer quarter,
	// not the accept queue.
	cell = twoClientCell(t, "")
	cell.Vars["server.net.ipv4.tcp_syncookies"] = "0"
	rc.Nodes["server"].Counters = map[string]int64{"TcpExt.ListenDrops": 37, "TcpExt.ListenOverflows": 22}
	got = strings.Join(Explain(cell, rc), "\n")
	for _, want := range []string{"listener dropped 37", "accept queue was full (ListenOverflows 22)", "15 more were dropped with the SYN queue three quarters full"} {
		if !strings.Contains(got, want) {
			t.Errorf("explanation lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "TCPReqQFullDrop") {
		t.Errorf("a full SYN queue is named, with TCPReqQFullDrop 0:\n%s", got)
	}
}

// Every load., syn. and skew. figure a cell measures is one the scenario
// reader accepts in an assertion (scenario.KnownFigure): the two lists
// must not drift apart.
func TestFiguresAreKnownToTheScenarioReader(t *testing.T) {
	rc := &result.Cell{
		Load: &result.Load{Attempts: 2, OK: 2, Failures: map[string]int{},
			PerClient: map[string]*result.LoadClient{"c1": {Attempts: 1, OK: 1}, "c2": {Attempts: 1, OK: 1}},
			Handoffs:  map[string]*result.Handoff{"c1_to_c2": {Attempts: 1}}},
		SYN:  &result.SYN{In: 2},
		Skew: &result.Skew{Clients: map[string]*result.SkewClient{"c1": {}, "c2": {}}},
	}
	n := 0
	for k := range Figures(rc) {
		if strings.HasPrefix(k, "load.") || strings.HasPrefix(k, "syn.") || strings.HasPrefix(k, "skew.") {
			n++
			if !scenario.KnownFigure(k, []string{"c1", "c2"}) {
				t.Errorf("%s is measured, but a scenario may not assert on it", k)
			}
		}
	}
	if n < 40 {
		t.Errorf("only %d figures checked", n)
	}
}

// The runtime suggestion puts the nearest name first, not the
// alphabetically first of those sharing the last segment.
func TestHintNearestFirst(t *testing.T) {
	figs := map[string]float64{"c1.paws": 0, "c2.paws": 0, "clients.paws": 0, "lvs.paws": 0, "server.paws": 3, "c3.paws": 0}
	if got := hint("sever.paws", figs); !strings.Contains(got, "did you mean server.paws,") {
		t.Errorf("hint = %q, want server.paws first", got)
	}
}

// On kernels before 4.12 tw_recycle's drops are counted as listen drops
// too: such a cell is explained by PAWSPassive alone, not by a full queue.
func TestExplainTWRecycleNotQueue(t *testing.T) {
	cell := twoClientCell(t, "")
	rc := &result.Cell{
		Load: &result.Load{Attempts: 5, OK: 3, Failed: 2, Failures: map[string]int{"timeout": 2}},
		SYN:  &result.SYN{In: 10, SynAckOut: 3, Unanswered: 7},
		Nodes: map[string]*result.Node{"server": {Counters: map[string]int64{"TcpExt.PAWSPassive": 7, "TcpExt.ListenDrops": 7},
			Summary: map[string]int64{}}},
	}
	got := strings.Join(Explain(cell, rc), "\n")
	if !strings.Contains(got, "dropped silently (TcpExt.PAWSPassive)") || strings.Contains(got, "accept queue was full") {
		t.Errorf("explanation:\n%s", got)
	}
}

// A load ended by its time bound before its count says so: keepalive-pool
// on 4.10 failed `load.requests == 2000` at 1296 with no word why.
func TestExplainTimeBound(t *testing.T) {
	plan, err := scenario.Load("t.yaml", []byte("name: t\nload: {connections: 2000, duration: 20s}\n"), scenario.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cell := plan.Cells[0]
	rc := &result.Cell{Load: &result.Load{Attempts: 1296, OK: 1296, CutShort: 1, Elapsed: 20.08, ConnPerS: 64.5, Failures: map[string]int{}},
		SYN: &result.SYN{}, Nodes: map[string]*result.Node{"server": {Counters: map[string]int64{}, Summary: map[string]int64{}}},
		Expect: []result.Expect{{Expr: "load.requests == 2000", OK: false}}}
	got := strings.Join(Explain(cell, rc), "\n")
	if !strings.Contains(got, "time bound (load.duration 20s) ended the load after 1296 of its 2000 connections: this machine made 64.5 new connections/s") {
		t.Errorf("explanation:\n%s", got)
	}
	// A connect that hung for most of the cell held its chain: the machine's
	// rate is not what ended the count early (a SYN the box never forwarded
	// read "this machine made 0.0 new connections/s").
	rc.Load.CutShort, rc.Load.CutShortOldestMS, rc.Load.Attempts, rc.Load.OK, rc.Load.ConnPerS = 8, 19950, 3, 3, 0.1
	got = strings.Join(Explain(cell, rc), "\n")
	if !strings.Contains(got, "connections that hung held their chains (8 of them were still in progress at the end, the oldest for 19950 ms of the 20s") || strings.Contains(got, "this machine made") {
		t.Errorf("explanation of a load held by hung connects:\n%s", got)
	}
	// Not where connects timed out (nat-paws' lockout is the point, not
	// the machine), not where every assertion held, not where the count
	// was made.
	for name, edit := range map[string]func(l *result.Load, rc *result.Cell){
		"timeouts":   func(l *result.Load, rc *result.Cell) { l.Failed, l.Failures["timeout"] = 2, 2 },
		"all held":   func(l *result.Load, rc *result.Cell) { rc.Expect[0].OK = true },
		"count made": func(l *result.Load, rc *result.Cell) { l.Attempts, l.Elapsed = 2000, 12 },
	} {
		rc := &result.Cell{Load: &result.Load{Attempts: 1296, OK: 1296, Elapsed: 20.08, Failures: map[string]int{}}, SYN: &result.SYN{},
			Nodes:  map[string]*result.Node{"server": {Counters: map[string]int64{}, Summary: map[string]int64{}}},
			Expect: []result.Expect{{Expr: "load.requests == 2000", OK: false}}}
		edit(rc.Load, rc)
		if got := strings.Join(Explain(cell, rc), "\n"); strings.Contains(got, "time bound") {
			t.Errorf("%s: the time bound is blamed:\n%s", name, got)
		}
	}
}

// Timestamps off on the server alone (timestamps-off) are timestamps off:
// the SYNs its TIME_WAIT answered with an ACK are explained as with the
// clients' off.
func TestExplainServerTimestampsOff(t *testing.T) {
	cell := twoClientCell(t, "sysctl: {server: {net.ipv4.tcp_timestamps: 0}}\n")
	rc := &result.Cell{
		Load: &result.Load{Attempts: 200, OK: 200, Failures: map[string]int{}},
		SYN:  &result.SYN{In: 392, SynAckOut: 200, Unanswered: 192},
		Nodes: map[string]*result.Node{"server": {Counters: map[string]int64{}, Summary: map[string]int64{}},
			"c1": {Counters: map[string]int64{"Tcp.OutRsts": 192}, Summary: map[string]int64{}}},
	}
	if got := strings.Join(Explain(cell, rc), "\n"); !strings.Contains(got, "192 SYNs went unanswered") {
		t.Errorf("explanation:\n%s", got)
	}
}

// A full TIME_WAIT table is said, with the limit the cell set.
func TestExplainTimeWaitOverflow(t *testing.T) {
	cell := twoClientCell(t, "sysctl: {server: {net.ipv4.tcp_max_tw_buckets: 8}}\n")
	rc := &result.Cell{
		Load:  &result.Load{Attempts: 10, OK: 10, Failures: map[string]int{}},
		SYN:   &result.SYN{In: 10, SynAckOut: 10},
		Nodes: map[string]*result.Node{"server": {Counters: map[string]int64{"TcpExt.TCPTimeWaitOverflow": 2}, Summary: map[string]int64{}}},
	}
	got := strings.Join(Explain(cell, rc), "\n")
	if !strings.Contains(got, "server's TIME_WAIT table was full (net.ipv4.tcp_max_tw_buckets of 8): 2 connections closed without entering TIME_WAIT") {
		t.Errorf("explanation:\n%s", got)
	}
}

// A PAWS-rejected SYN the kernel answered with nothing (its TIME_WAIT ACKs
// are rate-limited) is not said to have had a bare ACK.
func TestExplainSkippedTimeWaitACKs(t *testing.T) {
	cell := twoClientCell(t, "")
	srv := &result.Node{Counters: map[string]int64{"TcpExt.PAWSTimewait": 17, "TcpExt.TCPACKSkippedTimeWait": 6}}
	srv.Summarize()
	rc := &result.Cell{
		Load:  &result.Load{Attempts: 50, OK: 50, Failures: map[string]int{}},
		SYN:   &result.SYN{In: 67, SynAckOut: 50, Unanswered: 17},
		Nodes: map[string]*result.Node{"server": srv},
	}
	got := strings.Join(Explain(cell, rc), "\n")
	if !strings.Contains(got, "17 SYNs reused a 4-tuple") || !strings.Contains(got, "with nothing at all where the kernel rate-limited those ACKs (6, TcpExt.TCPACKSkippedTimeWait)") {
		t.Errorf("explanation:\n%s", got)
	}
}

// twoClientCell is the one cell of a two-client scenario, plus extra YAML.
func twoClientCell(t *testing.T, extra string) *scenario.Cell {
	t.Helper()
	plan, err := scenario.Load("t.yaml", []byte("name: t\nclients: {count: 2}\nload: {connections: 10, duration: 2s}\n"+extra), scenario.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return plan.Cells[0]
}

// The count is read until it stops growing: a close still under way adds
// to it, an expiry takes from it; an error or the bound ends the wait.
func TestWaitStill(t *testing.T) {
	for name, c := range map[string]struct {
		seq   []int
		reads int
	}{
		"grows, then still": {[]int{1971, 1990, 2000, 2000, 2000}, 4},
		"falls":             {[]int{10, 9, 9}, 2},
		"still at once":     {[]int{5, 5}, 2},
	} {
		i := 0
		read := func() (int, error) {
			v := c.seq[min(i, len(c.seq)-1)]
			i++
			return v, nil
		}
		waitStill(context.Background(), read, time.Millisecond, time.Second)
		if i != c.reads {
			t.Errorf("%s: %d reads, want %d", name, i, c.reads)
		}
	}
	n, start := 0, time.Now()
	waitStill(context.Background(), func() (int, error) { n++; return n, nil }, time.Millisecond, 50*time.Millisecond)
	if el := time.Since(start); el > time.Second {
		t.Errorf("a count that grows for ever held the cell %s; the bound is 50ms", el)
	}
	n = 0
	waitStill(context.Background(), func() (int, error) { n++; return 0, errors.New("gone") }, time.Millisecond, time.Second)
	if n != 1 {
		t.Errorf("%d reads after an error, want 1", n)
	}
}
