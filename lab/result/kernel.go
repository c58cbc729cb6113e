package result

import "strings"

// KernelFeatures is what detection found about the kernel the run measured
// (written from lab/kernel.Facts): knobs per namespace or global, NAT, eBPF,
// PAWS counters, timestamp offsets.
type KernelFeatures struct {
	Release      string       `json:"release"`
	Major        int          `json:"major"`
	Minor        int          `json:"minor"`
	Knobs        []KernelKnob `json:"knobs"`
	NAT          string       `json:"nat"`       // "ok" or why not
	Conntrack    string       `json:"conntrack"` // "ok" or why not
	EBPF         string       `json:"ebpf"`      // "ok" or why not (tc clsact + cls_bpf)
	PAWSCounters []string     `json:"paws_counters"`
	// PAWSDetail: why the counters could not be read, when they could not.
	PAWSDetail string `json:"paws_counters_detail,omitempty"`
	TSOffsets  string `json:"ts_offsets"` // none | per-pair | per-4-tuple | unknown
	TSDetail   string `json:"ts_offsets_detail,omitempty"`
	// TSHz is the rate of the TCP timestamp clock; 0 when it could not be
	// measured.
	TSHz       int    `json:"ts_hz"`
	TSHzDetail string `json:"ts_hz_detail,omitempty"`
	// TWCount: whether /proc/net/sockstat's TIME_WAIT count is per-netns or
	// global.
	TWCount       string `json:"tw_count"`
	TWCountDetail string `json:"tw_count_detail,omitempty"`
	// TWCounter: which event TcpExt.TW counts, "created" or "expired".
	TWCounter string `json:"tw_counter"`
	// SocketSkew: a socket's timestamp offset set before connect survives
	// it, so fixed skew works without eBPF.
	SocketSkew bool `json:"socket_skew"`
	// TWReuseLoopback: tcp_tw_reuse=2 means "loopback only".
	TWReuseLoopback bool `json:"tw_reuse_loopback"`
	// Clocksource is the kernel's clock source; on jiffies or
	// refined-jiffies every time measured is a multiple of its tick.
	Clocksource string `json:"clocksource,omitempty"`
	// DetectS is how long detection took (seconds), and PartsMS how long
	// each of its parts (they run side by side).
	DetectS float64            `json:"detect_s"`
	PartsMS map[string]float64 `json:"detect_parts_ms,omitempty"`
	QEMU    string             `json:"qemu"` // path or ""
	KVM     bool               `json:"kvm"`
}

// KernelKnob is what detection found about one knob.
type KernelKnob struct {
	Name   string `json:"name"`
	State  string `json:"state"` // per-netns | global | missing
	Reason string `json:"reason,omitempty"`
}

// Knob states.
const (
	KnobPerNetns = "per-netns"
	KnobGlobal   = "global"
	KnobMissing  = "missing"
)

// CoarseClock says whether clock source cs ticks at HZ (jiffies,
// refined-jiffies) rather than finely: what the VM host boots again for
// and the report warns of.
func CoarseClock(cs string) bool { return strings.Contains(cs, "jiffies") }
