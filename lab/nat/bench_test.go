package nat_test

import (
	"testing"

	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/twlab/twlab/lab/nat"
	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/topo"
	"github.com/vishvananda/netns"
)

// counterNS is a fresh namespace with the SYN counters installed.
func counterNS(tb testing.TB) netns.NsHandle {
	roottest.Skip(tb)
	name := topo.NSName(roottest.RunID(tb), "nft")
	ns, err := netnsutil.NewNamed(name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ns.Close()
		topo.DeleteNamespace(name)
	})
	if err := nat.InstallSYNCounters(ns); err != nil {
		tb.Fatal(err)
	}
	return ns
}

// BenchmarkReadSYNCounters is one read of the server's nftables counters,
// as the sampler does at every tick.
func BenchmarkReadSYNCounters(b *testing.B) {
	ns := counterNS(b)
	b.ReportAllocs()
	for b.Loop() {
		c, err := nat.ReadSYNCounters(ns)
		if err != nil || len(c) != 4 {
			b.Fatal(c, err)
		}
	}
}
