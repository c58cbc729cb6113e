package main

// Reliability tests for the issue "nothing leaks, nothing is lost": real twlab
// runs killed with SIGKILL, interrupted with SIGINT, and interrupted twice,
// at moments spread over the whole run. After each, nothing of that run's id
// may be left (after `twlab cleanup` for SIGKILL), the host's sysctls and
// nftables ruleset must be as they were, and run.json must be whole.
//
// Other people may run labs on this machine at the same time: every check
// judges only the run ids of the processes this test started.
//
//	sudo go test ./cmd/twlab -run Chaos -v -count=1
//	TWLAB_CHAOS_ITER=40/10/5 sudo go test ./cmd/twlab -run Chaos -v -count=1
//
// TestInterruptWhileConnectPending and TestInterruptStorm pin two ways an
// interrupt goes wrong: waiting out a pending connect, and dying of the
// signal itself when Ctrl-C is held down while twlab exits.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/runstate"
	"github.com/twlab/twlab/lab/topo"
	"golang.org/x/sys/unix"
)

// labScen is a scenario the test runs, with the shape the observer needs.
type labScen struct {
	name    string
	yaml    string
	clients int
	cells   int
	// cleanCells: every recorded ok cell must have all its connections
	// succeed (so a cell cut short and kept anyway shows).
	cleanCells bool
	file       string // where the test wrote yaml
}

// chaosScen is small and quick (about 0.5 s per cell) but has every phase:
// a lab of 10 namespaces to build and tear down, 300 ms of load, and six
// cells so that "between cells" happens five times per run.
var chaosScen = &labScen{name: "chaos", clients: 8, cells: 6, cleanCells: true, yaml: `name: chaos
description: Chaos-test scenario; six short cells on a lab of eight clients.
clients:
  count: 8
lvs:
  mode: snat
server:
  port: 8080
  close: server
load:
  connections: 120           # 300 ms at 400/s; the count ends the load, not the duration
  duration: 5s
  rate: 400
  connect_timeout: 1500ms    # > 1 s: a first SYN lost while the lab settles is retried
  io_timeout: 1s
matrix:
  server.net.ipv4.tcp_rfc1337: [0, 1]
  load.concurrency: [1, 2, 4]
expect:
  - name: every connection succeeds
    assert:
      - load.failed == 0
`}

// lockoutScen is nat-paws' lockout cell (timestamps on, tcp_rfc1337=1): the
// client whose clock is behind keeps a connect pending for up to
// connect_timeout, so stopping a run in its load takes real time, and a
// second Ctrl-C arrives while the first is still being served.
var lockoutScen = &labScen{name: "chaos-lockout", clients: 2, cells: 2, yaml: `name: chaos-lockout
description: nat-paws lockout (rfc1337=1); the client behind waits in connect.
clients:
  count: 2
lvs:
  mode: snat
  snat_ports: 1
  snat_port_base: 40000
  conntrack_tw_timeout: 0s
server:
  port: 8080
  close: server
load:
  connections: 1000
  duration: 3s
  connect_timeout: 1500ms
  bind_port: 50000
sysctl:
  lvs:
    net.netfilter.nf_conntrack_tcp_timeout_syn_sent: 1
  clients:
    net.ipv4.tcp_timestamps: 1
  server:
    net.ipv4.tcp_timestamps: 1
    net.ipv4.tcp_rfc1337: 1
matrix:
  load.gap: [0s, 1ms]
`}

// Phases a kill or an interrupt can hit.
const (
	phStartup  = "startup"  // before the first namespace of the run exists
	phBuild    = "build"    // namespaces being created and wired
	phSetup    = "setup"    // lab complete: NAT, knobs, server, probes
	phLoad     = "load"     // load generator threads inside the clients
	phMeasure  = "measure"  // load over: settle, counters, start of teardown
	phTeardown = "teardown" // namespaces being removed
	phBetween  = "between"  // no namespace of the run: between two cells
	phFinish   = "finish"   // every cell recorded: final run.json, artifacts, exit
	phDone     = "done"     // the process had exited on its own
)

var phaseOrder = []string{phStartup, phBuild, phSetup, phLoad, phMeasure, phTeardown, phBetween, phFinish, phDone}

// required are the phases the SIGKILL test must cover.
var required = []string{phBuild, phLoad, phBetween, phTeardown}

// exitTimeout bounds how long an interrupted run may take to exit.
const exitTimeout = 20 * time.Second

type chaosIters struct{ kill, sigint, double int }

// chaosIterations reads TWLAB_CHAOS_ITER as KILL/SIGINT/DOUBLE (a missing
// part keeps its default, e.g. "40" or "40/10").
func chaosIterations(t *testing.T) chaosIters {
	it := chaosIters{20, 5, 3}
	v := os.Getenv("TWLAB_CHAOS_ITER")
	if v == "" {
		return it
	}
	ptrs := []*int{&it.kill, &it.sigint, &it.double}
	for i, f := range strings.Split(v, "/") {
		if i >= len(ptrs) {
			t.Fatalf("TWLAB_CHAOS_ITER=%q: want KILL/SIGINT/DOUBLE, e.g. 20/5/3", v)
		}
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			t.Fatalf("TWLAB_CHAOS_ITER=%q: %q is not a count", v, f)
		}
		*ptrs[i] = n
	}
	return it
}

// chaosEnv is shared by the subtests: the binary, the scenarios, and the
// host's state before anything ran.
type chaosEnv struct {
	bin, work string
	hostSys   map[string]string
	hostNFT   string
	calib     time.Duration // wall time of a normal run of chaosScen
}

// skipUnlessChaos skips t unless it may run real labs.
func skipUnlessChaos(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped under -short: runs, kills and interrupts real twlab labs")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs, kills and interrupts real twlab labs (run `sudo go test ./cmd/twlab -run Chaos`)")
	}
}

// newChaosEnv builds the binary, writes the scenarios, runs chaosScen once
// normally (which also loads the kernel modules the lab needs, nf_conntrack
// adding host sysctls) and records the host's state.
func newChaosEnv(t *testing.T) *chaosEnv {
	t.Helper()
	env := &chaosEnv{work: t.TempDir()}
	env.bin = buildTwlab(t)
	for _, sc := range []*labScen{chaosScen, lockoutScen} {
		sc.file = filepath.Join(env.work, sc.name+".yaml")
		if err := os.WriteFile(sc.file, []byte(sc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	begin := time.Now()
	normalRun(t, env, chaosScen, "calibration", 0)
	env.calib = time.Since(begin)
	env.hostSys = snapshotSysctls()
	env.hostNFT = hostNFTables(t)
	return env
}

func TestChaos(t *testing.T) {
	skipUnlessChaos(t)
	iters := chaosIterations(t)
	env := newChaosEnv(t)
	t.Logf("normal run: %d cells in %v; host: %d sysctls, %d nftables objects",
		chaosScen.cells, env.calib.Round(time.Millisecond), len(env.hostSys), strings.Count(env.hostNFT, "\n")+min(1, len(env.hostNFT)))

	t.Run("SIGKILL", func(t *testing.T) { chaosKill(t, env, iters.kill) })
	t.Run("SIGINT", func(t *testing.T) { chaosInterrupt(t, env, chaosScen, iters.sigint, false) })
	t.Run("DoubleSIGINT", func(t *testing.T) { chaosInterrupt(t, env, lockoutScen, iters.double, true) })
	t.Run("BrokenPipe", func(t *testing.T) { chaosBrokenPipe(t, env) })
}

// chaosBrokenPipe closes the run's standard output after its first line,
// as `twlab run x.yaml | head -1` does: the run must stop like an
// interrupt, not die of SIGPIPE with run.json saying "running".
func chaosBrokenPipe(t *testing.T, env *chaosEnv) {
	out := filepath.Join(env.work, "broken-pipe")
	cmd := exec.Command(env.bin, "run", chaosScen.file, "--out", out)
	cmd.Dir = env.work
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	rd, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(rd).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("first line: %v\nstderr:\n%s", err, stderr.String())
	}
	rd.Close()
	closed := time.Now()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(exitTimeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("still running %v after its output was closed\nstderr:\n%s", exitTimeout, stderr.String())
	}
	took := time.Since(closed)
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		t.Fatalf("died of signal %v after its output was closed, want exit %d\nstderr:\n%s", ws.Signal(), exitStopped, stderr.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != exitStopped {
		t.Errorf("exit %d, want %d\nstderr:\n%s", code, exitStopped, stderr.String())
	}
	if !strings.Contains(stderr.String(), "broken pipe") || strings.Contains(stderr.String(), "teardown in progress") {
		t.Errorf("stderr should name the closed output once, as the first stop:\n%s", stderr.String())
	}
	r, err := result.ReadRun(filepath.Join(out, "run.json"))
	if err != nil {
		t.Fatalf("run.json: %v", err)
	}
	if r.Status != result.RunInterrupted || r.Finished == nil {
		t.Errorf("run.json status %q (finished %v), want %q with a finished time", r.Status, r.Finished, result.RunInterrupted)
	}
	checkCells(t, chaosScen, "broken pipe", r)
	assertHost(t, env, r.RunID, "broken pipe")
	t.Logf("first line %q; stopped %v after the output closed, %d of %d cells kept", strings.TrimSpace(line), took.Round(time.Millisecond), len(r.Cells), chaosScen.cells)
}

// buildTwlab builds the binary once into the test's temporary folder.
func buildTwlab(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "twlab")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		if gobin, err = exec.LookPath("go"); err != nil {
			t.Fatalf("no go command to build twlab: %v", err)
		}
	}
	cmd := exec.Command(gobin, "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// ---- the child process and its observer ----

type child struct {
	cmd            *exec.Cmd
	out            string // --out
	stdout, stderr bytes.Buffer
	start          time.Time
	done           chan struct{} // closed when Wait returned
	exited         time.Time
	state          *os.ProcessState
}

func startChild(t *testing.T, env *chaosEnv, sc *labScen, out string, extra ...string) *child {
	t.Helper()
	args := append([]string{"run", sc.file, "--out", out}, extra...)
	c := &child{out: out, done: make(chan struct{})}
	c.cmd = exec.Command(env.bin, args...)
	c.cmd.Dir = env.work
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.start = time.Now()
	go func() {
		c.cmd.Wait()
		c.exited = time.Now()
		c.state = c.cmd.ProcessState
		close(c.done)
	}()
	return c
}

func (c *child) running() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// wait waits up to d for the process to exit; false if it did not.
func (c *child) wait(d time.Duration) bool {
	select {
	case <-c.done:
		return true
	case <-time.After(d):
		return false
	}
}

// kill makes sure a child that misbehaved does not outlive the test.
func (c *child) kill() {
	if c.running() {
		c.cmd.Process.Kill()
		<-c.done
	}
}

func (c *child) describe() string {
	return fmt.Sprintf("state %v\nstdout:\n%s\nstderr:\n%s", c.state, c.stdout.String(), c.stderr.String())
}

// observer watches one child from outside, the way a user could: its entry
// in the run registry, its namespaces, the namespaces its threads are in,
// and its run.json. It tells which phase the run is in.
type observer struct {
	sc           *labScen
	c            *child
	statesBefore map[string]bool
	id           string

	lvsIno    uint64 // the current cell's lvs namespace
	seenFull  bool   // the current cell's lab was complete
	loadSeen  bool   // the current cell's load ran
	cells     int    // lab builds seen (cells started)
	everNS    bool
	rjMod     time.Time
	rjSize    int64
	cellsDone int      // cells recorded in run.json
	tornJSON  []string // run.json reads that failed
}

func newObserver(sc *labScen, c *child, statesBefore map[string]bool) *observer {
	return &observer{sc: sc, c: c, statesBefore: statesBefore}
}

func stateFiles() map[string]bool {
	out := map[string]bool{}
	ents, _ := os.ReadDir(runstate.Dir)
	for _, e := range ents {
		out[e.Name()] = true
	}
	return out
}

// findID looks for the registry entry of the child's PID.
func (o *observer) findID() {
	ents, _ := os.ReadDir(runstate.Dir)
	for _, e := range ents {
		if o.statesBefore[e.Name()] || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(runstate.Dir, e.Name()))
		if err != nil {
			continue
		}
		var st runstate.State
		if json.Unmarshal(b, &st) == nil && st.PID == o.c.cmd.Process.Pid {
			o.id = st.RunID
			return
		}
	}
}

// findIDPostMortem is findID for a dead child: the registry entry, run.json,
// or an empty registry file that appeared during its life (killed between
// creating the file and writing it).
func (o *observer) findIDPostMortem() (id string, how string) {
	if o.id != "" {
		return o.id, "registry"
	}
	if o.findID(); o.id != "" {
		return o.id, "registry"
	}
	if r, err := result.ReadRun(filepath.Join(o.c.out, "run.json")); err == nil {
		o.id = r.RunID
		return o.id, "run.json"
	}
	ents, _ := os.ReadDir(runstate.Dir)
	for _, e := range ents {
		if o.statesBefore[e.Name()] {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Size() == 0 {
			id, _ := strings.CutSuffix(e.Name(), ".json")
			o.id = id
			return id, "empty registry file"
		}
	}
	return "", ""
}

func linkIno(path string) uint64 {
	s, err := os.Readlink(path) // "net:[4026531840]"
	if err != nil {
		return 0
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "net:["), "]")
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}

// runIDs lists the run ids that have namespaces now.
func runIDs() map[string]bool {
	out := map[string]bool{}
	names, _ := topo.ListNamespaces()
	for _, n := range names {
		if id, ok := topo.RunIDOf(n); ok {
			out[id] = true
		}
	}
	return out
}

// newRunIDs lists the run ids with namespaces now that had none before.
func newRunIDs(before map[string]bool) []string {
	var out []string
	for id := range runIDs() {
		if !before[id] {
			out = append(out, id)
		}
	}
	return out
}

// listRunNS returns the node names of run id's namespaces.
func listRunNS(id string) map[string]bool {
	out := map[string]bool{}
	if id == "" {
		return out
	}
	ents, _ := os.ReadDir(topo.NetnsDir)
	pre := topo.Prefix + id + "-"
	for _, e := range ents {
		if n, ok := strings.CutPrefix(e.Name(), pre); ok {
			out[n] = true
		}
	}
	return out
}

// partialKind tells a lab being built from one being torn down by which of
// its namespaces exist: Build creates lvs, server, c1…cN; Destroy removes
// c1…cN, lvs, server. {lvs, server} can be either. (For a dead process: a
// look at a live one is not atomic against its changes.)
func partialKind(p map[string]bool, clients int) string {
	if len(p) == 0 || len(p) == clients+2 {
		return ""
	}
	if p["lvs"] && p["server"] && len(p) == 2 {
		return "ambiguous"
	}
	if p["c1"] || (p["lvs"] && !p["server"]) {
		return phBuild
	}
	return phTeardown
}

// poll takes one look and returns the phase the run is in.
func (o *observer) poll() string {
	if o.id == "" {
		o.findID()
	}
	o.readRunJSON()
	if o.id == "" {
		return phStartup
	}
	p := listRunNS(o.id)
	// One look at /run/netns is not atomic against the run's own creations
	// and removals; the lvs namespace, made first in every cell, is looked
	// up exactly, and a new one starts the next cell.
	lvsIno, lvsOK := nsfsIno(filepath.Join(topo.NetnsDir, topo.NSName(o.id, "lvs")))
	if lvsOK {
		p["lvs"] = true
	}
	if len(p) == 0 {
		o.seenFull, o.loadSeen, o.lvsIno = false, false, 0
		switch {
		case o.cellsDone >= o.sc.cells:
			return phFinish
		case !o.everNS:
			return phStartup
		}
		return phBetween
	}
	o.everNS = true
	if lvsOK && lvsIno != o.lvsIno {
		o.cells++
		o.lvsIno = lvsIno
		o.seenFull, o.loadSeen = false, false
	}
	if len(p) == o.sc.clients+2 {
		o.seenFull = true
		if o.loadRunning() {
			o.loadSeen = true
			return phLoad
		}
		if o.loadSeen {
			return phMeasure
		}
		return phSetup
	}
	// Part of a lab: one that was complete in this cell is being torn
	// down, any other is being built.
	if o.seenFull {
		return phTeardown
	}
	return phBuild
}

// nsfsIno is the namespace inode bound at path; false if path is missing or
// not (yet) a namespace mount.
func nsfsIno(path string) (uint64, bool) {
	var st, self syscall.Stat_t
	if syscall.Stat(path, &st) != nil || syscall.Stat("/proc/self/ns/net", &self) != nil {
		return 0, false
	}
	return st.Ino, st.Dev == self.Dev
}

// loadRunning: the load generator pins one thread inside every client
// namespace for exactly as long as the load runs.
func (o *observer) loadRunning() bool {
	clients := map[uint64]bool{}
	for i := 1; i <= o.sc.clients; i++ {
		if ino, ok := nsfsIno(filepath.Join(topo.NetnsDir, topo.NSName(o.id, fmt.Sprintf("c%d", i)))); ok {
			clients[ino] = true
		}
	}
	dir := fmt.Sprintf("/proc/%d/task", o.c.cmd.Process.Pid)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if clients[linkIno(filepath.Join(dir, e.Name(), "ns/net"))] {
			return true
		}
	}
	return false
}

// readRunJSON follows run.json; every read must decode (it is written by
// rename, so no reader may ever see it torn).
func (o *observer) readRunJSON() {
	p := filepath.Join(o.c.out, "run.json")
	fi, err := os.Stat(p)
	if err != nil || (fi.ModTime().Equal(o.rjMod) && fi.Size() == o.rjSize) {
		return
	}
	r, err := result.ReadRun(p)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) { // ReadRun wraps it in a *result.NotRunError
			o.tornJSON = append(o.tornJSON, err.Error())
		}
		return
	}
	o.rjMod, o.rjSize = fi.ModTime(), fi.Size()
	if o.id == "" {
		o.id = r.RunID
	}
	o.cellsDone = max(o.cellsDone, len(r.Cells))
}

// postMortem classifies where a dead process stopped. The namespaces left
// are the state at the moment of death; the last look before the signal
// refines what they cannot tell.
func (o *observer) postMortem(before string) string {
	id, _ := o.findIDPostMortem()
	if id == "" {
		return phStartup
	}
	p := listRunNS(id)
	// A name without its mount is being made (the last one) or removed
	// (the first one); the mounted ones tell which.
	m := mountedRunNS(id)
	k := partialKind(p, o.sc.clients)
	if len(m) > 0 && len(m) < len(p) {
		k = partialKind(m, o.sc.clients)
	}
	if k == phBuild || k == phTeardown {
		return k
	}
	if len(p) == o.sc.clients+2 {
		switch before {
		case phSetup, phLoad, phMeasure, phBuild:
			return before
		}
		return phSetup
	}
	if len(p) == 2 { // {lvs, server}
		if before == phBuild || before == phStartup || before == phBetween {
			return phBuild
		}
		return phTeardown
	}
	// Nothing left.
	cells := 0
	if r, err := result.ReadRun(filepath.Join(o.c.out, "run.json")); err == nil {
		cells = len(r.Cells)
	}
	switch {
	case cells >= o.sc.cells:
		return phFinish
	case before == phStartup:
		return phStartup
	}
	return phBetween
}

// ---- what must hold after every run ----

// mountedRunNS returns the node names of run id's namespace mounts, hidden
// ones included.
func mountedRunNS(id string) map[string]bool {
	out := map[string]bool{}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	pre := filepath.Join(topo.NetnsDir, topo.Prefix+id+"-")
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 4 && strings.HasPrefix(fs[4], pre) {
			out[strings.TrimPrefix(fs[4], pre)] = true
		}
	}
	return out
}

// leftovers lists what of run id is still on the host.
func leftovers(id string) []string {
	var out []string
	for n := range listRunNS(id) {
		out = append(out, "namespace "+topo.NSName(id, n))
	}
	for n := range mountedRunNS(id) {
		out = append(out, "mount "+filepath.Join(topo.NetnsDir, topo.NSName(id, n)))
	}
	if _, err := os.Stat(filepath.Join(runstate.Dir, id+".json")); err == nil {
		out = append(out, "registry "+filepath.Join(runstate.Dir, id+".json"))
	}
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, topo.Prefix+id+"-") {
			out = append(out, "host link "+i.Name)
		}
	}
	sort.Strings(out)
	return out
}

// snapshotSysctls reads the host's net sysctls a lab could touch by
// mistake. Per-interface entries come and go with links, and a few values
// are the kernel's live state rather than settings.
func snapshotSysctls() map[string]string {
	out := map[string]string{}
	for _, dir := range []string{"/proc/sys/net/ipv4", "/proc/sys/net/core", "/proc/sys/net/netfilter"} {
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if strings.Contains(p, "/conf/") || strings.Contains(p, "/neigh/") || volatileSysctl[filepath.Base(p)] {
				return nil
			}
			b, err := os.ReadFile(p)
			if err == nil {
				out[p] = string(b)
			}
			return nil
		})
	}
	return out
}

// volatileSysctl are counters, not settings: they move with the host's own
// traffic.
var volatileSysctl = map[string]bool{
	"nf_conntrack_count": true,
}

func assertSysctls(t *testing.T, env *chaosEnv, when string) {
	t.Helper()
	now := snapshotSysctls()
	for k, v := range env.hostSys {
		if now[k] != v {
			t.Errorf("%s: host sysctl %s changed: %q -> %q", when, k, strings.TrimSpace(v), strings.TrimSpace(now[k]))
		}
	}
}

// hostNFTables describes the host's nftables ruleset: tables, chains with
// their hooks, sets, and rules by handle and expression types (not the
// expressions' values, which hold live counters). Read only.
func hostNFTables(t *testing.T) string {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatalf("nftables: %v", err)
	}
	defer c.CloseLasting()
	tables, err := c.ListTables()
	if err != nil {
		t.Fatalf("nftables: list tables: %v", err)
	}
	chains, err := c.ListChains()
	if err != nil {
		t.Fatalf("nftables: list chains: %v", err)
	}
	var lines []string
	for _, tb := range tables {
		lines = append(lines, fmt.Sprintf("table %d %s flags=%d", tb.Family, tb.Name, tb.Flags))
		sets, err := c.GetSets(tb)
		if err != nil {
			t.Fatalf("nftables: sets of %s: %v", tb.Name, err)
		}
		for _, s := range sets {
			lines = append(lines, fmt.Sprintf("set %d %s %s key=%v", tb.Family, tb.Name, s.Name, s.KeyType.Name))
		}
		for _, ch := range chains {
			if ch.Table.Name != tb.Name || ch.Table.Family != tb.Family {
				continue
			}
			hook, prio, pol := "-", "-", "-"
			if ch.Hooknum != nil {
				hook = fmt.Sprint(*ch.Hooknum)
			}
			if ch.Priority != nil {
				prio = fmt.Sprint(*ch.Priority)
			}
			if ch.Policy != nil {
				pol = fmt.Sprint(*ch.Policy)
			}
			lines = append(lines, fmt.Sprintf("chain %d %s %s type=%s hook=%s prio=%s policy=%s", tb.Family, tb.Name, ch.Name, ch.Type, hook, prio, pol))
			rules, err := c.GetRules(tb, ch)
			if err != nil {
				t.Fatalf("nftables: rules of %s/%s: %v", tb.Name, ch.Name, err)
			}
			for _, r := range rules {
				var kinds []string
				for _, e := range r.Exprs {
					kinds = append(kinds, fmt.Sprintf("%T", e))
				}
				lines = append(lines, fmt.Sprintf("rule %d %s %s #%d %s", tb.Family, tb.Name, ch.Name, r.Handle, strings.Join(kinds, ",")))
			}
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func assertNFTables(t *testing.T, env *chaosEnv, when string) {
	t.Helper()
	if now := hostNFTables(t); now != env.hostNFT {
		t.Errorf("%s: host nftables ruleset changed:\nbefore:\n%s\nafter:\n%s", when, env.hostNFT, now)
	}
}

// assertHost checks what must hold after every run of id.
func assertHost(t *testing.T, env *chaosEnv, id, when string) {
	t.Helper()
	if id != "" {
		if left := leftovers(id); len(left) > 0 {
			t.Errorf("%s: run %s left behind: %s", when, id, strings.Join(left, ", "))
		}
	}
	assertSysctls(t, env, when)
	assertNFTables(t, env, when)
}

// tmpFiles lists temporary files the atomic writer left in dir.
func tmpFiles(dir string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, ".*.tmp*"))
	return m
}

// checkCells checks every recorded cell is complete and in order.
func checkCells(t *testing.T, sc *labScen, when string, r *result.Run) {
	t.Helper()
	if len(r.Cells) > sc.cells {
		t.Errorf("%s: %d cells recorded, the plan has %d", when, len(r.Cells), sc.cells)
	}
	for i, c := range r.Cells {
		if c.Index != i {
			t.Errorf("%s: cell %d has index %d: cells lost or out of order", when, i, c.Index)
		}
		switch c.Status {
		case result.CellNA:
			continue
		case result.CellOK, result.CellInterrupted: // interrupted in teardown: complete figures
		default:
			detail := ""
			if c.Load != nil {
				detail = fmt.Sprintf("; load: %d attempts, %d ok, failures %v, errors %q", c.Load.Attempts, c.Load.OK, c.Load.Failures, c.Load.Errors)
			}
			t.Errorf("%s: recorded cell %s: status %q (%s), want ok, interrupted or n/a%s", when, c.ID, c.Status, c.Reason, detail)
			continue
		}
		if c.Load == nil || c.SYN == nil || c.Nodes["server"] == nil || c.Nodes["clients"] == nil || c.DurationS <= 0 {
			t.Errorf("%s: recorded cell %s is not complete: load %v, syn %v, nodes %d, duration %v",
				when, c.ID, c.Load != nil, c.SYN != nil, len(c.Nodes), c.DurationS)
			continue
		}
		if c.Load.Attempts == 0 || (sc.cleanCells && c.Load.Failed != 0) {
			t.Errorf("%s: recorded cell %s: %d attempts, %d failed (a cell cut short was kept?)", when, c.ID, c.Load.Attempts, c.Load.Failed)
		}
	}
}

// normalRun runs a scenario to the end: exit 0, status ok, every cell (of
// cells; 0: of the scenario), and nothing left.
func normalRun(t *testing.T, env *chaosEnv, sc *labScen, what string, cells int, extra ...string) {
	t.Helper()
	if cells == 0 {
		cells = sc.cells
	}
	out := filepath.Join(env.work, "normal-"+what)
	c := startChild(t, env, sc, out, append([]string{"-q"}, extra...)...)
	defer c.kill()
	if !c.wait(2 * time.Minute) {
		t.Fatalf("%s run: still running after 2 minutes", what)
	}
	if code := c.state.ExitCode(); code != exitOK {
		t.Fatalf("%s run: exit %d, want 0\n%s", what, code, c.describe())
	}
	r, err := result.ReadRun(filepath.Join(out, "run.json"))
	if err != nil {
		t.Fatalf("%s run: %v", what, err)
	}
	if r.Status != result.RunOK || len(r.Cells) != cells {
		t.Fatalf("%s run: status %s with %d cells, want ok with %d", what, r.Status, len(r.Cells), cells)
	}
	checkCells(t, sc, what+" run", r)
	if left := leftovers(r.RunID); len(left) > 0 {
		t.Errorf("%s run: run %s left behind: %s", what, r.RunID, strings.Join(left, ", "))
	}
}

// cleanup runs `twlab cleanup`. It may fail on other runs' leftovers it
// cannot remove (not ours to judge); it must not fail on run id's.
func cleanup(t *testing.T, env *chaosEnv, id, when string) {
	t.Helper()
	var out, errb bytes.Buffer
	cl := exec.Command(env.bin, "cleanup")
	cl.Stdout, cl.Stderr = &out, &errb
	err := cl.Run()
	if err == nil {
		return
	}
	if id != "" && strings.Contains(errb.String(), topo.Prefix+id+"-") {
		t.Errorf("%s: twlab cleanup: %v, failing on this run's namespaces:\n%s", when, err, errb.String())
	} else if code := cl.ProcessState.ExitCode(); code != exitFailed {
		t.Errorf("%s: twlab cleanup: %v\n%s", when, err, errb.String())
	}
}

// ---- SIGKILL ----

// killPlan says when to kill: at a random time, or at the k-th time the
// observer sees a phase.
type killPlan struct {
	at     time.Duration // time mode: offset from the start
	target string        // phase mode
	nth    int           // phase mode: in this cell (or a later one)
	delay  time.Duration // phase mode: wait this long once target is seen
}

func (k killPlan) String() string {
	if k.target == "" {
		return fmt.Sprintf("at %v", k.at.Round(time.Millisecond))
	}
	return fmt.Sprintf("%s #%d +%v", k.target, k.nth, k.delay.Round(10*time.Microsecond))
}

func chaosKill(t *testing.T, env *chaosEnv, n int) {
	sc := chaosScen
	begin := time.Now()
	hits := map[string]int{}
	var tried, completed int
	var tmpLeft []string
	// Half the kills land at a uniformly random moment of the whole run;
	// the other half wait for a phase (one not hit yet, if any) in a random
	// cell, so that phases of a few milliseconds are covered too.
	extra := 0
	for i := 0; i < n+extra; i++ {
		var plan killPlan
		if i%2 == 0 && i < n {
			plan.at = time.Duration(rand.Int64N(int64(env.calib)))
		} else {
			cands := slices.DeleteFunc(slices.Clone(required), func(p string) bool { return hits[p] > 0 })
			if len(cands) == 0 {
				cands = required
			}
			plan.target = cands[rand.IntN(len(cands))]
			switch plan.target {
			case phBetween:
				plan.nth = 1 + rand.IntN(sc.cells-1)
			case phBuild:
				plan.nth = 1 + rand.IntN(sc.cells-1)
				plan.delay = time.Duration(rand.IntN(200)) * time.Microsecond
			case phLoad:
				plan.nth = 1 + rand.IntN(sc.cells)
				plan.delay = time.Duration(rand.IntN(250)) * time.Millisecond
			case phTeardown:
				plan.nth = 1 + rand.IntN(sc.cells-1)
			}
		}
		tried++
		ph, tmps := killOnce(t, env, i, plan)
		hits[ph]++
		if ph == phDone {
			completed++
		}
		tmpLeft = append(tmpLeft, tmps...)
		if t.Failed() {
			t.Logf("stopping after the first failed iteration")
			break
		}
		// Up to 10 more kills until every required phase was hit.
		if i == n+extra-1 && extra < 10 && slices.ContainsFunc(required, func(p string) bool { return hits[p] == 0 }) {
			extra++
		}
	}
	if !t.Failed() {
		normalRun(t, env, sc, "after-kills", 0)
		assertHost(t, env, "", "after the kills")
	}
	t.Logf("SIGKILL: %d kills tried, phases hit: %s; %d runs had finished before the kill; %v",
		tried, phaseCounts(hits), completed, time.Since(begin).Round(time.Millisecond))
	if len(tmpLeft) > 0 {
		t.Logf("SIGKILL: %d temporary files of the atomic writer left in result folders before cleanup (e.g. %s), none after", len(tmpLeft), filepath.Base(tmpLeft[0]))
	}
	for _, p := range required {
		if hits[p] == 0 && !t.Failed() {
			t.Logf("WARNING: no kill landed in phase %q in %d tries", p, tried)
		}
	}
}

func phaseCounts(hits map[string]int) string {
	var parts []string
	for _, p := range phaseOrder {
		if hits[p] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", p, hits[p]))
		}
	}
	return strings.Join(parts, ", ")
}

// killOnce runs chaosScen, kills it as planned, runs `twlab cleanup` and
// checks that nothing of the run is left. It returns the phase hit.
func killOnce(t *testing.T, env *chaosEnv, i int, plan killPlan) (phase string, tmps []string) {
	t.Helper()
	sc := chaosScen
	out := filepath.Join(env.work, fmt.Sprintf("kill-%02d", i))
	before := stateFiles()
	nsBefore := runIDs()
	w, err := watchNetns()
	if err != nil {
		t.Logf("no inotify on %s (%v): build and teardown only by looking", topo.NetnsDir, err)
	} else {
		defer w.close()
	}
	c := startChild(t, env, sc, out, "-q")
	defer c.kill()
	o := newObserver(sc, c, before)

	var pre string
	var armed time.Time // target reached; kill after plan.delay
	deadline := time.Now().Add(2 * time.Minute)
	for c.running() {
		if time.Now().After(deadline) {
			t.Fatalf("kill %d: run still going after 2 minutes\n%s", i, c.describe())
		}
		ph := o.poll()
		kill := false
		if plan.target == "" {
			kill = time.Since(c.start) >= plan.at
		} else {
			// The target phase in cell nth or, if it was too short to
			// be seen there, in a later one.
			cell := o.cells
			if plan.target == phBetween {
				cell = o.cellsDone
			}
			if ph == plan.target && cell >= plan.nth && armed.IsZero() {
				armed = time.Now()
			}
			// Building and removing a lab's namespaces take a few
			// milliseconds, less than some looks on a busy machine:
			// wait for the first creation or removal itself.
			if plan.target == phTeardown && ph == phMeasure && cell >= plan.nth && armed.IsZero() && w != nil {
				w.drain()
				if w.wait(unix.IN_DELETE, topo.Prefix+o.id+"-", 2*time.Second) {
					ph, armed = phTeardown, time.Now()
				}
			}
			if plan.target == phBuild && o.id != "" && (ph == phStartup || ph == phMeasure || ph == phTeardown || ph == phBetween) && cell >= plan.nth-1 && armed.IsZero() && w != nil {
				w.drain()
				if w.wait(unix.IN_CREATE, topo.NSName(o.id, "lvs"), 2*time.Second) {
					ph, armed = phBuild, time.Now()
				}
			}
			kill = !armed.IsZero() && time.Since(armed) >= plan.delay
		}
		if kill {
			pre = ph
			c.cmd.Process.Signal(syscall.SIGKILL)
			break
		}
		if plan.target == phTeardown || plan.target == phBetween || plan.target == phBuild {
			runtime.Gosched() // phases of a few milliseconds: look as often as possible
		} else {
			time.Sleep(200 * time.Microsecond)
		}
	}
	if !c.wait(10 * time.Second) {
		t.Fatalf("kill %d: process did not die after SIGKILL", i)
	}
	ws, _ := c.state.Sys().(syscall.WaitStatus)
	killed := ws.Signaled() && ws.Signal() == syscall.SIGKILL
	if killed {
		phase = o.postMortem(pre)
	} else {
		phase = phDone
		if code := c.state.ExitCode(); code != exitOK {
			t.Errorf("kill %d: finished before the kill with exit %d, want 0\n%s", i, code, c.describe())
		}
	}
	id, how := o.findIDPostMortem()
	var left []string
	if id != "" {
		left = leftovers(id)
	}
	if len(o.tornJSON) > 0 {
		t.Errorf("kill %d: run.json read torn while the run was alive: %v", i, o.tornJSON)
	}
	// Whatever run.json is on disk must be whole, and hold at least the
	// cells a reader saw while the run was alive.
	if r, err := result.ReadRun(filepath.Join(out, "run.json")); err == nil {
		if id != "" && r.RunID != id {
			t.Errorf("kill %d: run.json run_id %s, the registry says %s", i, r.RunID, id)
		}
		if len(r.Cells) < o.cellsDone {
			t.Errorf("kill %d: run.json has %d cells, a reader saw %d before", i, len(r.Cells), o.cellsDone)
		}
		if killed && r.Status != result.RunRunning && len(r.Cells) < sc.cells {
			t.Errorf("kill %d: killed run.json has status %q, want %q", i, r.Status, result.RunRunning)
		}
		checkCells(t, sc, fmt.Sprintf("kill %d", i), r)
	} else if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("kill %d: run.json: %v", i, err)
	}
	tmps = tmpFiles(out)

	when := fmt.Sprintf("kill %d (%s, %s) after cleanup", i, plan, phase)
	cleanup(t, env, id, when)
	// The registry names the results folder: cleanup removes what the
	// killed writer left there.
	if tm := tmpFiles(out); len(tm) > 0 && id != "" {
		t.Errorf("%s: temporary files left: %v", when, tm)
	}
	// ... and marks its run.json, which said "running" for ever, as
	// interrupted.
	if r, err := result.ReadRun(filepath.Join(out, "run.json")); err == nil && id != "" && r.Status == result.RunRunning {
		t.Errorf("%s: run.json of the killed run still says %q", when, r.Status)
	}
	if id == "" && killed {
		// Killed before it registered, so it cannot have built anything.
		// Should it have, its namespaces carry an id that was not there
		// before it started and that no live run owns; cleanup must have
		// removed those. (Ids of live runs are other people's.)
		for _, rid := range newRunIDs(nsBefore) {
			if !runstate.Alive(rid) {
				t.Errorf("%s: namespaces of dead run %s (appeared during this run, no registry entry) left: %v", when, rid, leftovers(rid))
			}
		}
	}
	assertHost(t, env, id, when)
	// The machine is fit for the next run: two cells run cleanly.
	if !t.Failed() {
		normalRun(t, env, sc, fmt.Sprintf("after-kill-%02d", i), 2, "--only", "load.concurrency == 4")
	}
	t.Logf("kill %2d: %-24s -> %-8s run %-4s (id from %s), %2d things left before cleanup, t=%v",
		i, plan, phase, id, orDash(how), len(left), c.exited.Sub(c.start).Round(time.Millisecond))
	return phase, tmps
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// netnsWatch reports creations and removals in /run/netns (inotify; it
// only reads).
type netnsWatch struct{ fd int }

func watchNetns() (*netnsWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if _, err := unix.InotifyAddWatch(fd, topo.NetnsDir, unix.IN_CREATE|unix.IN_DELETE); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &netnsWatch{fd}, nil
}

func (w *netnsWatch) close() { unix.Close(w.fd) }

// drain forgets the removals so far.
func (w *netnsWatch) drain() {
	buf := make([]byte, 64<<10)
	for {
		if n, _ := unix.Read(w.fd, buf); n <= 0 {
			return
		}
	}
}

// wait waits up to d for an event of mask on a name starting with prefix.
func (w *netnsWatch) wait(mask uint32, prefix string, d time.Duration) bool {
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		n, err := unix.Read(w.fd, buf)
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			m := binary.NativeEndian.Uint32(buf[off+4:])
			l := int(binary.NativeEndian.Uint32(buf[off+12:]))
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:min(n, off+unix.SizeofInotifyEvent+l)]), "\x00")
			if m&mask != 0 && strings.HasPrefix(name, prefix) {
				return true
			}
			off += unix.SizeofInotifyEvent + l
		}
		if err == unix.EAGAIN {
			unix.Poll([]unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}, 5)
		}
	}
	return false
}

// ---- SIGINT ----

// chaosInterrupt interrupts n runs of sc. A single interrupt lands at a
// uniformly random moment once the run has registered (its handler is
// installed before that); a double one lands in a random cell's load, where
// the lockout scenario keeps a connect pending, and the second follows 50 to
// 200 ms later, while the first is still being served.
func chaosInterrupt(t *testing.T, env *chaosEnv, sc *labScen, n int, double bool) {
	begin := time.Now()
	name := "SIGINT"
	if double {
		name = "double SIGINT"
	}
	hits := map[string]int{}
	var late, secondServed, secondAfterExit int
	var maxExit time.Duration
	valid, tries := 0, 0
	for valid < n && tries < 3*n+3 {
		tries++
		i := tries
		out := filepath.Join(env.work, fmt.Sprintf("int-%v-%02d", double, i))
		before := stateFiles()
		c := startChild(t, env, sc, out, "-q")
		o := newObserver(sc, c, before)
		at := time.Duration(rand.Int64N(int64(env.calib * 9 / 10)))
		nth := 1 + rand.IntN(sc.cells)
		loadDelay := time.Duration(500+rand.IntN(2000)) * time.Millisecond
		var armed time.Time
		var pre string
		var sent time.Time
		for c.running() {
			ph := o.poll()
			fire := false
			if double {
				if ph == phLoad && o.cells >= nth && armed.IsZero() {
					armed = time.Now()
				}
				fire = !armed.IsZero() && time.Since(armed) >= loadDelay
			} else {
				fire = o.id != "" && time.Since(c.start) >= at
			}
			if fire {
				pre = ph
				c.cmd.Process.Signal(syscall.SIGINT)
				sent = time.Now()
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
		second := ""
		if !sent.IsZero() && double {
			time.Sleep(time.Duration(50+rand.IntN(151)) * time.Millisecond)
			second = "after exit"
			if c.running() && c.cmd.Process.Signal(syscall.SIGINT) == nil {
				second = "sent"
			}
		}
		if !c.wait(exitTimeout) {
			c.kill()
			t.Errorf("%s %d: still running %v after the interrupt (phase %s)\n%s", name, i, exitTimeout, pre, c.describe())
			break
		}
		id, _ := o.findIDPostMortem()
		ws, _ := c.state.Sys().(syscall.WaitStatus)
		if sent.IsZero() {
			// Finished before the interrupt was due: not an interrupt test.
			late++
			assertHost(t, env, id, fmt.Sprintf("%s %d (finished first)", name, i))
			continue
		}
		valid++
		hits[pre]++
		took := c.exited.Sub(sent)
		maxExit = max(maxExit, took)
		when := fmt.Sprintf("%s %d (phase %s)", name, i, pre)
		if ws.Signaled() {
			t.Errorf("%s: died of signal %v, want exit %d\n%s", when, ws.Signal(), exitStopped, c.describe())
		} else if code := c.state.ExitCode(); code != exitStopped {
			// An interrupt after the final status was decided may end in 0;
			// then run.json must say ok with every cell.
			r, err := result.ReadRun(filepath.Join(out, "run.json"))
			if code == exitOK && err == nil && r.Status == result.RunOK && len(r.Cells) == sc.cells {
				late++
			} else {
				t.Errorf("%s: exit %d, want %d\n%s", when, code, exitStopped, c.describe())
			}
		}
		switch {
		case second == "sent" && strings.Contains(c.stderr.String(), "teardown in progress"):
			secondServed++
		case second != "":
			secondAfterExit++
		}
		if took > exitTimeout {
			t.Errorf("%s: exit took %v, want at most %v", when, took, exitTimeout)
		}
		r, err := result.ReadRun(filepath.Join(out, "run.json"))
		if err != nil {
			t.Errorf("%s: run.json: %v", when, err)
		} else {
			if id != "" && r.RunID != id {
				t.Errorf("%s: run.json run_id %s, registry %s", when, r.RunID, id)
			}
			id = r.RunID
			if c.state.ExitCode() == exitStopped && r.Status != result.RunInterrupted {
				t.Errorf("%s: run.json status %q, want %q", when, r.Status, result.RunInterrupted)
			}
			if r.Finished == nil {
				t.Errorf("%s: run.json has no finished time", when)
			}
			if len(r.Cells) < o.cellsDone {
				t.Errorf("%s: run.json has %d cells; a reader saw %d before the interrupt", when, len(r.Cells), o.cellsDone)
			}
			checkCells(t, sc, when, r)
			for _, f := range []string{"cells.csv", "summary.md"} {
				if _, err := os.Stat(filepath.Join(out, f)); err != nil {
					t.Errorf("%s: %s missing: %v", when, f, err)
				}
			}
			if tm := tmpFiles(out); len(tm) > 0 {
				t.Errorf("%s: temporary files left: %v", when, tm)
			}
			t.Logf("%s %d: %-8s -> exit %d in %v, %d cells kept, run %s, second signal %s",
				name, i, pre, c.state.ExitCode(), took.Round(time.Millisecond), len(r.Cells), r.RunID, orDash(second))
		}
		if len(o.tornJSON) > 0 {
			t.Errorf("%s: run.json read torn while the run was alive: %v", when, o.tornJSON)
		}
		// No cleanup: an interrupted run removes everything itself.
		assertHost(t, env, id, when)
	}
	if valid < n {
		t.Errorf("%s: only %d of %d interrupts landed in %d tries", name, valid, n, tries)
	}
	extra := ""
	if double {
		extra = fmt.Sprintf("; second signal served during teardown %d, after exit %d", secondServed, secondAfterExit)
	}
	t.Logf("%s: %d interrupts (%d runs finished first), phases: %s; slowest exit %v%s; %v",
		name, valid, late, phaseCounts(hits), maxExit.Round(time.Millisecond), extra, time.Since(begin).Round(time.Millisecond))
}

// TestInterruptWhileConnectPending: Ctrl-C while a client waits in connect
// (the lockout cell, with a long connect_timeout) must stop the run
// promptly, not when the connect times out.
func TestInterruptWhileConnectPending(t *testing.T) {
	skipUnlessChaos(t)
	env := &chaosEnv{work: t.TempDir()}
	env.bin = buildTwlab(t)
	sc := *lockoutScen
	sc.file = filepath.Join(env.work, "lockout.yaml")
	if err := os.WriteFile(sc.file, []byte(sc.yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	const bound = 5 * time.Second
	out := filepath.Join(env.work, "out")
	before := stateFiles()
	c := startChild(t, env, &sc, out, "-q", "--set", "load.connect_timeout=25s", "--set", "load.duration=40s")
	defer c.kill()
	o := newObserver(&sc, c, before)
	var loadAt time.Time
	for c.running() && (loadAt.IsZero() || time.Since(loadAt) < 3*time.Second) {
		if o.poll() == phLoad && loadAt.IsZero() {
			loadAt = time.Now()
		}
		time.Sleep(time.Millisecond)
	}
	if !c.running() {
		t.Fatalf("run ended before the interrupt\n%s", c.describe())
	}
	c.cmd.Process.Signal(syscall.SIGINT)
	sent := time.Now()
	if !c.wait(40 * time.Second) {
		t.Fatalf("still running 40 s after SIGINT\n%s", c.describe())
	}
	took := c.exited.Sub(sent)
	if code := c.state.ExitCode(); code != exitStopped {
		t.Errorf("exit %d, want %d\n%s", code, exitStopped, c.describe())
	}
	if took > bound {
		t.Errorf("SIGINT 3 s into the load (a client waiting in connect, connect_timeout 25s): exit took %v, want at most %v", took.Round(time.Millisecond), bound)
	} else {
		t.Logf("exit %v after SIGINT", took.Round(time.Millisecond))
	}
	id, _ := o.findIDPostMortem()
	if left := leftovers(id); id != "" && len(left) > 0 {
		t.Errorf("run %s left behind: %s", id, strings.Join(left, ", "))
	}
}

// TestInterruptStorm: Ctrl-C held down (SIGINT as fast as it can be sent
// from a random moment until the process is gone) must still end in exit
// 130 with the lab torn down and run.json interrupted, never in death by a
// signal.
func TestInterruptStorm(t *testing.T) {
	skipUnlessChaos(t)
	env := &chaosEnv{work: t.TempDir()}
	env.bin = buildTwlab(t)
	sc := *chaosScen
	sc.file = filepath.Join(env.work, "chaos.yaml")
	if err := os.WriteFile(sc.file, []byte(sc.yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	const runs = 8
	codes := map[string]int{}
	for i := 0; i < runs; i++ {
		out := filepath.Join(env.work, fmt.Sprintf("storm-%d", i))
		before := stateFiles()
		c := startChild(t, env, &sc, out, "-q")
		o := newObserver(&sc, c, before)
		at := time.Duration(200+rand.IntN(2300)) * time.Millisecond
		for c.running() && (o.id == "" || time.Since(c.start) < at) {
			o.poll()
			time.Sleep(time.Millisecond)
		}
		sent := 0
		for c.running() {
			if c.cmd.Process.Signal(syscall.SIGINT) == nil {
				sent++
			}
		}
		if !c.wait(exitTimeout) {
			c.kill()
			t.Fatalf("run %d: still running %v into the storm", i, exitTimeout)
		}
		ws, _ := c.state.Sys().(syscall.WaitStatus)
		what := fmt.Sprintf("exit %d", c.state.ExitCode())
		if ws.Signaled() {
			what = "killed by " + ws.Signal().String()
		}
		codes[what]++
		id, _ := o.findIDPostMortem()
		r, err := result.ReadRun(filepath.Join(out, "run.json"))
		switch {
		case ws.Signaled() || c.state.ExitCode() != exitStopped:
			status := "?"
			if err == nil {
				status = r.Status
			}
			t.Errorf("run %d (%d SIGINTs from %v): %s, want exit %d (run.json status %s)", i, sent, at, what, exitStopped, status)
		case err != nil:
			t.Errorf("run %d: run.json: %v", i, err)
		case r.Status != result.RunInterrupted:
			t.Errorf("run %d: run.json status %s, want interrupted", i, r.Status)
		}
		if id != "" {
			if left := leftovers(id); len(left) > 0 {
				t.Errorf("run %d: run %s left behind: %s", i, id, strings.Join(left, ", "))
			}
		}
	}
	t.Logf("%d runs under a SIGINT storm: %v", runs, codes)
}
