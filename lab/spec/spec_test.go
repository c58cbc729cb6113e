package spec

import (
	"encoding"
	"strings"
	"testing"
)

// TestModesRoundTrip: every constant decodes from its own text and encodes
// back to it (run.json and expressions see the plain string), and a value
// that is not a constant is refused with the list of valid ones, whatever
// its case or spacing.
func TestModesRoundTrip(t *testing.T) {
	type mode interface {
		encoding.TextMarshaler
		encoding.TextUnmarshaler
	}
	cases := []struct {
		name  string
		fresh func() mode
		valid []string
		want  string
	}{
		{"lvs.mode", func() mode { return new(LVSMode) }, []string{"snat", "fullnat", "route"}, "want snat, fullnat or route"},
		{"server.close", func() mode { return new(CloseMode) }, []string{"server", "client", "reset"}, "want server, client or reset"},
		{"load.order", func() mode { return new(Order) }, []string{"round-robin", "random"}, "want round-robin or random"},
		{"server.accept", func() mode { return new(AcceptMode) }, []string{"normal", "stalled"}, "want normal or stalled"},
		{"clients.ts_skew", func() mode { return new(TSSkew) }, []string{"kernel", "fixed"}, "want kernel"},
	}
	for _, c := range cases {
		for _, v := range c.valid {
			m := c.fresh()
			if err := m.UnmarshalText([]byte(v)); err != nil {
				t.Errorf("%s: %q refused: %v", c.name, v, err)
				continue
			}
			if b, _ := m.MarshalText(); string(b) != v {
				t.Errorf("%s: %q encodes as %q", c.name, v, b)
			}
		}
		for _, bad := range []string{"", "bogus", strings.ToUpper(c.valid[0]), " " + c.valid[0]} {
			m := c.fresh()
			err := m.UnmarshalText([]byte(bad))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: %q: %v (want an error naming the valid values)", c.name, bad, err)
			}
		}
	}
}
