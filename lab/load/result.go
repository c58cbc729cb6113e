package load

import "time"

// Outcome classes of one connection.
const (
	OK       = "ok"
	Timeout  = "timeout"
	Refused  = "refused"
	Reset    = "reset"
	AddrFail = "addr" // EADDRNOTAVAIL / EADDRINUSE: no local port to use
	// Response: connected, but no complete response within io_timeout
	// (e.g. the connection waits in a full accept queue).
	Response = "response"
	Other    = "other"
)

// FailureClasses lists every failure class, in report order. The names are
// run.json's (result.FailureClasses).
var FailureClasses = []string{Timeout, Refused, Reset, AddrFail, Response, Other}

// ClientStats counts one client's outcomes.
type ClientStats struct {
	Attempts int
	OK       int
	Failures map[string]int
	CutShort int
	// Offsets: sockets whose timestamp offset was set (Config.SocketOffsets);
	// a socket where setting it failed is an attempt, but not one of these.
	Offsets int
}

// Result is what the load measured. run.json records it as result.Load
// (the runner copies it), so its fields are free to change.
type Result struct {
	Attempts int
	OK       int
	Failed   int
	Failures map[string]int
	// CutShort are connections still in progress (connecting, or
	// exchanging after the handshake) when the cell's time bound or an
	// interrupt ended the load: neither attempts that failed nor successes.
	CutShort int
	// CutShortOldest is how long the oldest of them had been in progress:
	// near the cell's duration, a connection that hung (a SYN never
	// answered) held its chain, not the machine's speed, back.
	CutShortOldest time.Duration
	Requests       int
	ConnectMS      Percentiles
	ConnPerS       float64
	Elapsed        float64
	PerClient      map[string]*ClientStats
	// Handoffs count connections by the client that used the chain before:
	// "c1_to_c2" is c2 connecting right after c1 on the same chain, i.e. onto
	// the 4-tuple c1 just left in TIME_WAIT when the NAT maps both alike.
	Handoffs map[string]*Handoff
	// Errors keeps the first few distinct error texts for the reader.
	Errors []string
	// ConnectCDF is the distribution of successful connect latencies as
	// [quantile, ms] points (every connect up to CDFPoints of them, else
	// quantiles with a finer grid in the tail), so reports can draw it.
	ConnectCDF [][2]float64
	// latencies of successful connects, ns, for Latencies.
	lat []int64
}

// Handoff counts one (previous client, next client) pair on a chain.
type Handoff struct {
	Attempts int
	// Retried: the connection succeeded but its SYN had to be sent again
	// (TCP_INFO total_retrans at connect time), i.e. the first SYN was
	// rejected or lost.
	Retried int
	Failed  int
}

// HandoffKey names the pair prev→next.
func HandoffKey(prev, next string) string { return prev + "_to_" + next }

// Latencies returns the connect latencies of successful connections.
func (r *Result) Latencies() []time.Duration {
	out := make([]time.Duration, len(r.lat))
	for i, v := range r.lat {
		out[i] = time.Duration(v)
	}
	return out
}
