package expr

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestMayHold(t *testing.T) {
	env := func(name string) (Value, bool) {
		switch name {
		case "lvs.mode":
			return Str("snat"), true
		case "ts":
			return Str("2"), true
		}
		return Value{}, false
	}
	kernel := func(n string) bool { return strings.HasPrefix(n, "kernel.") }
	for _, c := range []struct {
		src  string
		want bool
		err  string
	}{
		{`kernel.major >= 5`, true, ""},
		{`kernel.major >= 5 && lvs.mode == "SNAT"`, false, ""},
		{`lvs.mode == "SNAT" && kernel.major >= 5`, false, ""},
		{`kernel.major >= 5 && lvs.mode == "snat"`, true, ""},
		{`kernel.major >= 5 || lvs.mode == "SNAT"`, true, ""},
		{`lvs.mode == "snat" || kernel.major >= 5`, true, ""},
		{`!(kernel.ebpf == 1) && ts == 0`, false, ""},
		{`!(kernel.ebpf == 1 || ts == 2)`, false, ""}, // ts == 2 decides the ||
		{`!(kernel.ebpf == 1 || ts == 0)`, true, ""},
		{`kernel.has_tw_recycle == 1 && (ts == 0 || ts == 1)`, false, ""},
		{`kernel.minor in [1, 2] && ts in [1]`, false, ""},
		{`kernel.x + 1 > 3 && ts > 1`, true, ""},
		{`kernel.x > 1 && nosuch == 1`, false, "unknown name"},
		{`ts == 2`, true, ""},
		{`ts == 3`, false, ""},
	} {
		e := MustParse(c.src)
		got, err := e.MayHold(env, kernel)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want one with %q", c.src, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: MayHold = %v, %v; want %v", c.src, got, err, c.want)
		}
	}
}

func TestLiterals(t *testing.T) {
	e := MustParse(`kernel.ts_offsets == "per-pair" || "none" != kernel.ts_offsets || kernel.ts_offsets in ["a", 3, "b"] || x == "no"`)
	got := e.Literals("kernel.ts_offsets")
	if want := []string{"per-pair", "none", "a", "b"}; !slices.Equal(got, want) {
		t.Errorf("Literals = %q, want %q", got, want)
	}
}

// A duration is compared as seconds exactly as the literal is written:
// time.Duration.Seconds rounds twice, and 1140ms was not 1.14.
func TestDurationSecondsExact(t *testing.T) {
	for ms := 1; ms <= 600_000; ms++ {
		got, ok := Str(strconv.Itoa(ms) + "ms").number()
		want, _ := strconv.ParseFloat(strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64), 64)
		if !ok || got != want {
			t.Fatalf("%dms is %v seconds, want %v", ms, got, want)
		}
	}
	e := MustParse("x == 1.14")
	if ok, err := e.Bool(func(string) (Value, bool) { return Str("1140ms"), true }); err != nil || !ok {
		t.Errorf("1140ms == 1.14: %v, %v; want true", ok, err)
	}
}

func TestNumericNames(t *testing.T) {
	for src, want := range map[string]string{
		`a`:                          "a",
		`a == "x"`:                   "",
		`a != b`:                     "",
		`a > 1`:                      "a",
		`1 <= -a`:                    "a",
		`!a || b && c == "x"`:        "a b",
		`(a + b) * 2 == c`:           "a b",
		`a in ["x"] && b not in [1]`: "",
		`x == 1 && y`:                "y",
	} {
		got := strings.Join(MustParse(src).NumericNames(), " ")
		if got != want {
			t.Errorf("%s: %q, want %q", src, got, want)
		}
	}
}
