package runstate_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/runstate"
	"github.com/twlab/twlab/lab/topo"
)

// TestCleanupTakesOnlyLeftovers leaves one namespace of a run that is not
// alive (as after SIGKILL) next to one of a live run: cleanup must remove the
// first and keep the second.
func TestCleanupTakesOnlyLeftovers(t *testing.T) {
	roottest.Skip(t)
	live := roottest.RunID(t) // registered for this test's life
	dead := roottest.RunID(t)
	runstate.Unregister(dead) // its process "died"
	liveNS, deadNS := topo.NSName(live, "server"), topo.NSName(dead, "server")
	for _, n := range []string{liveNS, deadNS} {
		h, err := netnsutil.NewNamed(n)
		if err != nil {
			t.Fatal(err)
		}
		h.Close()
	}
	t.Cleanup(func() { topo.DeleteNamespace(liveNS); topo.DeleteNamespace(deadNS) })

	left, err := runstate.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := left[dead]; !ok {
		t.Errorf("leftovers %v miss the dead run %s", left, dead)
	}
	if _, ok := left[live]; ok {
		t.Errorf("leftovers include the live run %s", live)
	}
	removed, err := runstate.Cleanup(false, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		// Leftovers of other runs on this machine may resist; ours must not.
		if strings.Contains(err.Error(), dead) || strings.Contains(err.Error(), live) {
			t.Fatal(err)
		}
		t.Logf("cleanup of other runs' leftovers: %v", err)
	}
	if !slices.Contains(removed, deadNS) || slices.Contains(removed, liveNS) {
		t.Errorf("removed %v; want %s removed and %s kept", removed, deadNS, liveNS)
	}
	names, _ := topo.ListNamespaces()
	if !slices.Contains(names, liveNS) || slices.Contains(names, deadNS) {
		t.Errorf("namespaces after cleanup: %v", names)
	}
	if !runstate.Alive(live) || runstate.Alive(dead) {
		t.Errorf("Alive: live %v dead %v", runstate.Alive(live), runstate.Alive(dead))
	}
}

func TestRegisterIsExclusive(t *testing.T) {
	roottest.Skip(t)
	id := roottest.RunID(t)
	if err := runstate.Register(id, "again"); err == nil {
		t.Error("registering a live id twice succeeded; concurrent runs could share names")
	}
}

// Two live runs given one results folder: the later one learns of the
// earlier one (and gives way), the earlier one of none; another folder, or
// a run that is gone, is no obstacle.
func TestWritingInto(t *testing.T) {
	roottest.Skip(t)
	dir := t.TempDir()
	register := func() string {
		// A test id re-registered with a results folder (roottest's has none).
		id := roottest.RunID(t)
		runstate.Unregister(id)
		if err := runstate.RegisterRun(id, t.Name(), dir); err != nil {
			t.Fatal(err)
		}
		return id
	}
	first := register()
	time.Sleep(10 * time.Millisecond)
	second := register()
	if st, busy := runstate.WritingInto(second, dir); !busy || st.RunID != first {
		t.Errorf("the later run sees %+v, %v; want run %s", st, busy, first)
	}
	if st, busy := runstate.WritingInto(first, dir); busy {
		t.Errorf("the earlier run sees %+v: it keeps the folder", st)
	}
	if st, busy := runstate.WritingInto(second, dir+"-other"); busy {
		t.Errorf("another folder: %+v", st)
	}
	// A folder inside the first run's (twlab vm writes a folder per kernel
	// below its --out), or a symlink's spelling of it, is the same folder.
	if st, busy := runstate.WritingInto(second, dir+"/4.10.17"); !busy || st.RunID != first {
		t.Errorf("a folder inside the first run's: %+v, %v; want run %s", st, busy, first)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if real, err := runstate.ResultsPath(link); err != nil || real != mustReal(t, dir) {
		t.Errorf("ResultsPath(%s) = %q, %v; want %s", link, real, err, dir)
	}
	runstate.Unregister(first)
	if st, busy := runstate.WritingInto(second, dir); busy {
		t.Errorf("after the first run is gone: %+v", st)
	}

	// A run that stamped its start first but linked its state file last
	// (slowed in between) gives way: it is the one the other did not see.
	late := register()
	path := filepath.Join(runstate.Dir, late+".json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st runstate.State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	st.Started = st.Started.Add(-time.Hour)
	b, _ = json.Marshal(st)
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if o, busy := runstate.WritingInto(late, dir); !busy || o.RunID != second {
		t.Errorf("the run linked last, stamped first, sees %+v, %v; want run %s", o, busy, second)
	}
	if o, busy := runstate.WritingInto(second, dir); busy {
		t.Errorf("the run linked first sees %+v: it keeps the folder", o)
	}
}

func mustReal(t *testing.T, dir string) string {
	t.Helper()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	return real
}
