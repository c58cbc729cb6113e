// Command testreport reads `go test -json` on stdin, prints what plain
// `go test` would (package lines, the output of failing tests), and ends with
// every skipped test and its reason.
//
// With CI set, a skip is a failure unless the allowed-skips file lists it: a
// root test that skips because a tool or a cache is missing would otherwise
// turn CI green on exactly the machine where a user's first run fails.
//
// Usage: go test -json ./... | go run ./lab/internal/testreport -allowed .ci/allowed-skips
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// rule is one allowed skip: a test name pattern, text the skip message must
// contain, and why it is allowed.
type rule struct {
	test *regexp.Regexp
	text string
	why  string
}

type skip struct {
	pkg, test, reason string
	allowed           *rule
}

func main() {
	allowedPath := flag.String("allowed", "", "`FILE` of allowed skips: TEST_REGEXP | MESSAGE_TEXT | WHY per line")
	flag.Parse()
	var rules []rule
	if *allowedPath != "" {
		var err error
		if rules, err = readRules(*allowedPath); err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			os.Exit(2)
		}
	}
	os.Exit(report(os.Stdin, os.Stdout, rules, os.Getenv("CI") != "" && os.Getenv("CI") != "false"))
}

func readRules(path string) ([]rule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rules []rule
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != 3 {
			return nil, fmt.Errorf("%s:%d: want TEST_REGEXP | MESSAGE_TEXT | WHY", path, i+1)
		}
		re, err := regexp.Compile("^(" + strings.TrimSpace(f[0]) + ")$")
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		rules = append(rules, rule{test: re, text: strings.TrimSpace(f[1]), why: strings.TrimSpace(f[2])})
	}
	return rules, nil
}

func report(in io.Reader, out io.Writer, rules []rule, ci bool) int {
	outputs := map[[2]string][]string{} // per test, until it ends
	var skips []skip
	failed := false
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// Not an event (e.g. the go command's own message): pass it on.
			fmt.Fprintln(out, sc.Text())
			continue
		}
		key := [2]string{e.Package, e.Test}
		switch e.Action {
		case "build-output":
			// compiler errors (go 1.24 and later report them as events)
			fmt.Fprint(out, e.Output)
		case "build-fail":
			failed = true
		case "output":
			if e.Test == "" {
				// "ok pkg 1.2s", "FAIL", build errors; not the chatter
				// that plain go test keeps to itself.
				if o := strings.TrimSpace(e.Output); o != "PASS" && o != "testing: warning: no tests to run" {
					fmt.Fprint(out, e.Output)
				}
			} else {
				outputs[key] = append(outputs[key], e.Output)
			}
		case "fail":
			if e.Test == "" {
				failed = true
				continue
			}
			for _, l := range outputs[key] {
				fmt.Fprint(out, l)
			}
			delete(outputs, key)
		case "skip":
			if e.Test != "" {
				s := skip{pkg: e.Package, test: e.Test, reason: skipReason(outputs[key])}
				for i := range rules {
					if rules[i].test.MatchString(e.Test) && strings.Contains(s.reason, rules[i].text) {
						s.allowed = &rules[i]
						break
					}
				}
				skips = append(skips, s)
			}
			delete(outputs, key)
		case "pass":
			delete(outputs, key)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(out, "testreport: reading go test -json:", err)
		return 1
	}
	// A test that never ended (the package's -timeout or a panic killed
	// the binary) gets no fail event: what it printed is all there is.
	if len(outputs) > 0 {
		keys := make([][2]string, 0, len(outputs))
		for k := range outputs {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
		fmt.Fprintf(out, "\ntests that did not finish (%d):\n", len(keys))
		for _, k := range keys {
			fmt.Fprintf(out, "--- %s %s\n", strings.TrimPrefix(k[0], "github.com/twlab/twlab/"), k[1])
			for _, l := range outputs[k] {
				fmt.Fprint(out, l)
			}
		}
		failed = true
	}
	sort.SliceStable(skips, func(i, j int) bool { return skips[i].pkg < skips[j].pkg })
	bad := 0
	if len(skips) > 0 {
		fmt.Fprintf(out, "\nskipped tests (%d):\n", len(skips))
		for _, s := range skips {
			mark := ""
			switch {
			case s.allowed != nil:
				mark = "  [allowed: " + s.allowed.why + "]"
			case ci:
				mark = "  [NOT ALLOWED in CI]"
				bad++
			}
			fmt.Fprintf(out, "  %s %s: %s%s\n", strings.TrimPrefix(s.pkg, "github.com/twlab/twlab/"), s.test, s.reason, mark)
		}
	} else {
		fmt.Fprintln(out, "\nno test skipped")
	}
	if bad > 0 {
		fmt.Fprintf(out, "\n%d skip(s) not listed in the allowed-skips file: with CI set, a test that skips for a missing tool or cache fails the run\n", bad)
		return 1
	}
	if failed {
		return 1
	}
	return 0
}

// skipReason is what the test said before it skipped, without go test's own
// framing lines.
func skipReason(lines []string) string {
	var parts []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		// "file_test.go:123: message" → "message"
		if i := strings.Index(t, ".go:"); i >= 0 {
			if j := strings.Index(t[i+4:], ": "); j >= 0 {
				t = t[i+4+j+2:]
			}
		}
		parts = append(parts, t)
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return strings.Join(parts, " / ")
}
