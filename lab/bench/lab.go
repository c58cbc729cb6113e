package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/topo"
)

// LabSizes are the client counts the lab bench builds.
var LabSizes = []int{2, 16, 64}

// RefScript is the reference: the lab twlab builds (see lab/topo and
// nat.Apply), written as the plain shell script of ip and nft commands a
// person would write, one command per step. It uses twlab's names
// (twlab-<id>-…) and addresses (198.18.0.0/15) and removes what it built
// with "teardown". It runs with TWLAB_ID and TWLAB_CLIENTS set.
const RefScript = `set -euo pipefail
P=twlab-$TWLAB_ID
N=$TWLAB_CLIENTS
nodes="lvs server $(seq -f 'c%g' 1 "$N")"
case "$1" in
build)
  for n in $nodes; do ip netns add "$P-$n"; done
  for n in $nodes; do ip -n "$P-$n" link set lo up; done
  ip -n "$P-lvs" link add "$P-br" address 02:74:77:00:03:01 type bridge
  ip -n "$P-lvs" addr add 198.18.0.1/24 dev "$P-br"
  ip -n "$P-lvs" link set "$P-br" up
  for i in $(seq 1 "$N"); do
    printf -v port_mac '02:74:77:00:02:%02x' "$i"
    printf -v client_mac '02:74:77:00:01:%02x' "$i"
    ip -n "$P-lvs" link add "$P-v$i" address "$port_mac" txqueuelen 1000 type veth \
      peer name "$P-c$i" address "$client_mac" netns "$P-c$i"
    ip -n "$P-lvs" link set "$P-v$i" master "$P-br"
    ip -n "$P-lvs" link set "$P-v$i" up
    ip -n "$P-c$i" addr add "198.18.0.$((10 + i))/24" dev "$P-c$i"
    ip -n "$P-c$i" link set "$P-c$i" up
    ip -n "$P-c$i" route add default via 198.18.0.1
    ip -n "$P-c$i" neigh replace 198.18.0.1 lladdr 02:74:77:00:03:01 dev "$P-c$i" nud permanent
    ip -n "$P-lvs" neigh replace "198.18.0.$((10 + i))" lladdr "$client_mac" dev "$P-br" nud permanent
  done
  ip -n "$P-lvs" link add "$P-ls" address 02:74:77:00:04:01 txqueuelen 1000 type veth \
    peer name "$P-sl" address 02:74:77:00:05:01 netns "$P-server"
  ip -n "$P-lvs" addr add 198.18.1.1/24 dev "$P-ls"
  ip -n "$P-lvs" link set "$P-ls" up
  ip -n "$P-lvs" neigh replace 198.18.1.2 lladdr 02:74:77:00:05:01 dev "$P-ls" nud permanent
  ip -n "$P-server" addr add 198.18.1.2/24 dev "$P-sl"
  ip -n "$P-server" link set "$P-sl" up
  ip -n "$P-server" neigh replace 198.18.1.1 lladdr 02:74:77:00:04:01 dev "$P-sl" nud permanent
  ip -n "$P-server" route add 198.18.0.0/24 via 198.18.1.1
  ip netns exec "$P-lvs" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
  ip netns exec "$P-lvs" nft -f - <<EOF
table ip twlab {
  chain prerouting { type nat hook prerouting priority -100; }
  chain postrouting { type nat hook postrouting priority 100;
    oifname "$P-ls" meta l4proto tcp snat to 198.18.1.1
  }
}
EOF
  ;;
teardown)
  for n in $nodes; do ip netns del "$P-$n" 2>/dev/null || true; done
  ;;
esac
`

// runScript runs RefScript with mode for lab id and n clients.
func runScript(ctx context.Context, mode, id string, n int) error {
	return runScriptOf(ctx, RefScript, mode, id, n)
}

// runScriptOf runs script with mode for lab id and n clients.
func runScriptOf(ctx context.Context, script, mode, id string, n int) error {
	cmd := exec.CommandContext(ctx, "bash", "-c", script, "twlab-ref", mode)
	cmd.Env = append(os.Environ(), "TWLAB_ID="+id, "TWLAB_CLIENTS="+strconv.Itoa(n))
	// The script starts jobs in the background (the tuned one's parallel
	// "ip netns add"): a cancel ends its whole process group, or they would
	// go on making namespaces after the teardown has run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("reference script %s: %w: %s", mode, err, out.String())
	}
	return nil
}

// timeScript builds and tears down script's lab; the teardown runs even
// when the build failed halfway.
func timeScript(ctx context.Context, script string, n int) (time.Duration, error) {
	id, unreg, err := newRunID()
	if err != nil {
		return 0, err
	}
	defer unreg()
	start := time.Now()
	berr := runScriptOf(ctx, script, "build", id, n)
	terr := runScriptOf(context.WithoutCancel(ctx), script, "teardown", id, n)
	el := time.Since(start)
	// Whatever the script left (it should leave nothing; after a failed
	// or cancelled build it may) goes now, all of it.
	var left []string
	names, _ := topo.ListNamespaces()
	for _, name := range names {
		if rid, ok := topo.RunIDOf(name); ok && rid == id {
			topo.DeleteNamespace(name)
			left = append(left, name)
		}
	}
	switch {
	case berr != nil:
		return 0, berr
	case terr != nil:
		return 0, terr
	case len(left) > 0:
		return 0, fmt.Errorf("reference script left %s behind", strings.Join(left, ", "))
	}
	return el, nil
}

// timeTwlab builds and destroys twlab's lab of n clients.
func timeTwlab(ctx context.Context, n int, opt Options, prof *profiler) (build, teardown time.Duration, err error) {
	id, unreg, err := newRunID()
	if err != nil {
		return 0, 0, err
	}
	defer unreg()
	if n == LabSizes[len(LabSizes)-1] {
		prof.start("lab")
		defer prof.stop()
	}
	start := time.Now()
	lab, berr := buildLab(ctx, id, n, opt.Log)
	mid := time.Now()
	derr := lab.Destroy()
	end := time.Now()
	if berr != nil {
		return 0, 0, berr
	}
	if derr != nil {
		return 0, 0, derr
	}
	return mid.Sub(start), end.Sub(mid), nil
}

// benchLab times build + teardown of the lab for each size, twlab against
// the reference script, alternating which goes first.
func benchLab(ctx context.Context, opt Options) ([]Result, error) {
	// iproute2 makes /run/netns a shared mount on its first `ip netns add`;
	// twlab does it first, as for every lab, so that nothing is shadowed.
	if err := netnsutil.EnsureNetnsDir(); err != nil {
		return nil, err
	}
	prof := newProfiler(opt.CPUProfile)
	var out []Result
	for _, n := range LabSizes {
		var tw, ref, tuned, twBuild, twDown []float64
		for i := 0; i < opt.Repeat; i++ {
			runTw := func() error {
				b, d, err := timeTwlab(ctx, n, opt, prof)
				if err != nil {
					return err
				}
				ms := float64((b + d).Microseconds()) / 1e3
				tw = append(tw, ms)
				twBuild = append(twBuild, float64(b.Microseconds())/1e3)
				twDown = append(twDown, float64(d.Microseconds())/1e3)
				fmt.Fprintf(opt.Progress, "lab %d clients: twlab  %.1f ms (build %.1f, teardown %.1f)\n", n, ms, float64(b.Microseconds())/1e3, float64(d.Microseconds())/1e3)
				return nil
			}
			script := func(src, what string, into *[]float64) func() error {
				return func() error {
					d, err := timeScript(ctx, src, n)
					if err != nil {
						return err
					}
					ms := float64(d.Microseconds()) / 1e3
					*into = append(*into, ms)
					fmt.Fprintf(opt.Progress, "lab %d clients: %s %.1f ms\n", n, what, ms)
					return nil
				}
			}
			steps := []func() error{runTw, script(RefScript, "script", &ref), script(RefScriptTuned, "tuned script", &tuned)}
			// The order rotates between repeats, so that with a multiple of
			// 3 repeats each arm builds first, second and third equally
			// often (within a repeat an arm still follows the same one).
			steps = append(steps[i%len(steps):], steps[:i%len(steps)]...)
			for _, s := range steps {
				if err := s(); err != nil {
					return out, err
				}
				// Namespaces are freed by the kernel after they are deleted;
				// let that finish so it does not slow the next build.
				pause(ctx, 300*time.Millisecond)
			}
		}
		t, r, u := median(tw), median(ref), median(tuned)
		note := fmt.Sprintf("build+teardown of %d clients, box (bridge, SNAT, ip_forward), server; twlab build %.1f ms + teardown %.1f ms (medians)%s", n, median(twBuild), median(twDown), balanceNote(opt.Repeat, 3))
		rp, plainMet := atLeast(r/t, 5)
		ru, fastMet := atLeast(u/t, 3)
		plain := Result{Name: fmt.Sprintf("lab-%d", n), Unit: "ms", Twlab: round(t, 1), Reference: ptr(round(r, 1)),
			RefTool: "ip+nft script, a command per step", Ratio: ptr(rp), TwlabRuns: tw, ReferenceRuns: ref,
			Goal: "ratio >= 5 (script/twlab)", Met: plainMet, Note: note}
		if n == 64 {
			plain.Goal = "ratio >= 5 and twlab < 1000 ms"
			plain.Met = plainMet && t < 1000
		}
		fast := Result{Name: fmt.Sprintf("lab-%d-tuned", n), Unit: "ms", Twlab: round(t, 1), Reference: ptr(round(u, 1)),
			RefTool: "tuned script: parallel netns, ip -batch per namespace", Ratio: ptr(ru), TwlabRuns: tw, ReferenceRuns: tuned,
			Goal: "ratio >= 3 (tuned script/twlab)", Met: fastMet, Note: note}
		if n < 16 {
			fast.Goal, fast.Met, fast.ReportOnly = "reported (the goal is for 16 and 64 clients)", true, true
		}
		out = append(out, plain, fast)
	}
	return out, nil
}
