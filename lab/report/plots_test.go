package report

import (
	"image/color"
	"slices"
	"strings"
	"testing"

	"github.com/twlab/twlab/lab/result"
	"gonum.org/v1/plot"
)

func labels(ts []plot.Tick) []string {
	var out []string
	for _, t := range ts {
		if t.Label != "" {
			out = append(out, t.Label)
		}
	}
	return out
}

func TestTicks(t *testing.T) {
	for _, tc := range []struct {
		tk       plot.Ticker
		min, max float64
		want     []string
	}{
		{timeTicks{}, 0, 1.35, []string{"0", "0.2", "0.4", "0.6", "0.8", "1", "1.2"}},
		{timeTicks{}, 0, 8.15, []string{"0", "2", "4", "6", "8"}},
		{timeTicks{}, 0, 600, []string{"0", "100", "200", "300", "400", "500", "600"}},
		{intTicks{}, 0, 1.2, []string{"0", "1"}},
		{intTicks{}, 0, 23, []string{"0", "5", "10", "15", "20"}},
		{intTicks{}, 0, 14000, []string{"0", "5000", "10000"}},
		{logTicks{}, 0.05, 13, []string{"0.05", "0.1", "0.2", "0.5", "1", "2", "5", "10"}},
		{logTicks{}, 0.01, 1000, []string{"0.01", "0.1", "1", "10", "100", "1000"}},
	} {
		if got := labels(tc.tk.Ticks(tc.min, tc.max)); !slices.Equal(got, tc.want) {
			t.Errorf("%T [%v, %v]: %v, want %v", tc.tk, tc.min, tc.max, got, tc.want)
		}
	}
}

// TestUnansweredLine: the server plot's "SYNs unanswered" line is in -
// synack_out at every tick, as syn.unanswered is, and the caption says how
// many SYN-ACKs were sent again.
func TestUnansweredLine(t *testing.T) {
	ser := func(name string, v ...int64) *result.Series {
		s := &result.Series{Name: name, Node: "server"}
		for i, x := range v {
			s.T, s.V = append(s.T, int64(i*100)), append(s.V, x)
		}
		return s
	}
	c := &result.Cell{SYN: &result.SYN{In: 9, SynAckOut: 7, SynAckRetrans: 4, Unanswered: 2}}
	srv := serverChart(t, c, []*result.Series{ser(result.SeriesSYNIn, 0, 4, 8, 9), ser(result.SeriesSYNACKOut, 0, 2, 4, 7),
		ser(result.SeriesSYNACKRetrans, 0, 0, 1, 4)})
	if got, want := srv.lines[0].ys, []float64{0, 2, 4, 2}; !slices.Equal(got, want) {
		t.Errorf("unanswered %v, want %v", got, want)
	}
	if !strings.Contains(srv.caption, "7 SYN-ACKs out (4 of them sent again") || !strings.Contains(srv.caption, "2 unanswered") {
		t.Errorf("caption %q", srv.caption)
	}
}

func serverChart(t *testing.T, c *result.Cell, ss []*result.Series) *chart {
	t.Helper()
	for _, ch := range cellCharts(c, ss, "") {
		if ch.kind == "server" && len(ch.lines) > 0 {
			return ch
		}
	}
	t.Fatal("no server chart")
	return nil
}

// A series of one reading (a cut timeseries.csv) is drawn as a dot: a line
// of one point drew nothing, and the chart looked empty, without a note.
func TestOnePointIsDrawn(t *testing.T) {
	red := color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	for _, xMin0 := range []bool{true, false} {
		c := &chart{kind: "timewait", title: "t", lines: []line{{name: "time_wait", xs: []float64{500}, ys: []float64{7}, color: red, step: true}},
			legend: true, intY: true, xMin0: xMin0}
		h, err := c.render()
		if err != nil {
			t.Fatalf("xMin0 %v: %v", xMin0, err)
		}
		// The legend's swatch strokes the colour; only a dot fills with it.
		if !strings.Contains(strings.ToUpper(string(h)), "FILL:#D62728") {
			t.Errorf("xMin0 %v: no dot of the line's colour:\n%s", xMin0, h)
		}
	}
}
