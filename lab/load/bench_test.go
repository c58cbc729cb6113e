package load_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/twlab/twlab/lab/load"
	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/topo"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var loopback = net.IPv4(127, 0, 0, 1).To4()

// loopbackNS is a fresh namespace with lo up, removed when b ends: the
// generator's own cost, without a NAT box or a bridge in the way.
func loopbackNS(b testing.TB) netns.NsHandle {
	roottest.Skip(b)
	name := topo.NSName(roottest.RunID(b), "bench")
	ns, err := netnsutil.NewNamed(name)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ns.Close()
		topo.DeleteNamespace(name)
	})
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		b.Fatal(err)
	}
	return ns
}

// BenchmarkConnLoop is the generator's connection loop over loopback in one
// namespace: socket, connect, one request with Connection: close, the
// server's FIN, close; 8 chains. One op is one connection.
func BenchmarkConnLoop(b *testing.B) {
	ns := loopbackNS(b)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := load.StartServer(ns, load.ServerConfig{Addr: loopback, Port: 8080, Close: load.CloseServer}, log)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	res, err := load.Run(context.Background(), load.Config{
		Clients: []load.Client{{Name: "c1", NS: ns, Addr: loopback}}, Target: loopback, Port: 8080,
		Connections: b.N, Duration: time.Hour, Concurrency: 8, Close: load.CloseServer})
	b.StopTimer()
	cpu := cpuTime() - cpu0
	if err != nil {
		b.Fatal(err)
	}
	if res.Failed > 0 {
		b.Fatalf("%d of %d connections failed: %v", res.Failed, res.Attempts, res.Errors)
	}
	b.ReportMetric(float64(res.OK)/b.Elapsed().Seconds(), "conn/s")
	// CPU time per connection (user+system, generator and server, kernel
	// work in the process's context included) is steadier than the rate on
	// a machine others use too.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/op")
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPercentiles is what the generator does with the latencies of a
// cell once the load ends: percentiles and the CDF of 100 000 connects.
func BenchmarkPercentiles(b *testing.B) {
	lat := make([]int64, 100_000)
	for i := range lat {
		lat[i] = int64((i*7919)%100_000) * 1000
	}
	b.ReportAllocs()
	for b.Loop() {
		load.ComputePercentiles(lat)
		load.ComputeCDF(lat)
	}
}
