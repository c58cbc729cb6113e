package load

// The HTTP/1.1 a connection speaks once connected: the requests, reading
// the responses, and ending it as the close mode says.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

var request = []byte("GET / HTTP/1.1\r\nHost: twlab\r\nUser-Agent: twlab\r\n\r\n")
var requestClose = []byte("GET / HTTP/1.1\r\nHost: twlab\r\nUser-Agent: twlab\r\nConnection: close\r\n\r\n")

// exchange sends the requests of one connection and ends it the way the
// close mode says: in server mode it reads to EOF first, so that the server's
// FIN is the first one and TIME_WAIT lands there.
func (d *dialer) exchange(f *os.File, by time.Time, setDeadline func(func(time.Time) error, time.Time)) (int, error) {
	cfg := d.cfg
	setDeadline(f.SetDeadline, by)
	done := 0
	for i := 1; i <= cfg.KeepaliveRequests; i++ {
		req := request
		if i == cfg.KeepaliveRequests && cfg.Close == CloseServer {
			req = requestClose
		}
		if _, err := f.Write(req); err != nil {
			return done, stageErr("write request", err, cfg.IOTimeout)
		}
		// Requests are not pipelined: nothing follows a response, so every
		// read starts at the front of the chain's buffer.
		_, err := readResponse(f, d.buf[:0], d.rd)
		if err != nil {
			if cfg.Close == CloseReset && i == cfg.KeepaliveRequests && isReset(err) {
				return done + 1, nil
			}
			return done, stageErr("read response", err, cfg.IOTimeout)
		}
		done++
	}
	switch cfg.Close {
	case CloseServer, CloseReset:
		// Wait for the server's FIN (or RST) before closing.
		for {
			_, err := f.Read(d.rd)
			if err != nil {
				if errors.Is(err, io.EOF) || isReset(err) {
					return done, nil
				}
				return done, stageErr("wait for server close", err, cfg.IOTimeout)
			}
		}
	}
	return done, nil
}

// stageErr names the step of the exchange that failed. A deadline says
// what it was ("no answer within 2s"), not the poller's "read tcp: i/o
// timeout"; it still unwraps to os.ErrDeadlineExceeded, which tells a
// failure from a connection the cell's end cut short.
func stageErr(stage string, err error, d time.Duration) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &deadlineError{stage: stage, d: d, err: err}
	}
	return fmt.Errorf("%s: %w", stage, err)
}

type deadlineError struct {
	stage string
	d     time.Duration
	err   error
}

func (e *deadlineError) Error() string { return e.stage + ": no answer within " + e.d.String() }
func (e *deadlineError) Unwrap() error { return e.err }

// readResponse reads one response with a Content-Length body.
func readResponse(f *os.File, buf, rd []byte) ([]byte, error) {
	for {
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			cl := contentLength(buf[:i])
			if len(buf) >= i+4+cl {
				return buf[i+4+cl:], nil
			}
		}
		if len(buf) > 16<<10 {
			return nil, errors.New("response too large")
		}
		n, err := f.Read(rd)
		buf = append(buf, rd[:n]...)
		if err != nil {
			return nil, err
		}
	}
}

func contentLength(head []byte) int {
	for len(head) > 0 {
		var line []byte
		line, head, _ = bytes.Cut(head, []byte("\r\n"))
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("content-length")) {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err == nil && n >= 0 {
				return n
			}
		}
	}
	return 0
}
