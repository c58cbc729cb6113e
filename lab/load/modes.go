package load

import "fmt"

// The modes decode themselves (encoding.TextUnmarshaler) so that a scenario
// holds only values this package implements, and the runner passes them on
// without parsing again.

func (m CloseMode) String() string { return string(m) }

// MarshalText keeps the mode the plain string it is in run.json.
func (m CloseMode) MarshalText() ([]byte, error) { return []byte(m), nil }

// UnmarshalText accepts server, client or reset.
func (m *CloseMode) UnmarshalText(b []byte) error {
	switch v := CloseMode(b); v {
	case CloseServer, CloseClient, CloseReset:
		*m = v
		return nil
	}
	return fmt.Errorf("%q: want server, client or reset", b)
}

// Order is how clients take turns on a chain.
type Order string

const (
	OrderRoundRobin Order = "round-robin"
	OrderRandom     Order = "random"
)

func (o Order) String() string { return string(o) }

// MarshalText keeps the order the plain string it is in run.json.
func (o Order) MarshalText() ([]byte, error) { return []byte(o), nil }

// UnmarshalText accepts round-robin or random.
func (o *Order) UnmarshalText(b []byte) error {
	switch v := Order(b); v {
	case OrderRoundRobin, OrderRandom:
		*o = v
		return nil
	}
	return fmt.Errorf("%q: want round-robin or random", b)
}

// AcceptMode says whether the server accepts during the load.
type AcceptMode string

const (
	AcceptNormal AcceptMode = "normal"
	// AcceptStalled: never accept during the load, so the accept queue
	// fills (ServerConfig.Stalled).
	AcceptStalled AcceptMode = "stalled"
)

func (m AcceptMode) String() string { return string(m) }

// MarshalText keeps the mode the plain string it is in run.json.
func (m AcceptMode) MarshalText() ([]byte, error) { return []byte(m), nil }

// UnmarshalText accepts normal or stalled.
func (m *AcceptMode) UnmarshalText(b []byte) error {
	switch v := AcceptMode(b); v {
	case AcceptNormal, AcceptStalled:
		*m = v
		return nil
	}
	return fmt.Errorf("%q: want normal or stalled (never accept during the load)", b)
}
