// Package scenario loads, validates and expands twlab scenario files.
//
// Requested state and runtime state are different things: a scenario is
// decoded and validated completely (strictly: an unknown field is an error
// naming file, line and column) before anything is created. The matrix and
// --set overrides are applied to the YAML tree and the result is decoded
// again, so every cell is validated exactly like a hand-written scenario.
package scenario

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/twlab/twlab/lab/spec"
)

// Limits that keep a scenario bounded; documented in scenarios/README.md.
const (
	MaxFileSize       = 256 << 10
	MaxClients        = 64
	MaxConnections    = 1_000_000
	MaxDuration       = 10 * time.Minute
	MaxConnectTimeout = 60 * time.Second
	MaxConcurrency    = 64
	MaxServerPorts    = 64
	MaxCells          = 256
	MaxKeepalive      = 10_000
	MaxRunTime        = time.Hour
	// MaxAsserts bounds the assertions of a scenario (all expectations):
	// every cell carries its own copy of the file's tree, and 130 000
	// one-character assertions made validate take 2.2 GB.
	MaxAsserts = 1000
)

// Scenario is the typed form of a scenario file.
type Scenario struct {
	Name        string              `yaml:"name" json:"name"`
	Description string              `yaml:"description" json:"description"`
	Seed        uint64              `yaml:"seed" json:"seed"`
	Clients     Clients             `yaml:"clients" json:"clients"`
	LVS         LVS                 `yaml:"lvs" json:"lvs"`
	Server      Server              `yaml:"server" json:"server"`
	Load        LoadConfig          `yaml:"load" json:"load"`
	Sysctl      map[string]KnobSet  `yaml:"sysctl" json:"sysctl"`
	Matrix      Matrix              `yaml:"matrix" json:"matrix"`
	Exclude     []map[string]Scalar `yaml:"exclude" json:"exclude,omitempty"`
	Include     []map[string]Scalar `yaml:"include" json:"include,omitempty"`
	Expect      []Expect            `yaml:"expect" json:"expect"`
}

// Clients configures the client namespaces.
type Clients struct {
	Count  int         `yaml:"count" json:"count"`
	TSSkew spec.TSSkew `yaml:"ts_skew" json:"ts_skew"`
	// TSOffsets are the fixed offsets of c1, c2, … (missing ones are 0).
	TSOffsets []TSOffset `yaml:"ts_offsets" json:"ts_offsets,omitempty"`
	// TSOffsetStep spreads clients evenly: client i gets (i-1)*step, unless
	// ts_offsets gives its offset.
	TSOffsetStep *TSOffset `yaml:"ts_offset_step" json:"ts_offset_step,omitempty"`
}

// MaxTSOffset bounds a clock offset (about 12 days of 1 ms ticks), far from
// the 2^31 where "older" and "newer" swap in TCP's serial arithmetic.
const MaxTSOffset = 1 << 30

// TSOffset is a timestamp clock offset: a signed duration ("-60s", "+250ms")
// or raw timestamp ticks (an integer). A duration becomes ticks of the
// running kernel's clock (1 ms since Linux 4.13, a jiffy before) at run
// time; Ticks holds it in milliseconds until then.
type TSOffset struct {
	Ticks int32
	Text  string
	// Raw: given as ticks, used as they are on every kernel.
	Raw bool
}

// TicksAt is the offset in ticks of a timestamp clock running at hz.
func (o TSOffset) TicksAt(hz int) int32 {
	if o.Raw || hz == 1000 {
		return o.Ticks
	}
	return int32(int64(o.Ticks) * int64(hz) / 1000)
}

// scalarStruct marks a struct written as one scalar, so that --set and the
// matrix may set it like any single value.
func (TSOffset) scalarStruct() {}

// unmarshalNode accepts a duration or an integer.
func (o *TSOffset) unmarshalNode(n *node) error {
	if n.Kind != scalarNode {
		return &posError{n.Line, n.Column, "", "want a clock offset such as -60s, +250ms or raw ticks (an integer)"}
	}
	v := strings.TrimSpace(n.Value)
	var ticks int64
	raw := false
	if i, err := strconv.ParseInt(v, 10, 64); err == nil {
		ticks, raw = i, true
	} else {
		d, err := time.ParseDuration(strings.TrimPrefix(v, "+"))
		if err != nil {
			return &posError{n.Line, n.Column, "", fmt.Sprintf("%q is not a clock offset: want e.g. -60s, +250ms or raw ticks (an integer)", n.Value)}
		}
		if d%time.Millisecond != 0 {
			return &posError{n.Line, n.Column, "", fmt.Sprintf("%q: timestamp ticks are 1 ms; use whole milliseconds", n.Value)}
		}
		ticks = int64(d / time.Millisecond)
	}
	if ticks > MaxTSOffset || ticks < -MaxTSOffset {
		return &posError{n.Line, n.Column, "", fmt.Sprintf("%q is out of range; offsets are limited to ±%d ticks (about 12 days)", n.Value, MaxTSOffset)}
	}
	*o = TSOffset{Ticks: int32(ticks), Text: v, Raw: raw}
	return nil
}

// MarshalJSON writes the offset in ticks.
func (o TSOffset) MarshalJSON() ([]byte, error) { return []byte(strconv.Itoa(int(o.Ticks))), nil }

// Offsets returns the fixed offset of every client in ticks of a timestamp
// clock running at hz.
func (c Clients) Offsets(hz int) []int32 {
	out := make([]int32, c.Count)
	for i := range out {
		if c.TSOffsetStep != nil {
			out[i] = int32(i) * c.TSOffsetStep.TicksAt(hz)
		}
		if i < len(c.TSOffsets) {
			out[i] = c.TSOffsets[i].TicksAt(hz)
		}
	}
	return out
}

// LVS configures the NAT box.
type LVS struct {
	Mode               spec.LVSMode `yaml:"mode" json:"mode"`
	SNATPorts          int          `yaml:"snat_ports" json:"snat_ports"` // size of the SNAT port range; 0 = kernel's choice
	SNATPortBase       int          `yaml:"snat_port_base" json:"snat_port_base"`
	Random             bool         `yaml:"random" json:"random"`                                       // fully-random port selection
	ConntrackTWTimeout *Duration    `yaml:"conntrack_tw_timeout" json:"conntrack_tw_timeout,omitempty"` // nil = leave the kernel default
	VIP                string       `yaml:"vip" json:"vip"`
}

// Server configures the responder.
type Server struct {
	Port              int            `yaml:"port" json:"port"`
	Ports             int            `yaml:"ports" json:"ports"`
	Close             spec.CloseMode `yaml:"close" json:"close"`
	KeepaliveRequests int            `yaml:"keepalive_requests" json:"keepalive_requests"`
	// Backlog is the listen backlog (capped by the server's net.core.somaxconn).
	Backlog int `yaml:"backlog" json:"backlog"`
	// Accept stalled never accepts during the load, so the accept queue
	// fills: the other way a SYN goes unanswered.
	Accept spec.AcceptMode `yaml:"accept" json:"accept"`
}

// LoadConfig bounds and shapes the short-connection load of one cell.
type LoadConfig struct {
	Connections    int        `yaml:"connections" json:"connections"`
	Duration       Duration   `yaml:"duration" json:"duration"`
	Rate           float64    `yaml:"rate" json:"rate"`
	Concurrency    int        `yaml:"concurrency" json:"concurrency"`
	Order          spec.Order `yaml:"order" json:"order"`
	ConnectTimeout Duration   `yaml:"connect_timeout" json:"connect_timeout"`
	IOTimeout      Duration   `yaml:"io_timeout" json:"io_timeout"`
	BindPort       int        `yaml:"bind_port" json:"bind_port"`
	Gap            Duration   `yaml:"gap" json:"gap"`
	// NeedsRate: the scenario's mechanism shows only from this many new
	// connections per second on; a cell whose load stays below it (e.g. in
	// a VM under software emulation) is n/a, its figures kept. 0: no need.
	NeedsRate float64 `yaml:"needs_rate" json:"needs_rate,omitempty"`
}

// KnobSet is a role's sysctls in file order.
type KnobSet []Knob

// Knob is one sysctl.
type Knob struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Line  int    `json:"-"`
	Col   int    `json:"-"`
	// Where the value was written and how errors about it name it, when a
	// matrix, an include or --set gave it ("matrix.server.net.…[1]").
	ValueLine, ValueCol int    `json:"-"`
	ValueField          string `json:"-"`
}

// unmarshalNode keeps file order and positions.
func (k *KnobSet) unmarshalNode(n *node) error {
	if n.Kind != mappingNode {
		return &posError{n.Line, n.Column, "", "want a mapping of sysctl names to values"}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if vn.Kind != scalarNode {
			return &posError{vn.Line, vn.Column, "", fmt.Sprintf("sysctl %s: want a scalar value", kn.Value)}
		}
		*k = append(*k, Knob{Name: kn.Value, Value: vn.Value, Line: kn.Line, Col: kn.Column, ValueLine: vn.Line, ValueCol: vn.Column, ValueField: vn.Field})
	}
	return nil
}

// MarshalJSON writes a knob set as an object in file order.
func (k KnobSet) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, kn := range k {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(kn.Name) + ":" + strconv.Quote(kn.Value))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Matrix is the ordered list of matrix axes.
type Matrix []Axis

// Axis is one matrix key with its values.
type Axis struct {
	Key    string   `json:"key"`
	Values []string `json:"values"`
	Line   int      `json:"-"`
	Col    int      `json:"-"`
	at     []valueAt
}

// valueAt is where a matrix value was written and how errors name it.
type valueAt struct {
	line, col int
	field     string
}

// valueAt is where the j-th value was written; a value given by --set
// instead points at the axis.
func (a Axis) valueAt(j int) valueAt {
	if j < len(a.at) {
		return a.at[j]
	}
	return valueAt{a.Line, a.Col, ""}
}

// unmarshalNode keeps axis order: the first axis varies slowest.
func (m *Matrix) unmarshalNode(n *node) error {
	if n.Kind != mappingNode {
		return &posError{n.Line, n.Column, "", "matrix: want a mapping of keys to lists of values"}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		a := Axis{Key: kn.Value, Line: kn.Line, Col: kn.Column}
		switch vn.Kind {
		case sequenceNode:
			for j, e := range vn.Content {
				if e.Kind != scalarNode {
					return &posError{e.Line, e.Column, "", fmt.Sprintf("matrix %s: values must be scalars", kn.Value)}
				}
				if e.null() && !nullable(kn.Value) {
					return &posError{e.Line, e.Column, "", "an empty value (~, null) is no value; it would run the default, under a cell id that says otherwise"}
				}
				a.Values = append(a.Values, e.Value)
				a.at = append(a.at, valueAt{e.Line, e.Column, fmt.Sprintf("matrix.%s[%d]", kn.Value, j)})
			}
		case scalarNode:
			if vn.null() && !nullable(kn.Value) {
				return &posError{vn.Line, vn.Column, "", fmt.Sprintf("matrix %s: want a list of values", kn.Value)}
			}
			a.Values = []string{vn.Value}
			a.at = []valueAt{{vn.Line, vn.Column, "matrix." + kn.Value}}
		default:
			return &posError{vn.Line, vn.Column, "", fmt.Sprintf("matrix %s: want a list of values", kn.Value)}
		}
		*m = append(*m, a)
	}
	return nil
}

// Scalar is a YAML scalar kept as text (knob values are text to the kernel).
type Scalar string

// unmarshalNode accepts any scalar.
func (s *Scalar) unmarshalNode(n *node) error {
	if n.Kind != scalarNode {
		return &posError{n.Line, n.Column, "", "want a scalar value"}
	}
	*s = Scalar(n.Value)
	return nil
}

// Expect is one expectation: assertions checked in every cell the selector
// matches.
type Expect struct {
	Name   string     `yaml:"name" json:"name,omitempty"`
	When   Text       `yaml:"when" json:"when,omitempty"`
	Assert StringList `yaml:"assert" json:"assert"`
}

// Text is a string that remembers where it was written.
type Text struct {
	S         string
	Line, Col int
	verbatim  bool // columns within S are the file's (see node.Verbatim)
}

// unmarshalNode accepts a scalar.
func (t *Text) unmarshalNode(n *node) error {
	if n.Kind != scalarNode {
		return &posError{n.Line, n.Column, "", "want a string"}
	}
	*t = Text{n.Value, n.Line, textCol(n), n.Verbatim}
	return nil
}

// MarshalJSON writes the string.
func (t Text) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(t.S)), nil }

// IsZero lets omitempty drop an empty selector.
func (t Text) IsZero() bool { return t.S == "" }

type pos struct {
	line, col int
	verbatim  bool
}

// StringList accepts one string or a list of strings, remembering positions.
type StringList struct {
	Items []string
	Pos   []pos
}

// unmarshalNode accepts a scalar or a sequence of scalars.
func (s *StringList) unmarshalNode(n *node) error {
	switch n.Kind {
	case scalarNode:
		s.Items, s.Pos = []string{n.Value}, []pos{{n.Line, textCol(n), n.Verbatim}}
		return nil
	case sequenceNode:
		for _, e := range n.Content {
			if e.Kind != scalarNode {
				return &posError{e.Line, e.Column, "", "want a string"}
			}
			s.Items = append(s.Items, e.Value)
			s.Pos = append(s.Pos, pos{e.Line, textCol(e), e.Verbatim})
		}
		return nil
	}
	return &posError{n.Line, n.Column, "", "want a string or a list of strings"}
}

// MarshalJSON writes the items.
func (s StringList) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, it := range s.Items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(it))
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

// Duration is a time.Duration written as "700ms", "8s" (or a bare number of
// seconds).
type Duration time.Duration

// unmarshalNode parses Go duration syntax.
func (d *Duration) unmarshalNode(n *node) error {
	if n.Kind != scalarNode {
		return &posError{n.Line, n.Column, "", "want a duration such as 500ms or 8s"}
	}
	if f, err := strconv.ParseFloat(n.Value, 64); err == nil {
		if math.IsNaN(f) || f < 0 || f > 1e6 {
			return &posError{n.Line, n.Column, "", fmt.Sprintf("duration %s out of range", n.Value)}
		}
		*d = Duration(f * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return &posError{n.Line, n.Column, "", fmt.Sprintf("%q is not a duration: want e.g. 500ms, 8s, 2m", n.Value)}
	}
	*d = Duration(v)
	return nil
}

// D is the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the duration in Go syntax.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(strconv.Quote(time.Duration(d).String())), nil
}

// textCol is where n's text starts (a node made by --set or the matrix has
// no TextCol: its Column).
func textCol(n *node) int {
	if n.TextCol > 0 {
		return n.TextCol
	}
	return n.Column
}
