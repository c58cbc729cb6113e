package probe

import (
	"maps"
	"os"
	"testing"
)

// TestKeyCache: parsing with the node's key cache gives exactly what the
// plain parser gives, on every read, and still rejects malformed pairs.
func TestKeyCache(t *testing.T) {
	srcs := [][]byte{[]byte("TcpExt: A B C\nTcpExt: 1 2 3\nIpExt: X\nIpExt: 18446744073709551615\n")}
	for _, f := range []string{"/proc/net/netstat", "/proc/net/snmp"} {
		if b, err := os.ReadFile(f); err == nil {
			srcs = append(srcs, b)
		}
	}
	var kc keyCache
	for _, src := range srcs {
		want := map[string]int64{}
		if err := ParseCounters(src, want); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			got := map[string]int64{}
			if err := parseCounters(src, got, &kc); err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, want) {
				t.Fatalf("cached parse differs:\n got %v\nwant %v", got, want)
			}
		}
	}
	for _, bad := range []string{"TcpExt: A B C\nTcpExt: 1 2\n", "TcpExt: A B C\nTcpExt: 1 2 3 4\n", "TcpExt: A B C\nTcpExt: 1 x 3\n"} {
		if err := parseCounters([]byte(bad), map[string]int64{}, &kc); err == nil {
			t.Errorf("%q: no error with the cache", bad)
		}
	}
}
