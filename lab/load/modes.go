package load

import "github.com/twlab/twlab/lab/spec"

// Order is how clients take turns on a chain.
type Order = spec.Order

const (
	OrderRoundRobin = spec.OrderRoundRobin
	OrderRandom     = spec.OrderRandom
)

// AcceptMode says whether the server accepts during the load; stalled never
// accepts, so the accept queue fills (ServerConfig.Stalled).
type AcceptMode = spec.AcceptMode

const (
	AcceptNormal  = spec.AcceptNormal
	AcceptStalled = spec.AcceptStalled
)
