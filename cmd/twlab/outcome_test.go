package main

import "testing"

// The exit code of a run of several scenarios is decided once: a scenario
// whose cells were all n/a does not hide another's failure.
func TestRunOutcomeCode(t *testing.T) {
	for _, tc := range []struct {
		o    runOutcome
		want int
	}{
		{runOutcome{}, exitOK},
		{runOutcome{nothing: true}, exitNothing},
		{runOutcome{nothing: true, failed: true}, exitFailed},
		{runOutcome{failed: true, env: true}, exitEnv},
		{runOutcome{failed: true, input: true}, exitUsage},
		{runOutcome{failed: true, nothing: true, stopped: true}, exitStopped},
	} {
		if got := tc.o.code(); got != tc.want {
			t.Errorf("%+v: exit %d, want %d", tc.o, got, tc.want)
		}
	}
}
