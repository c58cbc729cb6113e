package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

const stream = `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"p","Test":"TestA","Output":"    a_test.go:12: qemu-system-x86_64 not installed\n"}
{"Action":"output","Package":"p","Test":"TestA","Output":"--- SKIP: TestA (0.00s)\n"}
{"Action":"skip","Package":"p","Test":"TestA"}
{"Action":"run","Package":"p","Test":"TestOld"}
{"Action":"output","Package":"p","Test":"TestOld","Output":"    old_test.go:3: no pre-4.12 kernel given\n"}
{"Action":"skip","Package":"p","Test":"TestOld"}
{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:9: got 3, want 4\n"}
{"Action":"fail","Package":"p","Test":"TestB"}
{"Action":"output","Package":"p","Output":"FAIL\tp\t0.1s\n"}
{"Action":"fail","Package":"p"}
`

func TestReport(t *testing.T) {
	rules := []rule{{test: regexp.MustCompile("^(TestOld)$"), text: "no pre-4.12 kernel", why: "bring one"}}
	var out bytes.Buffer
	if code := report(strings.NewReader(stream), &out, rules, true); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	s := out.String()
	for _, want := range []string{"got 3, want 4", "FAIL\tp", "skipped tests (2)", "p TestA: qemu-system-x86_64 not installed  [NOT ALLOWED in CI]", "TestOld: no pre-4.12 kernel given  [allowed: bring one]", "1 skip(s) not listed"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	// Outside CI the same skips are listed, not failed; only the failing
	// package fails the run.
	passing := strings.ReplaceAll(strings.ReplaceAll(stream, `"Action":"fail"`, `"Action":"pass"`), "FAIL\tp", "ok\tp")
	out.Reset()
	if code := report(strings.NewReader(passing), &out, rules, false); code != 0 {
		t.Errorf("outside CI: exit %d, want 0\n%s", code, out.String())
	}
	if strings.Contains(out.String(), "got 3") {
		t.Error("a passing test's output was printed")
	}
}

// A compile error (go 1.24+ build events) is shown and fails the run; a
// test killed by the package's -timeout, which gets no fail event of its
// own, still has its output printed.
func TestBuildFailAndUnfinished(t *testing.T) {
	in := `{"ImportPath":"p [p.test]","Action":"build-output","Output":"p/a_test.go:3:1: syntax error\n"}
{"ImportPath":"p [p.test]","Action":"build-fail"}
{"Action":"run","Package":"q","Test":"TestHang"}
{"Action":"output","Package":"q","Test":"TestHang","Output":"    hang_test.go:7: waiting for the guest\n"}
{"Action":"output","Package":"q","Output":"panic: test timed out after 20m0s\n"}
{"Action":"output","Package":"q","Output":"FAIL\tq\t1200.0s\n"}
`
	var out bytes.Buffer
	if code := report(strings.NewReader(in), &out, nil, false); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{"syntax error", "tests that did not finish (1)", "q TestHang", "waiting for the guest"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
