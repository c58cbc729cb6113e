// Package load runs both ends of the experiment: a small HTTP/1.1 responder
// in the server namespace and a bounded short-connection generator in the
// client namespaces.
package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/spec"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// CloseMode says which side ends a connection, and so where TIME_WAIT lands
// (see spec.CloseMode).
type CloseMode = spec.CloseMode

const (
	CloseServer = spec.CloseServer
	CloseClient = spec.CloseClient
	CloseReset  = spec.CloseReset
)

// ServerConfig configures the responder.
type ServerConfig struct {
	Addr              net.IP
	Port              int // first port
	Ports             int // number of consecutive ports
	Close             CloseMode
	KeepaliveRequests int           // responses per connection before the close mode applies
	IdleTimeout       time.Duration // bound on a silent connection
	// Backlog is listen(2)'s backlog; the kernel caps it at the namespace's
	// net.core.somaxconn. 0 = 4096.
	Backlog int
	// Stalled: the server does not accept until Close, so the accept queue
	// fills and the kernel's listen overflow handling shows.
	Stalled bool
}

// Server is a running responder.
type Server struct {
	cfg       ServerConfig
	lns       []net.Listener
	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     map[net.Conn]struct{}
	closed    bool          // under mu: Close has closed the connections
	closing   chan struct{} // closed by Close: ends an accept loop's backoff
	log       *slog.Logger
	closeOnce sync.Once
}

var okBody = []byte("ok\n")

// StartServer listens inside ns (the sockets are created on a thread in ns and
// keep that namespace) and serves until Close.
func StartServer(ns netns.NsHandle, cfg ServerConfig, log *slog.Logger) (*Server, error) {
	if cfg.Ports < 1 {
		cfg.Ports = 1
	}
	if cfg.KeepaliveRequests < 1 {
		cfg.KeepaliveRequests = 1
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Second
	}
	s := &Server{cfg: cfg, conns: map[net.Conn]struct{}{}, log: log, closing: make(chan struct{})}
	err := netnsutil.Do(ns, func() error {
		for i := 0; i < cfg.Ports; i++ {
			ln, err := listen(cfg.Addr, cfg.Port+i, cfg.Backlog)
			if err != nil {
				return err
			}
			s.lns = append(s.lns, ln)
		}
		return nil
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	if cfg.Stalled {
		return s, nil // accept nothing; Close releases the queued connections
	}
	for _, ln := range s.lns {
		s.wg.Add(1)
		go s.accept(ln)
	}
	return s, nil
}

// listen makes the socket by hand because net.Listen takes its backlog from
// the host's somaxconn, read once at process start, not from the scenario.
func listen(addr net.IP, port, backlog int) (net.Listener, error) {
	if backlog <= 0 {
		backlog = 4096
	}
	where := net.JoinHostPort(addr.String(), strconv.Itoa(port))
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("listen %s: socket: %w", where, err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	sa := &unix.SockaddrInet4{Port: port}
	copy(sa.Addr[:], addr.To4())
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen %s: bind: %w", where, err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen %s: %w", where, err)
	}
	f := os.NewFile(uintptr(fd), where)
	defer f.Close() // FileListener dups the descriptor
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", where, err)
	}
	return ln, nil
}

func (s *Server) accept(ln net.Listener) {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of descriptors or memory for a moment: a server that
			// stopped accepting would turn the rest of the cell into
			// timeouts blamed on the network. Wait and accept again.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("server: accept failed; accepting again", "err", err, "in", backoff)
			select {
			case <-s.closing:
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		s.mu.Lock()
		if s.closed {
			// Accepted as Close went through the connections: it would
			// wait for this one's idle timeout.
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *Server) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		// A bug in one connection's handler must not take the process, and
		// with it the lab's teardown, down.
		if p := recover(); p != nil {
			s.log.Error("server handler panic", "panic", p)
			c.Close()
		}
	}()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	mode := s.cfg.Close
	bufs := connBufs.Get().(*[2][]byte)
	defer connBufs.Put(bufs)
	buf, rd := bufs[0][:0], bufs[1]
	defer func() { bufs[0] = buf[:0] }()
	for n := 1; ; n++ {
		c.SetDeadline(time.Now().Add(s.cfg.IdleTimeout))
		req, rest, err := readRequest(c, buf, rd)
		if err != nil {
			c.Close() // the client went away or idled out
			return
		}
		// req is a view of buf: decide on it before the pipelined rest
		// moves to buf's front over it.
		last := n >= s.cfg.KeepaliveRequests || wantsClose(req)
		buf = append(buf[:0], rest...)
		if last && mode == CloseReset {
			// Abort before answering is not useful to a teacher; answer first.
			c.Write(response(false))
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			c.Close()
			return
		}
		closing := last && mode == CloseServer
		if closing {
			// The response and the FIN leave in one segment (corked, the
			// data waits; close puts the FIN on it and sends): a client
			// that closes as soon as it has read the response (curl)
			// sees the FIN with it and closes second, so TIME_WAIT
			// lands on the server as the scenario says. Sent apart, curl
			// closed first now and then, and the TIME_WAIT (and the
			// next `--local-port`) went to the client.
			cork(c)
		}
		if _, err := c.Write(response(closing)); err != nil {
			c.Close()
			return
		}
		if !last {
			continue
		}
		if mode == CloseServer {
			c.Close()
			return
		}
		// CloseClient: wait for the client's FIN, then close; our FIN goes
		// second, so TIME_WAIT lands on the client.
		io.Copy(io.Discard, c)
		c.Close()
		return
	}
}

// connBufs recycles the request buffers of finished connections: the
// server serves tens of thousands of short connections per second.
var connBufs = sync.Pool{New: func() any { return &[2][]byte{make([]byte, 0, 1024), make([]byte, 1024)} }}

// The two responses, built once (Write does not keep the slice).
var (
	responseKeep  = buildResponse(false)
	responseClose = buildResponse(true)
)

func buildResponse(closing bool) []byte {
	h := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
	if closing {
		h += "Connection: close\r\n"
	}
	return append([]byte(h+"\r\n"), okBody...)
}

func response(closing bool) []byte {
	if closing {
		return responseClose
	}
	return responseKeep
}

var errTooLarge = errors.New("request header too large")

// readRequest reads one request head (bodies are not supported: GET only).
func readRequest(c net.Conn, buf, rd []byte) (req, rest []byte, err error) {
	for {
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			return buf[:i], buf[i+4:], nil
		}
		if len(buf) > 8<<10 {
			return nil, nil, errTooLarge
		}
		n, err := c.Read(rd)
		buf = append(buf, rd[:n]...)
		if err != nil {
			return nil, nil, err
		}
	}
}

func wantsClose(req []byte) bool {
	for _, line := range bytes.Split(req, []byte("\r\n"))[1:] {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("connection")) &&
			bytes.EqualFold(bytes.TrimSpace(v), []byte("close")) {
			return true
		}
	}
	return bytes.HasSuffix(bytes.SplitN(req, []byte("\r\n"), 2)[0], []byte("HTTP/1.0"))
}

// Close stops listening, aborts open connections and waits for handlers.
func (s *Server) Close() error {
	var errs []error
	s.closeOnce.Do(func() {
		close(s.closing)
		for _, ln := range s.lns {
			if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("server: handlers did not stop within 5s"))
		}
	})
	return errors.Join(errs...)
}

// cork sets TCP_CORK on c: what is written waits for the close (or a full
// segment) to go out.
func cork(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	if rc, err := tc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK, 1) })
	}
}
