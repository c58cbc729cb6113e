package scenario

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twlab/twlab/lab/expr"
	"github.com/twlab/twlab/lab/sysctl"
)

// KernelVars are the kernel.* names a `when:` selector may use; the runner
// fills them from detection (lab/kernel), never from the version string.
var KernelVars = []string{"kernel.release", "kernel.major", "kernel.minor", "kernel.ts_offsets",
	"kernel.has_tw_recycle", "kernel.has_tw_reuse_delay", "kernel.has_paws_timewait", "kernel.ebpf", "kernel.ts_hz", "kernel.tw_reuse_loopback", "kernel.tw_counter"}

// KernelValues are the values a kernel.* fact given as text can take
// (lab/kernel detects them; its test keeps the lists in step): a selector
// comparing one with anything else would never select a cell.
var KernelValues = map[string][]string{
	"kernel.ts_offsets": {"none", "per-pair", "per-4-tuple", "unknown"},
	"kernel.tw_counter": {"created", "expired", "unknown", ""},
}

func isKernelVar(name string) bool { return slices.Contains(KernelVars, name) }

// unknownName reports a name of x that vars lack. Evaluation alone would miss
// one behind && or || that short-circuits in every cell.
func unknownName(x *expr.Expr, vars map[string]string) error {
	for _, n := range x.Names() {
		if strings.HasPrefix(n, "kernel.") && slices.Contains(KernelVars, n) {
			continue
		}
		if _, ok := vars[n]; !ok {
			return &expr.UnknownNameError{Name: n}
		}
	}
	return nil
}

// Flatten lists every scalar field of s by dotted yaml name, and every sysctl
// as ROLE.NAME.
func Flatten(s *Scenario) map[string]string {
	out := map[string]string{}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return
			}
			v = v.Elem()
		}
		if d, ok := v.Interface().(Duration); ok {
			out[path] = d.D().String()
			return
		}
		if o, ok := v.Interface().(TSOffset); ok {
			// A time compares in seconds, as every duration does
			// (ts_offset_step == -30 for -30s); raw ticks stay ticks.
			out[path] = strconv.Itoa(int(o.Ticks))
			if !o.Raw {
				out[path] = (time.Duration(o.Ticks) * time.Millisecond).String()
			}
			return
		}
		switch v.Kind() {
		case reflect.Struct:
			t := v.Type()
			for i := 0; i < t.NumField(); i++ {
				tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
				if tag == "" || tag == "-" || tag == "description" || tag == "expect" || tag == "matrix" || tag == "sysctl" || tag == "exclude" || tag == "include" {
					continue
				}
				walk(v.Field(i), join(path, tag))
			}
		case reflect.String:
			out[path] = v.String()
		case reflect.Int, reflect.Int64:
			out[path] = strconv.FormatInt(v.Int(), 10)
		case reflect.Uint64:
			out[path] = strconv.FormatUint(v.Uint(), 10)
		case reflect.Float64:
			out[path] = strconv.FormatFloat(v.Float(), 'g', -1, 64)
		case reflect.Bool:
			out[path] = strconv.FormatBool(v.Bool())
		}
	}
	walk(reflect.ValueOf(s).Elem(), "")
	for role, ks := range s.Sysctl {
		for _, k := range ks {
			out[role+"."+k.Name] = sysctl.Normalize(k.Value)
		}
	}
	return out
}

// VarsEnv exposes cell variables to expressions.
func VarsEnv(vars map[string]string) expr.Env {
	return func(name string) (expr.Value, bool) {
		v, ok := vars[name]
		if !ok {
			return expr.Value{}, false
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return expr.Num(f), true
		}
		return expr.Str(v), true
	}
}
