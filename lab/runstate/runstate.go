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
	"time"

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
func Register(id, scenario string) error {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return fmt.Errorf("run state: %w", err)
	}
	st := State{RunID: id, PID: os.Getpid(), Started: time.Now().UTC(), Scenario: scenario, ProcStart: procStart(os.Getpid())}
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

// Unregister removes id's state file.
func Unregister(id string) error {
	err := os.Remove(filepath.Join(Dir, id+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Alive reports whether the run id is registered by a process that still
// runs (same PID and same process start time).
func Alive(id string) bool {
	b, err := os.ReadFile(filepath.Join(Dir, id+".json"))
	if err != nil {
		return false
	}
	var st State
	if json.Unmarshal(b, &st) != nil || st.PID <= 0 {
		return false
	}
	if unix.Kill(st.PID, 0) != nil {
		return false
	}
	return st.ProcStart == 0 || procStart(st.PID) == st.ProcStart
}

// procStart is the process start time in clock ticks (field 22 of stat).
func procStart(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
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

// Cleanup removes the leftovers of dead runs (all runs' when force is set,
// for a machine where no twlab should be running) and returns what it removed.
func Cleanup(force bool, log *slog.Logger) ([]string, error) {
	var removed []string
	var errs []error
	if force {
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
			os.Remove(filepath.Join(Dir, e.Name()))
		}
		return removed, errors.Join(errs...)
	}
	left, err := Leftovers()
	if err != nil {
		return nil, err
	}
	for id, nss := range left {
		for _, n := range nss {
			if err := topo.DeleteNamespace(n); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, n)
			log.Debug("removed leftover namespace", "netns", n)
		}
		if err := Unregister(id); err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}
