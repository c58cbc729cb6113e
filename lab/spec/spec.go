// Package spec holds the enumerated choices a scenario makes and the lab
// acts on, with their text form. It imports nothing of the lab: the scenario
// decoder, the runner and the low-level packages (nat, load, skew) share one
// definition of each mode, and validating a scenario links neither nftables
// nor eBPF.
//
// Each type decodes itself (encoding.TextUnmarshaler), so a YAML or --set
// value that is not one of the constants is rejected where it is read, with
// the list of valid values; a value of these types is always one the lab
// implements. MarshalText keeps each the plain string it is in run.json.
package spec

import "fmt"

// LVSMode is how clients reach the server through the box.
type LVSMode string

const (
	// LVSSNAT: clients dial the server's address; the box rewrites their
	// source to one address (and a port from the range).
	LVSSNAT LVSMode = "snat"
	// LVSFullNAT: clients dial a VIP on the box; the box rewrites the
	// destination to the server and the source to its own address, as LVS
	// full-NAT does.
	LVSFullNAT LVSMode = "fullnat"
	// LVSRoute: no NAT at all; the server sees every client's own address.
	LVSRoute LVSMode = "route"
)

func (m LVSMode) String() string               { return string(m) }
func (m LVSMode) MarshalText() ([]byte, error) { return []byte(m), nil }
func (m *LVSMode) UnmarshalText(b []byte) error {
	return decode(m, b, "want snat, fullnat or route", LVSSNAT, LVSFullNAT, LVSRoute)
}

// CloseMode says which side ends a connection, and so where TIME_WAIT lands.
type CloseMode string

const (
	// CloseServer: the server closes right after its last response; TIME_WAIT
	// sits on the server, where PAWS rejects a reused 4-tuple's SYN.
	CloseServer CloseMode = "server"
	// CloseClient: the server waits for the client to close; TIME_WAIT sits on
	// the clients (the nginx-to-upstream case).
	CloseClient CloseMode = "client"
	// CloseReset: the server aborts with RST (SO_LINGER 0); no TIME_WAIT.
	CloseReset CloseMode = "reset"
)

func (m CloseMode) String() string               { return string(m) }
func (m CloseMode) MarshalText() ([]byte, error) { return []byte(m), nil }
func (m *CloseMode) UnmarshalText(b []byte) error {
	return decode(m, b, "want server, client or reset", CloseServer, CloseClient, CloseReset)
}

// Order is how clients take turns on a chain.
type Order string

const (
	OrderRoundRobin Order = "round-robin"
	OrderRandom     Order = "random"
)

func (o Order) String() string               { return string(o) }
func (o Order) MarshalText() ([]byte, error) { return []byte(o), nil }
func (o *Order) UnmarshalText(b []byte) error {
	return decode(o, b, "want round-robin or random", OrderRoundRobin, OrderRandom)
}

// AcceptMode says whether the server accepts during the load.
type AcceptMode string

const (
	AcceptNormal AcceptMode = "normal"
	// AcceptStalled: never accept during the load, so the accept queue
	// fills.
	AcceptStalled AcceptMode = "stalled"
)

func (m AcceptMode) String() string               { return string(m) }
func (m AcceptMode) MarshalText() ([]byte, error) { return []byte(m), nil }
func (m *AcceptMode) UnmarshalText(b []byte) error {
	return decode(m, b, "want normal or stalled (never accept during the load)", AcceptNormal, AcceptStalled)
}

// TSSkew is where the clients' timestamp clock offsets come from.
type TSSkew string

const (
	// TSSkewKernel: the kernel's own random offset per address pair or
	// 4-tuple; no eBPF.
	TSSkewKernel TSSkew = "kernel"
	// TSSkewFixed: tcp_timestamps=2 and exact offsets added by eBPF.
	TSSkewFixed TSSkew = "fixed"
)

func (m TSSkew) String() string               { return string(m) }
func (m TSSkew) MarshalText() ([]byte, error) { return []byte(m), nil }
func (m *TSSkew) UnmarshalText(b []byte) error {
	return decode(m, b, "want kernel (the kernel's own random offsets) or fixed (exact offsets by eBPF on tcp_timestamps=2)", TSSkewKernel, TSSkewFixed)
}

// decode sets *dst to the constant spelled b, or says what would be valid.
func decode[T ~string](dst *T, b []byte, want string, valid ...T) error {
	for _, v := range valid {
		if string(v) == string(b) {
			*dst = v
			return nil
		}
	}
	return fmt.Errorf("%q: %s", b, want)
}
