package runner

import (
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/twlab/twlab/lab/capture"
	"github.com/twlab/twlab/lab/kernel"
	"github.com/twlab/twlab/lab/load"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/scenario"
	"github.com/twlab/twlab/lab/skew"
)

// The run document's types are lab/result's own. The packages that measure
// return plain values, and these functions copy them in field by field: a
// field added to or renamed in a generator stays out of run.json until it
// is copied here on purpose, and schema v1 keeps its names. Nil maps and
// slices stay nil, as run.json tells null from empty.

// recordScenario encodes the scenario as run.json echoes it. Its JSON is
// lab/scenario's: the scenario file's own shape.
func recordScenario(s *scenario.Scenario) (json.RawMessage, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode scenario: %w", err)
	}
	return b, nil
}

func recordKernel(f *kernel.Facts) *result.KernelFeatures {
	if f == nil {
		return nil
	}
	kf := &result.KernelFeatures{
		Release: f.Release, Major: f.Major, Minor: f.Minor,
		NAT: f.NAT, Conntrack: f.Conntrack, EBPF: f.EBPF,
		PAWSCounters: f.PAWSCounters, PAWSDetail: f.PAWSDetail,
		TSOffsets: f.TSOffsets, TSDetail: f.TSDetail,
		TSHz: f.TSHz, TSHzDetail: f.TSHzDetail,
		TWCount: f.TWCount, TWCountDetail: f.TWCountDetail, TWCounter: f.TWCounter,
		SocketSkew: f.SocketSkew, TWReuseLoopback: f.TWReuseLoopback, Clocksource: f.Clocksource,
		DetectS: f.DetectS, PartsMS: maps.Clone(f.PartsMS),
		QEMU: f.QEMU, KVM: f.KVM,
	}
	if f.Knobs != nil {
		kf.Knobs = make([]result.KernelKnob, len(f.Knobs))
		for i, k := range f.Knobs {
			kf.Knobs[i] = result.KernelKnob{Name: k.Name, State: k.State, Reason: k.Reason}
		}
	}
	return kf
}

// msOf is d in milliseconds.
func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func recordLoad(r *load.Result) *result.Load {
	if r == nil {
		return nil
	}
	l := &result.Load{
		Attempts: r.Attempts, OK: r.OK, Failed: r.Failed, Failures: maps.Clone(r.Failures),
		CutShort: r.CutShort, CutShortOldestMS: msOf(r.CutShortOldest), Requests: r.Requests,
		ConnectMS: result.Percentiles{P50: r.ConnectMS.P50, P90: r.ConnectMS.P90, P99: r.ConnectMS.P99, Max: r.ConnectMS.Max},
		ConnPerS:  r.ConnPerS, Elapsed: r.Elapsed,
		Errors: r.Errors, ConnectCDF: r.ConnectCDF,
	}
	if r.PerClient != nil {
		l.PerClient = make(map[string]*result.LoadClient, len(r.PerClient))
		for name, c := range r.PerClient {
			var rc *result.LoadClient
			if c != nil {
				rc = &result.LoadClient{Attempts: c.Attempts, OK: c.OK, Failures: maps.Clone(c.Failures), CutShort: c.CutShort}
			}
			l.PerClient[name] = rc
		}
	}
	if r.Handoffs != nil {
		l.Handoffs = make(map[string]*result.Handoff, len(r.Handoffs))
		for k, h := range r.Handoffs {
			var rh *result.Handoff
			if h != nil {
				rh = &result.Handoff{Attempts: h.Attempts, Retried: h.Retried, Failed: h.Failed}
			}
			l.Handoffs[k] = rh
		}
	}
	return l
}

func recordCapture(st capture.Stats) result.Capture {
	return result.Capture{Path: st.Path, Link: st.Link, Packets: st.Packets, Bytes: st.Bytes,
		Truncated: st.Truncated, KernelDrops: st.KernelDrops, NotWritten: st.NotWritten, UserTimestamps: st.UserTimestamps}
}

func recordSkew(st skew.Stats) result.SkewStats {
	return result.SkewStats{EgressRewritten: st.EgressRewritten, IngressRewritten: st.IngressRewritten,
		NoTimestamp: st.NoTimestamp, Malformed: st.Malformed}
}
