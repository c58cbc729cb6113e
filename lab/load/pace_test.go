package load

import (
	"testing"
	"time"
)

// TestPacerSchedule: slots fall on start + n/rate however late they are
// taken, up to maxPaceLag behind; beyond it the missed slots are given up
// instead of fired in a burst.
func TestPacerSchedule(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := newPacer(1000, t0) // 1 ms apart
	for n := 0; n < 3; n++ {
		if got := p.take(t0.Add(5 * time.Millisecond)); !got.Equal(t0.Add(time.Duration(n) * time.Millisecond)) {
			t.Fatalf("slot %d due %v, want %v", n, got.Sub(t0), time.Duration(n)*time.Millisecond)
		}
	}
	// Taken 1 s late: due maxPaceLag ago, not 3 ms after the start.
	late := t0.Add(time.Second)
	if got := p.take(late); !got.Equal(late.Add(-maxPaceLag)) {
		t.Fatalf("a slot taken 1 s late is due %v before now, want %v", late.Sub(got), maxPaceLag)
	}
	if got := p.take(late); !got.Equal(late.Add(-maxPaceLag + time.Millisecond)) {
		t.Fatalf("the next slot is due %v before now, want %v", late.Sub(got), maxPaceLag-time.Millisecond)
	}
}
