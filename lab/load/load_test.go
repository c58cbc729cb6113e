package load_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/capture"
	"github.com/twlab/twlab/lab/internal/labtest"
	"github.com/twlab/twlab/lab/load"
	"github.com/twlab/twlab/lab/nat"
	"github.com/twlab/twlab/lab/probe"
	"github.com/twlab/twlab/lab/sysctl"
	"github.com/twlab/twlab/lab/topo"
)

// TestPAWSBehindSNAT reproduces the failure with nothing but the parts: two
// clients with timestamps on behind one SNAT port, the server closing first.
// The server must count PAWS rejects of SYNs that reuse a TIME_WAIT 4-tuple,
// and exactly the handoffs towards the "behind" client must be retried.
//
// The exact accounting is checked on up to two labs. CI saw it miss once in
// hundreds of runs, on a 2-core machine running QEMU guests beside it: one
// PAWS reject too many and one handoff not retried (the handoff's SYN found
// no TIME_WAIT), which a stray segment of the behind client explains. A
// wrong attribution or a missed retry fails every attempt; the first
// attempt's figures and the server's packets are logged either way.
func TestPAWSBehindSNAT(t *testing.T) {
	const attempts = 2
	for i := 1; i <= attempts; i++ {
		var problems []string
		t.Run(fmt.Sprintf("lab%d", i), func(t *testing.T) {
			problems = pawsExperiment(t)
			if len(problems) > 0 && i == attempts {
				for _, p := range problems {
					t.Error(p)
				}
			}
		})
		if len(problems) == 0 || t.Failed() {
			return
		}
		t.Logf("lab %d: not exact, trying a fresh lab: %v", i, problems)
	}
}

// pawsExperiment runs the two-client reuse load on a fresh lab. Setup
// errors end the test; what it returns is what the accounting got wrong.
func pawsExperiment(t *testing.T) []string {
	ctx := context.Background()
	l := labtest.Lab(t, 2)
	if err := nat.Apply(l.LVS.NS, nat.Config{Mode: nat.ModeSNAT, OutLink: l.BackLink, SNATAddr: topo.LVSBack, PortMin: 40000, PortMax: 40000}); err != nil {
		t.Fatal(err)
	}
	if _, err := sysctl.Apply(l.LVS.NS, []sysctl.Setting{
		{Name: "net.ipv4.ip_forward", Requested: "1"},
		{Name: "net.netfilter.nf_conntrack_tcp_timeout_time_wait", Requested: "0"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := nat.InstallSYNCounters(l.Server.NS); err != nil {
		t.Fatal(err)
	}
	srv, err := load.StartServer(l.Server.NS, load.ServerConfig{Addr: topo.ServerAddr, Port: 8080, Close: load.CloseServer}, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	pr, err := probe.Open("server", l.Server.NS, probe.Options{Link: l.Server.Link})
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	pcap := filepath.Join(t.TempDir(), "server.pcap")
	capt, err := capture.Start(l.Server.NS, l.Server.Link, pcap, capture.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := pr.Counters()
	var clients []load.Client
	for _, c := range l.Clients {
		clients = append(clients, load.Client{Name: c.Name, NS: c.NS, Addr: c.Addr})
	}
	res, err := load.Run(ctx, load.Config{Clients: clients, Target: topo.ServerAddr, Port: 8080,
		Connections: 100, Duration: 20 * time.Second, ConnectTimeout: time.Second, BindPort: 50000, Close: load.CloseServer})
	if _, serr := capt.Stop(); serr != nil {
		t.Fatal(serr)
	}
	if err != nil {
		t.Fatal(err)
	}
	after, _ := pr.Counters()
	d := probe.Delta(before, after)
	syn, _ := nat.ReadSYNCounters(l.Server.NS)
	tw, _ := pr.TimeWait()
	t.Logf("PAWSTimewait=%d PAWSEstab=%d syn=%v tw=%d", d["TcpExt.PAWSTimewait"], d["TcpExt.PAWSEstab"], syn, tw)
	var problems []string
	if res.OK != 100 {
		problems = append(problems, fmt.Sprintf("ok = %d, want 100 (rfc1337=0 lets every client recover)", res.OK))
	}
	if d["TcpExt.PAWSTimewait"] == 0 {
		problems = append(problems, "no PAWS rejects at the server")
	}
	// Each client keeps one 4-tuple (bound port), so the kernel's offsets
	// make one of them "behind": exactly the handoffs towards it are retried.
	a, b := res.Handoffs["c1_to_c2"], res.Handoffs["c2_to_c1"]
	if a == nil || b == nil {
		t.Fatalf("handoffs %v", res.Handoffs)
	}
	if !(a.Retried == a.Attempts && b.Retried == 0) && !(b.Retried == b.Attempts && a.Retried == 0) {
		problems = append(problems, fmt.Sprintf("handoffs c1->c2 %+v c2->c1 %+v: want one direction always retried, the other never", *a, *b))
	}
	if int64(a.Retried+b.Retried) != d["TcpExt.PAWSTimewait"] {
		problems = append(problems, fmt.Sprintf("retried handoffs %d != server PAWS rejects %d", a.Retried+b.Retried, d["TcpExt.PAWSTimewait"]))
	}
	if len(problems) > 0 {
		for k, v := range d {
			if v != 0 {
				t.Logf("server %s %+d", k, v)
			}
		}
		logSegments(t, pcap)
	}
	return problems
}

// logSegments logs the server link's TCP segments, one line each, so that a
// rare miss can be read from the CI log alone.
func logSegments(t *testing.T, pcap string) {
	frames, err := capture.ReadFile(pcap)
	if err != nil {
		t.Logf("server capture: %v", err)
	}
	var t0 time.Time
	for i, f := range frames {
		s, ok := capture.ParseTCP(f.Data)
		if !ok {
			continue
		}
		if t0.IsZero() {
			t0 = f.Time
		}
		var fl []byte
		for _, c := range []struct {
			bit  uint8
			name byte
		}{{capture.FlagSYN, 'S'}, {capture.FlagFIN, 'F'}, {capture.FlagRST, 'R'}, {capture.FlagACK, '.'}} {
			if s.Flags&c.bit != 0 {
				fl = append(fl, c.name)
			}
		}
		t.Logf("%4d %9.3fms %s:%d>%s:%d [%s] seq %d ack %d len %d ts %d/%d", i, float64(f.Time.Sub(t0).Microseconds())/1000,
			s.Src, s.SrcPort, s.Dst, s.DstPort, fl, s.Seq, s.Ack, s.PayloadLen, s.TSval, s.TSecr)
	}
}

func TestComputeCDF(t *testing.T) {
	if load.ComputeCDF(nil) != nil {
		t.Error("CDF of nothing should be nil")
	}
	small := []int64{3e6, 1e6, 2e6, 4e6}
	got := load.ComputeCDF(small)
	want := [][2]float64{{0.25, 1}, {0.5, 2}, {0.75, 3}, {1, 4}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("point %d: %v, want %v", i, got[i], want[i])
		}
	}
	// Many values: bounded, monotone, ending at (1, max), with the tail.
	var many []int64
	for i := 1; i <= 100000; i++ {
		many = append(many, int64(i)*1000) // 0.001 ms … 100 ms
	}
	got = load.ComputeCDF(many)
	if len(got) > load.CDFPoints || got[len(got)-1] != [2]float64{1, 100} {
		t.Fatalf("%d points, last %v", len(got), got[len(got)-1])
	}
	seen999 := false
	for i := 1; i < len(got); i++ {
		if got[i][0] <= got[i-1][0] || got[i][1] < got[i-1][1] {
			t.Fatalf("not monotone at %d: %v %v", i, got[i-1], got[i])
		}
		if got[i][0] == 0.999 {
			seen999 = true
			if got[i][1] != 99.9 {
				t.Errorf("q 0.999 = %v ms, want 99.9", got[i][1])
			}
		}
	}
	if !seen999 {
		t.Error("no 0.999 quantile in the tail")
	}
	// Every grid point is the nearest rank exactly: with 400 values 1..400,
	// q = 0.035 is the 14th, not the 15th (7/200*400 is 14.000000000000002
	// in floating point).
	var four []int64
	for i := 1; i <= 400; i++ {
		four = append(four, int64(i)*1e6)
	}
	for _, p := range load.ComputeCDF(four)[1:] {
		if want := math.Ceil(math.Round(p[0]*400*1e4) / 1e4); p[1] != want {
			t.Errorf("q %v of 1..400 = %v, want %v", p[0], p[1], want)
		}
	}
}
