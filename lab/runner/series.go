package runner

import (
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/twlab/twlab/lab/load"
	"github.com/twlab/twlab/lab/nat"
	"github.com/twlab/twlab/lab/probe"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/scenario"
	"github.com/twlab/twlab/lab/topo"
	"github.com/vishvananda/netns"
)

// maxClientSeries bounds timeseries.csv: per-client TIME_WAIT series are
// written for up to this many clients; the "clients" sum always.
const maxClientSeries = 8

// maxSamples bounds every series of a cell: its load duration at the
// sampling interval, plus a margin for the last connections and settling.
func maxSamples(s *scenario.Scenario) int { return int(s.Load.Duration.D()/sampleEvery) + 64 }

// timeseriesFile is what run.json says about timeseries.csv.
func timeseriesFile(plan *scenario.Plan) *result.TimeseriesFile {
	most := 0
	for _, c := range plan.Cells {
		most = max(most, maxSamples(c.S))
	}
	return &result.TimeseriesFile{Path: result.TimeseriesName, Format: "long", Columns: result.TimeseriesColumns,
		IntervalMS: int(sampleEvery / time.Millisecond), MaxPoints: most, MaxClientSeries: maxClientSeries}
}

// seriesSources are read by the sampler at every tick besides TIME_WAIT.
func (cr *cellRun) seriesSources(live *load.Live, synBefore map[string]uint64, before map[string]map[string]int64) []probe.Source {
	srv := cr.lab.topo.Server
	return SeriesSources(live, srv.NS, synBefore, cr.lab.probe(srv.Name), before[srv.Name])
}

// SeriesSources are the readings taken at every sampling tick besides
// TIME_WAIT: the load's outcome counters, the server's nftables SYN/RST
// counters and its PAWS counters, each as a count since the given baseline.
// Exported so that `twlab bench probe` measures exactly what a run samples.
func SeriesSources(live *load.Live, serverNS netns.NsHandle, synBefore map[string]uint64, server *probe.Node, serverBefore map[string]int64) []probe.Source {
	srcs := []probe.Source{func() ([]probe.Value, error) {
		return []probe.Value{
			{Series: result.SeriesAttempts, Node: "clients", V: live.Attempts.Load()},
			{Series: result.SeriesOK, Node: "clients", V: live.OK.Load()},
			{Series: result.SeriesFailed, Node: "clients", V: live.Failed.Load()},
		}, nil
	}}
	srcs = append(srcs, func() ([]probe.Value, error) {
		c, err := nat.ReadSYNCounters(serverNS)
		if err != nil {
			return nil, err
		}
		d := func(k string) int64 { return int64(c[k] - synBefore[k]) }
		return []probe.Value{
			{Series: result.SeriesSYNIn, Node: "server", V: d(nat.CounterSYNIn)},
			{Series: result.SeriesSYNACKOut, Node: "server", V: d(nat.CounterSYNACKOut)},
			{Series: result.SeriesRSTIn, Node: "server", V: d(nat.CounterRSTIn)},
			{Series: result.SeriesRSTOut, Node: "server", V: d(nat.CounterRSTOut)},
		}, nil
	})
	if server != nil {
		srcs = append(srcs, func() ([]probe.Value, error) {
			c, err := server.Counters()
			if err != nil {
				return nil, err
			}
			return []probe.Value{{Series: result.SeriesPAWS, Node: "server", V: result.PAWS(c, serverBefore)},
				{Series: result.SeriesSYNACKRetrans, Node: "server", V: c[synRetransKey] - serverBefore[synRetransKey]}}, nil
		})
	}
	return srcs
}

// cellSeries turns the sampler's readings into the cell's series: TIME_WAIT
// of server, lvs, the clients' sum and each client (up to maxClientSeries),
// then the sources' series.
func (cr *cellRun) cellSeries(tw map[string]*probe.TWStats, extra []*probe.Series) []*result.Series {
	var out []*result.Series
	twSeries := func(node string, st *probe.TWStats) *result.Series {
		s := &result.Series{Name: result.SeriesTimeWait, Node: node}
		for _, smp := range st.Series {
			s.T = append(s.T, smp.T.Milliseconds())
			s.V = append(s.V, int64(smp.TW))
		}
		return s
	}
	for _, n := range []*topo.Node{cr.lab.topo.Server, cr.lab.topo.LVS} {
		if st := tw[n.Name]; st != nil {
			out = append(out, twSeries(n.Name, st))
		}
	}
	// The clients' sum at every tick at which each client was read.
	type acc struct {
		sum int64
		n   int
	}
	sums := map[time.Duration]*acc{}
	var ticks []time.Duration
	for _, c := range cr.lab.topo.Clients {
		st := tw[c.Name]
		if st == nil {
			continue
		}
		for _, smp := range st.Series {
			a := sums[smp.T]
			if a == nil {
				a = &acc{}
				sums[smp.T] = a
				ticks = append(ticks, smp.T)
			}
			a.sum += int64(smp.TW)
			a.n++
		}
	}
	slices.Sort(ticks)
	sum := &result.Series{Name: result.SeriesTimeWait, Node: "clients"}
	for _, t := range ticks {
		if a := sums[t]; a.n == len(cr.lab.topo.Clients) {
			sum.T = append(sum.T, t.Milliseconds())
			sum.V = append(sum.V, a.sum)
		}
	}
	out = append(out, sum)
	if len(cr.lab.topo.Clients) <= maxClientSeries {
		for _, c := range cr.lab.topo.Clients {
			if st := tw[c.Name]; st != nil {
				out = append(out, twSeries(c.Name, st))
			}
		}
	}
	for _, e := range extra {
		s := &result.Series{Name: e.Name, Node: e.Node}
		for _, p := range e.Points {
			s.T = append(s.T, p.T.Milliseconds())
			s.V = append(s.V, p.V)
		}
		out = append(out, s)
	}
	return out
}

// recordSeries appends a finished cell's series to timeseries.csv, notes
// what it wrote in the cell and frees them.
func recordSeries(dir string, rc *result.Cell, log *slog.Logger) {
	if len(rc.Series) == 0 {
		return
	}
	ct := &result.CellTimeseries{}
	var first, last int64 = -1, -1
	for _, s := range rc.Series {
		ct.Series = append(ct.Series, s.Key())
		if len(s.T) > ct.Samples {
			ct.Samples = len(s.T)
			first, last = s.T[0], s.T[len(s.T)-1]
		}
	}
	if ct.Samples > 1 && last > first {
		ct.RateHz = float64(int64(float64(ct.Samples-1)/(float64(last-first)/1000)*100+0.5)) / 100
	}
	rows, err := result.AppendTimeseries(filepath.Join(dir, result.TimeseriesName), rc.Index, rc.Series)
	if err != nil {
		log.Error("write timeseries", "cell", rc.ID, "err", err)
		rc.Notes = append(rc.Notes, "timeseries.csv: "+err.Error())
	} else {
		ct.Rows = rows
		rc.Timeseries = ct
	}
	rc.Series = nil
}

// synRetransKey counts the SYN-ACKs a server sent again: the server opens
// no connection, so no SYN of its own is among them.
const synRetransKey = "TcpExt.TCPSynRetrans"

// synCounters reads the server's nftables SYN/RST counters and, paired with
// them, its SYN-ACKs sent again (synRetransKey). A handshake the server
// holds sends its SYN-ACK again on its own timer, also after the load has
// ended, and one sent between the two reads would count in one and not the
// other; so the kernel counter is read before and after the nftables ones,
// again until it did not move. paired is false when it still moved after
// four tries (the figures may then be off by the few sent meanwhile).
func synCounters(ns netns.NsHandle, server *probe.Node) (_ map[string]uint64, _ int64, paired bool, _ error) {
	retrans := func() (int64, error) {
		if server == nil {
			return 0, nil
		}
		c, err := server.Counters()
		return c[synRetransKey], err
	}
	r0, err := retrans()
	if err != nil {
		return nil, 0, false, err
	}
	for try := 0; ; try++ {
		c, err := nat.ReadSYNCounters(ns)
		if err != nil {
			return nil, 0, false, err
		}
		r1, err := retrans()
		if err != nil {
			return nil, 0, false, err
		}
		if r1 == r0 || try == 3 {
			return c, r1, r1 == r0, nil
		}
		r0 = r1
	}
}
