package scenario

import (
	"fmt"
	"slices"
	"strings"

	"github.com/twlab/twlab/lab/sysctl"
)

type combo struct {
	kvs []KV
	at  []valueAt // where each of kvs was written
}

// expand builds the cartesian product of the axes (first axis slowest),
// drops excluded combinations and appends included ones.
func expand(file string, s *Scenario) ([]combo, error) {
	total := 1
	for _, a := range s.Matrix {
		total *= max(len(a.Values), 1)
		if total > MaxCells {
			return nil, &Error{File: file, Line: a.Line, Col: a.Col, Field: "matrix", Msg: fmt.Sprintf("more than %d cells; split the scenario or use exclude/--only", MaxCells)}
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
	for _, c := range out {
		drop := false
		for _, ex := range s.Exclude {
			if matches(c, ex) {
				drop = true
			}
		}
		if !drop {
			kept = append(kept, c)
		}
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
			if !axisKeys[k] {
				kvs = append(kvs, KV{k, string(inc[k])})
			}
		}
		kept = append(kept, combo{kvs: kvs, at: make([]valueAt, len(kvs))})
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
