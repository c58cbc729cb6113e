package result

// The figures of a cell that other packages measure. They are declared here,
// not taken from lab/load, lab/skew or lab/capture, so that the run document
// is defined in one place: a field renamed in a generator cannot change
// schema v1, and readers of run.json (twlab report, twlab compare) link none
// of the packages that need root, eBPF or netlink. The runner copies the
// generators' values into these.

// Load is what the cell's load measured.
type Load struct {
	Attempts int            `json:"attempts"`
	OK       int            `json:"ok"`
	Failed   int            `json:"failed"`
	Failures map[string]int `json:"failures"` // by failure class
	// CutShort are connections still in progress (connecting, or
	// exchanging after the handshake) when the cell's time bound or an
	// interrupt ended the load: neither attempts that failed nor successes.
	CutShort int `json:"cut_short"`
	// CutShortOldestMS is how long the oldest of them had been in progress
	// when the load ended (absent when none was cut short).
	CutShortOldestMS float64                `json:"cut_short_oldest_ms,omitempty"`
	Requests         int                    `json:"requests"`
	ConnectMS        Percentiles            `json:"connect_ms"`
	ConnPerS         float64                `json:"conn_per_s"`
	Elapsed          float64                `json:"elapsed_s"`
	PerClient        map[string]*LoadClient `json:"per_client"`
	// Handoffs count connections by the client that used the chain before:
	// "c1_to_c2" is c2 connecting right after c1 on the same chain, i.e. onto
	// the 4-tuple c1 just left in TIME_WAIT when the NAT maps both alike.
	Handoffs map[string]*Handoff `json:"handoffs"`
	// Errors keeps the first few distinct error texts for the reader.
	Errors []string `json:"errors,omitempty"`
	// ConnectCDF is the distribution of successful connect latencies as
	// [quantile, ms] points, so reports can draw it.
	ConnectCDF [][2]float64 `json:"connect_cdf,omitempty"`
}

// LoadClient counts one client's outcomes.
type LoadClient struct {
	Attempts int            `json:"attempts"`
	OK       int            `json:"ok"`
	Failures map[string]int `json:"failures"`
	CutShort int            `json:"cut_short"`
}

// Handoff counts one (previous client, next client) pair on a chain.
type Handoff struct {
	Attempts int `json:"attempts"`
	// Retried: the connection succeeded but its SYN had to be sent again,
	// i.e. the first SYN was rejected or lost.
	Retried int `json:"retried"`
	Failed  int `json:"failed"`
}

// Percentiles of connect latency in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Failure classes: the keys of Load.Failures. The names are schema v1;
// lab/load's tests hold its classes to these.
const (
	FailTimeout  = "timeout"
	FailRefused  = "refused"
	FailReset    = "reset"
	FailAddr     = "addr" // EADDRNOTAVAIL / EADDRINUSE: no local port to use
	FailResponse = "response"
	FailOther    = "other"
)

// FailureClasses lists every failure class, in report order.
var FailureClasses = []string{FailTimeout, FailRefused, FailReset, FailAddr, FailResponse, FailOther}

// SkewStats counts what the skew program did on one client's link.
type SkewStats struct {
	EgressRewritten  uint64 `json:"egress_rewritten"`  // TSval rewritten on packets leaving the client
	IngressRewritten uint64 `json:"ingress_rewritten"` // TSecr restored on packets reaching it
	NoTimestamp      uint64 `json:"no_timestamp"`      // TCP packets without a timestamp option
	Malformed        uint64 `json:"malformed"`         // option lists the program refused to touch
}

// Capture describes one finished packet capture of the cell (--pcap).
type Capture struct {
	Path      string `json:"path"` // relative to the run folder
	Link      string `json:"link"`
	Packets   int    `json:"packets"`
	Bytes     int64  `json:"bytes"`
	Truncated bool   `json:"truncated"` // a limit was reached; later frames were not written
	// KernelDrops are frames the kernel could not queue to the capture:
	// they are in no file, and a count that should be exact is not.
	KernelDrops uint64 `json:"kernel_drops"`
	// NotWritten are frames seen after a limit was reached (Truncated):
	// the file lacks them, and they are the end of the cell.
	NotWritten int `json:"not_written,omitempty"`
	// UserTimestamps are frames stamped when read, not by the kernel.
	UserTimestamps int `json:"user_timestamps,omitempty"`
}
