package load_test

import (
	"slices"
	"testing"

	"github.com/twlab/twlab/lab/load"
	"github.com/twlab/twlab/lab/result"
)

// TestFailureClassesAreSchema: the classes are the keys of run.json's
// failures, which lab/result names for its readers; they must agree.
func TestFailureClassesAreSchema(t *testing.T) {
	if !slices.Equal(load.FailureClasses, result.FailureClasses) {
		t.Errorf("load.FailureClasses %v, result.FailureClasses %v", load.FailureClasses, result.FailureClasses)
	}
}
