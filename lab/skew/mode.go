package skew

import "github.com/twlab/twlab/lab/spec"

// Mode is where the clients' timestamp clock offsets come from; Attach
// implements ModeFixed.
type Mode = spec.TSSkew

const (
	ModeKernel = spec.TSSkewKernel
	ModeFixed  = spec.TSSkewFixed
)
