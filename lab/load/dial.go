package load

// The generator's side of one connection: sockets made in the client's
// namespace, bind, a connect that never blocks a locked thread, and the
// outcome class of whatever failed.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twlab/twlab/lab/netnsutil"
	"golang.org/x/sys/unix"
)

// sockMaker creates a client's sockets inside its namespace. A socket
// keeps the namespace it was created in, and everything after socket(2)
// (bind, connect, I/O) may happen on any thread, so sockets are made in
// batches on the namespace's pinned thread and handed out from a pool: one
// thread switch per batch instead of one per connection (the switch, a
// futex wake-up of the locked thread and back, cost about a quarter of the
// generator's CPU when it was done per connection).
type sockMaker struct {
	th    *netnsutil.Thread
	batch int
	mu    sync.Mutex
	fds   []int
}

// socket returns a fresh non-blocking TCP socket of the maker's namespace.
func (m *sockMaker) socket() (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.fds) == 0 {
		err := m.th.Run(func() error {
			for len(m.fds) < m.batch {
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					if len(m.fds) > 0 {
						return nil // out of descriptors: use what there is
					}
					return fmt.Errorf("socket: %w", err)
				}
				m.fds = append(m.fds, fd)
			}
			return nil
		})
		if err != nil {
			return -1, err
		}
	}
	fd := m.fds[len(m.fds)-1]
	m.fds = m.fds[:len(m.fds)-1]
	return fd, nil
}

// close closes the unused sockets and stops the thread.
func (m *sockMaker) close() {
	m.mu.Lock()
	for _, fd := range m.fds {
		unix.Close(fd)
	}
	m.fds = nil
	m.mu.Unlock()
	if m.th != nil {
		m.th.Close()
	}
}

// sockBatch is how many sockets a client's maker creates at once: enough to
// make the thread switch rare, few enough that 64 clients hold at most 512
// unused descriptors.
func sockBatch(clients int) int { return min(32, max(8, 512/max(clients, 1))) }

type outcome struct {
	// cutShort: the cell's end (its time bound or an interrupt) stopped
	// this connection; it is counted apart, never as a failure.
	cutShort bool
	// age of a connection cut short: how long it had been in progress
	// when the cell ended (a SYN never answered holds its chain that long).
	age        time.Duration
	offsetSet  bool // the socket's timestamp offset was set (Config.SocketOffsets)
	class      string
	connect    time.Duration
	synRetrans int // SYNs sent again before the handshake completed
	requests   int
	err        error
}

// TCP states as TCP_INFO reports them (include/net/tcp_states.h).
const (
	tcpSynSent = 2
	tcpClose   = 7
)

var errClosedInHandshake = errors.New("socket closed during the handshake")

// dialer is one chain's connection maker: its target, its bind port and the
// buffers every connection of the chain reuses.
type dialer struct {
	cfg    *Config
	target unix.SockaddrInet4
	local  unix.SockaddrInet4
	bind   int
	buf    []byte // response bytes read so far
	rd     []byte // read buffer
	// ended is set when the run's context ends, endedAt to when (a time
	// with its monotonic reading, compared with deadlines that have one);
	// cur is the socket of the connection in progress, whose deadlines the
	// watch then expires.
	ended   atomic.Bool
	endedAt atomic.Pointer[time.Time]
	cur     atomic.Pointer[os.File]
}

// watch arms, once per chain, what cancelling the run does to the
// connection in progress: its deadlines expire at once. One registration
// per chain instead of one per connection keeps the context's bookkeeping
// (an allocation and a map insert and delete) out of the connection loop.
// The returned function disarms it.
func (d *dialer) watch(ctx context.Context) func() bool {
	return context.AfterFunc(ctx, func() {
		now := time.Now()
		d.endedAt.Store(&now)
		d.ended.Store(true)
		if f := d.cur.Load(); f != nil {
			f.SetDeadline(time.Now()) // a file closed meanwhile only returns an error
		}
	})
}

func newDialer(cfg *Config, port int) *dialer {
	d := &dialer{cfg: cfg, target: unix.SockaddrInet4{Port: port}, buf: make([]byte, 0, 512), rd: make([]byte, 512)}
	copy(d.target.Addr[:], cfg.Target.To4())
	return d
}

// cellEnd says when the cell ended: its time bound once passed, or the
// cancel (Ctrl-C) if that came first; false while it runs.
func (d *dialer) cellEnd(ctx context.Context) (time.Time, bool) {
	var end time.Time
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		end = dl
	}
	if t := d.endedAt.Load(); t != nil && (end.IsZero() || t.Before(end)) {
		end = *t
	}
	return end, !end.IsZero()
}

// dialOnce makes one connection: a socket of the client's namespace (and a
// bind), then a non-blocking connect completed through Go's poller so that
// no goroutine sits on a locked thread while the handshake runs.
func (d *dialer) dialOnce(ctx context.Context, m *sockMaker, c *Client, ci int) (o outcome) {
	cfg := d.cfg
	fd, err := m.socket()
	if err != nil {
		return outcome{class: classify(err), err: err}
	}
	if cfg.SocketOffsets != nil {
		if err := SetSocketOffset(fd, cfg.SocketOffsets[ci]); err != nil {
			unix.Close(fd)
			return outcome{class: Other, err: err}
		}
		// Whatever happens to the connection, its socket had the offset:
		// skew.C.applied counts these, not attempts.
		defer func() { o.offsetSet = true }()
	}
	if d.bind > 0 {
		// SO_REUSEADDR lets a bound port be reused while its TIME_WAIT
		// proves (by timestamps) that the new connection is newer. A
		// socket's namespace is fixed at creation, so bind needs no switch.
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		d.local.Port = d.bind
		copy(d.local.Addr[:], c.Addr.To4())
		if err := unix.Bind(fd, &d.local); err != nil {
			unix.Close(fd)
			err = fmt.Errorf("bind %s:%d: %w", c.Addr, d.bind, err)
			return outcome{class: classify(err), err: err}
		}
	}
	f := os.NewFile(uintptr(fd), "tcp")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return outcome{class: Other, err: err}
	}
	start := time.Now()
	// Ctrl-C must not wait out connect_timeout (up to 60 s) or io_timeout:
	// the chain's watch (see watch) expires this socket's deadlines at once
	// when the run is cancelled, and a deadline set after that stays expired
	// (setDeadline).
	d.cur.Store(f)
	defer d.cur.Store(nil)
	setDeadline := func(set func(time.Time) error, t time.Time) {
		set(t)
		if d.ended.Load() {
			f.SetDeadline(time.Now())
		}
	}
	// cut tells a deadline that the cell's end set from the connection's
	// own timeout (own): the cell's end came first. Whichever is handled
	// first does not say it: the poller's deadline may fire before the
	// context's timer has cancelled it, and a timeout may be handled just
	// after the cell ended.
	cut := func(err error, own time.Time) bool {
		end, ok := d.cellEnd(ctx)
		return errors.Is(err, os.ErrDeadlineExceeded) && ok && end.Before(own)
	}
	connectBy := start.Add(cfg.ConnectTimeout)
	deadline := connectBy
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	var cerr error
	rc.Control(func(fd uintptr) { cerr = unix.Connect(int(fd), &d.target) })
	if cerr != nil && !errors.Is(cerr, unix.EINPROGRESS) {
		return outcome{class: classify(cerr), err: fmt.Errorf("connect: %w", cerr)}
	}
	// One TCP_INFO read per check tells both whether the handshake is done
	// and how many SYNs it took (right after the handshake only the SYN can
	// have been retransmitted); SO_ERROR is read only when it failed. Through
	// veth the handshake has usually completed within connect(2) itself, so
	// the first check, before any wait, succeeds.
	var soErr error
	synRetrans := 0
	check := func(fd uintptr) bool {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			soErr = err
			return true
		}
		switch info.State {
		case tcpSynSent:
			return false // still in the handshake
		case tcpClose:
			v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
			switch {
			case err != nil:
				soErr = err
			case v != 0:
				soErr = unix.Errno(v)
			default:
				soErr = errClosedInHandshake
			}
			return true
		}
		synRetrans = int(info.Total_retrans)
		return true
	}
	if cerr == nil {
		rc.Control(func(fd uintptr) { check(fd) })
	} else {
		setDeadline(f.SetWriteDeadline, deadline)
		werr := rc.Write(check)
		if werr != nil {
			if errors.Is(werr, os.ErrDeadlineExceeded) {
				if cut(werr, connectBy) {
					return outcome{cutShort: true, age: time.Since(start), class: Timeout, err: context.DeadlineExceeded}
				}
				return outcome{class: Timeout, err: fmt.Errorf("connect: no answer within %s", cfg.ConnectTimeout)}
			}
			return outcome{class: Other, err: werr}
		}
	}
	if soErr != nil {
		return outcome{class: classify(soErr), err: fmt.Errorf("connect: %w", soErr)}
	}
	o = outcome{class: OK, connect: time.Since(start), synRetrans: synRetrans}
	ioBy := time.Now().Add(cfg.IOTimeout)
	o.requests, err = d.exchange(f, ioBy, setDeadline)
	if err != nil && cut(err, ioBy) {
		// Connected, and the cell ended before the exchange did: the
		// server was not too slow, the cell was over.
		o.cutShort, o.age, o.err = true, time.Since(start), nil
		return o
	}
	if err != nil {
		o.class = classify(err)
		if o.class == Timeout {
			o.class = Response // the handshake completed; the answer did not come
		}
		o.err = err
	} else if d.bind > 0 && cfg.Close == CloseServer {
		finishClose(rc, d.ended.Load)
	}
	return o
}

// finishClose sends the client's FIN and waits (up to 3 s) until the server
// has acknowledged it, i.e. the socket reached CLOSED. A chain that binds a
// fixed port is the reuse experiment: the next client's SYN must find the
// server's TIME_WAIT and the box's conntrack entry of this connection gone
// (TIME_WAIT with timeout 0). A plain close returns while that last ACK may
// still be on its way through the box, and a SYN that overtakes it meets a
// live entry: the NAT then picks another port (no reuse) or, with a one-port
// range, drops the SYN on the box. SO_LINGER would wait too, but its wait
// ends early on any signal, which a busy VM makes likely.
//
// ended stops the wait: the cell's end or Ctrl-C must not wait out a lost
// ACK.
func finishClose(rc syscall.RawConn, ended func() bool) {
	rc.Control(func(fd uintptr) {
		if unix.Shutdown(int(fd), unix.SHUT_WR) != nil {
			return
		}
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && !ended(); time.Sleep(200 * time.Microsecond) {
			info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			if err != nil || info.State == tcpClose {
				return
			}
		}
	})
}

func classify(err error) string {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, unix.ETIMEDOUT), errors.Is(err, os.ErrDeadlineExceeded):
		return Timeout
	case errors.Is(err, unix.ECONNREFUSED):
		return Refused
	case isReset(err):
		return Reset
	case errors.Is(err, unix.EADDRNOTAVAIL), errors.Is(err, unix.EADDRINUSE):
		return AddrFail
	}
	return Other
}

// isReset reports whether err is a connection reset or broken pipe.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
