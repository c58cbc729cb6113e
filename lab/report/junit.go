package report

import (
	"encoding/xml"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/twlab/twlab/lab/result"
)

// JUnit XML, the dialect CI systems (Jenkins, GitLab, GitHub reporters)
// read: one test suite per run, one test case per cell; a failed cell is a
// failure, an n/a cell is skipped with its reason.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Hostname   string          `xml:"hostname,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut *junitText    `xml:"system-out,omitempty"`
}

type junitText struct {
	Text string `xml:",cdata"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Body    string `xml:",cdata"`
}

func secs(f float64) string { return fmt.Sprintf("%.3f", f) }

// JUnit renders runs (one suite each) as JUnit XML.
func JUnit(runs []*result.Run) ([]byte, error) {
	top := junitSuites{Name: "twlab"}
	var total float64
	scenarioName := func(r *result.Run) string {
		return strings.TrimSuffix(r.ScenarioFile[strings.LastIndex(r.ScenarioFile, "/")+1:], ".yaml")
	}
	kernels := map[string]map[string]bool{}
	for _, r := range runs {
		n := scenarioName(r)
		if kernels[n] == nil {
			kernels[n] = map[string]bool{}
		}
		kernels[n][r.Kernel] = true
	}
	for _, r := range runs {
		name := scenarioName(r)
		if len(kernels[name]) > 1 {
			// One scenario on several kernels (twlab vm): a suite each.
			name += "@" + r.Kernel
		}
		s := junitSuite{Name: name, Timestamp: r.Started.UTC().Format("2006-01-02T15:04:05"), Hostname: r.Host.Hostname,
			Properties: []junitProperty{{"kernel", r.Kernel}, {"run_id", r.RunID}, {"status", r.Status}}}
		for _, o := range r.Overrides {
			s.Properties = append(s.Properties, junitProperty{"set", o})
		}
		if r.Only != "" {
			s.Properties = append(s.Properties, junitProperty{"only", r.Only})
		}
		var suiteTime float64
		for _, c := range r.Cells {
			tc := junitCase{Name: c.ID, Classname: "twlab." + name, Time: secs(c.DurationS), SystemOut: &junitText{xmlChars(cellText(c))}}
			switch c.Status {
			case result.CellNA:
				tc.Skipped = &junitMessage{Message: c.Reason}
				s.Skipped++
			case result.CellFailed, result.CellInterrupted:
				// An interrupted cell's figures are complete: it fails on
				// its expectations like any other.
				var b strings.Builder
				for _, e := range c.Expect {
					if !e.OK {
						if e.Error != "" {
							fmt.Fprintf(&b, "%s: %s\n", e.Expr, e.Error)
						} else {
							m, w := expectFigures(e)
							fmt.Fprintf(&b, "%s: measured %s, wanted %s\n", e.Expr, m, w)
						}
					}
				}
				if c.Status == result.CellInterrupted && b.Len() == 0 {
					break
				}
				// A cell that broke (a value the kernel refused, a twlab
				// bug) is no failed expectation: CI tells them apart.
				kind := "twlab.expectation"
				if c.ErrorKind != "" {
					kind = "twlab." + c.ErrorKind
				}
				tc.Failure = &junitMessage{Message: c.Reason, Type: kind, Body: xmlChars(b.String())}
				s.Failures++
			}
			s.Tests++
			suiteTime += c.DurationS
			s.Cases = append(s.Cases, tc)
		}
		if r.Status == result.RunInterrupted {
			s.Properties = append(s.Properties, junitProperty{"interrupted", "true"})
			// The cells not finished are a failure CI sees, not a
			// property it ignores: a run cut short is not a green suite.
			tc := junitCase{Name: "(interrupted)", Classname: "twlab." + name, Time: secs(0), // a parser reads time as a number
				Failure: &junitMessage{Message: "run interrupted", Type: "twlab.interrupted"}}
			if left := NotFinished(r); left > 0 {
				tc.Failure.Message = fmt.Sprintf("run interrupted: %d of %d cells not finished", left, r.CellsPlanned)
			}
			if r.Error != "" {
				tc.Failure.Message += ": " + r.Error
			}
			s.Cases = append(s.Cases, tc)
			s.Tests++
			s.Failures++
		} else if r.Error != "" {
			// The run failed without a failed cell (its time bound came
			// between cells or in a teardown): exit 1 must not come with
			// a suite that has no failure.
			s.Cases = append(s.Cases, junitCase{Name: "(run)", Classname: "twlab." + name, Time: secs(0),
				Failure: &junitMessage{Message: r.Error, Type: "twlab.run"}})
			s.Tests++
			s.Failures++
		}
		s.Time = secs(suiteTime)
		total += suiteTime
		top.Tests += s.Tests
		top.Failures += s.Failures
		top.Skipped += s.Skipped
		top.Suites = append(top.Suites, s)
	}
	top.Time = secs(total)
	b, err := xml.MarshalIndent(top, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(b, '\n')...), nil
}

// xmlChars replaces what XML 1.0 cannot hold (C0 controls but tab, newline
// and carriage return; U+FFFE, U+FFFF; invalid UTF-8) with U+FFFD. Go writes
// attributes so, but CDATA as it is: one \x01 in an expectation (the
// expression lexer takes any byte in a string) made a file CI could not
// parse.
func xmlChars(s string) string {
	ok := func(r rune) bool {
		return r == '\t' || r == '\n' || r == '\r' || r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
	}
	if strings.IndexFunc(s, func(r rune) bool { return !ok(r) }) < 0 && utf8.ValidString(s) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if !ok(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}

// cellText is a cell's figures and notes for <system-out>.
func cellText(c *result.Cell) string {
	var b strings.Builder
	if l := c.Load; l != nil && l.OK > 0 {
		fmt.Fprintf(&b, "load: %d attempts, %d ok, failed %s; connect p50 %s ms p99 %s ms\n",
			l.Attempts, l.OK, failures(l), ms(l.ConnectMS.P50), ms(l.ConnectMS.P99))
	} else if l != nil {
		fmt.Fprintf(&b, "load: %d attempts, 0 ok, failed %s; no connection completed (no latency)\n", l.Attempts, failures(l))
	}
	if c.SYN != nil {
		fmt.Fprintf(&b, "syn: in %d, synack_out %d (sent again %d), unanswered %d\n", c.SYN.In, c.SYN.SynAckOut, c.SYN.SynAckRetrans, c.SYN.Unanswered)
	}
	if n := c.Nodes["server"]; n != nil {
		keys := make([]string, 0, len(n.Summary))
		for k := range n.Summary {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("server:")
		for _, k := range keys {
			if n.Summary[k] != 0 {
				fmt.Fprintf(&b, " %s=%d", k, n.Summary[k])
			}
		}
		b.WriteString("\n")
	}
	for _, e := range c.Expect {
		mark := "ok"
		if !e.OK {
			mark = "FAILED"
		}
		m, _ := expectFigures(e)
		fmt.Fprintf(&b, "expect %s: %s (measured %s)\n", mark, e.Expr, m)
	}
	for _, n := range c.Notes {
		b.WriteString("note: " + n + "\n")
	}
	return b.String()
}
