// Package roottest holds helpers for tests that need root and real
// namespaces.
package roottest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/twlab/twlab/lab/runstate"
)

// Skip skips t unless the test runs as root, saying why.
func Skip(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds real network namespaces (run `sudo make test`)")
	}
}

// RunID returns a fresh run id for a test lab ("t" + 3 hex digits, which a
// real run id never looks like) and registers it as a live run for the
// test's lifetime, so that a concurrent `twlab cleanup` or run never mistakes
// the test's lab for a leftover.
func RunID(t testing.TB) string {
	t.Helper()
	for i := 0; i < 32; i++ {
		b := make([]byte, 2)
		rand.Read(b)
		id := "t" + hex.EncodeToString(b)[:3]
		if runstate.InUse(id) {
			continue
		}
		if err := runstate.Register(id, t.Name()); err != nil {
			continue
		}
		t.Cleanup(func() { runstate.Unregister(id) })
		return id
	}
	t.Fatal("no free test run id")
	return ""
}
