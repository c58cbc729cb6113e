package capture_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/capture"
	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/topo"
)

// TestCaptureSeesOnlyItsLink captures the box's server-facing link again and
// again while the box's namespace carries other traffic: loopback
// connections inside it and client-to-client connections across its bridge.
// No frame of another interface may appear in any capture (a packet socket
// that queues before it is bound to the link would catch some), every frame
// has a kernel timestamp inside the capture's lifetime, and the kernel
// dropped none.
func TestCaptureSeesOnlyItsLink(t *testing.T) {
	roottest.Skip(t)
	l, err := topo.Build(context.Background(), topo.Spec{RunID: roottest.RunID(t), Clients: 2}, nil)
	t.Cleanup(func() { l.Destroy() })
	if err != nil {
		t.Fatal(err)
	}
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
