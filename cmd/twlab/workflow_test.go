package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestKernelMatrixWorkflow checks the CI workflow users copy: it parses, it
// has a job per kernel (the host, Debian's 5.10, 6.1 and 6.12, an old one)
// and a final compare job, every make target it runs exists, and every twlab
// command in it or in those targets names a real subcommand and real flags.
func TestKernelMatrixWorkflow(t *testing.T) {
	b, err := os.ReadFile("../../.github/workflows/kernel-matrix.yml")
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		Jobs map[string]struct {
			Needs    any `yaml:"needs"`
			Strategy struct {
				Matrix struct {
					Kernel []string `yaml:"kernel"`
				} `yaml:"matrix"`
			} `yaml:"strategy"`
			Steps []struct {
				Run  string `yaml:"run"`
				Uses string `yaml:"uses"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal(b, &wf); err != nil {
		t.Fatalf("the workflow does not parse: %v", err)
	}
	k, ok := wf.Jobs["kernel"]
	if !ok {
		t.Fatal("no kernel job")
	}
	for _, want := range []string{"host", "debian:5.10", "debian:6.1", "debian:6.12", "old"} {
		if !slices.Contains(k.Strategy.Matrix.Kernel, want) {
			t.Errorf("the kernel matrix lacks %s: %v", want, k.Strategy.Matrix.Kernel)
		}
	}
	if c, ok := wf.Jobs["compare"]; !ok || c.Needs != "kernel" {
		t.Errorf("no compare job after the kernel jobs")
	}
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	var scripts []string
	for _, j := range wf.Jobs {
		for _, s := range j.Steps {
			scripts = append(scripts, s.Run)
		}
	}
	makeRE := regexp.MustCompile(`\bmake ([a-z][a-z-]*)`)
	targets := map[string]bool{}
	for _, sc := range scripts {
		for _, m := range makeRE.FindAllStringSubmatch(sc, -1) {
			targets[m[1]] = true
		}
	}
	if len(targets) == 0 {
		t.Fatal("the workflow runs no make target")
	}
	for tgt := range targets {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(tgt) + `:`).Match(makefile) {
			t.Errorf("the workflow runs make %s, which the Makefile does not have", tgt)
		}
	}
	// twlab commands of the workflow and of the Makefile's matrix targets.
	cmdRE := regexp.MustCompile(`(?:\./bin/twlab|\./\$\(BIN\)) ([^;|&\n]*)`)
	var lines []string
	for _, src := range append(scripts, string(makefile)) {
		for _, m := range cmdRE.FindAllStringSubmatch(src, -1) {
			lines = append(lines, m[1])
		}
	}
	checked := 0
	for _, line := range lines {
		args := strings.Fields(strings.TrimSuffix(strings.TrimSpace(line), "\\"))
		if len(args) == 0 {
			continue
		}
		sub := args[0]
		// The flag sets each part of the line is parsed with.
		helpFor := func(prefix ...string) string {
			_, _, errs := twlab(t, append(prefix, "-h")...)
			return errs
		}
		var help string
		rest := args[1:]
		switch sub {
		case "run", "compare", "report", "doctor", "bench", "validate", "cleanup":
			help = helpFor(sub)
		case "kernel":
			if len(rest) == 0 {
				t.Errorf("%q: kernel without a command", line)
				continue
			}
			help, rest = helpFor("kernel", rest[0]), rest[1:]
		case "vm":
			i := slices.Index(rest, "run")
			if i < 0 {
				t.Errorf("%q: vm without run", line)
				continue
			}
			checkFlags(t, line, rest[:i], helpFor("vm"))
			help, rest = helpFor("vm", "--kernel", "x", "run"), rest[i+1:]
		default:
			t.Errorf("%q: twlab has no command %q", line, sub)
			continue
		}
		checkFlags(t, line, rest, help)
		checked++
	}
	if checked < 3 {
		t.Errorf("only %d twlab commands found in the workflow and the Makefile: %q", checked, lines)
	}
}

// checkFlags reports every --flag of args that help does not describe.
func checkFlags(t *testing.T, line string, args []string, help string) {
	t.Helper()
	for _, a := range args {
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !regexp.MustCompile(`(?m)^\s+-` + regexp.QuoteMeta(name) + `\b`).MatchString(help) {
			t.Errorf("%q: flag -%s is not one of the command's (help:\n%s)", line, name, help)
		}
	}
}
