package result

import (
	"encoding/json"
	"strings"
)

// ScenarioView is what readers of a run use of its scenario. run.json keeps
// the scenario as lab/scenario writes it (Run.Scenario, raw JSON: the
// scenario's own format, echoed byte for byte); the view is decoded from it
// so that a reader needs neither that package nor a walk through maps.
type ScenarioView struct {
	Name        string       `json:"name"`
	Description string       `json:"description"`
	Matrix      []MatrixAxis `json:"matrix"` // in scenario order: the first axis varies slowest
}

// MatrixAxis is one axis of the scenario's matrix (its values are in the
// cells' Matrix).
type MatrixAxis struct {
	Key string `json:"key"`
}

// ScenarioView decodes what the view holds from r.Scenario. Whatever does
// not fit (an untrusted file's odd types) is left zero and the rest kept, as
// a reader would rather show a run without its description than not at all.
func (r *Run) ScenarioView() ScenarioView {
	var v ScenarioView
	if len(r.Scenario) > 0 {
		json.Unmarshal(r.Scenario, &v)
	}
	// The scenario is kept raw, past the reader's string checks: its text
	// gets them here (an ESC in the name reached compare's terminal).
	v.Name = clip(strings.Join(strings.Fields(Printable(v.Name)), " "), 200)
	v.Description = clip(Printable(v.Description), MaxRunString)
	for i := range v.Matrix {
		v.Matrix[i].Key = clip(strings.Join(strings.Fields(Printable(v.Matrix[i].Key)), " "), 200)
	}
	return v
}
