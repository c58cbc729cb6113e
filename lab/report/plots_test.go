package report

import (
	"slices"
	"testing"

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
