package runner

import (
	"testing"
	"time"

	"github.com/twlab/twlab/lab/internal/labtest"
	"github.com/twlab/twlab/lab/nat"
	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/probe"
	"github.com/twlab/twlab/lab/topo"
	"golang.org/x/sys/unix"
)

// TestSynCountersCountSynAckRetrans makes the server send a SYN-ACK again on
// purpose and checks that the paired read sees it. The listener has
// TCP_DEFER_ACCEPT (1 s): it drops the client's bare final ACK and, its
// timer expired, sends the SYN-ACK once more, which the client acknowledges.
// A second SYN goes to a port nobody listens on and gets a RST. So: 2 SYNs
// in, 2 SYN-ACKs out of which 1 sent again. in - synack_out says 0 SYNs went
// unanswered where 1 did: synack_retrans is what tells the reader.
func TestSynCountersCountSynAckRetrans(t *testing.T) {
	l := labtest.Routed(t, 1)
	if err := nat.InstallSYNCounters(l.Server.NS); err != nil {
		t.Fatal(err)
	}
	srvTh, err := netnsutil.NewThread(l.Server.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer srvTh.Close()
	cliTh, err := netnsutil.NewThread(l.Clients[0].NS)
	if err != nil {
		t.Fatal(err)
	}
	defer cliTh.Close()
	var lfd int
	err = srvTh.Run(func() error {
		var err error
		if lfd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		sa := &unix.SockaddrInet4{Port: 8080}
		copy(sa.Addr[:], topo.ServerAddr.To4())
		if err := unix.SetsockoptInt(lfd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 1); err != nil {
			return err
		}
		if err := unix.Bind(lfd, sa); err != nil {
			return err
		}
		return unix.Listen(lfd, 8)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lfd)
	pr, err := probe.Open("server", l.Server.NS, probe.Options{Link: l.Server.Link})
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()

	before, rBefore, _, err := synCounters(l.Server.NS, pr)
	if err != nil {
		t.Fatal(err)
	}
	connect := func(port int) (int, error) {
		var fd int
		err := cliTh.Run(func() error {
			var err error
			if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
				return err
			}
			sa := &unix.SockaddrInet4{Port: port}
			copy(sa.Addr[:], topo.ServerAddr.To4())
			return unix.Connect(fd, sa)
		})
		return fd, err
	}
	fd, err := connect(8080)
	if err != nil {
		t.Fatalf("connect to the listener: %v", err)
	}
	defer unix.Close(fd)
	if rfd, err := connect(8081); err != unix.ECONNREFUSED {
		unix.Close(rfd)
		t.Fatalf("connect to a closed port: %v, want ECONNREFUSED", err)
	}
	// The handshake's SYN-ACK timer fires after 1 s: wait until it was
	// sent again.
	var after map[string]uint64
	var rAfter int64
	for deadline := time.Now().Add(5 * time.Second); ; {
		if after, rAfter, _, err = synCounters(l.Server.NS, pr); err != nil {
			t.Fatal(err)
		}
		if rAfter > rBefore || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	in := int64(after[nat.CounterSYNIn] - before[nat.CounterSYNIn])
	out := int64(after[nat.CounterSYNACKOut] - before[nat.CounterSYNACKOut])
	again := rAfter - rBefore
	t.Logf("SYNs in %d, SYN-ACKs out %d, sent again %d", in, out, again)
	if in != 2 || out != 2 || again != 1 {
		t.Fatalf("SYNs in %d, SYN-ACKs out %d, sent again %d; want 2, 2, 1", in, out, again)
	}
}
