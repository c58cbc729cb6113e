package kernel

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/vishvananda/netns"
)

// A clock measurement that fails (every edge too loosely timed on a busy
// host or an emulated VM) is tried again, and when every try fails it costs
// the clock's figures only: the offsets and socketSkew were measured. Both
// were thrown away on the first failure, and kernel.ts_offsets=unknown
// changed which expectations applied.
func TestClockFailureKeepsOffsets(t *testing.T) {
	roottest.Skip(t)
	// A fresh namespace per detection, as Detect has: the first one's
	// ports are in TIME_WAIT.
	scratch := func() netns.NsHandle {
		ns, nl, err := newScratch("tsfail")
		if err != nil {
			t.Fatal(err)
		}
		nl.Close()
		t.Cleanup(func() { ns.Close() })
		return ns
	}
	loose := errors.New("the timestamp clock changed 1 times in 500ms (40 more too loosely timed to use)")
	calls := 0
	defer func() { measureTicks = tickEdges }()

	// The first look fails, the second works.
	measureTicks = func(c *net.TCPConn, minTicks uint32, minSpan, limit time.Duration) (uint32, time.Duration, error) {
		calls++
		if calls == 1 {
			return 0, 0, loose
		}
		return tickEdges(c, minTicks, minSpan, limit)
	}
	offsets, detail, hz, hzDetail, _ := detectTimestamps(context.Background(), scratch(), Options{})
	if calls < 2 || hz == 0 || offsets == OffsetsUnknown {
		t.Errorf("after one failed look: %d looks, offsets %s (%s), hz %d (%s); want a second look and both measured", calls, offsets, detail, hz, hzDetail)
	}

	// Every look fails.
	calls = 0
	measureTicks = func(*net.TCPConn, uint32, time.Duration, time.Duration) (uint32, time.Duration, error) {
		calls++
		return 0, 0, loose
	}
	offsets, detail, hz, hzDetail, _ = detectTimestamps(context.Background(), scratch(), Options{})
	if calls != 3 {
		t.Errorf("%d looks at the clock, want 3", calls)
	}
	if offsets == OffsetsUnknown {
		t.Errorf("offsets unknown (%s) although only the clock failed", detail)
	}
	if hz != 0 || !strings.Contains(hzDetail, "too loosely timed") {
		t.Errorf("hz %d (%s): want 0 and the clock's failure", hz, hzDetail)
	}
}

// A detection cut short by Ctrl-C says so instead of returning its
// "unknown"s as the kernel's facts.
func TestDetectHeedsCancel(t *testing.T) {
	roottest.Skip(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Detect(ctx, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Detect with a cancelled context: %v, want context.Canceled", err)
	}
}
