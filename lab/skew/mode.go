package skew

import "fmt"

// Mode is where the clients' timestamp clock offsets come from.
type Mode string

const (
	// ModeKernel: the kernel's own random offset per address pair or
	// 4-tuple; this package is not used.
	ModeKernel Mode = "kernel"
	// ModeFixed: tcp_timestamps=2 and exact offsets added by Attach.
	ModeFixed Mode = "fixed"
)

func (m Mode) String() string { return string(m) }

// MarshalText keeps the mode the plain string it is in run.json.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m), nil }

// UnmarshalText accepts kernel or fixed.
func (m *Mode) UnmarshalText(b []byte) error {
	switch v := Mode(b); v {
	case ModeKernel, ModeFixed:
		*m = v
		return nil
	}
	return fmt.Errorf("%q: want kernel (the kernel's own random offsets) or fixed (exact offsets by eBPF on tcp_timestamps=2)", b)
}
