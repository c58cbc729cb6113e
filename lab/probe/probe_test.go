package probe_test

import (
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/probe"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func upLoopback(ns netns.NsHandle) error {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	return h.LinkSetUp(lo)
}

const netstat = `TcpExt: SyncookiesSent PAWSActive PAWSEstab PAWSTimewait TW
TcpExt: 0 1 2 3 40
IpExt: InNoRoutes InOctets
IpExt: 0 18446744073709551615
`

const snmp = `Tcp: RtoAlgorithm MaxConn ActiveOpens OutRsts
Tcp: 1 -1 5 7
`

func TestParseCounters(t *testing.T) {
	m := map[string]int64{}
	if err := probe.ParseCounters([]byte(netstat), m); err != nil {
		t.Fatal(err)
	}
	if err := probe.ParseCounters([]byte(snmp), m); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"TcpExt.PAWSTimewait": 3, "TcpExt.TW": 40, "Tcp.MaxConn": -1, "Tcp.OutRsts": 7, "IpExt.InOctets": -1}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %d, want %d", k, m[k], v)
		}
	}
	for _, bad := range []string{"TcpExt: A B\nTcpExt: 1\n", "TcpExt: A\nIpExt: 1\n", "TcpExt: A\n", "TcpExt: A\nTcpExt: x\n"} {
		if err := probe.ParseCounters([]byte(bad), map[string]int64{}); err == nil {
			t.Errorf("ParseCounters(%q): no error", bad)
		}
	}
	d := probe.Delta(map[string]int64{"a": 1}, map[string]int64{"a": 4, "b": 2})
	if d["a"] != 3 || d["b"] != 2 {
		t.Errorf("Delta = %v", d)
	}
}

func TestParseSockstat(t *testing.T) {
	tw, err := probe.ParseSockstatTW([]byte("sockets: used 5\nTCP: inuse 1 orphan 0 tw 17 alloc 2 mem 0\nUDP: inuse 0 mem 0\n"))
	if err != nil || tw != 17 {
		t.Errorf("tw = %d, %v; want 17", tw, err)
	}
	if _, err := probe.ParseSockstatTW([]byte("UDP: inuse 0\n")); err == nil {
		t.Error("no TCP line: no error")
	}
}

func BenchmarkCounters(b *testing.B) {
	m := map[string]int64{}
	src := []byte(netstat + snmp)
	for i := 0; i < b.N; i++ {
		probe.ParseCounters(src, m)
	}
}

// TestCountersFollowTheNamespace opens a fresh namespace's counters, makes a
// loopback connection that ends in TIME_WAIT inside it, and expects the
// probe (read from this, host-namespace, goroutine) to see exactly that.
func TestCountersFollowTheNamespace(t *testing.T) {
	roottest.Skip(t)
	name := "twlab-" + roottest.RunID(t) + "-probe"
	ns, err := netnsutil.NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	netns.DeleteNamed(name)
	defer ns.Close()
	p, err := probe.Open("n", ns, probe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	before, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if err := upLoopback(ns); err != nil {
		t.Fatal(err)
	}
	var fw2Diag, fw2Stat int
	var fw2Err error
	err = netnsutil.Do(ns, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		s, err := ln.Accept()
		if err != nil {
			return err
		}
		s.Close() // the accepting side closes first: TIME_WAIT lands on it
		time.Sleep(20 * time.Millisecond)
		// Its FIN is acknowledged, the peer's not sent: an orphan in
		// FIN_WAIT2, which the kernel already keeps as a timewait socket.
		fw2Diag, fw2Err = p.TimeWaitDiag()
		fw2Stat, _ = p.TimeWaitSockstat()
		c.Close()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// sockstat's tw counts it; sock_diag must count what sockstat counts, or
	// kernels whose TIME_WAIT is read through sock_diag (before ~4.16) show
	// fewer than those read through sockstat.
	if fw2Err != nil || fw2Diag != 1 || fw2Stat != 1 {
		t.Errorf("a timewait socket in FIN_WAIT2: sock_diag %d (%v), sockstat %d; want 1 and 1", fw2Diag, fw2Err, fw2Stat)
	}
	time.Sleep(50 * time.Millisecond)
	after, _ := p.Counters()
	d := probe.Delta(before, after)
	if d["Tcp.ActiveOpens"] != 1 || d["Tcp.PassiveOpens"] != 1 {
		t.Errorf("ActiveOpens %d PassiveOpens %d, want 1 and 1 (counters of the lab namespace, not the host)", d["Tcp.ActiveOpens"], d["Tcp.PassiveOpens"])
	}
	tw, err := p.TimeWait()
	if err != nil || tw != 1 {
		t.Errorf("TIME_WAIT = %d, %v; want 1", tw, err)
	}
	// sock_diag counts the namespace's own TIME_WAIT sockets on every
	// kernel; where sockstat is per-namespace too, both must agree.
	if n, err := p.TimeWaitDiag(); err != nil || n != 1 {
		t.Errorf("TIME_WAIT by sock_diag = %d, %v; want 1", n, err)
	}
	s := probe.StartSampler(t.Context(), []*probe.Node{p}, 10*time.Millisecond, 100)
	time.Sleep(35 * time.Millisecond)
	st, err := s.Stop()
	if err != nil || st["n"].Max != 1 || st["n"].Final != 1 || len(st["n"].Series) < 3 {
		t.Errorf("sampler: %+v, %v", st["n"], err)
	}
}

// TestEveryNodeReadsItsOwnCounters opens probes of several namespaces one
// after another, as a cell does, after this test's own threads have looked
// at /proc/thread-self/net in other namespaces: on kernels before ~4.18 a
// thread that did so reads the first namespace's files ever after. Each
// namespace gets a different number of connections, and each probe must see
// exactly its own.
func TestEveryNodeReadsItsOwnCounters(t *testing.T) {
	roottest.Skip(t)
	id := roottest.RunID(t)
	var nss []netns.NsHandle
	for i := range 3 {
		name := fmt.Sprintf("twlab-%s-p%d", id, i)
		ns, err := netnsutil.NewNamed(name)
		if err != nil {
			t.Fatal(err)
		}
		netns.DeleteNamed(name)
		t.Cleanup(func() { ns.Close() })
		if err := upLoopback(ns); err != nil {
			t.Fatal(err)
		}
		// Look at /proc/thread-self/net from reusable threads first, the
		// way a careless reader would.
		for range 4 {
			netnsutil.Do(ns, func() error { _, err := os.ReadFile("/proc/thread-self/net/netstat"); return err })
		}
		nss = append(nss, ns)
	}
	var probes []*probe.Node
	for i, ns := range nss {
		p, err := probe.Open(fmt.Sprintf("n%d", i), ns, probe.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		probes = append(probes, p)
	}
	var before []map[string]int64
	for _, p := range probes {
		c, err := p.Counters()
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, c)
	}
	for i, ns := range nss {
		err := netnsutil.Do(ns, func() error {
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				return err
			}
			defer ln.Close()
			for range i + 1 {
				c, err := net.Dial("tcp4", ln.Addr().String())
				if err != nil {
					return err
				}
				s, err := ln.Accept()
				if err != nil {
					return err
				}
				s.Close()
				c.Close()
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range probes {
		after, err := p.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if d := probe.Delta(before[i], after); d["Tcp.ActiveOpens"] != int64(i+1) {
			t.Errorf("namespace %d: ActiveOpens %d, want %d: the probe reads another namespace's counters", i, d["Tcp.ActiveOpens"], i+1)
		}
	}
}

func TestListsLink(t *testing.T) {
	dev := []byte("Inter-|   Receive\n face |bytes\n    lo: 0 0\ntwlab-a3e0-c1: 1 2\n  eth0: 3\n")
	for link, want := range map[string]bool{"lo": true, "twlab-a3e0-c1": true, "eth0": true, "twlab-a3e0": false, "c1": false} {
		if got := probe.ListsLink(dev, link); got != want {
			t.Errorf("%s: %v, want %v", link, got, want)
		}
	}
}
