package scenario_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/twlab/twlab/lab/scenario"
	"github.com/twlab/twlab/scenarios"
)

var updatePlans = flag.Bool("update-plans", false, "rewrite testdata/plans.golden")

// planVariants are --set and --only combinations that reach the parts of
// the compiler a shipped scenario alone does not: other modes, overrides of
// a sysctl and of a matrix axis, a selection.
var planVariants = [][]string{
	nil,
	{"lvs.mode=fullnat", "lvs.vip=198.18.0.200"},
	{"server.close=client", "load.order=random"},
	{"server.accept=stalled"},
	{"clients.ts_skew=kernel"},
	{"server.net.ipv4.tcp_rfc1337=1", "load.connections=7"},
	{"only:server.net.ipv4.tcp_rfc1337 == 0"},
}

// TestCompiledPlansGolden pins what every shipped scenario compiles to —
// the resolved scenario as run.json embeds it, each cell's matrix, every
// variable expressions see, and which expectations apply — so that a
// change to the decoder or to the typed modes that alters a plan shows up
// as a diff. go test ./lab/scenario -run TestCompiledPlansGolden
// -update-plans rewrites the file.
func TestCompiledPlansGolden(t *testing.T) {
	var b strings.Builder
	for _, name := range scenarios.Names() {
		src, _ := scenarios.Read(name)
		for _, v := range planVariants {
			var opt scenario.Options
			for _, s := range v {
				if q, ok := strings.CutPrefix(s, "only:"); ok {
					opt.Only = q
				} else {
					opt.Set = append(opt.Set, s)
				}
			}
			fmt.Fprintf(&b, "=== %s %q\n", name, v)
			plan, err := scenario.Load(name, src, opt)
			if err != nil {
				fmt.Fprintf(&b, "error: %v\n", err)
				continue
			}
			dumpPlan(t, &b, plan)
		}
	}
	got := b.String()
	const path = "testdata/plans.golden"
	if *updatePlans {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update-plans to create it)", err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("compiled plans differ from %s at line %d:\n got: %s\nwant: %s", path, i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("compiled plans differ from %s in length: %d lines, want %d", path, len(gl), len(wl))
	}
}

func dumpPlan(t *testing.T, b *strings.Builder, plan *scenario.Plan) {
	t.Helper()
	s, err := json.Marshal(plan.Scenario)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(b, "scenario %s\n", s)
	for _, c := range plan.Cells {
		fmt.Fprintf(b, "cell %d %s matrix=%v\n", c.Index, c.ID, c.Matrix)
		cs, err := json.Marshal(c.S)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(b, "  s %s\n", cs)
		keys := make([]string, 0, len(c.Vars))
		for k := range c.Vars {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(b, "  var %s=%s\n", k, c.Vars[k])
		}
		for _, e := range c.Expect {
			when := ""
			if e.When != nil {
				when = e.When.String()
			}
			var asserts []string
			for _, a := range e.Asserts {
				asserts = append(asserts, a.String())
			}
			fmt.Fprintf(b, "  expect %q line %d kernel=%v when=%q assert=%q\n", e.Name, e.Line, e.NeedsKernel, when, asserts)
		}
	}
}
