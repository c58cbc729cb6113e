// Package labtest builds real labs for the tests of the parts: lab/topo's
// topology, torn down when the test ends.
package labtest

import (
	"context"
	"testing"

	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/twlab/twlab/lab/sysctl"
	"github.com/twlab/twlab/lab/topo"
)

// Lab builds a lab of clients (skipping the test unless root) and destroys
// it when the test ends; a teardown that fails fails the test.
func Lab(t testing.TB, clients int) *topo.Lab {
	t.Helper()
	roottest.Skip(t)
	l, err := topo.Build(context.Background(), topo.Spec{RunID: roottest.RunID(t), Clients: clients}, nil)
	t.Cleanup(func() {
		if err := l.Destroy(); err != nil {
			t.Error(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Routed is Lab with the box forwarding, as route mode has it: clients
// reach the server by their own addresses.
func Routed(t testing.TB, clients int) *topo.Lab {
	t.Helper()
	l := Lab(t, clients)
	if _, err := sysctl.Apply(l.LVS.NS, []sysctl.Setting{{Name: "net.ipv4.ip_forward", Requested: "1"}}); err != nil {
		t.Fatal(err)
	}
	return l
}
