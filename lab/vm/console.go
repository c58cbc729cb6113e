package vm

import (
	"fmt"
	"io"
	"sync"
)

// The guest's console is kept in console.log for people to read, but a guest
// can print without end (an oops loop, a flood of garbage) until the run's
// timeout: at the serial port's speed under KVM that is gigabytes. What is
// kept is bounded; the result frames, which a one-UART guest sends on the
// console, pass the bound, under a ceiling of their own.
const (
	consoleLimit = 32 << 20
	// frameLimit is more than a largest result can take on the console
	// (maxResult, attachments and captures, compressed, in base64).
	frameLimit = 512 << 20
)

// consoleLog is console.log with those bounds. QEMU's stderr and the
// console reader write to it from two goroutines.
type consoleLog struct {
	mu      sync.Mutex
	w       io.Writer
	limit   int64 // plain console bytes kept at most
	frames  int64 // frame bytes allowed past the limit
	kept    int64
	dropped int64
	cut     bool
}

func newConsoleLog(w io.Writer) *consoleLog {
	return &consoleLog{w: w, limit: consoleLimit, frames: frameLimit}
}

// Write keeps p while the console is within its limit and drops it after,
// saying once where it was cut. It never fails: QEMU must not stall on a
// full log.
func (c *consoleLog) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kept+int64(len(p)) > c.limit {
		if !c.cut {
			c.cut = true
			fmt.Fprintf(c.w, "\n--- twlab: console.log cut here at %d MiB; what the guest printed after it is left out, its result frames are kept ---\n", c.limit>>20)
		}
		c.dropped += int64(len(p))
		return len(p), nil
	}
	c.kept += int64(len(p))
	c.w.Write(p)
	return len(p), nil
}

// writeFrame keeps a piece of a result frame, past the console's limit.
func (c *consoleLog) writeFrame(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kept+int64(len(p)) > c.limit+c.frames {
		c.dropped += int64(len(p))
		return
	}
	c.kept += int64(len(p))
	c.w.Write(p)
}

// note writes twlab's own line (a boot attempt, the cut's size) whatever the
// limit: a reader needs it to make sense of the rest.
func (c *consoleLog) note(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, format, args...)
}

// finish records how much was left out.
func (c *consoleLog) finish() {
	c.mu.Lock()
	dropped := c.dropped
	c.mu.Unlock()
	if dropped > 0 {
		c.note("\n--- twlab: %d bytes of console output left out ---\n", dropped)
	}
}
