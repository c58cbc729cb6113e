package load_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/load"
	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/vishvananda/netns"
)

// testServer is a responder the test controls: per-port counts, and a
// silent mode that accepts and never answers.
type testServer struct {
	lns    []net.Listener
	served []atomic.Int64
	silent bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func startTestServer(t *testing.T, ns netns.NsHandle, port, ports int, silent bool) *testServer {
	t.Helper()
	s := &testServer{served: make([]atomic.Int64, ports), silent: silent}
	err := netnsutil.Do(ns, func() error {
		for i := 0; i < ports; i++ {
			ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port+i))
			if err != nil {
				return err
			}
			s.lns = append(s.lns, ln)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, ln := range s.lns {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				s.mu.Lock()
				s.conns = append(s.conns, c)
				s.mu.Unlock()
				if s.silent {
					continue
				}
				go func() {
					defer c.Close()
					r := bufio.NewReader(c)
					for {
						line, err := r.ReadString('\n')
						if err != nil {
							return
						}
						if line == "\r\n" {
							break
						}
					}
					s.served[i].Add(1)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
				}()
			}
		}()
	}
	t.Cleanup(func() {
		for _, ln := range s.lns {
			ln.Close()
		}
		s.wg.Wait()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	return s
}

func loopbackClient(ns netns.NsHandle) []load.Client {
	return []load.Client{{Name: "c1", NS: ns, Addr: loopback}}
}

// Chain k dials Port + k%Ports: every port gets its share.
func TestGeneratorSpreadsChainsOverPorts(t *testing.T) {
	ns := loopbackNS(t)
	s := startTestServer(t, ns, 8100, 3, false)
	res, err := load.Run(context.Background(), load.Config{Clients: loopbackClient(ns), Target: loopback,
		Port: 8100, Ports: 3, Connections: 600, Duration: 20 * time.Second, Concurrency: 6, Close: load.CloseServer})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 600 || res.Failed != 0 {
		t.Fatalf("ok %d failed %d (want 600, 0): %v", res.OK, res.Failed, res.Errors)
	}
	for i := range s.served {
		if n := s.served[i].Load(); n < 100 {
			t.Errorf("port %d served %d of 600: chains do not spread over the ports", 8100+i, n)
		}
	}
}

// Every close mode and keep-alive count against twlab's own server: all
// connections succeed and every request is answered.
func TestGeneratorCloseModes(t *testing.T) {
	ns := loopbackNS(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	port := 8200
	for _, mode := range []load.CloseMode{load.CloseServer, load.CloseClient, load.CloseReset} {
		for _, ka := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s-%d", mode, ka), func(t *testing.T) {
				port++
				srv, err := load.StartServer(ns, load.ServerConfig{Addr: loopback, Port: port, Close: mode, KeepaliveRequests: ka}, log)
				if err != nil {
					t.Fatal(err)
				}
				defer srv.Close()
				res, err := load.Run(context.Background(), load.Config{Clients: loopbackClient(ns), Target: loopback,
					Port: port, Connections: 300, Duration: 20 * time.Second, Concurrency: 4, Close: mode, KeepaliveRequests: ka})
				if err != nil {
					t.Fatal(err)
				}
				if res.OK != 300 || res.Failed != 0 || res.Requests != 300*ka {
					t.Errorf("ok %d failed %d requests %d, want 300, 0, %d: %v", res.OK, res.Failed, res.Requests, 300*ka, res.Errors)
				}
			})
		}
	}
}

// A server that never answers: within io_timeout nothing fails, and the
// cell's end cuts the connections short, at once, without waiting out
// io_timeout; past io_timeout they fail as "response".
func TestGeneratorSilentServer(t *testing.T) {
	ns := loopbackNS(t)
	startTestServer(t, ns, 8300, 1, true)
	start := time.Now()
	res, err := load.Run(context.Background(), load.Config{Clients: loopbackClient(ns), Target: loopback,
		Port: 8300, Connections: 100, Duration: 300 * time.Millisecond, Concurrency: 4, IOTimeout: time.Minute, Close: load.CloseServer})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("the run took %s: the end waited for io_timeout", el)
	}
	if res.Failed != 0 || res.CutShort != 4 {
		t.Errorf("failed %d cut short %d, want 0 and 4 (one per chain): %v", res.Failed, res.CutShort, res.Errors)
	}
	// Each of them waited for the answer from its start to the cell's end:
	// what tells a load held back by hung connections from a slow machine.
	if res.CutShortOldest < 250*time.Millisecond || res.CutShortOldest > 5*time.Second {
		t.Errorf("oldest cut short %s, want about the 300 ms the cell lasted", res.CutShortOldest)
	}

	res, err = load.Run(context.Background(), load.Config{Clients: loopbackClient(ns), Target: loopback,
		Port: 8300, Connections: 4, Duration: 10 * time.Second, Concurrency: 2, IOTimeout: 200 * time.Millisecond, Close: load.CloseServer})
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 4 || res.Failures[load.Response] != 4 {
		t.Errorf("failed %d (%v), want 4 response failures", res.Failed, res.Failures)
	}
	if len(res.Errors) == 0 || !strings.Contains(res.Errors[0], "read response: no answer within 200ms") {
		t.Errorf("errors %q", res.Errors)
	}
}

// Cancelling the run ends it at once and counts nothing in flight as failed.
func TestGeneratorCancel(t *testing.T) {
	ns := loopbackNS(t)
	startTestServer(t, ns, 8400, 1, true)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	res, err := load.Run(ctx, load.Config{Clients: loopbackClient(ns), Target: loopback, Port: 8400,
		Connections: 100, Duration: time.Minute, Concurrency: 3, IOTimeout: time.Minute, Close: load.CloseServer})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("cancel took %s", el)
	}
	if res.Failed != 0 || res.CutShort != 3 {
		t.Errorf("failed %d cut short %d, want 0 and 3", res.Failed, res.CutShort)
	}
}

// A server that never accepts, with a backlog of one: SYNs beyond the
// queue are dropped, and those connects fail as timeouts.
func TestGeneratorConnectTimeout(t *testing.T) {
	ns := loopbackNS(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := load.StartServer(ns, load.ServerConfig{Addr: loopback, Port: 8500, Stalled: true, Backlog: 1}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	res, err := load.Run(context.Background(), load.Config{Clients: loopbackClient(ns), Target: loopback, Port: 8500,
		Connections: 12, Duration: 20 * time.Second, Concurrency: 6, ConnectTimeout: 300 * time.Millisecond,
		IOTimeout: 300 * time.Millisecond, Close: load.CloseServer})
	if err != nil {
		t.Fatal(err)
	}
	if res.Failures[load.Timeout] == 0 {
		t.Errorf("failures %v, want connect timeouts: %v", res.Failures, res.Errors)
	}
	if res.OK != 0 {
		t.Errorf("ok %d from a server that never answers", res.OK)
	}
	if !strings.Contains(strings.Join(res.Errors, "\n"), "connect: no answer within 300ms") {
		t.Errorf("errors %q", res.Errors)
	}
}

// Rate and gap bound how fast connections start.
func TestGeneratorPacing(t *testing.T) {
	ns := loopbackNS(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := load.StartServer(ns, load.ServerConfig{Addr: loopback, Port: 8600, Close: load.CloseServer}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	res, err := load.Run(context.Background(), load.Config{Clients: loopbackClient(ns), Target: loopback, Port: 8600,
		Connections: 100000, Duration: time.Second, Concurrency: 8, Rate: 200, Close: load.CloseServer})
	if err != nil {
		t.Fatal(err)
	}
	// 200/s for 1 s: slots at 0, 5 ms, … 995 ms; never the thousands an
	// unpaced second makes.
	if res.Attempts < 190 || res.Attempts > 201 {
		t.Errorf("rate 200/s for 1 s made %d attempts, want 200", res.Attempts)
	}
	// A rate whose interval is below a millisecond: a ticker lost the
	// ticks its reader was woken late for (2000/s made 1100/s).
	res, err = load.Run(context.Background(), load.Config{Clients: loopbackClient(ns), Target: loopback, Port: 8600,
		Connections: 100000, Duration: time.Second, Concurrency: 8, Rate: 2000, Close: load.CloseServer})
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts < 1700 || res.Attempts > 2001 {
		t.Errorf("rate 2000/s for 1 s made %d attempts, want 2000", res.Attempts)
	}
	res, err = load.Run(context.Background(), load.Config{Clients: loopbackClient(ns), Target: loopback, Port: 8600,
		Connections: 100000, Duration: time.Second, Concurrency: 2, Gap: 100 * time.Millisecond, Close: load.CloseServer})
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts < 5 || res.Attempts > 22 {
		t.Errorf("2 chains with a 100 ms gap for 1 s made %d attempts, want about 20", res.Attempts)
	}
}
