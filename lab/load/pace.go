package load

import (
	"context"
	"sync"
	"time"
)

// maxPaceLag bounds how far behind its schedule the pacer may run: slots
// that fell further behind (the machine stalled, a chain waited out a
// timeout) are given up rather than fired at once in a burst.
const maxPaceLag = 100 * time.Millisecond

// pacer hands out connection slots on an absolute schedule: slot n is due
// at start + n/rate, whichever chain takes it. A ticker drops the ticks its
// reader misses and never catches up; at the sub-millisecond intervals of a
// few thousand connections per second the runtime wakes a reader late often
// enough that 5000/s asked made 2700/s. Here a late wake-up only makes the
// next slots due at once.
type pacer struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time // when the next slot is due
}

func newPacer(rate float64, start time.Time) *pacer {
	return &pacer{interval: time.Duration(float64(time.Second) / rate), next: start}
}

// take reserves the next slot and says when it is due.
func (p *pacer) take(now time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	due := p.next
	if floor := now.Add(-maxPaceLag); due.Before(floor) {
		due = floor
	}
	p.next = due.Add(p.interval)
	return due
}

// wait takes a slot and returns when it is due; false if ctx ended first.
func (p *pacer) wait(ctx context.Context) bool {
	d := time.Until(p.take(time.Now()))
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
