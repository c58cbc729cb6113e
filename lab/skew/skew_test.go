package skew_test

import (
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/capture"
	"github.com/twlab/twlab/lab/internal/labtest"
	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/skew"
	"github.com/twlab/twlab/lab/sysctl"
	"github.com/twlab/twlab/lab/topo"
	"golang.org/x/sys/unix"
)

// TestOffsetsOnTheWire gives c2 a clock 60 s behind c1 (timestamps=2, so the
// kernel adds no offset of its own), captures the server's link, and checks:
// the SYNs' TSval gap equals the offset within a few ms; the client's RTT
// estimate is still sane (TSecr was restored); data flows without resets;
// the counters saw the rewrites; detaching leaves no filter or qdisc.
func TestOffsetsOnTheWire(t *testing.T) {
	l := labtest.Routed(t, 2)
	for _, c := range l.Clients {
		if _, err := sysctl.Apply(c.NS, []sysctl.Setting{{Name: "net.ipv4.tcp_timestamps", Requested: "2"}}); err != nil {
			t.Skipf("tcp_timestamps=2 unsupported here: %v", err)
		}
	}
	const offset = -60 * time.Second
	offsets := []int32{0, int32(offset / time.Millisecond)} // 1 tick = 1 ms since Linux 4.13
	var atts []*skew.Attachment
	for i, c := range l.Clients {
		a, err := skew.Attach(c.NS, c.Link, offsets[i])
		if err != nil {
			t.Fatal(err)
		}
		atts = append(atts, a)
	}
	pcap := filepath.Join(t.TempDir(), "server.pcap")
	capt, err := capture.Start(l.Server.NS, l.Server.Link, pcap, capture.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := netnsutil.Do(l.Server.NS, func() (err error) {
		ln, err = net.Listen("tcp4", topo.ServerAddr.String()+":80")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	payload := make([]byte, 200_000) // several segments each way
	for i := range payload {
		payload[i] = byte(i)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }() // echo
		}
	}()
	for _, c := range l.Clients {
		for k := 0; k < 3; k++ {
			var conn net.Conn
			if err := netnsutil.Do(c.NS, func() (err error) {
				conn, err = net.DialTimeout("tcp4", topo.ServerAddr.String()+":80", 2*time.Second)
				return err
			}); err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
			go func() { conn.Write(payload); conn.(*net.TCPConn).CloseWrite() }()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(conn)
			if err != nil || len(got) != len(payload) || string(got[:1000]) != string(payload[:1000]) {
				t.Fatalf("%s: echo of %d bytes came back as %d bytes, err %v (checksum or reset trouble)", c.Name, len(payload), len(got), err)
			}
			rc, _ := conn.(*net.TCPConn).SyscallConn()
			var info *unix.TCPInfo
			rc.Control(func(fd uintptr) { info, _ = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
			if info != nil && info.Rtt > 50_000 { // µs
				t.Errorf("%s: RTT estimate %d µs; TSecr was not restored", c.Name, info.Rtt)
			}
			conn.Close()
		}
	}
	time.Sleep(50 * time.Millisecond)
	st, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	frames, err := capture.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets != len(frames) || len(frames) == 0 {
		t.Fatalf("capture stats %d packets, file %d", st.Packets, len(frames))
	}
	// Pair each c2 SYN with the c1 SYN before it: the gap minus the wall
	// time between them must be the offset.
	var last1 uint32
	var last1T time.Time
	pairs := 0
	for _, f := range frames {
		s, ok := capture.ParseTCP(f.Data)
		if !ok || s.Flags&(capture.FlagSYN|capture.FlagACK) != capture.FlagSYN || !s.HasTS {
			continue
		}
		switch s.Src.String() {
		case l.Clients[0].Addr.String():
			last1, last1T = s.TSval, f.Time
		case l.Clients[1].Addr.String():
			if last1T.IsZero() {
				continue
			}
			gap := int64(int32(s.TSval - last1))
			elapsed := f.Time.Sub(last1T).Milliseconds()
			if d := gap - elapsed - int64(offsets[1]); d < -3 || d > 3 {
				t.Errorf("TSval(c2)-TSval(c1) = %d ticks with %d ms between the SYNs; want %d (±3)", gap, elapsed, offsets[1])
			}
			pairs++
		}
	}
	if pairs == 0 {
		t.Fatal("no SYN pairs in the capture")
	}
	for i, a := range atts {
		s, err := a.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if s.EgressRewritten == 0 || s.IngressRewritten == 0 {
			t.Errorf("c%d: %+v; want rewrites both ways", i+1, s)
		}
	}
	for i, a := range atts {
		if err := a.Close(); err != nil {
			t.Errorf("detach c%d: %v", i+1, err)
		}
		c := l.Clients[i]
		left, err := skew.Filters(c.NS, c.Link)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 0 {
			t.Errorf("%s: left after detach: %v", c.Name, left)
		}
	}
}
