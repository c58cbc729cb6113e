package runner

import (
	"strings"
	"testing"

	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/scenario"
)

// A cell where no connect succeeded has no latency: an assertion on it says
// so instead of passing on the 0s run.json holds; a misspelt figure gets a
// suggestion, and a name twlab never measures is not blamed on the kernel.
func TestEvaluateNoLatencyAndTypos(t *testing.T) {
	src := `name: t
clients: {count: 2}
load: {connections: 10, duration: 2s}
expect:
  - name: e
    assert:
      - load.connect_ms.p99 < 100
      - load.faild == 0
      - syn.unanswerd == 0
      - load.bogus == 0
      - load.failed == 64
`
	plan, err := scenario.Load("t.yaml", []byte(src), scenario.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rc := &result.Cell{Load: &result.Load{Attempts: 64, Failed: 64, Failures: map[string]int{"timeout": 64}},
		SYN: &result.SYN{In: 118, Unanswered: 106}}
	got := Evaluate(plan.Cells[0], rc, nil)
	want := []string{
		"no connect succeeded in this cell: there is no latency",
		"did you mean load.failed?",
		"did you mean syn.unanswered?",
		"not a figure twlab measures",
		"",
	}
	if len(got) != len(want) {
		t.Fatalf("%d results: %+v", len(got), got)
	}
	for i, w := range want {
		if w == "" {
			if got[i].Error != "" || !got[i].OK {
				t.Errorf("%s: %+v, want ok", got[i].Expr, got[i])
			}
			continue
		}
		if got[i].OK || !strings.Contains(got[i].Error, w) {
			t.Errorf("%s: ok %v, error %q; want an error with %q", got[i].Expr, got[i].OK, got[i].Error, w)
		}
	}
}
