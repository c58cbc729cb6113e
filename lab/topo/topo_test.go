package topo_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/topo"
	"golang.org/x/sys/unix"
)

func TestNames(t *testing.T) {
	for _, suffix := range []string{"br", "ls", "sl", fmt.Sprintf("c%d", topo.MaxClients), fmt.Sprintf("v%d", topo.MaxClients)} {
		if n := topo.LinkName("ffff", suffix); len(n) > 15 {
			t.Errorf("link name %q is %d bytes; IFNAMSIZ allows 15", n, len(n))
		}
	}
	if id, ok := topo.RunIDOf("twlab-ab12-c7"); !ok || id != "ab12" {
		t.Errorf("RunIDOf = %q %v", id, ok)
	}
	if _, ok := topo.RunIDOf("other-ab12-c7"); ok {
		t.Error("RunIDOf accepted a foreign name")
	}
	// Only the ids twlab issues: a user's own namespace that merely starts
	// with the prefix is never taken for a dead run's.
	for _, n := range []string{"twlab-dev-server", "twlab-ab12-", "twlab-ABCD-c1", "twlab-ab12-c1/../../etc", "twlab-x12-c1", "twlab-ab123-c1", "twlab-cafe-test", "twlab-beef-c01", "twlab-ab12-cx"} {
		if id, ok := topo.RunIDOf(n); ok {
			t.Errorf("RunIDOf(%q) = %q: not a name twlab gives", n, id)
		}
		if err := topo.DeleteNamespace(n); err == nil {
			t.Errorf("DeleteNamespace(%q) accepted a name twlab does not give", n)
		}
	}
	for _, n := range []string{"twlab-t1f0-sysctl", "twlab-k3a9-doctor", "twlab-0000-lvs", "twlab-ab12-server", fmt.Sprintf("twlab-ab12-c%d", topo.MaxClients)} {
		if _, ok := topo.RunIDOf(n); !ok {
			t.Errorf("RunIDOf(%q) refused a name twlab gives", n)
		}
	}
	if err := topo.DeleteNamespace("foreign"); err == nil {
		t.Error("DeleteNamespace must refuse names twlab did not create")
	}
	if !topo.LabRange.Contains(topo.ClientAddr(topo.MaxClients)) || !topo.ClientNet.Contains(topo.ClientAddr(topo.MaxClients)) {
		t.Error("client addresses leave the client subnet")
	}
}

// TestBuildConnectDestroy builds a real lab, checks that a client reaches the
// server through the box (routing only, no NAT) and that Destroy leaves no
// namespace behind.
func TestBuildConnectDestroy(t *testing.T) {
	roottest.Skip(t)
	id := roottest.RunID(t)
	start := time.Now()
	l, err := topo.Build(context.Background(), topo.Spec{RunID: id, Clients: 3}, nil)
	if err != nil {
		l.Destroy()
		t.Fatal(err)
	}
	t.Logf("built 3-client lab in %s", time.Since(start))
	destroyed := false
	defer func() {
		if !destroyed {
			l.Destroy()
		}
	}()
	if got := len(l.Nodes()); got != 5 {
		t.Fatalf("%d nodes, want 5", got)
	}
	for _, n := range l.Nodes() {
		if _, err := os.Stat(filepath.Join(topo.NetnsDir, n.NSName)); err != nil {
			t.Errorf("namespace %s not visible: %v", n.NSName, err)
		}
		if !strings.HasPrefix(n.NSName, topo.Prefix+id+"-") {
			t.Errorf("namespace %s lacks prefix and run id", n.NSName)
		}
	}
	// The box forwards only with ip_forward on; write it in its namespace.
	if err := netnsutil.Do(l.LVS.NS, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0)
	}); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := netnsutil.Do(l.Server.NS, func() (err error) {
		ln, err = net.Listen("tcp4", topo.ServerAddr.String()+":9")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(c.RemoteAddr().String()))
			c.Close()
		}
	}()
	for _, c := range l.Clients {
		var got string
		err := netnsutil.Do(c.NS, func() error {
			conn, err := net.DialTimeout("tcp4", topo.ServerAddr.String()+":9", 2*time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			b := make([]byte, 64)
			n, _ := conn.Read(b)
			got = string(b[:n])
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if host, _, _ := net.SplitHostPort(got); host != c.Addr.String() {
			t.Errorf("%s: server saw %q, want %s (routing without NAT)", c.Name, got, c.Addr)
		}
	}
	ln.Close()
	if err := l.Destroy(); err != nil {
		t.Fatal(err)
	}
	destroyed = true
	if err := l.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	names, _ := topo.ListNamespaces()
	for _, n := range names {
		if strings.Contains(n, id) {
			t.Errorf("namespace %s left behind", n)
		}
	}
}

func TestBuildRejectsBadClientCount(t *testing.T) {
	for _, n := range []int{0, -1, topo.MaxClients + 1} {
		if _, err := topo.Build(context.Background(), topo.Spec{RunID: "x", Clients: n}, nil); err == nil {
			t.Errorf("Build with %d clients: no error", n)
		}
	}
}

// A run id twlab does not issue is refused before anything is built:
// Destroy refuses to remove namespaces named after it, and a long one
// overflows the link names ("add bridge: numerical result out of range").
func TestBuildRejectsForeignRunIDs(t *testing.T) {
	for _, id := range []string{"", "rvB1", "ab12345", "AB12", "t12", "x123"} {
		l, err := topo.Build(context.Background(), topo.Spec{RunID: id, Clients: 1}, nil)
		if err == nil || !strings.Contains(err.Error(), "run id") {
			t.Errorf("Build with run id %q: %v, want it refused", id, err)
		}
		if l != nil {
			l.Destroy()
			t.Errorf("run id %q: a lab was built", id)
		}
	}
}

// A build cancelled before its namespaces exist gives a lab with no node,
// and destroying it closes no descriptor it does not own (fd 0 was closed
// once per node that was never created).
func TestCancelledBuildClosesNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l, err := topo.Build(ctx, topo.Spec{RunID: roottest.RunID(t), Clients: 3}, nil)
	if err == nil {
		t.Fatal("a cancelled build succeeded")
	}
	if l != nil {
		if n := len(l.Nodes()); n != 0 {
			t.Errorf("%d nodes in a lab whose namespaces were never created", n)
		}
		if err := l.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	}
	if _, err := unix.FcntlInt(0, unix.F_GETFD, 0); err != nil {
		t.Errorf("fd 0 was closed by the teardown: %v", err)
	}
}
