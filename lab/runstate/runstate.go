// Package runstate records which runs are alive, so that `twlab cleanup` and
// the start of the next run can tell a killed run's leftovers from a run that
// is still going, and never touch what twlab did not create.
package runstate

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twlab/twlab/lab/internal/proc"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/tmpfile"
	"github.com/twlab/twlab/lab/topo"
	"golang.org/x/sys/unix"
)

// Dir holds one file per live run.
var Dir = "/run/twlab/runs"

// State is what a live run records about itself.
type State struct {
	RunID    string    `json:"run_id"`
	PID      int       `json:"pid"`
	Started  time.Time `json:"started"`
	Scenario string    `json:"scenario"`
	// ProcStart guards against a PID reused by another process.
	ProcStart uint64 `json:"proc_start"`
	// Results is the run's results folder (absolute): the temporary files
	// a killed run was writing there are removed with its other leftovers.
	Results string `json:"results,omitempty"`
}

// NewRunID picks a 4-hex-digit id that no namespace or live run uses. Link
// names must fit IFNAMSIZ, so the id stays short; uniqueness is checked.
// (Test labs use ids starting with 't', which hex never produces.)
func NewRunID() (string, error) {
	for i := 0; i < 64; i++ {
		b := make([]byte, 2)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		id := hex.EncodeToString(b)
		if !InUse(id) {
			return id, nil
		}
	}
	return "", errors.New("no free run id after 64 tries; run `twlab cleanup`")
}

// InUse reports whether a namespace or state file carries id.
func InUse(id string) bool {
	if _, err := os.Stat(filepath.Join(Dir, id+".json")); err == nil {
		return true
	}
	names, _ := topo.ListNamespaces()
	for _, n := range names {
		if rid, ok := topo.RunIDOf(n); ok && rid == id {
			return true
		}
	}
	return false
}

// Register records this process as the owner of id. Registering with an id
// already in use fails (O_EXCL), which is the lock between concurrent runs.
func Register(id, scenario string) error { return RegisterRun(id, scenario, "") }

// RegisterRun is Register for a run that writes into the results folder
// results.
func RegisterRun(id, scenario, results string) error {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return fmt.Errorf("run state: %w", err)
	}
	st := State{RunID: id, PID: os.Getpid(), Started: time.Now().UTC(), Scenario: scenario, ProcStart: proc.Start(os.Getpid()), Results: results}
	b, _ := json.Marshal(st)
	// Write the whole file under a private name, then link(2) it into place:
	// the link fails if the id is taken, and nobody ever sees the state file
	// empty (an empty file would read as a dead run, and a concurrent cleanup
	// would take a live run's namespaces).
	tmp := filepath.Join(Dir, fmt.Sprintf(".%s.%d.tmp", id, os.Getpid()))
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("run state %s: %w", id, err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, filepath.Join(Dir, id+".json")); err != nil {
		return fmt.Errorf("run state %s: %w", id, err)
	}
	return nil
}

// WritingInto returns the live run other than id that registered results
// as its results folder first, if there is one: two runs given one --out
// deleted each other's captures, interleaved timeseries.csv, and the later
// one reported success for a run.json the other overwrote. "First" is the
// order in which the state files were linked into place (their inode's
// change time, then the id), not the start time written in them: a run
// that stamped its start and was slow to link would see the other as
// younger while the other had not seen it at all, and both went ahead.
// Checked after linking, exactly one of two runs gives way.
func WritingInto(id, results string) (*State, bool) {
	type entry struct {
		st     State
		linked int64 // ns
	}
	read := func(name string) (*entry, bool) {
		path := filepath.Join(Dir, name)
		var sb unix.Stat_t
		if unix.Stat(path, &sb) != nil {
			return nil, false
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, false
		}
		e := &entry{linked: sb.Ctim.Nano()}
		if json.Unmarshal(b, &e.st) != nil {
			return nil, false
		}
		return e, true
	}
	me, ok := read(id + ".json")
	if !ok || results == "" {
		return nil, false
	}
	ents, _ := os.ReadDir(Dir)
	for _, e := range ents {
		other, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(other, ".") || other == id {
			continue
		}
		o, ok := read(e.Name())
		if !ok || !nested(o.st.Results, results) || !running(o.st.PID, o.st.ProcStart) {
			continue
		}
		if o.linked < me.linked || o.linked == me.linked && o.st.RunID < id {
			return &o.st, true
		}
	}
	return nil, false
}

// nested says whether two results folders are one, or one holds the other:
// twlab vm writes into a folder per kernel below its --out and clears it as
// the kernel starts, so a run into m/vm/4.10.17 beside a vm into m/vm lost
// its files.
func nested(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	return a == b || strings.HasPrefix(a, b+string(filepath.Separator)) || strings.HasPrefix(b, a+string(filepath.Separator))
}

// ResultsPath is the path a run registers for its results folder dir:
// absolute, and through symlinks where the folder exists already (two
// spellings of one folder are one folder).
func ResultsPath(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real, nil
	}
	return abs, nil
}

// CheckResults is WritingInto as an error for the user: which run writes
// into the folder dir (as given; abs is its absolute path), and what to do.
func CheckResults(id, dir, abs string) error {
	other, busy := WritingInto(id, abs)
	if !busy {
		return nil
	}
	where := "into it"
	if other.Results != abs {
		where = "into " + other.Results
	}
	return fmt.Errorf("results folder %s: run %s (pid %d, %s, started %s) is writing %s; give another --out, or none for a new folder",
		dir, other.RunID, other.PID, other.Scenario, other.Started.Local().Format("15:04:05"), where)
}

// Unregister removes id's state file.
func Unregister(id string) error {
	err := os.Remove(filepath.Join(Dir, id+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Alive reports whether the run id is registered by a process that still
// runs (same PID and same process start time). When the run's file is gone
// or unreadable, an interactive lab's own file, which names its owner too,
// decides: a live `twlab up` whose run file was lost had its namespaces
// taken by the next cleanup and ran on with nothing listing it.
func Alive(id string) bool {
	if b, err := os.ReadFile(filepath.Join(Dir, id+".json")); err == nil {
		var st State
		if json.Unmarshal(b, &st) == nil && st.PID > 0 {
			return running(st.PID, st.ProcStart)
		}
	}
	b, err := os.ReadFile(filepath.Join(LabsDir, id+".json"))
	if err != nil {
		return false
	}
	var l Lab
	// Without a start time a PID proves nothing: it may have been reused.
	return json.Unmarshal(b, &l) == nil && l.PID > 0 && l.ProcStart != 0 && running(l.PID, l.ProcStart)
}

// running says whether pid runs and, if start is known, is the process
// that started then (not a reused PID).
func running(pid int, start uint64) bool {
	if !exists(pid) || proc.Zombie(pid) {
		return false
	}
	return start == 0 || proc.Start(pid) == start
}

// exists says whether process pid is there (EPERM: someone else's).
func exists(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// Leftovers lists namespaces of runs that are not alive, by run id.
func Leftovers() (map[string][]string, error) {
	names, err := topo.ListNamespaces()
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, n := range names {
		id, ok := topo.RunIDOf(n)
		if !ok || Alive(id) {
			continue
		}
		out[id] = append(out[id], n)
	}
	// State files of dead runs without namespaces are leftovers too.
	ents, _ := os.ReadDir(Dir)
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if ok && !strings.HasPrefix(id, ".") && !Alive(id) {
			if _, seen := out[id]; !seen {
				out[id] = nil
			}
		}
	}
	return out, nil
}

// RemoveTemps removes the temporary files a run left in its results folder
// (and pcap/ in it) when their writer is gone: a SIGKILL between writing a
// file and renaming it into place leaves one. A live writer's files stay.
func RemoveTemps(id string) []string {
	b, err := os.ReadFile(filepath.Join(Dir, id+".json"))
	if err != nil {
		return nil
	}
	var st State
	if json.Unmarshal(b, &st) != nil || st.Results == "" || !filepath.IsAbs(st.Results) {
		return nil
	}
	out := append(tmpfile.Sweep(st.Results, ""), tmpfile.Sweep(filepath.Join(st.Results, "pcap"), "")...)
	if p, ok := finishDeadRun(st); ok {
		out = append(out, fmt.Sprintf("the \"running\" status of %s (its twlab process is gone; now \"interrupted\")", p))
	}
	return out
}

// finishDeadRun marks the run.json of a run whose process died without
// finishing it (SIGKILL, power loss) as interrupted, with the reason: it
// said "running" for ever, and report and compare showed it so.
func finishDeadRun(st State) (string, bool) {
	p := filepath.Join(st.Results, "run.json")
	r, err := result.ReadRun(p)
	if err != nil || r.RunID != st.RunID || r.Status != result.RunRunning || len(r.Warnings) > 0 {
		return "", false
	}
	r.Status = result.RunInterrupted
	if r.Error == "" {
		r.Error = "the twlab process ended without finishing the run (killed, or the machine stopped); the cells recorded are complete, the rest never ran"
	}
	if r.WriteJSON(p) != nil {
		return "", false
	}
	return p, true
}

// removeStateTemps removes what a kill leaves of the state files' own
// writes: Register's .ID.PID.tmp of a dead PID, SaveLab's .ID.tmp of a
// lab whose run is not alive.
func removeStateTemps() []string {
	var removed []string
	ents, _ := os.ReadDir(Dir)
	for _, e := range ents {
		rest, ok := strings.CutSuffix(strings.TrimPrefix(e.Name(), "."), ".tmp")
		i := strings.LastIndexByte(rest, '.')
		if !ok || !strings.HasPrefix(e.Name(), ".") || i < 0 {
			continue
		}
		pid, err := strconv.Atoi(rest[i+1:])
		if err != nil || pid <= 0 || exists(pid) && !proc.Zombie(pid) {
			continue
		}
		if p := filepath.Join(Dir, e.Name()); os.Remove(p) == nil {
			removed = append(removed, p)
		}
	}
	// The logs of detached `twlab up` processes that are gone (one that
	// ended cleanly removed its own).
	logs, _ := filepath.Glob(filepath.Join(os.TempDir(), "twlab-up-*.log"))
	for _, p := range logs {
		if strings.HasPrefix(filepath.Base(p), UpLogNew) {
			// An up -d killed before it could name its log by the child:
			// a live one renames it within milliseconds.
			if st, err := os.Lstat(p); err != nil || time.Since(st.ModTime()) < time.Minute {
				continue
			}
		} else if pid, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "twlab-up-"), ".log")); err != nil || pid <= 0 || exists(pid) && !proc.Zombie(pid) { // a zombie writes no more
			continue
		}
		if st, err := os.Lstat(p); err == nil && st.Mode().IsRegular() && os.Remove(p) == nil {
			removed = append(removed, p)
		}
	}
	ents, _ = os.ReadDir(LabsDir)
	for _, e := range ents {
		id, ok := strings.CutSuffix(strings.TrimPrefix(e.Name(), "."), ".tmp")
		if !ok || !strings.HasPrefix(e.Name(), ".") || id == "" || Alive(id) {
			continue
		}
		if p := filepath.Join(LabsDir, e.Name()); os.Remove(p) == nil {
			removed = append(removed, p)
		}
	}
	return removed
}

// Cleanup removes the leftovers of dead runs (all runs' when force is set,
// for a machine where no twlab should be running) and returns what it
// removed: namespaces, and temporary files of writers that are gone.
func Cleanup(force bool, log *slog.Logger) ([]string, error) {
	removed := removeStateTemps()
	var errs []error
	if force {
		// The owners of interactive labs are stopped first: with their
		// state gone, nothing could reach them any more (down would say
		// "no lab is up" while they ran on).
		if labs, err := Labs(); err == nil {
			for _, l := range labs {
				for _, o := range Occupants(l) {
					log.Warn("a process inside the lab's namespaces keeps running after it, in a namespace without a name", "lab", l.RunID, "pid", o.PID, "command", o.Comm, "node", o.Node)
				}
				if err := StopLab(l, 5*time.Second); err != nil {
					errs = append(errs, err)
				}
				removed = append(removed, "lab "+l.RunID)
			}
		}
		// Live runs are stopped as Ctrl-C stops them: each tears its lab
		// down and records itself interrupted. (Their state was removed
		// under them, and their run.json marked interrupted "because the
		// process is gone" while it ran on and finished.)
		removed = append(removed, stopRuns(10*time.Second, log)...)
		names, err := topo.ListNamespaces()
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if err := topo.DeleteNamespace(n); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, n)
		}
		ents, _ := os.ReadDir(Dir)
		for _, e := range ents {
			id, ok := strings.CutSuffix(e.Name(), ".json")
			if ok && Alive(id) {
				continue // it did not stop in time; its files are its own
			}
			if ok {
				removed = append(removed, RemoveTemps(id)...)
			}
			os.Remove(filepath.Join(Dir, e.Name()))
		}
		removed = append(removed, removeNstat()...)
		return removed, errors.Join(errs...)
	}
	left, err := Leftovers()
	if err != nil {
		return nil, err
	}
	for id, nss := range left {
		removed = append(removed, RemoveTemps(id)...)
		for _, n := range nss {
			if err := topo.DeleteNamespace(n); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, n)
			log.Debug("removed leftover namespace", "netns", n)
		}
		if _, err := os.Stat(filepath.Join(Dir, id+".json")); err == nil {
			if err := Unregister(id); err != nil {
				errs = append(errs, err)
			} else {
				removed = append(removed, "the state of run "+id)
			}
		}
	}
	// A dead lab's file outlived its namespaces (down or the loop above
	// took them): listing the labs forgets such a lab.
	Labs()
	removed = append(removed, removeNstat()...)
	return removed, errors.Join(errs...)
}

// stopRuns sends SIGTERM to every live run and waits up to timeout for
// them to end; it returns what it stopped.
func stopRuns(timeout time.Duration, log *slog.Logger) []string {
	ents, _ := os.ReadDir(Dir)
	var live []State
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(id, ".") || !Alive(id) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(Dir, e.Name()))
		var st State
		if err != nil || json.Unmarshal(b, &st) != nil || st.PID <= 0 || st.PID == os.Getpid() {
			continue
		}
		if unix.Kill(st.PID, syscall.SIGTERM) == nil {
			live = append(live, st)
		}
	}
	var out []string
	deadline := time.Now().Add(timeout)
	for _, st := range live {
		for time.Now().Before(deadline) && Alive(st.RunID) {
			time.Sleep(50 * time.Millisecond)
		}
		if Alive(st.RunID) {
			log.Warn("a live run did not stop in time; its namespaces are removed under it", "run", st.RunID, "pid", st.PID, "scenario", st.Scenario)
			continue
		}
		out = append(out, fmt.Sprintf("run %s (pid %d, %s), after stopping it", st.RunID, st.PID, st.Scenario))
	}
	return out
}

// removeNstat removes the nstat histories of labs that are gone: an nstat
// run by `twlab exec` that ended after `down` wrote its file again.
func removeNstat() []string {
	var out []string
	hist, _ := filepath.Glob(filepath.Join(LabsDir, "*.nstat"))
	for _, h := range hist {
		id, _, _ := strings.Cut(filepath.Base(h), ".")
		if _, err := os.Stat(filepath.Join(LabsDir, id+".json")); errors.Is(err, os.ErrNotExist) && !Alive(id) && os.Remove(h) == nil {
			out = append(out, h)
		}
	}
	return out
}

// UpLogNew begins the name of a detached up's log before its child runs.
const UpLogNew = "twlab-up-new-"

// UpLogPath is where the detached `twlab up` process pid logs: named by its
// PID, so that cleanup can tell a dead one's log.
func UpLogPath(pid int) string {
	return filepath.Join(os.TempDir(), "twlab-up-"+strconv.Itoa(pid)+".log")
}
