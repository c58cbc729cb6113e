package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twlab/twlab/lab/report"
	"github.com/twlab/twlab/lab/result"
	"golang.org/x/sys/unix"
)

// isTerminal reports whether w is a terminal (live progress) rather than a
// file or pipe (plain lines, as CI logs want).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progress prints a line per finished cell and, on a terminal, keeps a
// status line below them: cell i/N, a bar, elapsed time and an ETA.
type progress struct {
	w           io.Writer
	live, quiet bool
	mu          sync.Mutex
	start       time.Time
	cellBegan   time.Time
	done, total int
	current     string
	stopc       chan struct{}
	wg          sync.WaitGroup
}

func newProgress(w io.Writer, live, quiet bool) *progress {
	p := &progress{w: w, live: live, quiet: quiet, start: time.Now(), stopc: make(chan struct{})}
	if live {
		p.wg.Add(1)
		go p.loop()
	}
	return p
}

func (p *progress) loop() {
	defer p.wg.Done()
	tk := time.NewTicker(250 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-p.stopc:
			return
		case <-tk.C:
			p.mu.Lock()
			p.draw()
			p.mu.Unlock()
		}
	}
}

func (p *progress) cellStart(index, total int, id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.total, p.current, p.cellBegan = index, total, id, time.Now()
	p.draw()
}

func (p *progress) cellDone(done, total int, c *result.Cell) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.total, p.current = done, total, ""
	if p.quiet {
		return
	}
	p.clear()
	fmt.Fprintln(p.w, report.CellLine(done, total, c))
	p.draw()
}

func (p *progress) clear() {
	if p.live {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func (p *progress) draw() {
	if !p.live || p.total == 0 || p.current == "" {
		return
	}
	const width = 20
	filled := width * p.done / p.total
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	el := time.Since(p.start)
	eta := "--"
	if p.done > 0 {
		per := el / time.Duration(p.done)
		eta = (per*time.Duration(p.total-p.done) - time.Since(p.cellBegan)).Round(time.Second).String()
		if strings.HasPrefix(eta, "-") {
			eta = "0s"
		}
	}
	id := p.current
	if len(id) > 40 {
		id = id[:37] + "..."
	}
	fmt.Fprintf(p.w, "\r\033[K[%s] cell %d/%d %s  elapsed %s  eta %s", bar, p.done+1, p.total, id, el.Round(time.Second), eta)
}

func (p *progress) stop() {
	if p.live {
		close(p.stopc)
		p.wg.Wait()
		p.mu.Lock()
		p.clear()
		p.mu.Unlock()
	}
}
