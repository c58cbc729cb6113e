package result_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twlab/twlab/lab/result"
)

func TestTimeseriesRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), result.TimeseriesName)
	if err := result.CreateTimeseries(p); err != nil {
		t.Fatal(err)
	}
	a := []*result.Series{
		{Name: result.SeriesTimeWait, Node: "server", T: []int64{0, 100, 200}, V: []int64{0, 1, 1}},
		{Name: result.SeriesOK, Node: "clients", T: []int64{0, 100, 200}, V: []int64{0, 5, 9}},
	}
	if n, err := result.AppendTimeseries(p, 0, a); err != nil || n != 6 {
		t.Fatalf("append: %d rows, %v", n, err)
	}
	if _, err := result.AppendTimeseries(p, 3, a[:1]); err != nil {
		t.Fatal(err)
	}
	// A torn last line, as a killed run may leave, is ignored.
	f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("3,300,time_wa")
	f.Close()
	got, err := result.ReadTimeseries(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got[0]) != 2 || len(got[3]) != 1 {
		t.Fatalf("cells %v", got)
	}
	if s := got[0][1]; s.Key() != "ok@clients" || len(s.T) != 3 || s.V[2] != 9 || s.T[1] != 100 {
		t.Errorf("series %+v", s)
	}
	// A bad line in the middle is an error.
	_, err = result.ParseTimeseries(strings.NewReader("cell,t_ms,series,node,value\n0,x,ok,clients,1\n0,100,ok,clients,2\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad line: %v", err)
	}
}

// An unreadable line is named by its line in the file: blank lines were
// skipped without being counted, and the warning pointed lines too early.
func TestTimeseriesErrorLineCountsBlankLines(t *testing.T) {
	in := "\ncell,t_ms,series,node,value\n\n\n0,1,time_wait,server,5\nGARBAGE\n0,2,time_wait,server,6\n"
	_, err := result.ParseTimeseries(strings.NewReader(in))
	if err == nil || !strings.Contains(err.Error(), "line 6:") {
		t.Errorf("error %v, want it at line 6", err)
	}
}
