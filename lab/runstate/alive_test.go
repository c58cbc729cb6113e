package runstate

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/internal/proc"
	"github.com/twlab/twlab/lab/topo"
)

func tempState(t *testing.T) {
	t.Helper()
	oldDir, oldLabs := Dir, LabsDir
	t.Cleanup(func() { Dir, LabsDir = oldDir, oldLabs })
	base := t.TempDir()
	Dir, LabsDir = filepath.Join(base, "runs"), filepath.Join(base, "labs")
	t.Setenv("TMPDIR", filepath.Join(base, "tmp"))
}

// A live `up` whose run file was lost (or cut short) is alive by its lab
// file: cleanup took its namespaces and it ran on, listed nowhere.
func TestAliveByLabFile(t *testing.T) {
	tempState(t)
	if err := SaveLab(&Lab{RunID: "aa01", Scenario: "s.yaml"}); err != nil {
		t.Fatal(err)
	}
	if !Alive("aa01") {
		t.Fatal("a lab saved by this live process, with no run file: not alive")
	}
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(Dir, "aa01.json"), []byte(`{"run_id":"aa`), 0o644); err != nil {
		t.Fatal(err)
	}
	if !Alive("aa01") {
		t.Error("a truncated run file hid the live owner its lab file names")
	}
	// A lab file without a start time proves nothing (the PID may be reused).
	b, _ := json.Marshal(Lab{RunID: "aa02", PID: os.Getpid()})
	os.WriteFile(filepath.Join(LabsDir, "aa02.json"), b, 0o644)
	if Alive("aa02") {
		t.Error("a lab file with a PID but no start time counted as alive")
	}
	// The lab of a process that is gone is dead.
	b, _ = json.Marshal(Lab{RunID: "aa03", PID: deadPID(t), ProcStart: 1})
	os.WriteFile(filepath.Join(LabsDir, "aa03.json"), b, 0o644)
	if Alive("aa03") {
		t.Error("the lab of an exited process counted as alive")
	}
}

// cleanup --force stops a live run as Ctrl-C would, and only then removes
// its state; it said the run's process was gone while the run went on.
func TestForceStopsLiveRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("cleanup --force lists network namespaces: needs root")
	}
	tempState(t)
	// Cleanup --force removes every twlab namespace it finds: the real
	// folder holds other runs' (a parallel test package's, another
	// session's), so it looks at an empty one of its own.
	oldNS := topo.NetnsDir
	topo.NetnsDir = t.TempDir()
	t.Cleanup(func() { topo.NetnsDir = oldNS })
	// A stand-in run: a process that is registered and ends on SIGTERM.
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("cannot start a process:", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	defer cmd.Process.Kill()
	st := State{RunID: "ab01", PID: cmd.Process.Pid, ProcStart: proc.Start(cmd.Process.Pid), Scenario: "s.yaml"}
	b, _ := json.Marshal(st)
	os.MkdirAll(Dir, 0o755)
	if err := os.WriteFile(filepath.Join(Dir, "ab01.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if !Alive("ab01") {
		t.Fatal("the stand-in run is not alive")
	}
	removed, err := Cleanup(true, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("cleanup --force returned and the live run still runs")
	}
	if !strings.Contains(strings.Join(removed, "\n"), "run ab01 (pid") {
		t.Errorf("cleanup did not say it stopped run ab01: %q", removed)
	}
	if _, err := os.Stat(filepath.Join(Dir, "ab01.json")); !os.IsNotExist(err) {
		t.Errorf("the stopped run's state file stays: %v", err)
	}
}

// A lab whose file cannot be read (cut short, edited by hand) is still a
// lab: `labs` lists it and `down` removes its namespaces. It was skipped,
// and the lab ran on, listed nowhere.
func TestUnreadableLabFile(t *testing.T) {
	tempState(t)
	oldNS := topo.NetnsDir
	topo.NetnsDir = t.TempDir()
	t.Cleanup(func() { topo.NetnsDir = oldNS })
	for _, n := range []string{"twlab-ab07-c1", "twlab-ab07-server", "twlab-ab08-c1"} {
		if err := os.WriteFile(filepath.Join(topo.NetnsDir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(LabsDir, 0o755)
	if err := os.WriteFile(filepath.Join(LabsDir, "ab07.json"), []byte(`{"run_id":"ab0`), 0o644); err != nil {
		t.Fatal(err)
	}
	labs, err := Labs()
	if err != nil {
		t.Fatal(err)
	}
	if len(labs) != 1 || labs[0].RunID != "ab07" {
		t.Fatalf("labs %+v, want ab07 alone", labs)
	}
	l := labs[0]
	if l.Broken == "" || !l.Dead || len(l.Nodes) != 2 || l.PID != 0 {
		t.Errorf("lab %+v: want it broken, dead, with its 2 namespaces and no owner", l)
	}
	if err := StopLab(l, time.Second); err != nil {
		t.Fatal(err)
	}
	left, _ := topo.ListNamespaces()
	if len(left) != 1 || left[0] != "twlab-ab08-c1" {
		t.Errorf("after down: %v, want only the other run's namespace", left)
	}
	if _, err := os.Stat(filepath.Join(LabsDir, "ab07.json")); !os.IsNotExist(err) {
		t.Errorf("the unreadable lab file stays: %v", err)
	}
}
