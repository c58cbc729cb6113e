package probe_test

import (
	"os"
	"testing"

	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/probe"
	"github.com/twlab/twlab/lab/topo"
)

// hostCounters is this machine's /proc/net/netstat and snmp: the real size
// of what a probe parses (about 200 fields), readable without root.
func hostCounters(b *testing.B) [][]byte {
	var out [][]byte
	for _, f := range []string{"/proc/net/netstat", "/proc/net/snmp"} {
		src, err := os.ReadFile(f)
		if err != nil {
			b.Skip(err)
		}
		out = append(out, src)
	}
	return out
}

// BenchmarkParseRealCounters parses both files into a fresh map, as
// Counters does.
func BenchmarkParseRealCounters(b *testing.B) {
	srcs := hostCounters(b)
	b.ReportAllocs()
	for b.Loop() {
		m := make(map[string]int64, 256)
		for _, s := range srcs {
			if err := probe.ParseCounters(s, m); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// probeNode opens the counters of a fresh namespace.
func probeNode(b *testing.B) *probe.Node {
	roottest.Skip(b)
	name := topo.NSName(roottest.RunID(b), "probe")
	ns, err := netnsutil.NewNamed(name)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ns.Close()
		topo.DeleteNamespace(name)
	})
	p, err := probe.Open("n", ns, probe.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	return p
}

// BenchmarkNodeCounters reads and parses a lab namespace's counters (the
// sampler's PAWS series, and every node before and after a cell).
func BenchmarkNodeCounters(b *testing.B) {
	p := probeNode(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Counters(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTimeWait reads a namespace's TIME_WAIT count (every node, every
// tick).
func BenchmarkTimeWait(b *testing.B) {
	p := probeNode(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.TimeWait(); err != nil {
			b.Fatal(err)
		}
	}
}
