package load

import (
	"math"
	"slices"
)

// Percentiles of connect latency in milliseconds.
type Percentiles struct {
	P50 float64
	P90 float64
	P99 float64
	Max float64
}

// ComputePercentiles uses the nearest-rank method on a sorted copy.
func ComputePercentiles(ns []int64) Percentiles {
	s := slices.Clone(ns)
	slices.Sort(s)
	return percentilesSorted(s)
}

// percentilesSorted is ComputePercentiles of an already sorted slice.
func percentilesSorted(s []int64) Percentiles {
	if len(s) == 0 {
		return Percentiles{}
	}
	rank := func(p float64) float64 {
		return round3(float64(s[nearestRank(p/100, len(s))]) / 1e6)
	}
	return Percentiles{P50: rank(50), P90: rank(90), P99: rank(99), Max: round3(float64(s[len(s)-1]) / 1e6)}
}

// nearestRank is the index of the q-quantile of n sorted values, ceil(q*n)-1.
// q*n is computed in floating point: 7/200*400 comes out as 14.000000000000002,
// whose ceiling would pick one value too high. The quantiles asked for have
// at most 4 decimals, so a true q*n is an integer or at least 1e-4 from one.
func nearestRank(q float64, n int) int {
	i := int(math.Ceil(q*float64(n)-1e-9)) - 1
	return max(0, min(i, n-1))
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// CDFPoints bounds ConnectCDF: up to this many connects every latency is
// kept; above it, quantiles.
const CDFPoints = 256

// ComputeCDF returns the empirical distribution of ns as [quantile, ms]
// points: q = i/n for the i-th smallest of n values when n <= CDFPoints,
// else the nearest-rank values at q = 0, 0.005, …, 0.99 and a finer tail
// grid up to 0.9999 and 1 (the maximum), so p99 and beyond stay visible.
func ComputeCDF(ns []int64) [][2]float64 {
	s := slices.Clone(ns)
	slices.Sort(s)
	return cdfSorted(s)
}

// cdfSorted is ComputeCDF of an already sorted slice.
func cdfSorted(s []int64) [][2]float64 {
	if len(s) == 0 {
		return nil
	}
	n := len(s)
	ms := func(v int64) float64 { return math.Round(float64(v)/1e3) / 1e3 }
	if n <= CDFPoints {
		out := make([][2]float64, n)
		for i, v := range s {
			out[i] = [2]float64{math.Round(float64(i+1)/float64(n)*1e6) / 1e6, ms(v)}
		}
		return out
	}
	var qs []float64
	for i := 1; i <= 198; i++ {
		qs = append(qs, float64(i)/200)
	}
	qs = append(qs, 0.991, 0.992, 0.993, 0.994, 0.995, 0.996, 0.997, 0.998, 0.999, 0.9995, 0.9999, 1)
	out := make([][2]float64, 0, len(qs)+1)
	out = append(out, [2]float64{1 / float64(n), ms(s[0])}) // the minimum
	for _, q := range qs {
		out = append(out, [2]float64{q, ms(s[nearestRank(q, n)])})
	}
	return out
}
