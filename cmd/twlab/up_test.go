package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/runstate"
	"github.com/twlab/twlab/lab/topo"
)

// The interactive commands as a teacher uses them: up -d, exec, down, with
// the exit codes the README gives and nothing left afterwards.
func TestInteractiveLab(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: brings a real lab up")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: brings a real lab up (run `sudo go test ./cmd/twlab -run Interactive`)")
	}
	bin := buildTwlab(t)
	scen, err := filepath.Abs("../../scenarios/nat-paws.yaml")
	if err != nil {
		t.Fatal(err)
	}
	twlab := func(args ...string) (string, int) {
		out, err := exec.Command(bin, args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	// A cell this kernel cannot have is exit 3, detached or not.
	if _, err := os.Stat("/proc/sys/net/ipv4/tcp_tw_recycle"); err != nil {
		for _, args := range [][]string{{"up", scen, "--cell", "5"}, {"up", scen, "--cell", "5", "-d"}} {
			if out, code := twlab(args...); code != exitEnv || !strings.Contains(out, "cannot run on this kernel") {
				t.Errorf("%v: exit %d, want %d:\n%s", args, code, exitEnv, out)
			}
		}
	}
	// A value the kernel refuses is bad input, exit 2, as in run; one of a
	// knob twlab knows is refused before any lab is built.
	for _, args := range [][]string{{"up", scen, "--cell", "2", "--set", "server.net.ipv4.tcp_keepalive_time=banana"}, {"up", scen, "--cell", "2", "--set", "server.net.ipv4.tcp_keepalive_time=banana", "-d"}} {
		if out, code := twlab(args...); code != exitUsage || !strings.Contains(out, "bad input: ") {
			t.Errorf("%v: exit %d, want %d:\n%s", args, code, exitUsage, out)
		}
	}
	if out, code := twlab("up", scen, "--cell", "2", "--set", "server.net.ipv4.tcp_rfc1337=banana"); code != exitUsage || !strings.Contains(out, `value "banana": want 0 or 1`) {
		t.Errorf("up with tcp_rfc1337=banana: exit %d, want %d and the values it takes:\n%s", code, exitUsage, out)
	}
	out, code := twlab("up", scen, "--cell", "2", "-d")
	if code != exitOK {
		t.Fatalf("up -d: exit %d:\n%s", code, out)
	}
	// Cell 2 is rfc1337=1: up shows the knobs as the kernel holds them.
	if !strings.Contains(out, "In force (read back from each node):") || !strings.Contains(out, "  server.net.ipv4.tcp_rfc1337 = 1\n") {
		t.Errorf("up -d does not show the knobs in force:\n%s", out)
	}
	labs, err := runstate.Labs()
	if err != nil || len(labs) != 1 {
		t.Fatalf("labs %v, %v; want the one brought up", labs, err)
	}
	id := labs[0].RunID
	defer twlab("down", "--lab", id)
	if out, code := twlab("exec", "--lab", id, "server", "--", "sh", "-c", "echo $TWLAB_NODE $NSTAT_HISTORY"); code != 0 ||
		strings.TrimSpace(out) != "server "+runstate.NstatHistory(id, "server") {
		t.Errorf("exec: exit %d, %q; want the node and its own nstat history", code, out)
	}
	if out, code := twlab("exec", "--lab", id, "c9", "--", "true"); code != exitUsage || !strings.Contains(out, "nodes: ") {
		t.Errorf("exec into no node: exit %d:\n%s", code, out)
	}
	// As a shell: 127 not found, 126 found but not runnable.
	if out, code := twlab("exec", "--lab", id, "server", "--", "no-such-command-here"); code != 127 {
		t.Errorf("exec of a missing command: exit %d, want 127:\n%s", code, out)
	}
	if out, code := twlab("exec", "--lab", id, "server", "--", "/"); code != 126 {
		t.Errorf("exec of a directory: exit %d, want 126:\n%s", code, out)
	}
	// The kernel's own refusal names the command: "twlab exec: no such
	// file or directory" said nothing of which.
	script := filepath.Join(t.TempDir(), "no-interpreter")
	os.WriteFile(script, []byte("#!/nonexistent/interp\n"), 0o755)
	if out, code := twlab("exec", "--lab", id, "server", "--", script); code != 127 || !strings.Contains(out, script+": ") {
		t.Errorf("exec of a script without its interpreter: exit %d, want 127 naming it:\n%s", code, out)
	}
	if out, code := twlab("exec", "--lab", id, "server", "--", "/"); strings.Contains(out, "exec: exec:") {
		t.Errorf("exec of a directory (%d): the prefix twice:\n%s", code, out)
	}
	if out, code := twlab("exec", "--lab", id, "server", "--", "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("exec passes the command's exit code: %d, want 7:\n%s", code, out)
	}
	os.WriteFile(runstate.NstatHistory(id, "server"), nil, 0o644) // as nstat would
	// A process the user left inside: down names it and leaves it running.
	stay := leaveInside(t, bin, id)
	out, code = twlab("down", "--lab", id)
	if code != exitOK {
		t.Fatalf("down: exit %d:\n%s", code, out)
	}
	if want := fmt.Sprintf("1 process was still inside its namespaces, which live on with them, without a name and without the lab's links: %d sleep (c1); `sudo kill %d` ends them", stay.Process.Pid, stay.Process.Pid); !strings.Contains(out, want) {
		t.Errorf("down with a process inside said:\n%s\nwant %q", out, want)
	}
	if err := stay.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("down ended the user's process: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(runstate.LabsDir, id+"*"))
	if len(left) > 0 {
		t.Errorf("down left %v", left)
	}
	if names := listRunNS(id); len(names) > 0 {
		t.Errorf("down left namespaces %v", names)
	}

	// A lab whose owner was killed: down takes what it left, registration
	// and log included.
	if out, code := twlab("up", scen, "--cell", "1", "-d"); code != exitOK {
		t.Fatalf("up -d: exit %d:\n%s", code, out)
	}
	labs, _ = runstate.Labs()
	if len(labs) != 1 {
		t.Fatalf("labs %v", labs)
	}
	l := labs[0]
	defer twlab("down", "--lab", l.RunID)
	if err := syscall.Kill(l.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100 && runstate.Alive(l.RunID); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if out, code := twlab("down", "--lab", l.RunID); code != exitOK {
		t.Fatalf("down of a dead lab: exit %d:\n%s", code, out)
	}
	for _, p := range []string{filepath.Join(runstate.Dir, l.RunID+".json"), filepath.Join(runstate.LabsDir, l.RunID+".json"), runstate.UpLogPath(l.PID)} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("down of a dead lab left %s", p)
		}
	}
	if names := listRunNS(l.RunID); len(names) > 0 {
		t.Errorf("down of a dead lab left namespaces %v", names)
	}
}

// Namespaces of an up killed while it built its lab are no lab: labs lists
// them without "no lab is up" above, and down ID / down --all say what
// removes them instead of "no running lab" or nothing at all.
func TestDownSaysWhatRemovesLeftovers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a namespace")
	}
	dead := ""
	for i := 0; i < 4096 && dead == ""; i++ {
		if id := fmt.Sprintf("t%03x", (os.Getpid()+i)%4096); !runstate.InUse(id) && !runstate.Alive(id) {
			dead = id // an id no run holds: its up was killed
		}
	}
	ns := topo.NSName(dead, "server")
	h, err := netnsutil.NewNamed(ns)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	t.Cleanup(func() { topo.DeleteNamespace(ns) })
	code, out, errs := twlab(t, "labs")
	if code != exitOK || !strings.Contains(out, dead+"  leftovers of a killed run") || strings.Contains(out, "no lab is up") {
		t.Errorf("labs: exit %d:\n%s%s", code, out, errs)
	}
	code, _, errs = twlab(t, "down", dead)
	if code != exitUsage || !strings.Contains(errs, "twlab cleanup") || !strings.Contains(errs, dead) {
		t.Errorf("down %s: exit %d: %s", dead, code, errs)
	}
	// With a lab up as well (its own, so that the test never takes down a
	// lab someone else has up on this machine), down --all takes it down
	// and still names the leftovers.
	if labs, err := runstate.Labs(); err != nil || len(labs) > 0 {
		t.Logf("labs are up on this machine (%v): down --all not tried, it would take them down", err)
		return
	}
	if out, err := exec.Command(buildTwlab(t), "up", "../../scenarios/nat-paws.yaml", "--cell", "1", "-d").CombinedOutput(); err != nil {
		t.Fatalf("up -d: %v: %s", err, out)
	}
	// A starting up removes the leftovers of killed runs: made again.
	if h, err := netnsutil.NewNamed(ns); err == nil {
		h.Close()
	}
	code, out, errs = twlab(t, "down", "--all")
	if code != exitOK || !strings.Contains(out, "is down") || !strings.Contains(errs, dead) || !strings.Contains(errs, "twlab cleanup") {
		t.Errorf("down --all with a lab up and leftovers: exit %d:\n%s%s", code, out, errs)
	}
}

// Ctrl-C of a foreground up ends the lab as down does, and says as down does
// which processes the user started inside are left running there.
func TestUpInterruptNamesOccupants(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("needs root and a real lab (not under -short)")
	}
	bin := buildTwlab(t)
	scen, _ := filepath.Abs("../../scenarios/nat-paws.yaml")
	up := exec.Command(bin, "up", scen, "--cell", "2")
	var stderr strings.Builder
	up.Stderr = &stderr
	stdout, err := up.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	defer up.Process.Kill()
	buf := make([]byte, 64<<10)
	var got string
	for !strings.Contains(got, "The lab stays up") {
		n, err := stdout.Read(buf)
		if err != nil {
			t.Fatalf("up ended before its lab was up: %v\n%s%s", err, got, stderr.String())
		}
		got += string(buf[:n])
	}
	var id string
	labs, err := runstate.Labs()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range labs {
		if l.PID == up.Process.Pid {
			id = l.RunID
		}
	}
	leaveInside(t, bin, id)
	up.Process.Signal(os.Interrupt)
	up.Wait()
	if want := fmt.Sprintf("twlab up: lab %s: 1 process was still inside", id); !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
	}
}

// leaveInside starts a sleep in node c1 of lab id, as a user would with
// twlab exec, and waits until the lab's namespaces hold it; it is killed
// when the test ends.
func leaveInside(t *testing.T, bin, id string) *exec.Cmd {
	t.Helper()
	stay := exec.Command(bin, "exec", "--lab", id, "c1", "--", "sleep", "60")
	if err := stay.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stay.Process.Kill(); stay.Wait() })
	lab, err := runstate.FindLab(id)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100 && len(runstate.Occupants(lab)) == 0; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	return stay
}
