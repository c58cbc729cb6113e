package vm

import (
	"bytes"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/twlab/twlab/lab/result"
)

// cellSummary is one cell's outcome in one kernel, in a few characters.
func cellSummary(c *result.Cell) string {
	if c == nil {
		return "-"
	}
	switch c.Status {
	case result.CellNA:
		return "n/a"
	}
	s := c.Status
	if c.Load != nil {
		s += fmt.Sprintf(" %d/%d", c.Load.OK, c.Load.Attempts)
	}
	if n := c.Nodes["server"]; n != nil {
		s += fmt.Sprintf(" paws=%d", n.Summary["paws"])
		if v := n.Counters["TcpExt.PAWSPassive"]; v > 0 {
			s += fmt.Sprintf(" (passive %d)", v)
		}
	}
	if c.SYN != nil && c.SYN.Unanswered > 0 {
		s += fmt.Sprintf(" unans=%d", c.SYN.Unanswered)
	}
	return s
}

// Matrix merges the kernels' runs: one row per cell id, one column per
// kernel, then the timing rows.
func Matrix(results []*Result) string {
	var ids []string
	seen := map[string]bool{}
	byKernel := make([]map[string]*result.Cell, len(results))
	for i, r := range results {
		byKernel[i] = map[string]*result.Cell{}
		if r.Run == nil {
			continue
		}
		for _, c := range r.Run.Cells {
			byKernel[i][c.ID] = c
			if !seen[c.ID] {
				seen[c.ID] = true
				ids = append(ids, c.ID)
			}
		}
	}
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	head := []string{"cell"}
	for _, r := range results {
		head = append(head, r.Kernel.Label)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	anyDiff := false
	for _, id := range ids {
		row := []string{id}
		var vals []string
		for i := range results {
			v := cellSummary(byKernel[i][id])
			row = append(row, v)
			vals = append(vals, v)
		}
		if differs(vals) {
			row[0] = "* " + id
			anyDiff = true
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	timing := func(name string, f func(r *Result) string) {
		row := []string{name}
		for _, r := range results {
			row = append(row, f(r))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	timing("(run status)", func(r *Result) string {
		if r.Err != "" {
			return "error: " + r.Err
		}
		return r.Run.Status
	})
	timing("(cells / overhead / total s)", func(r *Result) string {
		if r.Timing == nil {
			return fmt.Sprintf("- / - / %.1f (%s)", r.TotalS, r.Accel)
		}
		return fmt.Sprintf("%.1f / %.1f / %.1f (%s)", r.Timing.Cells, r.Timing.Overhead, r.Timing.Total, r.Accel)
	})
	timing("(overhead: boot/modules/detect/transfer/exit s)", func(r *Result) string {
		t := r.Timing
		if t == nil {
			return "-"
		}
		return fmt.Sprintf("%.2f / %.2f / %.2f / %.2f / %.2f (%s)", t.Boot, t.Modules, t.Detect, t.Transfer, t.Exit, t.BootFrom)
	})
	tw.Flush()
	if anyDiff {
		b.WriteString("* the kernels disagree on this cell (status, or whether PAWS moved)\n")
	}
	writeReasons(&b, results, ids, byKernel)
	return b.String()
}

// writeReasons says why cells did not run or failed, per kernel: a matrix
// column that reads "n/a" is a question until its reason is on screen.
// Cells sharing a reason share a line, so a whole scenario n/a for one
// cause (a global knob, a missing sysctl) stays one line.
func writeReasons(b *bytes.Buffer, results []*Result, ids []string, byKernel []map[string]*result.Cell) {
	header := false
	for i, r := range results {
		var order []string
		cells := map[string][]string{}
		for _, id := range ids {
			c := byKernel[i][id]
			if c == nil || (c.Status != result.CellNA && c.Status != result.CellFailed) || c.Reason == "" {
				continue
			}
			why := c.Reason
			if c.Status == result.CellNA {
				why = "n/a: " + strings.TrimPrefix(why, "n/a: ")
			} else {
				why = c.Status + ": " + why
			}
			if cells[why] == nil {
				order = append(order, why)
			}
			cells[why] = append(cells[why], id)
		}
		for _, why := range order {
			if !header {
				b.WriteString("\nwhy:\n")
				header = true
			}
			fmt.Fprintf(b, "  %s  %s\n      %s\n", r.Kernel.Label, strings.Join(cells[why], "; "), why)
		}
	}
}

// differs reports whether the outcomes differ in status or in whether PAWS
// moved: the things a kernel regression changes. A kernel where the cell
// did not run ("-": it did not boot, or its run ended early) says nothing
// about the cell; its failure is reported on its own.
func differs(all []string) bool {
	var vals []string
	for _, v := range all {
		if v != "-" {
			vals = append(vals, v)
		}
	}
	if len(vals) < 2 {
		return false
	}
	key := func(v string) string {
		f := strings.Fields(v)
		k := ""
		if len(f) > 0 {
			k = f[0]
		}
		return k + fmt.Sprint(strings.Contains(v, "paws=0"))
	}
	for _, v := range vals[1:] {
		if key(v) != key(vals[0]) {
			return true
		}
	}
	return false
}
