package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/vm"
	"github.com/twlab/twlab/scenarios"
)

// twlab runs the command in-process. It never gets a valid scenario with
// `run`, which would build real namespaces.
func twlab(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsage(t *testing.T) {
	code, out, errs := twlab(t)
	if code != exitUsage || out != "" || !strings.Contains(errs, "Usage:") {
		t.Errorf("no args: code %d, stdout %q, stderr %q", code, out, errs)
	}
	code, _, errs = twlab(t, "frobnicate")
	if code != exitUsage || !strings.Contains(errs, `unknown command "frobnicate"`) || !strings.Contains(errs, "Usage:") {
		t.Errorf("unknown command: code %d, stderr %q", code, errs)
	}
	code, out, _ = twlab(t, "help")
	if code != exitOK || !strings.Contains(out, "twlab validate FILE...") {
		t.Errorf("help: code %d, stdout %q", code, out)
	}
}

// Arguments a command does not take are refused (they were ignored, so a
// typo looked like success), and -h exits 0 for every command.
func TestStrayArgumentsAndHelp(t *testing.T) {
	cache := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"list", "x"}, exitUsage},
		{[]string{"labs", "x"}, exitUsage},
		{[]string{"version", "x"}, exitUsage},
		{[]string{"doctor", "x"}, exitUsage},
		{[]string{"kernel", "list", "--cache", cache, "x"}, exitUsage},
		{[]string{"kernel", "list", "--cache", cache, "--jobs", "3"}, exitUsage},
		{[]string{"vm", "kernels", "--cache", cache, "x"}, exitUsage},
		{[]string{"vm", "kernels", "-h"}, exitOK},
		{[]string{"vm", "--kernel", "x", "run", "-h"}, exitOK},
		{[]string{"list", "-h"}, exitOK},
		{[]string{"kernel", "list", "--cache", cache}, exitOK},
		{[]string{"kernel", "build", "--cache", cache, "--jobs", "-3", "src"}, exitUsage},
	} {
		if code, _, errs := twlab(t, c.args...); code != c.code {
			t.Errorf("%v: exit %d, want %d (%.100s)", c.args, code, c.code, errs)
		}
	}
	// Bad vm numbers are said before any kernel is fetched (as root: a
	// user is told to use sudo first).
	if os.Geteuid() == 0 {
		for _, bad := range [][]string{{"--mem", "-5"}, {"--jobs", "-1"}, {"--timeout", "-1s"}} {
			args := append(append([]string{"vm", "--cache", cache}, bad...), "--kernel", "debian:no-such", "run", "nat-paws.yaml")
			if code, _, errs := twlab(t, args...); code != exitUsage || !strings.Contains(errs, bad[0]) {
				t.Errorf("vm %v: exit %d (%.120s), want 2 naming the flag", bad, code, errs)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		code, out, errs := twlab(t, arg)
		if code != exitOK || out != "twlab "+version+"\n" || errs != "" {
			t.Errorf("%s: code %d, stdout %q, stderr %q", arg, code, out, errs)
		}
	}
}

func TestList(t *testing.T) {
	code, out, errs := twlab(t, "list")
	if code != exitOK || errs != "" {
		t.Fatalf("code %d, stderr %q", code, errs)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(scenarios.Names()) {
		t.Errorf("%d lines for %d shipped scenarios:\n%s", len(lines), len(scenarios.Names()), out)
	}
	re := regexp.MustCompile(`(?m)^nat-paws\.yaml +The classic case: clients behind one SNAT address, each with its own TCP timestamp clock, and a server that closes first and so holds TIME_WAIT\.$`)
	if !re.MatchString(out) {
		t.Errorf("no one-line summary of nat-paws.yaml in:\n%s", out)
	}
}

func TestValidateShipped(t *testing.T) {
	code, out, errs := twlab(t, "validate", "nat-paws.yaml")
	if code != exitOK || out != "nat-paws.yaml: ok (6 cells)\n" || errs != "" {
		t.Errorf("code %d, stdout %q, stderr %q", code, out, errs)
	}
	// Without the extension, and with --set after the name.
	code, out, errs = twlab(t, "validate", "nat-paws", "--set", "server.net.ipv4.tcp_rfc1337=1")
	if code != exitOK || out != "nat-paws.yaml: ok (4 cells)\n" {
		t.Errorf("--set: code %d, stdout %q, stderr %q", code, out, errs)
	}
	code, _, errs = twlab(t, "validate", "nat-paws.yaml", "--set", "load.bogus=1")
	if code != exitUsage || !strings.Contains(errs, "--set: load.bogus: unknown key") {
		t.Errorf("bad --set: code %d, stderr %q", code, errs)
	}
	code, _, errs = twlab(t, "validate")
	if code != exitUsage || !strings.Contains(errs, "usage: twlab validate FILE...") {
		t.Errorf("no files: code %d, stderr %q", code, errs)
	}
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateBadFile(t *testing.T) {
	bad := writeTemp(t, "bad.yaml", "name: bad\nload:\n  conections: 5\n")
	good := writeTemp(t, "good.yaml", "name: good\n")
	code, out, errs := twlab(t, "validate", good, bad)
	if code != exitUsage {
		t.Errorf("code %d, want %d", code, exitUsage)
	}
	if out != good+": ok (1 cell)\n" {
		t.Errorf("stdout %q", out)
	}
	if !strings.HasPrefix(errs, bad+":3:3: load.conections: unknown field; valid fields here: connections") {
		t.Errorf("stderr %q, want the file:line:col of the typo", errs)
	}

	code, _, errs = twlab(t, "validate", filepath.Join(t.TempDir(), "missing.yaml"))
	if code != exitUsage || !strings.Contains(errs, "missing.yaml: cannot read scenario") {
		t.Errorf("missing file: code %d, stderr %q", code, errs)
	}
	code, _, errs = twlab(t, "validate", "no-such-scenario")
	if code != exitUsage || !strings.Contains(errs, "no-such-scenario: no such file and no shipped scenario of that name") {
		t.Errorf("unknown name: code %d, stderr %q", code, errs)
	}
	dir := t.TempDir()
	code, _, errs = twlab(t, "validate", dir)
	if code != exitUsage || !strings.Contains(errs, "is a directory") {
		t.Errorf("directory: code %d, stderr %q", code, errs)
	}
	// A folder named like a shipped scenario (what `--out nat-paws`
	// makes) does not hide it; one named like none is still refused.
	t.Chdir(dir)
	for _, d := range []string{"nat-paws", "not-shipped"} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if code, out, errs := twlab(t, "validate", "nat-paws"); code != exitOK {
		t.Errorf("folder nat-paws hides the shipped scenario: code %d, %s%s", code, out, errs)
	}
	if code, _, errs := twlab(t, "validate", "not-shipped"); code != exitUsage || !strings.Contains(errs, "is a directory and no shipped scenario has that name") {
		t.Errorf("folder of no shipped name: code %d, stderr %q", code, errs)
	}
}

func TestRunRefusesBeforeBuilding(t *testing.T) {
	// Every case must fail before runner.CheckEnv: as root, a valid scenario
	// would build namespaces.
	bad := writeTemp(t, "bad.yaml", "name: bad\nclients: {count: 1, cuont: 2}\n")
	for _, tc := range []struct {
		args []string
		frag string
	}{
		{[]string{"run", filepath.Join(t.TempDir(), "missing.yaml")}, "cannot read scenario"},
		{[]string{"run", "no-such-scenario.yaml"}, "no such file and no shipped scenario"},
		// Several scenarios are all validated before any runs: a bad second
		// one stops the run before the first builds anything.
		{[]string{"run", "nat-paws.yaml", "no-such.yaml"}, "no-such.yaml: no such file and no shipped scenario"},
		{[]string{"run"}, "want a SCENARIO"},
		{[]string{"run", "--bogus-flag", "nat-paws.yaml"}, "flag provided but not defined"},
		{[]string{"run", bad}, bad + ":2:21: clients.cuont: unknown field"},
		{[]string{"run", "nat-paws.yaml", "--set", "load.connections"}, "--set: \"load.connections\": want path=value"},
		{[]string{"run", "nat-paws.yaml", "--only", "nosuch == 1"}, `--only: unknown name "nosuch"`},
	} {
		code, out, errs := twlab(t, tc.args...)
		if code != exitUsage || !strings.Contains(errs, tc.frag) {
			t.Errorf("%q: code %d, stderr %q; want %d and %q", tc.args, code, errs, exitUsage, tc.frag)
		}
		if out != "" {
			t.Errorf("%q: stdout %q, want nothing", tc.args, out)
		}
	}
}

func TestShow(t *testing.T) {
	want, ok := scenarios.Read("nat-paws.yaml")
	if !ok {
		t.Fatal("nat-paws.yaml not shipped")
	}
	onDisk, err := os.ReadFile(filepath.Join("..", "..", "scenarios", "nat-paws.yaml"))
	if err != nil || !bytes.Equal(onDisk, want) {
		t.Fatalf("embedded nat-paws.yaml differs from the file: %v", err)
	}
	code, out, errs := twlab(t, "show", "nat-paws.yaml")
	if code != exitOK || out != string(want) || errs != "" {
		t.Errorf("code %d, stderr %q, stdout starts %.60q", code, errs, out)
	}
	p := writeTemp(t, "mine.yaml", "name: mine\n")
	if code, out, _ = twlab(t, "show", p); code != exitOK || out != "name: mine\n" {
		t.Errorf("show file: code %d, stdout %q", code, out)
	}
	if code, _, errs = twlab(t, "show"); code != exitUsage || !strings.Contains(errs, "usage: twlab show SCENARIO") {
		t.Errorf("show without args: code %d, stderr %q", code, errs)
	}
	if code, _, errs = twlab(t, "show", "nope"); code != exitUsage || !strings.Contains(errs, "no shipped scenario") {
		t.Errorf("show unknown: code %d, stderr %q", code, errs)
	}
}

// TestReadmeBuildsAreStatic runs every way of building twlab that the
// README's quick start names and checks that `twlab vm` can use the result
// as a guest's /init. The user's shell has no CGO_ENABLED=0 (make test
// exports it), so it is removed from the environment first.
func TestReadmeBuildsAreStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds twlab several times; skipped with -short")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	quick := string(readme)
	quick = quick[strings.Index(quick, "## Quick start"):]
	quick = quick[:strings.Index(quick, "\n```\n\n")]
	re := regexp.MustCompile(`(?:CGO_ENABLED=\S+ )?go build [^#\n]*|make build`)
	cmds := re.FindAllString(quick, -1)
	if len(cmds) < 2 {
		t.Fatalf("the quick start names %d build commands (%q); want make build and a go build", len(cmds), cmds)
	}
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "CGO_ENABLED=") {
			env = append(env, e)
		}
	}
	for _, c := range cmds {
		bin := filepath.Join(t.TempDir(), "twlab")
		c = strings.TrimSpace(c)
		line := strings.Replace(c, "-o bin/twlab", "-o "+bin, 1)
		if c == "make build" {
			line = "make build BIN=" + bin
		}
		cmd := exec.Command("sh", "-c", line)
		cmd.Dir, cmd.Env = "../..", env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", c, err, out)
			continue
		}
		if err := vm.CheckStatic(bin); err != nil {
			t.Errorf("the README's %q: %v", c, err)
		}
	}
}

// A scenario that cannot start (here: its results folder cannot be made)
// still gets a suite in the JUnit file, failed with the reason; before, a
// run whose every scenario failed to start wrote no JUnit file at all.
func TestJUnitHasScenariosThatDidNotStart(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: twlab run checks for root before it starts a scenario (run `sudo make test`)")
	}
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	junit := filepath.Join(dir, "junit.xml")
	code, _, errs := twlab(t, "run", "-q", "--out", filepath.Join(blocker, "out"), "--junit", junit,
		"nat-paws.yaml", "timestamps-off.yaml")
	if code != 1 || !strings.Contains(errs, "results folder") {
		t.Fatalf("code %d, stderr %q; want 1 and the results folder error", code, errs)
	}
	b, err := os.ReadFile(junit)
	if err != nil {
		t.Fatalf("no JUnit file: %v", err)
	}
	x := string(b)
	for _, want := range []string{`<testsuite name="nat-paws"`, `<testsuite name="timestamps-off"`, `failures="2"`, "results folder"} {
		if !strings.Contains(x, want) {
			t.Errorf("JUnit lacks %q:\n%s", want, x)
		}
	}
}

// Two runs of scenarios with one name never share a results folder: the
// second overwrote the first's run.json, without a word (the default folder
// has a one-second stamp; --out with several scenarios used the name).
func TestRunsNeverShareAFolder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a scenario (its cells are n/a here, so it builds no lab) (run `sudo make test`)")
	}
	only := "server.net.ipv4.tcp_tw_recycle == 1" // n/a from Linux 4.12 on: detection only, no lab
	root := t.TempDir()
	code, _, errs := twlab(t, "run", "-q", "--results", root, "--only", only, "nat-paws.yaml", "nat-paws.yaml")
	if code != exitNothing && code != exitOK {
		t.Fatalf("code %d: %s", code, errs)
	}
	runs, _ := filepath.Glob(filepath.Join(root, "nat-paws", "*", "run.json"))
	if len(runs) != 2 {
		t.Errorf("default folders: %d run.json files, want 2: %v", len(runs), runs)
	}
	out := t.TempDir()
	code, _, errs = twlab(t, "run", "-q", "--out", out, "--only", only, "nat-paws.yaml", "nat-paws.yaml")
	if code != exitNothing && code != exitOK {
		t.Fatalf("code %d: %s", code, errs)
	}
	for _, d := range []string{"nat-paws", "nat-paws-2"} {
		if _, err := os.Stat(filepath.Join(out, d, "run.json")); err != nil {
			t.Errorf("--out with one name twice: %v", err)
		}
	}
}

// A SIGPIPE from a write to some other closed pipe (a load connection
// after an RST, QEMU's input after it exited) does not stop the run: only
// a closed stdout or stderr does.
func TestSIGPIPEFromOtherPipeIgnored(t *testing.T) {
	var stderr bytes.Buffer
	ctx, cancel := signalContext(&stderr, "stopping")
	defer cancel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("a write to a pipe without reader succeeded")
	}
	w.Close()
	select {
	case <-ctx.Done():
		t.Fatalf("a closed pipe that is not the output stopped the run: %s", stderr.String())
	case <-time.After(300 * time.Millisecond):
	}
}
