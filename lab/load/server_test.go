package load

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// Two requests in one segment, the first asking to close: the server must
// answer it with Connection: close and close, not read the header of the
// request that followed it (req is a view of the buffer the rest moves to).
func TestServerPipelinedClose(t *testing.T) {
	s := &Server{cfg: ServerConfig{Close: CloseServer, KeepaliveRequests: 100, IdleTimeout: 5 * time.Second},
		conns: map[net.Conn]struct{}{}, log: slog.New(slog.DiscardHandler)}
	srv, cli := net.Pipe()
	s.wg.Add(1)
	go s.serve(srv)
	defer s.wg.Wait()
	cli.SetDeadline(time.Now().Add(5 * time.Second))
	go cli.Write([]byte(string(requestClose) + string(request)))
	got, err := io.ReadAll(cli)
	if err != nil {
		t.Fatalf("the server did not close after the request asking for it: %v (read %q)", err, got)
	}
	if n := strings.Count(string(got), "HTTP/1.1 200"); n != 1 || !strings.Contains(strings.ToLower(string(got)), "connection: close") {
		t.Errorf("%d responses, want one with Connection: close: %q", n, got)
	}
}
