package scenario

import (
	"fmt"
	"slices"
	"strings"

	"github.com/twlab/twlab/lab/sysctl"
)

// maxExcludes bounds exclude: a scenario runs at most MaxCells cells.
const maxExcludes = 4 * MaxCells

type combo struct {
	kvs []KV
	at  []valueAt // where each of kvs was written
}

// expand builds the cartesian product of the axes (first axis slowest),
// drops excluded combinations and appends included ones.
func expand(file string, s *Scenario, setKeys map[string]bool) ([]combo, error) {
	// The product may exceed MaxCells as long as exclude brings it back
	// (checked below); past maxProduct it is refused before it is built.
	const maxProduct = 64 * MaxCells
	// Every exclude is matched against every combination: 25 000 of them
	// (a 250 KB file) took 70 s and 2.7 GB before this bound. (Includes
	// add a cell each: the MaxCells check below bounds them.) Named by the
	// first entry past the bound, which locate finds.
	if len(s.Exclude) > maxExcludes {
		return nil, &Error{File: file, Field: fmt.Sprintf("exclude[%d]", maxExcludes), Msg: fmt.Sprintf("one of %d entries; at most %d (a scenario runs at most %d cells: split it)", len(s.Exclude), maxExcludes, MaxCells)}
	}
	total := 1
	for _, a := range s.Matrix {
		total *= max(len(a.Values), 1)
		if total > maxProduct {
			return nil, &Error{File: file, Line: a.Line, Col: a.Col, Field: "matrix", Msg: fmt.Sprintf("more than %d combinations; a scenario runs at most %d cells: split it", maxProduct, MaxCells)}
		}
	}
	axisKeys := map[string]bool{}
	for _, a := range s.Matrix {
		axisKeys[a.Key] = true
	}
	for i, ex := range s.Exclude {
		for k := range ex {
			if !axisKeys[k] {
				return nil, &Error{File: file, Field: fmt.Sprintf("exclude[%d].%s", i, k), Msg: "not a matrix key; exclude entries name matrix keys"}
			}
		}
	}
	out := []combo{{}}
	for _, a := range s.Matrix {
		var next []combo
		for _, c := range out {
			for j, v := range a.Values {
				kvs := append(slices.Clone(c.kvs), KV{a.Key, v})
				next = append(next, combo{kvs: kvs, at: append(slices.Clone(c.at), a.valueAt(j))})
			}
		}
		out = next
	}
	matches := func(c combo, m map[string]Scalar) bool {
		for k, v := range m {
			hit := false
			for _, kv := range c.kvs {
				if kv.Key == k && sysctl.Normalize(kv.Value) == sysctl.Normalize(string(v)) {
					hit = true
				}
			}
			if !hit {
				return false
			}
		}
		return true
	}
	var kept []combo
	used := make([]bool, len(s.Exclude))
	for _, c := range out {
		drop := false
		for i, ex := range s.Exclude {
			if matches(c, ex) {
				drop, used[i] = true, true
			}
		}
		if !drop {
			kept = append(kept, c)
		}
	}
	// An entry that removes nothing is a typo or a value spelt otherwise
	// than in the matrix ("yes" for true, 0.02 for 20ms): the cells it
	// meant to leave out would run. (A --set that pins an axis may leave
	// an entry nothing to remove, rightly.)
	for i, ok := range used {
		pinned := false
		for k := range s.Exclude[i] {
			pinned = pinned || setKeys[k]
		}
		if !ok && !pinned {
			var want []string
			for k, v := range s.Exclude[i] {
				want = append(want, k+"="+string(v))
			}
			slices.Sort(want)
			return nil, &Error{File: file, Field: fmt.Sprintf("exclude[%d]", i), Msg: fmt.Sprintf("%s matches no cell of the matrix, so it excludes nothing; write the values as the matrix does (%s)", strings.Join(want, ", "), axisValues(s.Matrix, s.Exclude[i]))}
		}
	}
	if len(kept) > MaxCells {
		return nil, &Error{File: file, Field: "matrix", Msg: fmt.Sprintf("%d cells after exclude; a scenario runs at most %d: split it, exclude more or use --only", len(kept), MaxCells)}
	}
	for i, inc := range s.Include {
		var kvs []KV
		for _, a := range s.Matrix {
			if v, ok := inc[a.Key]; ok {
				kvs = append(kvs, KV{a.Key, string(v)})
			}
		}
		keys := make([]string, 0, len(inc))
		for k := range inc {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if err := checkKey(k); err != nil {
				return nil, &Error{File: file, Field: fmt.Sprintf("include[%d].%s", i, k), Msg: err.Error()}
			}
			if (&node{Kind: scalarNode, Value: string(inc[k])}).null() && !nullable(k) {
				return nil, &Error{File: file, Field: fmt.Sprintf("include[%d].%s", i, k), Msg: "want a value; an empty one (~, null) would stand for the default"}
			}
			if !axisKeys[k] {
				kvs = append(kvs, KV{k, string(inc[k])})
			}
		}
		// A bad value is named as the include that wrote it, not as the
		// section field it sets (which the user did not write wrong).
		at := make([]valueAt, len(kvs))
		for j, kv := range kvs {
			at[j].field = fmt.Sprintf("include[%d].%s", i, kv.Key)
		}
		kept = append(kept, combo{kvs: kvs, at: at})
		if len(kept) > MaxCells { // before each cell costs a decode
			return nil, &Error{File: file, Field: fmt.Sprintf("include[%d]", i), Msg: fmt.Sprintf("more than %d cells with the includes; split the scenario or use exclude/--only", MaxCells)}
		}
	}
	return kept, nil
}

// shortNames gives each axis a short, unique label for cell ids:
// "tw_recycle", "timestamps", or "clients.timestamps" when two roles share one.
func shortNames(m Matrix) map[string]string {
	short := func(k string) string {
		i := strings.LastIndex(k, ".")
		s := k[i+1:]
		return strings.TrimPrefix(s, "tcp_")
	}
	count := map[string]int{}
	for _, a := range m {
		count[short(a.Key)]++
	}
	out := map[string]string{}
	for _, a := range m {
		s := short(a.Key)
		if count[s] > 1 {
			role, _, _ := strings.Cut(a.Key, ".")
			s = role + "." + s
		}
		out[a.Key] = s
	}
	return out
}

// ShortName is the label of key in cell ids (exported for the include keys
// that are not axes).
func ShortName(key string) string { return shortNames(Matrix{{Key: key}})[key] }

// axisValues lists the values the matrix gives the keys of m.
func axisValues(mx Matrix, m map[string]Scalar) string {
	var parts []string
	for _, a := range mx {
		if _, ok := m[a.Key]; ok {
			parts = append(parts, a.Key+": "+strings.Join(a.Values, ", "))
		}
	}
	return strings.Join(parts, "; ")
}
