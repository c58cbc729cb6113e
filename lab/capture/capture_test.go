package capture_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/capture"
	"github.com/twlab/twlab/lab/internal/labtest"
	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/topo"
	"golang.org/x/sys/unix"
)

// TestCaptureSeesOnlyItsLink captures the box's server-facing link again and
// again while the box's namespace carries other traffic: loopback
// connections inside it and client-to-client connections across its bridge.
// No frame of another interface may appear in any capture (a packet socket
// that queues before it is bound to the link would catch some), every frame
// has a kernel timestamp inside the capture's lifetime, and the kernel
// dropped none.
func TestCaptureSeesOnlyItsLink(t *testing.T) {
	l := labtest.Lab(t, 2)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// flood connects from one namespace to a listener in another (or the
	// same) until the test ends.
	flood := func(from, to *topo.Node, listen, dial string) {
		var ln net.Listener
		if err := netnsutil.Do(to.NS, func() (err error) { ln, err = net.Listen("tcp4", listen); return err }); err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		wg.Go(func() {
			defer ln.Close()
			for ctx.Err() == nil {
				netnsutil.Do(from.NS, func() error {
					for range 20 {
						if c, err := net.DialTimeout("tcp4", dial, time.Second); err == nil {
							c.Close()
						}
					}
					return nil
				})
			}
		})
	}
	// Loopback traffic inside the box: the noise a badly bound socket sees.
	flood(l.LVS, l.LVS, "127.0.0.1:9000", "127.0.0.1:9000")
	// Client to client across the box's bridge: frames on its ports and
	// bridge, never on its back link.
	flood(l.Clients[0], l.Clients[1], ":9001", fmt.Sprintf("%s:9001", topo.ClientAddr(2)))
	defer func() { stop(); wg.Wait() }()

	dir := t.TempDir()
	frames := 0
	for i := range 20 {
		path := filepath.Join(dir, fmt.Sprintf("%02d.pcap", i))
		start := time.Now()
		c, err := capture.Start(l.LVS.NS, l.BackLink, path, capture.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		// Something on the captured link too: the box's own SYN to the
		// server (refused: nothing listens there).
		netnsutil.Do(l.LVS.NS, func() error {
			if c, err := net.DialTimeout("tcp4", topo.ServerAddr.String()+":9", 200*time.Millisecond); err == nil {
				c.Close()
			}
			return nil
		})
		time.Sleep(10 * time.Millisecond)
		st, err := c.Stop()
		end := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		if st.KernelDrops != 0 {
			t.Errorf("capture %d: the kernel dropped %d frames", i, st.KernelDrops)
		}
		fs, err := capture.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			frames++
			if f.Time.Before(start) || f.Time.After(end) {
				t.Errorf("capture %d: frame stamped %s, outside the capture's %s..%s", i, f.Time, start, end)
			}
			s, ok := capture.ParseTCP(f.Data)
			if !ok {
				continue // ARP and the like: the link's own
			}
			for _, ip := range []net.IP{s.Src, s.Dst} {
				if !ip.Equal(topo.LVSBack) && !ip.Equal(topo.ServerAddr) {
					t.Fatalf("capture %d of %s holds a frame of another interface: %s:%d -> %s:%d", i, l.BackLink, s.Src, s.SrcPort, s.Dst, s.DstPort)
				}
			}
		}
	}
	if frames == 0 {
		t.Error("no frame captured on the link itself")
	}
}

// TestStopKeepsQueuedFrames: frames the socket has queued when Stop comes
// were on the link while the capture ran and belong in the file. Sent in a
// burst with one P, so that the reader has not run when Stop does, they
// were all lost (the socket closed under them) without a drop counted.
func TestStopKeepsQueuedFrames(t *testing.T) {
	l := labtest.Lab(t, 1)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const burst = 200
	for round := range 3 {
		path := filepath.Join(t.TempDir(), "burst.pcap")
		c, err := capture.Start(l.LVS.NS, l.BackLink, path, capture.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		// UDP from the box to the server: every datagram crosses the
		// captured link once, whether anyone listens or not.
		var fd int
		if err := netnsutil.Do(l.LVS.NS, func() (err error) {
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		to := &unix.SockaddrInet4{Port: 9}
		copy(to.Addr[:], topo.ServerAddr.To4())
		for range burst {
			unix.Sendto(fd, []byte("x"), 0, to)
		}
		unix.Close(fd)
		st, err := c.Stop()
		if err != nil {
			t.Fatal(err)
		}
		frames, err := capture.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		udp := 0
		for _, f := range frames {
			if len(f.Data) > 23 && f.Data[12] == 0x08 && f.Data[13] == 0 && f.Data[23] == unix.IPPROTO_UDP {
				udp++
			}
		}
		if uint64(udp)+st.KernelDrops < burst {
			t.Errorf("round %d: %d of %d datagrams in the capture, %d kernel drops: the rest were lost uncounted", round, udp, burst, st.KernelDrops)
		}
	}
}

// knock sends n SYNs from the box to a closed port of the server: 2n frames
// on the box's back link.
func knock(t *testing.T, l *topo.Lab, n int) {
	t.Helper()
	netnsutil.Do(l.LVS.NS, func() error {
		for range n {
			if c, err := net.DialTimeout("tcp4", topo.ServerAddr.String()+":9", 200*time.Millisecond); err == nil {
				c.Close()
			}
		}
		return nil
	})
}

// A capture that reaches its limit says how many frames it left out; one
// whose file cannot be written (a full disk) is not put in place: a pcap
// cut in the middle of a frame stood under its final name.
func TestCaptureLimitsAndWriteErrors(t *testing.T) {
	l := labtest.Lab(t, 1)
	dir := t.TempDir()
	path := filepath.Join(dir, "limited.pcap")
	c, err := capture.Start(l.LVS.NS, l.BackLink, path, capture.Limits{Snaplen: 256, MaxPackets: 10, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	knock(t, l, 50)
	time.Sleep(20 * time.Millisecond)
	st, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if !st.Truncated || st.Packets != 10 || st.NotWritten < 80 {
		t.Errorf("limited capture: truncated %v, %d frames written, %d not written; want true, 10, >= 80", st.Truncated, st.Packets, st.NotWritten)
	}

	full := filepath.Join(dir, "full")
	if err := os.Mkdir(full, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", full, "tmpfs", 0, "size=64k"); err != nil {
		t.Skip("no tmpfs to fill:", err)
	}
	defer unix.Unmount(full, unix.MNT_DETACH)
	path = filepath.Join(full, "full.pcap")
	c, err = capture.Start(l.LVS.NS, l.BackLink, path, capture.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	knock(t, l, 1500) // ~3000 frames of ~70 bytes: more than 64 KiB
	time.Sleep(20 * time.Millisecond)
	st, err = c.Stop()
	if err == nil || !errors.Is(err, unix.ENOSPC) {
		t.Errorf("capture onto a full disk: error %v, want ENOSPC", err)
	}
	ents, _ := os.ReadDir(full)
	for _, e := range ents {
		t.Errorf("a failed capture left %s behind", e.Name())
	}
}
