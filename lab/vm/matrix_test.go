package vm

import (
	"strings"
	"testing"

	"github.com/twlab/twlab/lab/result"
)

// TestMatrixSaysWhy: a column of "n/a" must come with its reasons, one line
// per distinct reason and kernel, and a kernel where everything ran adds
// none.
func TestMatrixSaysWhy(t *testing.T) {
	global := "n/a: net.ipv4.tcp_timestamps is global on this kernel (one value for the whole VM)"
	old := &Result{Kernel: &Kernel{Label: "4.10.17"}, Accel: "tcg", Run: &result.Run{Status: result.RunNA, Cells: []*result.Cell{
		{ID: "ts=1", Status: result.CellNA, Reason: global},
		{ID: "ts=0", Status: result.CellNA, Reason: global},
		{ID: "rate", Status: result.CellFailed, Reason: "1 of 2 expectations failed"},
	}}}
	cur := &Result{Kernel: &Kernel{Label: "6.12"}, Accel: "tcg", Run: &result.Run{Status: result.RunOK, Cells: []*result.Cell{
		{ID: "ts=1", Status: result.CellOK}, {ID: "ts=0", Status: result.CellOK}, {ID: "rate", Status: result.CellOK},
	}}}
	out := Matrix([]*Result{old, cur})
	i := strings.Index(out, "\nwhy:\n")
	if i < 0 {
		t.Fatalf("no reasons under the matrix:\n%s", out)
	}
	why := out[i:]
	for _, want := range []string{
		"4.10.17  ts=1; ts=0\n      " + global + "\n",
		"4.10.17  rate\n      failed: 1 of 2 expectations failed\n",
	} {
		if !strings.Contains(why, want) {
			t.Errorf("reasons lack %q:\n%s", want, why)
		}
	}
	if strings.Contains(why, "6.12") {
		t.Errorf("a kernel where every cell ran has reasons:\n%s", why)
	}
	if strings.Count(why, "global on this kernel") != 1 {
		t.Errorf("one reason shared by two cells is printed more than once:\n%s", why)
	}
	if out := Matrix([]*Result{cur}); strings.Contains(out, "why:") {
		t.Errorf("reasons printed where every cell ran:\n%s", out)
	}
}

// A kernel that did not boot has no cells: it is reported on its own, and
// marks no cell as one where the kernels disagree.
func TestMatrixIgnoresKernelsWithoutCells(t *testing.T) {
	ok := func(label string) *Result {
		return &Result{Kernel: &Kernel{Label: label}, Accel: "tcg", Run: &result.Run{Status: result.RunOK, Cells: []*result.Cell{
			{ID: "a", Status: result.CellOK}, {ID: "b", Status: result.CellOK}}}}
	}
	dead := &Result{Kernel: &Kernel{Label: "5.10"}, Err: "the guest showed no sign of life"}
	out := Matrix([]*Result{ok("6.1"), dead, ok("6.12")})
	if strings.Contains(out, "* a") || strings.Contains(out, "* b") {
		t.Errorf("cells marked as differing because one kernel did not boot:\n%s", out)
	}
	other := ok("6.18")
	other.Run.Cells[1].Status = result.CellFailed
	if out := Matrix([]*Result{ok("6.1"), dead, other}); !strings.Contains(out, "* b") || strings.Contains(out, "* a") {
		t.Errorf("a real difference beside a kernel that did not boot is not marked (only it):\n%s", out)
	}
}
