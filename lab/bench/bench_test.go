package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/topo"
	"github.com/vishvananda/netns"
)

const wrkOut = `Running 5s test @ http://198.18.1.2:8080/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   345.12us  101.23us   5.01ms   91.00%
    Req/Sec    17.61k     1.02k   19.20k    70.00%
  87575 requests in 5.00s, 8.10MB read
  Socket errors: connect 0, read 3, write 0, timeout 0
  Non-2xx or 3xx responses: 2
Requests/sec:  17514.59
Transfer/sec:      1.62MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkOut)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 87575 || r.Seconds != 5 || r.PerSecond != 17514.59 || r.Non2xx != 2 || r.SockErrors != "connect 0, read 3, write 0, timeout 0" {
		t.Errorf("%+v", r)
	}
	r, err = parseWrk(strings.Replace(wrkOut, "in 5.00s", "in 1.50m", 1))
	if err != nil || r.Seconds != 90 {
		t.Errorf("minutes: %+v %v", r, err)
	}
	if _, err := parseWrk("unable to connect to 198.18.1.2:8080 Connection refused\n"); err == nil {
		t.Error("no figures: no error")
	}
	if err := r.usable(2); err != nil {
		t.Errorf("a run with requests refused: %v", err)
	}
	// Every connect failed: wrk still exits 0 and prints a rate of 0.
	dead := "Running 5s test @ http://198.18.1.2:8080/\n  2 threads and 8 connections\n" +
		"  0 requests in 5.00s, 0.00B read\n  Socket errors: connect 8, read 0, write 0, timeout 0\nRequests/sec:      0.00\nTransfer/sec:       0.00B\n"
	if r, err := parseWrk(dead); err != nil {
		t.Errorf("a run without requests: %v", err)
	} else if err := r.usable(2); err == nil || !strings.Contains(err.Error(), "connect 8") {
		t.Errorf("a run without requests is usable: %v", err)
	}
}

func TestWrkArgs(t *testing.T) {
	got := strings.Join(wrkArgs(Options{Concurrency: 8, Duration: 5 * time.Second}, 1), " ")
	if got != "-t1 -c8 -d5s -H Connection: close http://198.18.1.2:8080/" {
		t.Errorf("wrk %s", got)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{7}, 7}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestTableAndJSON(t *testing.T) {
	rs := []Result{
		{Name: "load", Unit: "conn/s", Twlab: 31000, Reference: ptr(27000), RefTool: "wrk -t1 -c8", Ratio: ptr(1.148), Goal: "ratio >= 1", Met: true, Note: "n"},
		{Name: "memory-64", Unit: "MiB", Twlab: 40.7, Goal: "< 200 MiB", Met: true},
		{Name: "lab-2-tuned", Unit: "ms", Twlab: 6, Goal: "reported", Met: true, ReportOnly: true},
	}
	var b bytes.Buffer
	Table(&b, rs)
	for _, want := range []string{"name", "ratio", "31000", "27000 (wrk -t1 -c8)", "1.148", "40.7", "load: n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	j, _ := json.Marshal(rs)
	var back []map[string]any
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "unit", "twlab", "reference", "ratio", "goal", "met"} {
		if _, ok := back[1][k]; !ok {
			t.Errorf("JSON object lacks %q: %s", k, j)
		}
	}
	if back[1]["reference"] != nil || back[1]["ratio"] != nil {
		t.Errorf("no reference: want null reference and ratio: %s", j)
	}
	// A reader of the JSON must tell a line that was not judged from a goal met.
	if _, ok := back[0]["report_only"]; ok || back[2]["report_only"] != true {
		t.Errorf("report_only: judged line %v, reported line %v; want absent and true", back[0]["report_only"], back[2]["report_only"])
	}
}

func TestMissingTool(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := CheckTools([]string{"load", "lab", "probe"})
	if err == nil {
		t.Fatal("no error with an empty PATH")
	}
	for _, want := range []string{"apt-get install wrk", "apt-get install iproute2", "apt-get install nftables"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if err := CheckTools([]string{"probe", "memory"}); err != nil {
		t.Errorf("probe and memory need no tool: %v", err)
	}
}

func TestRefScriptSyntax(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	for _, script := range []string{RefScript, RefScriptTuned} {
		if out, err := exec.Command("bash", "-n", "-c", script).CombinedOutput(); err != nil {
			t.Fatalf("bash -n: %v: %s", err, out)
		}
	}
}

// TestRefScriptBuildsTheLab: both references build what twlab builds — a
// client reaches the server through the box and the server sees the SNAT
// address — and their teardown leaves nothing behind.
func TestRefScriptBuildsTheLab(t *testing.T) {
	for name, script := range map[string]string{"plain": RefScript, "tuned": RefScriptTuned} {
		t.Run(name, func(t *testing.T) { testScriptBuildsTheLab(t, script) })
	}
}

func testScriptBuildsTheLab(t *testing.T, script string) {
	roottest.Skip(t)
	if err := CheckTools([]string{"lab"}); err != nil {
		t.Skip(err)
	}
	if err := netnsutil.EnsureNetnsDir(); err != nil {
		t.Fatal(err)
	}
	id := roottest.RunID(t)
	ctx := context.Background()
	defer runScriptOf(ctx, script, "teardown", id, 2)
	if err := runScriptOf(ctx, script, "build", id, 2); err != nil {
		t.Fatal(err)
	}
	open := func(node string) netns.NsHandle {
		h, err := netns.GetFromName(topo.NSName(id, node))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	var ln net.Listener
	if err := netnsutil.Do(open("server"), func() (err error) {
		ln, err = net.Listen("tcp4", topo.ServerAddr.String()+":9")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte(c.RemoteAddr().String()))
			c.Close()
		}
	}()
	var got string
	if err := netnsutil.Do(open("c2"), func() error {
		c, err := net.DialTimeout("tcp4", topo.ServerAddr.String()+":9", 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		b := make([]byte, 64)
		n, _ := c.Read(b)
		got = string(b[:n])
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if host, _, _ := net.SplitHostPort(got); host != topo.LVSBack.String() {
		t.Errorf("server saw %q, want the SNAT address %s", got, topo.LVSBack)
	}
	ln.Close()
	if err := runScriptOf(ctx, script, "teardown", id, 2); err != nil {
		t.Fatal(err)
	}
	names, _ := topo.ListNamespaces()
	for _, n := range names {
		if strings.Contains(n, "-"+id+"-") {
			t.Errorf("%s left behind", n)
		}
	}
	if _, err := os.Stat(fmt.Sprintf("/run/netns/twlab-%s-lvs", id)); err == nil {
		t.Error("lvs namespace file left behind")
	}
}

// A build that failed or was cancelled halfway leaves some namespaces: the
// scripts' teardown removes every one of them (the tuned script's batch
// stopped at the first that did not exist and left the rest).
func TestRefScriptTeardownAfterPartialBuild(t *testing.T) {
	roottest.Skip(t)
	if err := CheckTools([]string{"lab"}); err != nil {
		t.Skip(err)
	}
	if err := netnsutil.EnsureNetnsDir(); err != nil {
		t.Fatal(err)
	}
	for name, script := range map[string]string{"plain": RefScript, "tuned": RefScriptTuned} {
		id := roottest.RunID(t)
		// lvs, the first in the teardown's order, was never made
		for _, node := range []string{"server", "c1", "c2"} {
			h, err := netnsutil.NewNamed(topo.NSName(id, node))
			if err != nil {
				t.Fatal(err)
			}
			h.Close()
		}
		if err := runScriptOf(context.Background(), script, "teardown", id, 2); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		names, _ := topo.ListNamespaces()
		for _, n := range names {
			if rid, ok := topo.RunIDOf(n); ok && rid == id {
				t.Errorf("%s: %s left after the teardown", name, n)
				topo.DeleteNamespace(n)
			}
		}
	}
}

// TestRatioAsJudged: the table shows the ratio met was decided on (0.9997
// showed as "1.00" next to "no"), a report-only line says "-", not "yes".
func TestRatioAsJudged(t *testing.T) {
	for _, c := range []struct {
		v, goal float64
		show    string
		met     bool
	}{{0.99967, 1, "1", true}, {0.9994, 1, "0.999", false}, {4.9996, 5, "5", true}, {2.9994, 3, "2.999", false}} {
		r, met := atLeast(c.v, c.goal)
		var b bytes.Buffer
		Table(&b, []Result{{Name: "x", Unit: "u", Ratio: ptr(r), Goal: "g", Met: met}})
		line := strings.Fields(strings.Split(b.String(), "\n")[1]) // x u 0.00 - RATIO g MET
		if line[4] != c.show || met != c.met || (line[len(line)-1] == "yes") != c.met {
			t.Errorf("%v against %v: met %v, table row %v; want ratio %s and met %v", c.v, c.goal, met, line, c.show, c.met)
		}
	}
	var b bytes.Buffer
	Table(&b, []Result{{Name: "lab-2-tuned", Ratio: ptr(5.3), Goal: "reported (the goal is for 16 and 64 clients)", Met: true, ReportOnly: true}})
	if row := strings.Fields(strings.Split(b.String(), "\n")[1]); row[len(row)-1] != "-" {
		t.Errorf("a reported line: %v, want met -", row)
	}
	w := &wrkResult{SockErrors: "connect 0, read 2, write 0, timeout 1"}
	if n := w.sockErrorCount(); n != 3 {
		t.Errorf("socket errors %q counted %d, want 3", w.SockErrors, n)
	}
	if balanceNote(3, 3) != "" || !strings.Contains(balanceNote(1, 3), "not balanced") {
		t.Errorf("balance notes: %q, %q", balanceNote(3, 3), balanceNote(1, 3))
	}
}

// A bench stopped by Ctrl-C gives no line: a probe run of 40 s cancelled
// after 3 s printed a full table, and its slices slept out the 40 s first.
func TestCancelledBenchGivesNoFigure(t *testing.T) {
	roottest.Skip(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(3*time.Second, cancel)
	t0 := time.Now()
	rs, err := Run(ctx, []string{"probe"}, Options{Repeat: 1, Duration: 40 * time.Second, Concurrency: 8, Progress: io.Discard})
	took := time.Since(t0)
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want one that says the bench was stopped", err)
	}
	if len(rs) != 0 {
		t.Errorf("%d result lines from a cancelled bench: %+v", len(rs), rs)
	}
	if took > 10*time.Second {
		t.Errorf("returned %s after the start, 3 s of it before the cancel: the cancel was not heeded", took.Round(time.Millisecond))
	}
}
