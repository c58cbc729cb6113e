package tmpfile

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/internal/proc"
)

func TestCreateNamesTheWriter(t *testing.T) {
	f, err := Create(t.TempDir(), "run.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	name := filepath.Base(f.Name())
	if want := fmt.Sprintf(".run.json.tmp-%d-", os.Getpid()); !strings.HasPrefix(name, want) {
		t.Errorf("%s, want %s…", name, want)
	}
	if stale(f.Name()) {
		t.Error("this process's own file taken for stale")
	}
}

func TestSweep(t *testing.T) {
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead, me := cmd.Process.Pid, os.Getpid()
	dir := t.TempDir()
	files := map[string]bool{ // name: removed by Sweep(dir, "")
		fmt.Sprintf(".run.json.tmp-%d-123", dead):  true,
		fmt.Sprintf(".report.html.tmp-%d-9", dead): true,
		".cells.csv.tmp4242":                       true,  // old name, old file
		".summary.md.tmp4243":                      false, // old name, recent
		fmt.Sprintf(".run.json.tmp-%d-124", me):    false,
		fmt.Sprintf(".run.json.tmp-%d-x", dead):    false,
		fmt.Sprintf("run.json.tmp-%d-1", dead):     false,
		".tmp-1-1":                                 false,
		fmt.Sprintf(".[x].tmp-%d-5", dead):         true,
		"run.json":                                 false,
	}
	for name := range files {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(filepath.Join(dir, ".cells.csv.tmp4242"), old, old)
	os.Mkdir(filepath.Join(dir, fmt.Sprintf(".pcap.tmp-%d-1", dead)), 0o755) // not a file
	if got := Sweep(dir, "run.json"); len(got) != 1 || filepath.Base(got[0]) != fmt.Sprintf(".run.json.tmp-%d-123", dead) {
		t.Errorf("Sweep of run.json removed %v", got)
	}
	if got := Sweep(dir, "[x]"); len(got) != 1 {
		t.Errorf("Sweep of a name with glob characters removed %v", got)
	}
	Sweep(dir, "")
	ents, _ := os.ReadDir(dir)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	for name, gone := range files {
		if slices.Contains(left, name) == gone {
			t.Errorf("%s: removed %v, want %v", name, !slices.Contains(left, name), gone)
		}
	}
	if !slices.Contains(left, fmt.Sprintf(".pcap.tmp-%d-1", dead)) {
		t.Error("a folder was removed")
	}
}

// A writer that exited and waits to be reaped writes no more: its file is
// stale (cleanup kept one for ever when the killed run was a zombie).
func TestZombieWriterIsGone(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Skip("cannot start a process:", err)
	}
	defer cmd.Wait()
	pid := cmd.Process.Pid
	for i := 0; i < 200 && !proc.Zombie(pid); i++ {
		time.Sleep(5 * time.Millisecond)
	}
	if alive(pid) {
		t.Error("an exited, unreaped writer counts as alive")
	}
	if !alive(os.Getpid()) {
		t.Error("this process counts as gone")
	}
}
