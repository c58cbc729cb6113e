package vm

import (
	"os"
	"strings"
	"testing"
	"time"
)

// Two vm runs (or a run and a vm) given one --out: the second refuses the
// folder instead of removing the first one's results as it starts; once the
// first is done, the folder is free again.
func TestSecondRunRefusesTheFolder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: registers runs under /run/twlab")
	}
	dir := t.TempDir()
	first, err := claimOut(dir, "a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if unreg, err := claimOut(dir, "b.yaml"); err == nil || !strings.Contains(err.Error(), "is writing into it") || !strings.Contains(err.Error(), "vm:a.yaml") {
		if unreg != nil {
			unreg()
		}
		t.Errorf("second claim of %s: %v; want a refusal naming the first run", dir, err)
	}
	first()
	again, err := claimOut(dir, "b.yaml")
	if err != nil {
		t.Fatalf("the folder after the first run ended: %v", err)
	}
	again()
}
