package runstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twlab/twlab/lab/internal/proc"
	"github.com/twlab/twlab/lab/topo"
	"golang.org/x/sys/unix"
)

// LabsDir holds one file per lab brought up with `twlab up`.
var LabsDir = "/run/twlab/labs"

// Lab describes a running interactive lab.
type Lab struct {
	RunID    string            `json:"run_id"`
	PID      int               `json:"pid"`
	Scenario string            `json:"scenario"`
	Cell     string            `json:"cell"`
	Target   string            `json:"target"` // what clients dial, e.g. 198.18.1.2:8080
	Started  time.Time         `json:"started"`
	Nodes    []LabNode         `json:"nodes"`
	Knobs    map[string]string `json:"knobs,omitempty"`
	// ProcStart is the owner's start time (as State's): with it the lab's
	// file proves its owner alive when the run's file is lost.
	ProcStart uint64 `json:"proc_start,omitempty"`
	// Broken says why the lab's file could not be read; the rest was
	// pieced together from its namespaces and the run's file.
	Broken string `json:"-"`
	// Dead: the owner is gone (killed) while namespaces of the lab remain;
	// `twlab down` removes them, nothing else may use the lab.
	Dead bool `json:"-"`
}

// LabNode is one node of a lab.
type LabNode struct {
	Name  string `json:"name"`
	Netns string `json:"netns"`
	Addr  string `json:"addr"`
	Link  string `json:"link"`
}

// Node finds a node by name.
func (l *Lab) Node(name string) (LabNode, bool) {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return LabNode{}, false
}

// SaveLab records a lab owned by this process.
func SaveLab(l *Lab) error {
	l.PID, l.ProcStart = os.Getpid(), proc.Start(os.Getpid())
	if err := os.MkdirAll(LabsDir, 0o755); err != nil {
		return fmt.Errorf("lab state: %w", err)
	}
	b, _ := json.MarshalIndent(l, "", "  ")
	tmp := filepath.Join(LabsDir, "."+l.RunID+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("lab state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(LabsDir, l.RunID+".json"))
}

// RemoveLab forgets a lab.
func RemoveLab(id string) {
	os.Remove(filepath.Join(LabsDir, id+".json"))
	hist, _ := filepath.Glob(filepath.Join(LabsDir, id+".*.nstat"))
	for _, h := range hist {
		os.Remove(h)
	}
}

// NstatHistory is where nstat run by `twlab exec` in node of lab id keeps
// its history: nstat keeps one file per user by default, so deltas read in
// one node mixed counters of other nodes, other labs and the host.
func NstatHistory(id, node string) string {
	return filepath.Join(LabsDir, id+"."+node+".nstat")
}

// Labs lists the interactive labs: those whose owner is alive, and those
// whose owner died and left namespaces (Dead), which `twlab down` must still
// find. A dead lab with nothing left is forgotten.
func Labs() ([]*Lab, error) {
	ents, err := os.ReadDir(LabsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Lab
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(id, ".") {
			continue
		}
		var l Lab
		b, err := os.ReadFile(filepath.Join(LabsDir, e.Name()))
		if err == nil {
			err = json.Unmarshal(b, &l)
		}
		if err == nil && l.RunID != id {
			err = fmt.Errorf("it names run %q", l.RunID)
		}
		if err != nil {
			// Skipping it hid a live lab from `labs` and `down`: its
			// namespaces and the run's own file still say what it is.
			l = unreadableLab(id, err)
		}
		if !Alive(id) {
			if !l.anyNamespace() {
				RemoveLab(id) // its owner died and cleanup took the rest
				continue
			}
			l.Dead = true
		}
		out = append(out, &l)
	}
	return out, nil
}

// unreadableLab stands for a lab whose file cannot be read: its nodes are
// the namespaces named after the run, its owner the one the run's file
// names, if that can be read.
func unreadableLab(id string, err error) Lab {
	l := Lab{RunID: id, Broken: fmt.Sprintf("its file %s is unreadable: %v", filepath.Join(LabsDir, id+".json"), err)}
	if b, err := os.ReadFile(filepath.Join(Dir, id+".json")); err == nil {
		var st State
		if json.Unmarshal(b, &st) == nil && st.PID > 0 {
			l.PID, l.ProcStart, l.Scenario, l.Started = st.PID, st.ProcStart, st.Scenario, st.Started
		}
	}
	names, _ := topo.ListNamespaces()
	for _, n := range names {
		if rid, ok := topo.RunIDOf(n); ok && rid == id {
			l.Nodes = append(l.Nodes, LabNode{Name: strings.TrimPrefix(n, topo.Prefix+id+"-"), Netns: n})
		}
	}
	return l
}

// anyNamespace says whether a namespace of l is still mounted.
func (l *Lab) anyNamespace() bool {
	for _, n := range l.Nodes {
		if _, err := os.Stat(filepath.Join(topo.NetnsDir, n.Netns)); err == nil {
			return true
		}
	}
	return false
}

// FindLab returns the lab with id (a dead one too, for `twlab down`), or
// the only running lab when id is "".
func FindLab(id string) (*Lab, error) {
	all, err := Labs()
	if err != nil {
		return nil, err
	}
	if id != "" {
		for _, l := range all {
			if l.RunID == id {
				return l, nil
			}
		}
		return nil, fmt.Errorf("no running lab %q (see `twlab up`)", id)
	}
	var labs, dead []*Lab
	for _, l := range all {
		if l.Dead {
			dead = append(dead, l)
		} else {
			labs = append(labs, l)
		}
	}
	switch len(labs) {
	case 0:
		if len(dead) > 0 {
			return nil, fmt.Errorf("no lab is up; the owner of lab %s died and left its namespaces: `sudo twlab down %s` removes them", dead[0].RunID, dead[0].RunID)
		}
		return nil, errors.New("no lab is up; start one with `sudo twlab up SCENARIO`")
	case 1:
		return labs[0], nil
	}
	ids := make([]string, len(labs))
	for i, l := range labs {
		ids[i] = l.RunID
	}
	return nil, fmt.Errorf("%d labs are up (%s); say which with --lab ID", len(labs), strings.Join(ids, ", "))
}

// StopLab asks the owner of l to tear it down and waits up to timeout; if
// the owner is gone or does not stop, the namespaces are removed here.
func StopLab(l *Lab, timeout time.Duration) error {
	// PID 0 (a lab pieced together without its owner) would signal this
	// process's own group.
	if l.PID > 0 && Alive(l.RunID) {
		if err := unix.Kill(l.PID, syscall.SIGTERM); err == nil {
			deadline := time.Now().Add(timeout)
			for time.Now().Before(deadline) && Alive(l.RunID) {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	var errs []error
	if l.PID > 0 && unix.Kill(l.PID, 0) == nil && Alive(l.RunID) {
		errs = append(errs, fmt.Errorf("lab %s: owner %d did not stop within %s; removing its namespaces", l.RunID, l.PID, timeout))
	}
	for _, n := range l.Nodes {
		if _, err := os.Stat(filepath.Join(topo.NetnsDir, n.Netns)); err == nil {
			if err := topo.DeleteNamespace(n.Netns); err != nil {
				errs = append(errs, err)
			}
		}
	}
	RemoveLab(l.RunID)
	if !Alive(l.RunID) {
		// An owner that died left its registration and its log: down is
		// the cleanup of that lab.
		Unregister(l.RunID)
		if l.PID > 0 && (!exists(l.PID) || proc.Zombie(l.PID)) {
			os.Remove(UpLogPath(l.PID))
		}
	}
	return errors.Join(errs...)
}

// Occupant is a process with a thread inside one of a lab's namespaces.
type Occupant struct {
	PID  int
	Comm string
	Node string
}

// Occupants lists the processes, other than the lab's owner and this one,
// that have a thread inside one of l's namespaces (a shell or tcpdump
// started with `twlab exec` or `ip netns exec`). Taking the lab down does
// not end them: they keep running in namespaces that no longer have a
// name, so that nothing, twlab cleanup included, finds them again.
func Occupants(l *Lab) []Occupant {
	type nsID struct{ dev, ino uint64 }
	nodes := map[nsID]string{}
	for _, n := range l.Nodes {
		var st unix.Stat_t
		if unix.Stat(filepath.Join(topo.NetnsDir, n.Netns), &st) == nil {
			nodes[nsID{st.Dev, st.Ino}] = n.Name
		}
	}
	if len(nodes) == 0 {
		return nil
	}
	procs, _ := os.ReadDir("/proc")
	var out []Occupant
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == l.PID || pid == os.Getpid() {
			continue
		}
		// Threads, not only the process: a program may have entered a
		// namespace from one thread, as twlab itself does.
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, t := range tasks {
			var st unix.Stat_t
			if unix.Stat(fmt.Sprintf("/proc/%d/task/%s/ns/net", pid, t.Name()), &st) != nil {
				continue
			}
			if node, ok := nodes[nsID{st.Dev, st.Ino}]; ok {
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
				out = append(out, Occupant{PID: pid, Comm: strings.TrimSpace(string(comm)), Node: node})
				break
			}
		}
	}
	return out
}
