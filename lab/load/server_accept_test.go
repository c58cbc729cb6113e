package load_test

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/load"
	"github.com/twlab/twlab/lab/netnsutil"
	"golang.org/x/sys/unix"
)

// TestServerAcceptsAfterEMFILE: out of descriptors for a moment, the
// server's accept fails; it must accept again once there are descriptors,
// not stop for the rest of the cell (whose connections would then all be
// blamed on the network as timeouts).
func TestServerAcceptsAfterEMFILE(t *testing.T) {
	ns := loopbackNS(t)
	srv, err := load.StartServer(ns, load.ServerConfig{Addr: loopback, Port: 8610, Close: load.CloseServer}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	th, err := netnsutil.NewThread(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer th.Close()
	var fd int
	if err := th.Run(func() error {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(3 * time.Second))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)

	// No descriptor left: the handshake completes in the kernel, the
	// server's accept(2) fails with EMFILE.
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// The limit bounds descriptor numbers: the lowest free one, as the
	// limit, leaves none free.
	free, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(free)
	low := lim
	low.Cur = uint64(free)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer restore()
	sa := &unix.SockaddrInet4{Port: 8610}
	copy(sa.Addr[:], loopback)
	if err := unix.Connect(fd, sa); err != nil {
		restore()
		t.Fatalf("connect: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // the server's accept fails meanwhile
	restore()

	if _, err := unix.Write(fd, []byte("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := unix.Read(fd, buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		t.Fatalf("after the descriptors came back: read %q, %v; want the response (the server stopped accepting)", buf[:max(n, 0)], err)
	}
}
