package nat

import "fmt"

func (m Mode) String() string { return string(m) }

// MarshalText keeps a Mode the plain string it is in run.json.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m), nil }

// UnmarshalText accepts only the modes Apply implements, so a scenario
// cannot name a mode the lab would not know how to build.
func (m *Mode) UnmarshalText(b []byte) error {
	switch v := Mode(b); v {
	case ModeSNAT, ModeFullNAT, ModeRoute:
		*m = v
		return nil
	}
	return fmt.Errorf("%q: want snat, fullnat or route", b)
}
