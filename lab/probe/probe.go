// Package probe reads a namespace's TCP counters and TIME_WAIT count.
//
// /proc/net follows the thread-group leader's namespace, so the files are
// opened from a thread inside the lab namespace through /proc/thread-self/net.
// A /proc/net file keeps the namespace it was opened in; afterwards it is
// re-read with pread at offset 0 from any goroutine, without switching.
//
// Before "proc: fix /proc/net/* after setns(2)" (about Linux 4.18) the
// entries under /proc/<tid>/net are cached per thread: a thread that looked
// at them once, then entered another namespace, reads the first namespace's
// files. The files are therefore opened on a thread that is thrown away
// afterwards (netnsutil.DoFresh), so no thread ever looks twice, and when the
// node has a link, Open checks that /proc/net/dev lists it.
package probe

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/vishvananda/netns"
)

// Options say how to read one node.
type Options struct {
	// Link is a link that only this namespace has; when set, Open checks
	// that the /proc/net files it opened list it, i.e. belong to ns.
	Link string
	// TimeWaitByDiag counts TIME_WAIT with a sock_diag dump instead of
	// /proc/net/sockstat, whose tw field is global on older kernels.
	TimeWaitByDiag bool
}

// Node holds the open counter files of one namespace.
type Node struct {
	Name     string
	netstat  *os.File
	snmp     *os.File
	sockstat *os.File
	diag     *diagSocket
	byDiag   bool
	buf      []byte
	keys     keyCache
	mu       sync.Mutex
}

// Open opens the counter files of ns.
func Open(name string, ns netns.NsHandle, opt Options) (*Node, error) {
	n := &Node{Name: name, buf: make([]byte, 0, 16<<10), byDiag: opt.TimeWaitByDiag}
	err := netnsutil.DoFresh(ns, func() error {
		var err error
		if n.netstat, err = os.Open("/proc/thread-self/net/netstat"); err != nil {
			return err
		}
		if n.snmp, err = os.Open("/proc/thread-self/net/snmp"); err != nil {
			return err
		}
		if n.sockstat, err = os.Open("/proc/thread-self/net/sockstat"); err != nil {
			return err
		}
		if n.diag, err = openDiag(); err != nil {
			return err
		}
		if opt.Link != "" {
			dev, err := os.ReadFile("/proc/thread-self/net/dev")
			if err != nil {
				return err
			}
			if !listsLink(dev, opt.Link) {
				return fmt.Errorf("/proc/thread-self/net belongs to another namespace (its dev lists no %s): this kernel caches /proc/net per thread", opt.Link)
			}
		}
		return nil
	})
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("probe %s: open counters: %w", name, err)
	}
	return n, nil
}

// listsLink reports whether /proc/net/dev content names link: each line
// after the two headers is "NAME: counters", the name right-aligned.
func listsLink(dev []byte, link string) bool {
	for _, line := range bytes.Split(dev, []byte("\n")) {
		name, _, ok := bytes.Cut(bytes.TrimLeft(line, " "), []byte(":"))
		if ok && string(name) == link {
			return true
		}
	}
	return false
}

// Close closes the files; safe on a partly opened node and twice.
func (n *Node) Close() {
	for _, f := range []*os.File{n.netstat, n.snmp, n.sockstat} {
		if f != nil {
			f.Close()
		}
	}
	n.netstat, n.snmp, n.sockstat = nil, nil, nil
	n.diag.close()
}

// readAll re-reads f from offset 0 into the node's buffer.
func (n *Node) readAll(f *os.File) ([]byte, error) {
	buf := n.buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		m, err := f.ReadAt(buf[len(buf):cap(buf)], int64(len(buf)))
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	n.buf = buf
	return buf, nil
}

// Counters returns every field of /proc/net/netstat and /proc/net/snmp as
// "Group.Field" (e.g. "TcpExt.PAWSTimewait", "Tcp.OutRsts").
func (n *Node) Counters() (map[string]int64, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]int64, 256)
	for _, f := range []*os.File{n.netstat, n.snmp} {
		b, err := n.readAll(f)
		if err != nil {
			return nil, fmt.Errorf("probe %s: read %s: %w", n.Name, f.Name(), err)
		}
		if err := parseCounters(b, out, &n.keys); err != nil {
			return nil, fmt.Errorf("probe %s: parse %s: %w", n.Name, f.Name(), err)
		}
	}
	return out, nil
}

// TimeWait returns the number of TIME_WAIT sockets of the namespace right
// now, from sock_diag or sockstat as Open was told.
func (n *Node) TimeWait() (int, error) {
	if n.byDiag {
		return n.TimeWaitDiag()
	}
	return n.TimeWaitSockstat()
}

// TimeWaitSockstat reads /proc/net/sockstat's tw: cheap, but global on
// kernels without per-namespace TIME_WAIT accounting.
func (n *Node) TimeWaitSockstat() (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	b, err := n.readAll(n.sockstat)
	if err != nil {
		return 0, fmt.Errorf("probe %s: read sockstat: %w", n.Name, err)
	}
	return ParseSockstatTW(b)
}

// TimeWaitDiag counts the namespace's TIME_WAIT sockets one by one through
// sock_diag: right on every kernel.
func (n *Node) TimeWaitDiag() (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, err := n.diag.countTimeWait()
	if err != nil {
		return 0, fmt.Errorf("probe %s: %w", n.Name, err)
	}
	return c, nil
}

// ParseCounters parses the header/value line pairs of /proc/net/netstat and
// /proc/net/snmp into out.
func ParseCounters(b []byte, out map[string]int64) error {
	return parseCounters(b, out, nil)
}

// keyCache keeps the "Group.Field" keys of the header lines a node has
// parsed before: the headers of a namespace never change, and building ~300
// key strings was most of the cost of reading a node's counters.
type keyCache struct {
	hdrs []cachedHeader
}

type cachedHeader struct {
	line []byte
	keys []string
}

// keysOf returns the keys of header line hdr; kc may be nil (no cache).
func (kc *keyCache) keysOf(hdr []byte) ([]string, error) {
	if kc != nil {
		for _, h := range kc.hdrs {
			if bytes.Equal(h.line, hdr) {
				return h.keys, nil
			}
		}
	}
	g, rest, ok := bytes.Cut(hdr, []byte(": "))
	if !ok {
		return nil, fmt.Errorf("header line without group: %.40q", hdr)
	}
	group := string(g)
	keys := make([]string, 0, bytes.Count(rest, []byte(" "))+1)
	for _, nm := range bytes.Fields(rest) {
		keys = append(keys, group+"."+string(nm))
	}
	if kc != nil && len(kc.hdrs) < 64 {
		kc.hdrs = append(kc.hdrs, cachedHeader{line: bytes.Clone(hdr), keys: keys})
	}
	return keys, nil
}

func parseCounters(b []byte, out map[string]int64, kc *keyCache) error {
	var hdr []byte
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(line) == 0 {
			continue
		}
		if hdr == nil {
			hdr = line
			continue
		}
		if err := parsePair(hdr, line, out, kc); err != nil {
			return err
		}
		hdr = nil
	}
	if hdr != nil {
		return fmt.Errorf("header line without values: %.40q", hdr)
	}
	return nil
}

func parsePair(hdr, vals []byte, out map[string]int64, kc *keyCache) error {
	hg, _, ok1 := bytes.Cut(hdr, []byte(": "))
	vg, vrest, ok2 := bytes.Cut(vals, []byte(": "))
	if !ok1 || !ok2 || !bytes.Equal(hg, vg) {
		return fmt.Errorf("mismatched lines %.20q / %.20q", hdr, vals)
	}
	keys, err := kc.keysOf(hdr)
	if err != nil {
		return err
	}
	i := 0
	for vrest = bytes.TrimLeft(vrest, " "); len(vrest) > 0; vrest = bytes.TrimLeft(vrest, " ") {
		num := vrest
		if j := bytes.IndexByte(vrest, ' '); j >= 0 {
			num, vrest = vrest[:j], vrest[j+1:]
		} else {
			vrest = nil
		}
		if i >= len(keys) {
			return fmt.Errorf("%s: %d names but more values", hg, len(keys))
		}
		v, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil {
			// Some fields are unsigned 64-bit and may exceed int64.
			u, uerr := strconv.ParseUint(string(num), 10, 64)
			if uerr != nil {
				return fmt.Errorf("%s: %w", keys[i], err)
			}
			v = int64(u)
		}
		out[keys[i]] = v
		i++
	}
	if i != len(keys) {
		return fmt.Errorf("%s: %d names but %d values", hg, len(keys), i)
	}
	return nil
}

// ParseSockstatTW finds "tw N" on the "TCP:" line of /proc/net/sockstat.
func ParseSockstatTW(b []byte) (int, error) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		rest, ok := bytes.CutPrefix(line, []byte("TCP: "))
		if !ok {
			continue
		}
		// "inuse 1 orphan 0 tw 17 alloc 2 mem 0": name value pairs.
		for len(rest) > 0 {
			var name, val []byte
			name, rest, _ = bytes.Cut(bytes.TrimLeft(rest, " "), []byte(" "))
			val, rest, _ = bytes.Cut(bytes.TrimLeft(rest, " "), []byte(" "))
			if string(name) == "tw" {
				return strconv.Atoi(string(val))
			}
		}
	}
	return 0, fmt.Errorf("sockstat: no TCP tw field")
}

// Delta returns after-before for every key present in after. Gauges such as
// Tcp.CurrEstab come out as the change over the cell too.
func Delta(before, after map[string]int64) map[string]int64 {
	d := make(map[string]int64, len(after))
	for k, v := range after {
		d[k] = v - before[k]
	}
	return d
}

// Sample is one TIME_WAIT reading.
type Sample struct {
	T  time.Duration `json:"t_ms"` // since the sampler started
	TW int           `json:"tw"`
}

// TWStats summarises one node's TIME_WAIT over a cell.
type TWStats struct {
	Max    int      `json:"max"`
	Final  int      `json:"final"`
	Series []Sample `json:"-"`
	// Failed counts the ticks at which the node could not be read: Max and
	// Final are of the other ticks only.
	Failed int `json:"-"`
}

// Sampler reads TIME_WAIT of several nodes, and any extra sources, at a
// fixed interval.
type Sampler struct {
	nodes    []*Node
	sources  []Source
	interval time.Duration
	maxLen   int
	cancel   context.CancelFunc
	done     chan struct{}
	mu       sync.Mutex
	stats    map[string]*TWStats
	extra    []*Series
	extraIdx map[[2]string]*Series
	err      error
	panicked bool // err is a panic's: it wins over an ordinary error, the first one kept
	start    time.Time
	// srcFailed counts source readings that failed (a gap in their
	// series), srcErr is the first such error.
	srcFailed int
	srcErr    error
}

// Value is one reading of an extra series.
type Value struct {
	Series, Node string
	V            int64
}

// Source is read at every tick, after the TIME_WAIT counts (e.g. load
// counters, nftables counters, PAWS counters).
type Source func() ([]Value, error)

// Point is one reading of a series.
type Point struct {
	T time.Duration // since the sampler started
	V int64
}

// Series is one figure of one node over time.
type Series struct {
	Name, Node string
	Points     []Point
}

// StartSampler samples every interval until Stop; the series is capped at
// maxLen samples per node and source series so that memory stays bounded.
func StartSampler(ctx context.Context, nodes []*Node, interval time.Duration, maxLen int, sources ...Source) *Sampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &Sampler{nodes: nodes, sources: sources, interval: interval, maxLen: maxLen, cancel: cancel,
		done: make(chan struct{}), stats: map[string]*TWStats{}, extraIdx: map[[2]string]*Series{}, start: time.Now()}
	for _, n := range nodes {
		s.stats[n.Name] = &TWStats{}
	}
	// The first sample is taken before this returns, so that it comes
	// before the load the caller starts next (taken by the goroutine, it
	// sometimes showed the first SYNs at t=0).
	first := make(chan struct{})
	go s.loop(ctx, first)
	<-first
	return s
}

func (s *Sampler) loop(ctx context.Context, first chan struct{}) {
	defer close(s.done)
	var once sync.Once
	defer once.Do(func() { close(first) })
	tk := time.NewTicker(s.interval)
	defer tk.Stop()
	for {
		if !s.safeSample(time.Since(s.start)) {
			return // sampling stops at a panic: its error is kept
		}
		once.Do(func() { close(first) })
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// safeSample turns a panic of a sample into the sampler's error, whether
// the loop takes it or Stop does on the caller's goroutine (which is
// tearing a lab down and must not crash). It reports whether none came.
func (s *Sampler) safeSample(at time.Duration) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			s.mu.Lock()
			if s.err == nil || !s.panicked {
				s.err = fmt.Errorf("sampler: internal error (panic): %v", p)
			}
			s.panicked = true
			s.mu.Unlock()
		}
	}()
	s.sample(at)
	return true
}

func (s *Sampler) sample(at time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.nodes {
		st := s.stats[n.Name]
		tw, err := n.TimeWait()
		if err != nil {
			if s.err == nil {
				s.err = err
			}
			st.Failed++
			continue
		}
		st.Max = max(st.Max, tw)
		st.Final = tw
		if len(st.Series) < s.maxLen {
			st.Series = append(st.Series, Sample{T: at, TW: tw})
		}
	}
	// Sources are read last first: the caller lists them cause before
	// effect (the clients' attempts, then the SYNs the server saw, then its
	// PAWS rejects), and reading an effect before its cause keeps a row
	// from showing more effects than causes (syn_in above attempts, seen
	// at t=0). Series keep the order the caller gave.
	read := make([][]Value, len(s.sources))
	for i := len(s.sources) - 1; i >= 0; i-- {
		vals, err := s.sources[i]()
		if err != nil {
			if s.err == nil {
				s.err = err
			}
			if s.srcFailed++; s.srcErr == nil {
				s.srcErr = err
			}
			continue
		}
		read[i] = vals
	}
	for _, vals := range read {
		for _, v := range vals {
			k := [2]string{v.Series, v.Node}
			se := s.extraIdx[k]
			if se == nil {
				se = &Series{Name: v.Series, Node: v.Node}
				s.extraIdx[k] = se
				s.extra = append(s.extra, se)
			}
			if len(se.Points) < s.maxLen {
				se.Points = append(se.Points, Point{T: at, V: v.V})
			}
		}
	}
}

// SourceFailures says how many readings of the extra sources failed, and
// the first error: each is a tick missing from that source's series.
func (s *Sampler) SourceFailures() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srcFailed, s.srcErr
}

// Extra returns the series of the extra sources, in the order they first
// appeared. Call it after Stop.
func (s *Sampler) Extra() []*Series {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.extra
}

// Stop takes one last sample and returns the statistics per node.
func (s *Sampler) Stop() (map[string]*TWStats, error) {
	s.cancel()
	<-s.done
	s.safeSample(time.Since(s.start))
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats, s.err
}
