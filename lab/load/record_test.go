package load

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkRecord is the generator's per-connection bookkeeping: counts by
// client, class and handoff, and the connect latency, in a chain's own
// counters (no lock).
func BenchmarkRecord(b *testing.B) {
	st := newChainStats(4)
	ok := outcome{class: OK, connect: 150 * time.Microsecond, requests: 1}
	fail := outcome{class: Timeout}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		o := &ok
		if i%100 == 99 {
			o = &fail
		}
		st.record((i+3)%4, i%4, o)
		i++
	}
}

// BenchmarkSummarize is what Run does with 100 000 latencies once the load
// ends: one sort in place, then percentiles and the CDF from it.
func BenchmarkSummarize(b *testing.B) {
	src := make([]int64, 100_000)
	for i := range src {
		src[i] = int64((i*7919)%100_000) * 1000
	}
	lat := make([]int64, len(src))
	b.ReportAllocs()
	for b.Loop() {
		copy(lat, src)
		slices.Sort(lat)
		percentilesSorted(lat)
		cdfSorted(lat)
	}
}

func TestMergeChains(t *testing.T) {
	clients := []Client{{Name: "c1"}, {Name: "c2"}}
	a, b := newChainStats(2), newChainStats(2)
	a.record(-1, 0, &outcome{class: OK, connect: 2, requests: 1})
	a.record(0, 1, &outcome{class: OK, connect: 1, requests: 1, synRetrans: 1})
	b.record(-1, 1, &outcome{class: Timeout})
	b.record(1, 0, &outcome{class: Reset})
	b.record(0, 1, &outcome{class: OK, connect: 3, requests: 1})
	res := newResult(clients)
	merge(res, clients, []*chainStats{a, b})
	if res.Attempts != 5 || res.OK != 3 || res.Failed != 2 || res.Requests != 3 {
		t.Errorf("attempts %d ok %d failed %d requests %d", res.Attempts, res.OK, res.Failed, res.Requests)
	}
	if res.Failures[Timeout] != 1 || res.Failures[Reset] != 1 {
		t.Errorf("failures %v", res.Failures)
	}
	if pc := res.PerClient["c2"]; pc.Attempts != 3 || pc.OK != 2 || pc.Failures[Timeout] != 1 || len(pc.Failures) != 1 {
		t.Errorf("c2 %+v", pc)
	}
	if h := res.Handoffs["c1_to_c2"]; h == nil || h.Attempts != 2 || h.Retried != 1 || h.Failed != 0 {
		t.Errorf("c1_to_c2 %+v", h)
	}
	if h := res.Handoffs["c2_to_c1"]; h == nil || h.Attempts != 1 || h.Failed != 1 {
		t.Errorf("c2_to_c1 %+v", h)
	}
	if _, ok := res.Handoffs["c1_to_c1"]; ok || len(res.Handoffs) != 2 {
		t.Errorf("handoffs %v", res.Handoffs)
	}
	if len(res.lat) != 3 {
		t.Errorf("latencies %v", res.lat)
	}
}

// skew.C.applied reads Offsets: a socket whose offset could not be set is
// an attempt (class other) but not evidence that the clock was skewed; a
// connection cut short after its response still had its request served.
func TestOffsetsAndCutShortRequests(t *testing.T) {
	clients := []Client{{Name: "c1"}}
	st := newChainStats(1)
	st.record(-1, 0, &outcome{class: Other})                                   // setting the offset failed
	st.record(0, 0, &outcome{class: OK, offsetSet: true, requests: 1})         // with the offset
	st.record(0, 0, &outcome{cutShort: true, offsetSet: true, requests: 1})    // answered, then the end came before the FIN
	st.record(0, 0, &outcome{cutShort: true, offsetSet: true, class: Timeout}) // cut short while connecting
	res := newResult(clients)
	merge(res, clients, []*chainStats{st})
	pc := res.PerClient["c1"]
	if pc.Offsets != 3 || pc.Attempts != 2 || pc.CutShort != 2 {
		t.Errorf("offsets %d attempts %d cut short %d; want 3, 2, 2", pc.Offsets, pc.Attempts, pc.CutShort)
	}
	if res.Requests != 2 {
		t.Errorf("requests %d, want 2 (one of them on a connection cut short)", res.Requests)
	}
}

// The chain counters (classNames) and the report (FailureClasses) list the
// classes apart; merge writes one into the other's map.
func TestClassOrder(t *testing.T) {
	if !slices.Equal(classNames[1:], FailureClasses) || classNames[0] != OK {
		t.Fatalf("classNames %v, FailureClasses %v", classNames, FailureClasses)
	}
	for i, c := range classNames {
		if classIndex(c) != i {
			t.Errorf("classIndex(%q) = %d, want %d", c, classIndex(c), i)
		}
	}
	if classIndex("bogus") != classIndex(Other) {
		t.Error("an unknown class does not count as other")
	}
}
