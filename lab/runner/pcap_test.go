package runner_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/twlab/twlab/lab/capture"
	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/runner"
	"github.com/twlab/twlab/lab/scenario"
)

// TestPcapFidelity runs every cell of nat-paws and nat-paws-fixed-skew
// (shortened) with captures of the server's link and checks that the three
// ways of counting SYNs agree exactly: the nftables counters (syn.in), this
// package's pcap reader, and tshark on the same file; and that the kernel
// dropped no frame of any capture (a drop would make the comparison
// meaningless, so it fails the test).
func TestPcapFidelity(t *testing.T) {
	roottest.Skip(t)
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed: make deps (apt-get install tshark)")
	}
	for _, name := range []string{"nat-paws.yaml", "nat-paws-fixed-skew.yaml"} {
		src, err := os.ReadFile("../../scenarios/" + name)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := scenario.Load(name, src, scenario.Options{Set: []string{"load.connections=40", "load.duration=4s"}})
		if err != nil {
			t.Fatal(err)
		}
		out := t.TempDir()
		r, _, err := runner.Run(context.Background(), plan, runner.Options{OutDir: out, Pcap: true})
		if err != nil {
			t.Fatal(err)
		}
		ran := 0
		for _, c := range r.Cells {
			if c.Status == result.CellNA {
				continue
			}
			ran++
			if c.Status != result.CellOK || len(c.Pcap) != 1 {
				t.Errorf("%s %s: %s %s, %d captures", name, c.ID, c.Status, c.Reason, len(c.Pcap))
				continue
			}
			p := c.Pcap[0]
			if p.KernelDrops != 0 || p.Truncated {
				t.Errorf("%s %s: the capture lost frames (kernel drops %d, truncated %v)", name, c.ID, p.KernelDrops, p.Truncated)
			}
			path := filepath.Join(out, p.Path)
			frames, err := capture.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ours := 0
			for _, f := range frames {
				if s, ok := capture.ParseTCP(f.Data); ok && s.Flags&(capture.FlagSYN|capture.FlagACK) == capture.FlagSYN {
					ours++
				}
			}
			b, err := exec.Command(tshark, "-r", path, "-Y", "tcp.flags.syn == 1 && tcp.flags.ack == 0", "-T", "fields", "-e", "frame.number").Output()
			if err != nil {
				t.Fatalf("tshark: %v", err)
			}
			theirs := len(strings.Fields(string(b)))
			if int64(ours) != c.SYN.In || int64(theirs) != c.SYN.In {
				t.Errorf("%s %s: SYNs: nftables %d, twlab's reader %d, tshark %d", name, c.ID, c.SYN.In, ours, theirs)
			} else {
				t.Logf("%s %s: %s SYNs by all three counts", name, c.ID, strconv.FormatInt(c.SYN.In, 10))
			}
		}
		if ran == 0 {
			t.Errorf("%s: no cell ran", name)
		}
	}
}
