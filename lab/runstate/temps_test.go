package runstate

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// deadPID is the PID of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func touch(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRemoveTemps: the temporary files a killed run left in its results
// folder, and of its state files, go; those of live writers and every other
// file stay. (No root: the registry folders are the test's own.)
func TestRemoveTemps(t *testing.T) {
	oldDir, oldLabs := Dir, LabsDir
	t.Cleanup(func() { Dir, LabsDir = oldDir, oldLabs })
	base := t.TempDir()
	Dir, LabsDir = filepath.Join(base, "runs"), filepath.Join(base, "labs")
	results := filepath.Join(base, "results")
	tmp := filepath.Join(base, "tmp")
	t.Setenv("TMPDIR", tmp) // where `up -d` logs
	dead, me := deadPID(t), os.Getpid()
	gone := []string{
		filepath.Join(tmp, fmt.Sprintf("twlab-up-%d.log", dead)),
		filepath.Join(results, fmt.Sprintf(".run.json.tmp-%d-123", dead)),
		filepath.Join(results, fmt.Sprintf(".timeseries.csv.tmp-%d-9", dead)),
		filepath.Join(results, "pcap", fmt.Sprintf(".cell-01-server.pcap.tmp-%d-77", dead)),
		filepath.Join(Dir, fmt.Sprintf(".dd01.%d.tmp", dead)),
		filepath.Join(LabsDir, ".dd01.tmp"),
		filepath.Join(tmp, UpLogNew+"4711.log"), // an up -d killed before its child ran (aged below)
	}
	stay := []string{
		filepath.Join(results, "run.json"),
		filepath.Join(results, fmt.Sprintf(".report.html.tmp-%d-5", me)), // a live writer
		filepath.Join(results, ".notes.tmp-x-1"),                         // not twlab's name
		filepath.Join(results, fmt.Sprintf(".run.json.tmp%d", 42)),       // an old name, recent
		filepath.Join(Dir, fmt.Sprintf(".dd02.%d.tmp", me)),
		filepath.Join(tmp, fmt.Sprintf("twlab-up-%d.log", me)), // a lab still up
		filepath.Join(tmp, UpLogNew+"2804.log"),                // an up -d starting its child now
	}
	for _, p := range append(slices.Clone(gone), stay...) {
		touch(t, p)
	}
	old := time.Now().Add(-2 * time.Minute)
	os.Chtimes(filepath.Join(tmp, UpLogNew+"4711.log"), old, old)
	b, _ := json.Marshal(State{RunID: "dd01", PID: dead, Results: results})
	touch(t, filepath.Join(Dir, "dd01.json"))
	os.WriteFile(filepath.Join(Dir, "dd01.json"), b, 0o644)

	removed := append(RemoveTemps("dd01"), removeStateTemps()...)
	slices.Sort(removed)
	want := slices.Clone(gone)
	slices.Sort(want)
	if !slices.Equal(removed, want) {
		t.Errorf("removed %v\nwant %v", removed, want)
	}
	for _, p := range gone {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left", p)
		}
	}
	for _, p := range stay {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
}
