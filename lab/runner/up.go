package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/twlab/twlab/lab/kernel"
	"github.com/twlab/twlab/lab/nat"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/runstate"
	"github.com/twlab/twlab/lab/scenario"
	"github.com/twlab/twlab/lab/topo"
)

// Up builds the lab of one cell (topology, NAT, knobs, skew, a listening
// server) and keeps it until ctx ends, for teaching and debugging with
// `twlab exec`. ready receives the lab's description once it is up;
// stopping, when ctx has ended and before the teardown, the processes the
// user left inside (they keep running, in namespaces with no name).
func Up(ctx context.Context, file string, c *scenario.Cell, log *slog.Logger, ready func(*runstate.Lab) error, stopping func([]runstate.Occupant)) (err error) {
	if err := CheckEnv(); err != nil {
		return err
	}
	if log == nil {
		log = slog.Default()
	}
	id, err := runstate.NewRunID()
	if err != nil {
		return err
	}
	if err := runstate.Register(id, "up:"+file); err != nil {
		return err
	}
	defer runstate.Unregister(id)
	rc := &result.Cell{ID: c.ID, Knobs: map[string]string{}, Matrix: map[string]string{}}
	// The timestamp clock rate (fixed skew) and how to count TIME_WAIT
	// come from detection, as in a run.
	facts, ferr := kernel.Detect(ctx, kernel.Options{})
	if ferr != nil {
		log.Warn("kernel detection incomplete", "err", ferr)
	}
	cr := &cellRun{id: id, c: c, s: c.S, rc: rc, log: log.With("cell", c.ID), opt: cellOpts{facts: facts}, lab: &cellLab{}}
	defer func() {
		if terr := cr.lab.Close(); terr != nil {
			err = errors.Join(err, fmt.Errorf("teardown: %w", terr))
		}
	}()
	if err := cr.setup(ctx); err != nil {
		return err
	}
	if rc.Status == result.CellNA {
		return &EnvError{fmt.Sprintf("cell %s cannot run on this kernel: %s", c.ID, rc.Reason)}
	}
	target := net.JoinHostPort(topo.ServerAddr.String(), strconv.Itoa(c.S.Server.Port))
	if c.S.LVS.Mode == nat.ModeFullNAT {
		target = net.JoinHostPort(c.S.LVS.VIP, strconv.Itoa(c.S.Server.Port))
	}
	// What the kernel holds, read back in every node, as a run records it
	// when its load starts: the lab file and `up` show it.
	if rc.KnobsActual, err = cr.readBack(cr.knobs); err != nil {
		return err
	}
	info := &runstate.Lab{RunID: id, Scenario: file, Cell: c.ID, Target: target, Started: time.Now().UTC(), Knobs: rc.KnobsActual}
	for _, n := range cr.lab.topo.Nodes() {
		info.Nodes = append(info.Nodes, runstate.LabNode{Name: n.Name, Netns: n.NSName, Addr: n.Addr.String(), Link: n.Link})
	}
	if err := runstate.SaveLab(info); err != nil {
		return err
	}
	defer runstate.RemoveLab(id)
	if ready != nil {
		if err := ready(info); err != nil {
			return err
		}
	}
	log.Info("lab up", "run_id", id, "cell", c.ID)
	<-ctx.Done()
	if stopping != nil {
		// Looked for before the teardown: afterwards the namespaces have
		// no name to find them by.
		stopping(runstate.Occupants(info))
	}
	return nil
}
