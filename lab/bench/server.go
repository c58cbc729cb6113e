package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twlab/twlab/lab/load"
	"github.com/twlab/twlab/lab/topo"
	"github.com/vishvananda/netns"
)

// ServerCommand is the hidden twlab subcommand that serves the load bench's
// HTTP server in a process of its own. Every arm of the load bench - twlab's
// generator and each wrk - talks to such a process, started the same way and
// with the runtime's default scheduler settings, so that no arm's server
// shares a process (and its scheduler slots) with the generator.
const ServerCommand = "__bench-server"

// ServeMain runs the server in the namespace the process was started in
// (the bench forks it from a thread inside the lab's server namespace),
// prints "ready", and serves until stdin closes or SIGTERM. It returns the
// process's exit code.
func ServeMain(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintln(stderr, "usage: twlab "+ServerCommand+" PORT PORTS")
		return 2
	}
	port, err1 := strconv.Atoi(args[0])
	ports, err2 := strconv.Atoi(args[1])
	if err1 != nil || err2 != nil {
		fmt.Fprintln(stderr, "bench server: bad port or port count")
		return 2
	}
	ns, err := netns.Get()
	if err != nil {
		fmt.Fprintln(stderr, "bench server:", err)
		return 1
	}
	defer ns.Close()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := load.StartServer(ns, load.ServerConfig{Addr: topo.ServerAddr, Port: port, Ports: ports,
		Close: load.CloseServer, IdleTimeout: 3 * time.Second}, log)
	if err != nil {
		fmt.Fprintln(stderr, "bench server:", err)
		return 1
	}
	defer srv.Close()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	eof := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
	fmt.Fprintln(stdout, "ready")
	select {
	case <-stop:
	case <-eof:
	}
	return 0
}

// serverProc is a running bench server.
type serverProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	once  sync.Once
	cpu   time.Duration
}

// startServer starts the bench server inside the lab's server namespace
// and waits until it listens.
func startServer(ctx context.Context, self string, ns netns.NsHandle, port, ports int) (*serverProc, error) {
	cmd := exec.Command(self, ServerCommand, strconv.Itoa(port), strconv.Itoa(ports))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := startIn(ns, cmd); err != nil {
		return nil, fmt.Errorf("start the bench server: %w", err)
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("said %q", line)
		}
		ready <- err
		io.Copy(io.Discard, out)
	}()
	select {
	case err = <-ready:
	case <-time.After(10 * time.Second):
		err = fmt.Errorf("not ready within 10 s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("bench server: %v: %s", err, errb.String())
	}
	return &serverProc{cmd: cmd, stdin: stdin}, nil
}

// stop ends the server (once) and returns the CPU time it used.
func (p *serverProc) stop() time.Duration {
	p.once.Do(func() {
		p.stdin.Close()
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
		if st := p.cmd.ProcessState; st != nil {
			p.cpu = st.UserTime() + st.SystemTime()
		}
	})
	return p.cpu
}
