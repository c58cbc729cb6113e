// Package roottest holds helpers for tests that need root and real
// namespaces.
package roottest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
)

// Skip skips t unless the test runs as root, saying why.
func Skip(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds real network namespaces (run `sudo make test`)")
	}
}

// RunID returns a fresh short run id for a test lab ("t" + 3 hex digits) so
// that test labs are recognisable and never collide with each other.
func RunID(t testing.TB) string {
	b := make([]byte, 2)
	rand.Read(b)
	return "t" + hex.EncodeToString(b)[:3]
}
