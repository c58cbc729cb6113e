package load

// Counting outcomes: each chain into its own counters, lock-free, and
// merge adding them into the Result once the load ends.

import "time"

// classIndex maps an outcome class to its slot in a chain's counters, by
// classNames so that the two cannot disagree; OK comes first, so a success
// costs one comparison.
func classIndex(class string) int {
	for i, n := range classNames[:len(classNames)-1] {
		if n == class {
			return i
		}
	}
	return len(classNames) - 1 // Other
}

// classNames lists the classes by classIndex.
var classNames = [...]string{OK, Timeout, Refused, Reset, AddrFail, Response, Other}

// clientCount is one client's outcomes within one chain.
type clientCount struct {
	attempts int
	cutShort int
	offsets  int // sockets whose timestamp offset was set
	classes  [len(classNames)]int
}

// handoffCount is one (previous, next) pair within one chain.
type handoffCount struct {
	attempts, retried, failed int
}

// chainStats is what one chain counted. Every chain counts on its own, with
// no lock on the hot path; Run adds the chains up when the load ends.
type chainStats struct {
	requests int
	clients  []clientCount
	handoffs []handoffCount // [prev*len(clients)+next]
	lat      []int64        // successful connect latencies, ns
	// cutOldest is the age of the oldest connection cut short.
	cutOldest time.Duration
}

func newChainStats(clients int) *chainStats {
	return &chainStats{clients: make([]clientCount, clients), handoffs: make([]handoffCount, clients*clients)}
}

// record counts one connection of client ci, made right after client prev
// on the chain (prev < 0: the chain's first connection).
func (st *chainStats) record(prev, ci int, o *outcome) {
	cc := &st.clients[ci]
	if o.offsetSet {
		cc.offsets++
	}
	if o.cutShort {
		// What the server answered before the end still was answered.
		cc.cutShort++
		st.requests += o.requests
		st.cutOldest = max(st.cutOldest, o.age)
		return
	}
	c := classIndex(o.class)
	cc.attempts++
	cc.classes[c]++
	st.requests += o.requests
	if prev >= 0 {
		h := &st.handoffs[prev*len(st.clients)+ci]
		h.attempts++
		switch {
		case c != 0:
			h.failed++
		case o.synRetrans > 0:
			h.retried++
		}
	}
	if c == 0 {
		st.lat = append(st.lat, int64(o.connect))
	}
}

// newResult is the empty Result merge adds into: a ClientStats for every
// client, and every failure class present (at 0) so reports list them all.
func newResult(clients []Client) *Result {
	res := &Result{Failures: map[string]int{}, PerClient: map[string]*ClientStats{}, Handoffs: map[string]*Handoff{}}
	for _, c := range clients {
		res.PerClient[c.Name] = &ClientStats{Failures: map[string]int{}}
	}
	for _, f := range FailureClasses {
		res.Failures[f] = 0
	}
	return res
}

// merge adds the chains' counts into res.
func merge(res *Result, clients []Client, chains []*chainStats) {
	n := len(clients)
	total := 0
	for _, st := range chains {
		total += len(st.lat)
	}
	res.lat = make([]int64, 0, total)
	for _, st := range chains {
		res.Requests += st.requests
		res.lat = append(res.lat, st.lat...)
		res.CutShortOldest = max(res.CutShortOldest, st.cutOldest)
		for ci := range st.clients {
			cc := &st.clients[ci]
			pc := res.PerClient[clients[ci].Name]
			pc.Attempts += cc.attempts
			pc.OK += cc.classes[0]
			pc.CutShort += cc.cutShort
			pc.Offsets += cc.offsets
			res.CutShort += cc.cutShort
			res.Attempts += cc.attempts
			res.OK += cc.classes[0]
			for k := 1; k < len(classNames); k++ {
				if v := cc.classes[k]; v > 0 {
					pc.Failures[classNames[k]] += v
					res.Failures[classNames[k]] += v
					res.Failed += v
				}
			}
		}
		for i, h := range st.handoffs {
			if h.attempts == 0 {
				continue
			}
			k := HandoffKey(clients[i/n].Name, clients[i%n].Name)
			t := res.Handoffs[k]
			if t == nil {
				t = &Handoff{}
				res.Handoffs[k] = t
			}
			t.Attempts += h.attempts
			t.Retried += h.retried
			t.Failed += h.failed
		}
	}
}
