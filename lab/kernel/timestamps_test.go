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
	"golang.org/x/sys/unix"
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

// A system clock that moves in jiffies (a guest on refined-jiffies, whose
// timestamp clock is the same jiffies before 4.13) still gives the rate:
// every edge was one clock step wide, "too loosely timed" against a 1 ms
// bound, and fixed skew went n/a in such guests.
func TestClockRateOnACoarseClock(t *testing.T) {
	const jiffy = 4 * time.Millisecond // HZ=250
	jiffies := func() int64 {
		var ts unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		return ts.Nano() / int64(jiffy)
	}
	now = func() time.Time { return time.Unix(0, jiffies()*int64(jiffy)) }
	readTS = func(*net.TCPConn) (uint32, error) { return uint32(jiffies()) + 123456, nil }
	defer func() { now, readTS = time.Now, tcpTimestamp }()
	if step := clockStep(); step != jiffy {
		t.Errorf("clock step %v, want %v", step, jiffy)
	}
	ticks, elapsed, err := tickEdges(nil, 5, 60*time.Millisecond, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if hz, detail := clockRate(ticks, elapsed); hz != 250 {
		t.Errorf("hz %d (%s) on a jiffies clock, want 250", hz, detail)
	}
	if elapsed < 20*jiffy {
		t.Errorf("measured over %v, under 20 steps of the clock", elapsed)
	}
}
