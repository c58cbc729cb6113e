package runner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/vishvananda/netns"

	"github.com/twlab/twlab/lab/capture"
	"github.com/twlab/twlab/lab/load"
	"github.com/twlab/twlab/lab/probe"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/skew"
	"github.com/twlab/twlab/lab/sysctl"
	"github.com/twlab/twlab/lab/topo"
)

// cellLab owns every resource a cell acquires. Each is stored the moment it
// exists, so a failure, an n/a return or a panic at any step leaves nothing
// Close cannot see. Close releases them in one fixed order, runs every step
// whatever the earlier ones returned, and can be called twice.
type cellLab struct {
	topo    *topo.Lab                   // namespaces; NAT rules, SYN counters and per-namespace knobs go with them
	globals map[string]string           // previous values of VM-global knobs, saved before the first write
	skews   map[string]*skew.Attachment // eBPF clock skew, by client
	srv     *load.Server
	probes  []*probe.Node
	caps    []*capture.Capture
	sampler *probe.Sampler
	// srcFailed readings of the sampler's sources failed (srcErr the
	// first): gaps in the cell's time series.
	srcFailed int
	srcErr    error
}

// onCloseStep, when set, is called as each step of Close begins (tests
// check the order and that a panicking step stops none of the later ones).
var onCloseStep func(step string)

// Close releases everything the lab holds, in this order:
//
//  1. the sampler, if still running: it reads the probes and the server's
//     counters;
//  2. the captures, before the server, so that a pcap ends with the
//     measurement rather than with the RSTs of the server's close;
//  3. the server;
//  4. the skew attachments, while the client links they sit on exist;
//  5. the probes;
//  6. the namespaces;
//  7. the VM-global knobs, put back in the initial namespace last and
//     whatever failed before: the next cell must not inherit them.
//
// Every step runs even if an earlier one failed or panicked, and the errors
// are joined. A closed field is nil, so a second Close does nothing.
func (l *cellLab) Close() error {
	steps := []struct {
		name string
		run  func() error
	}{
		{"sampler", func() error {
			// Its error is about sampling, not releasing; a cell that
			// stopped it this late has no series to qualify.
			l.stopSampler()
			return nil
		}},
		{"captures", func() error {
			caps := l.caps
			l.caps = nil
			var errs []error
			for _, c := range caps {
				if _, err := c.Stop(); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		}},
		{"server", func() error {
			srv := l.srv
			l.srv = nil
			if srv == nil {
				return nil
			}
			return srv.Close()
		}},
		{"skew", l.dropSkews},
		{"probes", func() error {
			prbs := l.probes
			l.probes = nil
			for _, p := range prbs {
				p.Close()
			}
			return nil
		}},
		{"namespaces", func() error {
			t := l.topo
			l.topo = nil
			return t.Destroy()
		}},
		{"globals", l.restoreGlobals},
	}
	var errs []error
	for _, s := range steps {
		errs = append(errs, closeStep(s.name, s.run))
	}
	return errors.Join(errs...)
}

// closeStep runs one step of Close; a panic in it becomes its error, so
// that the steps after it still run and the namespaces do not outlive it.
func closeStep(name string, run func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: internal error (panic): %v", name, p)
		}
	}()
	if onCloseStep != nil {
		onCloseStep(name)
	}
	return run()
}

// saveGlobal remembers the value a knob global on this kernel has in init
// before the cell first writes it, for restoreGlobals.
func (l *cellLab) saveGlobal(init netns.NsHandle, name string) error {
	if _, saved := l.globals[name]; saved {
		return nil
	}
	old, err := sysctl.Read(init, []string{name})
	if err != nil {
		return err
	}
	if v, ok := old[name]; ok {
		if l.globals == nil {
			l.globals = map[string]string{}
		}
		l.globals[name] = v
	}
	return nil
}

// restoreGlobals puts back every global knob the cell changed.
func (l *cellLab) restoreGlobals() error {
	globals := l.globals
	l.globals = nil
	if len(globals) == 0 {
		return nil
	}
	init, err := sysctl.InitialNS()
	if err != nil {
		return err
	}
	defer init.Close()
	names := make([]string, 0, len(globals))
	for name := range globals {
		names = append(names, name)
	}
	sort.Strings(names)
	// One knob at a time: Apply stops at its first error, and a knob left
	// changed would be taken for the original by the next cell.
	var errs []error
	for _, name := range names {
		if _, err := sysctl.Apply(init, []sysctl.Setting{{Name: name, Requested: globals[name]}}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// attachSkews attaches the eBPF clock skew to every client, offs[i] to
// client i. It stops at the first client where that fails and returns the
// error; the attachments made until then stay in the lab.
func (l *cellLab) attachSkews(offs []int32) error {
	if l.skews == nil {
		l.skews = map[string]*skew.Attachment{}
	}
	for i, c := range l.topo.Clients {
		a, err := skew.Attach(c.NS, c.Link, offs[i])
		if err != nil {
			return err
		}
		l.skews[c.Name] = a
	}
	return nil
}

// dropSkews detaches every skew attachment and says what failed: one left
// behind would skew a client's timestamps on top of whatever comes next.
func (l *cellLab) dropSkews() error {
	skews := l.skews
	l.skews = nil
	var errs []error
	// By name, so that the joined errors read the same in every run.
	for _, name := range slices.Sorted(maps.Keys(skews)) {
		errs = append(errs, skews[name].Close())
	}
	return errors.Join(errs...)
}

// openProbes opens a probe in every node.
func (l *cellLab) openProbes(twByDiag bool) error {
	for _, n := range l.topo.Nodes() {
		p, err := probe.Open(n.Name, n.NS, probe.Options{Link: n.Link, TimeWaitByDiag: twByDiag})
		if err != nil {
			return err
		}
		l.probes = append(l.probes, p)
	}
	return nil
}

// probe returns the probe of the node named name, nil if it has none.
func (l *cellLab) probe(name string) *probe.Node {
	for _, p := range l.probes {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// pcapName is the capture file of a cell's node ("*": every node's, for
// a glob).
func pcapName(cellIndex int, node string) string {
	return fmt.Sprintf("cell-%02d-%s.pcap", cellIndex+1, node)
}

// startCaptures begins a pcap of each node's link:
// DIR/pcap/cell-NN-NODE.pcap, NN counting cells from 1.
func (l *cellLab) startCaptures(dir string, cellIndex int, nodes []*topo.Node, lim capture.Limits) error {
	pdir := filepath.Join(dir, "pcap")
	if err := result.MkdirAll(pdir); err != nil {
		return fmt.Errorf("pcap folder: %w", err)
	}
	for _, n := range nodes {
		path := filepath.Join(pdir, pcapName(cellIndex, n.Name))
		c, err := capture.Start(n.NS, n.Link, path, lim)
		if err != nil {
			return err
		}
		l.caps = append(l.caps, c)
	}
	return nil
}

// stopCaptures ends every capture. It returns the statistics of each one
// that was put in place, its path relative to dir, and the errors of the
// others: one failed capture does not cost the rest their record.
func (l *cellLab) stopCaptures(dir string) ([]capture.Stats, error) {
	caps := l.caps
	l.caps = nil
	var out []capture.Stats
	var errs []error
	for _, c := range caps {
		st, err := c.Stop()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if rel, err := filepath.Rel(dir, st.Path); err == nil {
			st.Path = rel
		}
		out = append(out, st)
	}
	return out, errors.Join(errs...)
}

// startSampler samples the probes and sources until stopSampler or Close.
func (l *cellLab) startSampler(ctx context.Context, every time.Duration, maxLen int, sources ...probe.Source) {
	l.sampler = probe.StartSampler(ctx, l.probes, every, maxLen, sources...)
}

// stopSampler stops the sampler and returns what it gathered; nothing if it
// is not running. Stop takes one last sample each time it is called, so the
// sampler is forgotten at once: it is stopped exactly once.
func (l *cellLab) stopSampler() (map[string]*probe.TWStats, []*probe.Series, error) {
	s := l.sampler
	l.sampler = nil
	if s == nil {
		return nil, nil, nil
	}
	tw, err := s.Stop()
	l.srcFailed, l.srcErr = s.SourceFailures()
	return tw, s.Extra(), err
}
