package report

import (
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

// TestUnansweredLine: the server plot's "SYNs unanswered" line takes the
// SYN-ACKs sent again away from the SYN-ACKs out, tick by tick, as
// syn.unanswered does; a run of a twlab before the synack_retrans series
// draws in - synack_out as before.
func TestUnansweredLine(t *testing.T) {
	ser := func(name string, v ...int64) *result.Series {
		s := &result.Series{Name: name, Node: "server"}
		for i, x := range v {
			s.T, s.V = append(s.T, int64(i*100)), append(s.V, x)
		}
		return s
	}
	in := ser(result.SeriesSYNIn, 0, 4, 8, 9)
	out := ser(result.SeriesSYNACKOut, 0, 2, 4, 7)
	again := ser(result.SeriesSYNACKRetrans, 0, 0, 1, 4)
	c := &result.Cell{SYN: &result.SYN{In: 9, SynAckOut: 7, SynAckRetrans: 4, Unanswered: 6}}
	for _, tc := range []struct {
		ss   []*result.Series
		want []float64
	}{
		{[]*result.Series{in, out, again}, []float64{0, 2, 5, 6}},
		{[]*result.Series{in, out}, []float64{0, 2, 4, 2}},
	} {
		srv := serverChart(t, c, tc.ss)
		if got := srv.lines[0].ys; !slices.Equal(got, tc.want) {
			t.Errorf("%d series: unanswered %v, want %v", len(tc.ss), got, tc.want)
		}
	}
	if srv := serverChart(t, c, nil); !strings.Contains(srv.caption, "7 SYN-ACKs out (4 of them sent again): 6 unanswered") {
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
