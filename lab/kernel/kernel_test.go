package kernel_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/twlab/twlab/lab/kernel"
	"github.com/twlab/twlab/lab/scenario"
	"github.com/twlab/twlab/lab/topo"
)

// TestDetect probes the running kernel and checks the findings against what
// /proc says directly, and that the scratch namespace is gone afterwards.
func TestDetect(t *testing.T) {
	roottest.Skip(t)
	f, err := kernel.Detect(context.Background(), kernel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *f)
	if f.Release == "" || f.Major < 3 {
		t.Errorf("release %q major %d", f.Release, f.Major)
	}
	_, err = os.Stat("/proc/sys/net/ipv4/tcp_tw_recycle")
	if hostHas := err == nil; !hostHas && f.Has("net.ipv4.tcp_tw_recycle") {
		t.Error("tcp_tw_recycle reported settable although the kernel has none")
	}
	if !f.Has("net.ipv4.tcp_rfc1337") && f.Major >= 5 {
		t.Error("tcp_rfc1337 is per-namespace since about 4.15")
	}
	b, _ := os.ReadFile("/proc/net/netstat")
	if strings.Contains(string(b), " PAWSTimewait") != slices.Contains(f.PAWSCounters, "TcpExt.PAWSTimewait") {
		t.Errorf("PAWS counters %v disagree with /proc/net/netstat", f.PAWSCounters)
	}
	if f.TSOffsets == kernel.OffsetsUnknown {
		t.Errorf("timestamp offsets not detected: %s", f.TSDetail)
	}
	// Since 4.13 the timestamp clock counts milliseconds, whatever HZ is.
	if (f.Major > 4 || f.Major == 4 && f.Minor >= 13) && f.TSHz != 1000 {
		t.Errorf("timestamp clock rate %d, want 1000 on %s: %s", f.TSHz, f.Release, f.TSHzDetail)
	}
	if f.NAT != "ok" {
		t.Errorf("NAT: %s", f.NAT)
	}
	vars := f.Vars()
	for _, n := range scenario.KernelVars {
		if _, ok := vars[n]; !ok {
			t.Errorf("Vars lacks %s, which scenarios may name", n)
		}
	}
	if len(vars) != len(scenario.KernelVars) {
		t.Errorf("Vars has %d names, scenario.KernelVars %d: keep them in step", len(vars), len(scenario.KernelVars))
	}
	names, _ := topo.ListNamespaces()
	for _, n := range names {
		if strings.HasSuffix(n, "-doctor") {
			t.Errorf("scratch namespace %s left behind", n)
		}
	}
}

func TestClockRate(t *testing.T) {
	for _, c := range []struct {
		ticks uint32
		ms    int
		want  int
	}{
		{400, 400, 1000}, {101, 405, 250}, {100, 400, 250}, {40, 400, 100}, {120, 400, 300},
		{1000, 400, 0}, // 2500/s: not a rate Linux uses
		{0, 400, 0},
	} {
		got, detail := kernel.ClockRate(c.ticks, time.Duration(c.ms)*time.Millisecond)
		if got != c.want {
			t.Errorf("%d ticks in %d ms: %d (%s), want %d", c.ticks, c.ms, got, detail, c.want)
		}
	}
}

// A selector may compare a kernel.* fact given as text only with values
// detection gives it (scenario.KernelValues); the lists move together.
func TestKernelValuesInStep(t *testing.T) {
	want := map[string][]string{
		"kernel.ts_offsets": {kernel.OffsetsNone, kernel.OffsetsPerPair, kernel.OffsetsPer4Tup, kernel.OffsetsUnknown},
		"kernel.tw_counter": {kernel.TWCounterCreated, kernel.TWCounterExpired, kernel.OffsetsUnknown, ""}, // detectTWCount says "unknown" as the offsets do
	}
	for name, vs := range want {
		got := scenario.KernelValues[name]
		if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(vs))) {
			t.Errorf("scenario.KernelValues[%s] = %q, detection gives %q", name, got, vs)
		}
	}
	if len(scenario.KernelValues) != len(want) {
		t.Errorf("scenario.KernelValues names %d facts, this test %d: keep them in step", len(scenario.KernelValues), len(want))
	}
}
