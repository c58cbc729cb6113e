package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/twlab/twlab/lab/kbuild"
	"github.com/twlab/twlab/lab/report"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/runner"
	"github.com/twlab/twlab/lab/scenario"
	"github.com/twlab/twlab/lab/vm"
)

const vmUsage = `Usage:
  twlab vm --kernel K [--kernel K ...] [vm flags] run [--set ..] [--only ..] [--pcap] SCENARIO
  twlab vm kernels            what debian:VERSION resolves to here, and what is cached

K is a bzImage/vmlinuz path (add --modules DIR for a modular kernel),
built:RELEASE (made by twlab kernel build) or debian:VERSION (e.g. debian:6.1, debian:6.12): the linux-image package is
fetched with apt into the cache (--cache, $TWLAB_CACHE, default ` + vm.DefaultCacheDir + `)
and extracted, never installed. $TWLAB_SEED may name a read-only folder of
.deb files looked at before downloading.

vm flags:
`

func cmdVM(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "kernels" {
		kfs := flag.NewFlagSet("twlab vm kernels", flag.ContinueOnError)
		kfs.SetOutput(stderr)
		kfs.StringVar(&vm.CacheDir, "cache", vm.CacheDir, "kernel cache `DIR`")
		if err := kfs.Parse(args[1:]); err != nil {
			return usageCode(err)
		}
		if kfs.NArg() > 0 {
			fmt.Fprintf(stderr, "twlab vm kernels: unexpected argument %q; it takes only --cache\n", kfs.Arg(0))
			return exitUsage
		}
		return cmdVMKernels(stdout, stderr)
	}
	fs := flag.NewFlagSet("twlab vm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&vm.CacheDir, "cache", vm.CacheDir, "kernel cache `DIR` (downloaded packages, extracted kernels, unpacked images); created when missing")
	var kernels multiFlag
	fs.Var(&kernels, "kernel", "a kernel to boot: a bzImage path, built:RELEASE or debian:VERSION (repeatable)")
	kernelsFile := fs.String("kernels", "", "read more kernels from `FILE`, one per line (# starts a comment)")
	jobs := fs.Int("jobs", 0, "boot up to `N` VMs at once (default: the CPUs / 2, each guest has two)")
	modules := fs.String("modules", "", "the /lib/modules/RELEASE `DIR` of a modular kernel given by path")
	timeout := fs.Duration("timeout", 0, "hard limit per kernel; QEMU is killed after it (default: the scenario's own bound on a run plus 2 min for boot, detection and transfer)")
	accel := fs.String("accel", "auto", "auto (KVM if a probe guest runs under it, else TCG), tcg (software emulation) or kvm")
	mem := fs.Int("mem", 512, "guest memory in MiB")
	out := fs.String("out", "", "results `DIR` (default results/<scenario>/vm-<UTC time>); one folder per kernel")
	fs.Usage = func() {
		fmt.Fprint(stderr, vmUsage)
		fs.PrintDefaults()
	}
	// vm flags come before "run"; the rest belongs to run.
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	rest := fs.Args()
	if len(rest) == 0 || rest[0] != "run" {
		fs.Usage()
		return exitUsage
	}
	rfs := flag.NewFlagSet("twlab vm run", flag.ContinueOnError)
	rfs.SetOutput(stderr)
	var sets multiFlag
	rfs.Var(&sets, "set", "override a field or sysctl, `path=value` (repeatable)")
	only := rfs.String("only", "", "run only the cells for which `EXPR` holds")
	pcap := rfs.Bool("pcap", false, "capture the server's link in every cell (inside the guest)")
	junit := rfs.String("junit", "", "also write JUnit XML to `FILE`: a suite per kernel, a test case per cell")
	rfs.StringVar(out, "out", *out, "results `DIR` (also accepted here)")
	quiet := rfs.Bool("q", false, "no header and no progress lines: the matrix, the result paths and each kernel's status line only (as run -q)")
	pos, err := parseInterspersed(rfs, rest[1:])
	if err != nil {
		return usageCode(err)
	}
	if *kernelsFile != "" {
		more, err := readKernelList(*kernelsFile)
		if err != nil {
			fmt.Fprintln(stderr, "twlab vm:", err)
			return exitUsage
		}
		kernels = append(kernels, more...)
	}
	if len(pos) != 1 || len(kernels) == 0 {
		fmt.Fprintln(stderr, "twlab vm: want at least one --kernel and exactly one SCENARIO")
		return exitUsage
	}
	file, src, plan, ok := loadPlan(pos[0], scenario.Options{Set: sets, Only: *only}, stderr)
	if !ok {
		return exitUsage
	}
	if os.Geteuid() != 0 {
		fmt.Fprintf(stderr, "twlab vm fetches kernels into %s and runs QEMU: run it with sudo\n", vm.CacheDir)
		return exitEnv
	}
	// A bad flag is said before minutes of kernel downloads, not after.
	if *accel != "tcg" && *accel != "kvm" && *accel != "auto" {
		fmt.Fprintln(stderr, "twlab vm: --accel wants auto, tcg or kvm")
		return exitUsage
	}
	if *mem < 128 || *mem > 65536 {
		fmt.Fprintf(stderr, "twlab vm: --mem %d: want 128 to 65536 MiB (the guest runs the lab in its memory; 512 is plenty)\n", *mem)
		return exitUsage
	}
	if *jobs < 0 || *timeout < 0 {
		fmt.Fprintln(stderr, "twlab vm: --jobs and --timeout want 0 (the default) or more")
		return exitUsage
	}
	ctx, cancel := signalContext(stderr, "stopping the VM")
	defer cancel()
	log := newLogger(stderr, 1)
	var ks []*vm.Kernel
	for _, spec := range kernels {
		k, err := vm.Resolve(ctx, spec, *modules, log)
		if err != nil {
			fmt.Fprintln(stderr, "twlab vm:", err)
			if ctx.Err() != nil {
				return exitStopped // Ctrl-C during a download is no bad kernel name
			}
			if me := (*vm.MachineError)(nil); errors.As(err, &me) {
				return exitEnv // the name was good; this machine could not get the kernel
			}
			return exitUsage
		}
		ks = append(ks, k)
	}
	acc, why := vm.ChooseAccel(ctx, *accel)
	limit := *timeout
	if limit == 0 {
		// The guest's own bound on its run, plus boot, detection and the
		// transfer: the host must not kill a guest that is about to send
		// the cells it finished (the two were 2.5 s apart before).
		limit = runner.Bound(plan) + 2*time.Minute
	}
	dir := *out
	if dir == "" {
		dir = filepath.Join("results", plan.Scenario.Name, "vm-"+time.Now().UTC().Format("20060102T150405Z"))
	}
	if !*quiet {
		fmt.Fprintf(stdout, "twlab vm: %s on %d kernel(s), %s each; %s (%s)\n", plan.Scenario.Name, len(ks), cellCount(len(plan.Cells)), acc, why)
	}
	start := time.Now()
	results, err := vm.Run(ctx, vm.Options{Kernels: ks, ScenarioFile: file, Source: src, Set: sets, Only: *only, Pcap: *pcap,
		OutDir: dir, Timeout: limit, MemMB: *mem, Log: log, Accel: acc, AccelAuto: *accel == "auto", Jobs: *jobs,
		Progress: func(k *vm.Kernel, msg string) {
			if !*quiet {
				fmt.Fprintf(stdout, "[%5.1fs] %-28s %s\n", time.Since(start).Seconds(), k.Label, msg)
			}
		}})
	if err != nil {
		fmt.Fprintln(stderr, "twlab vm:", err)
		if ctx.Err() != nil {
			return exitStopped
		}
		return exitEnv
	}
	code, nothing := exitOK, false
	for _, r := range results {
		if r.Run != nil {
			if err := report.WriteArtifacts(r.Dir, r.Run); err != nil {
				fmt.Fprintln(stderr, "twlab vm:", err)
			}
		}
		switch {
		case r.Err != "":
			code = exitFailed
		case r.Run.Status == result.RunNA:
			nothing = true // every cell n/a on this kernel: not a success
		case r.Run.Status != result.RunOK:
			code = exitFailed
		}
	}
	if code == exitOK && nothing {
		code = exitNothing
	}
	if *junit != "" {
		b, err := vmJUnit(results, file)
		if err == nil {
			err = result.WriteUserFile(*junit, b)
		}
		if err != nil {
			fmt.Fprintln(stderr, "twlab vm: junit:", err)
			if code == exitOK || code == exitNothing {
				code = exitFailed
			}
		}
	}
	m := vm.Matrix(results)
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, m)
	if err := result.WriteFileAtomic(filepath.Join(dir, "matrix.txt"), []byte(m)); err != nil {
		fmt.Fprintln(stderr, "twlab vm:", err)
	}
	for _, r := range results {
		if r.Run != nil {
			for _, f := range report.FailedExpectations(r.Run) {
				fmt.Fprintf(stdout, "  %s: %s\n", r.Kernel.Label, f)
			}
		}
	}
	fmt.Fprintf(stdout, "\nresults: %s (one folder per kernel, console.log in each)\n", dir)
	for _, r := range results {
		if r.Run != nil {
			fmt.Fprintf(stdout, "%s: %s\n", r.Kernel.Label, report.StatusLine(r.Run))
		} else {
			fmt.Fprintf(stdout, "%s: error: %s\n", r.Kernel.Label, r.Err)
		}
	}
	if ctx.Err() != nil {
		return exitStopped
	}
	return code
}

func cmdVMKernels(stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fmt.Fprintf(stdout, "debian:VERSION resolves through twlab's own apt lists (%s; suites bullseye, bullseye-security,\nbookworm, bookworm-security, trixie; the host's apt is not used):\n", filepath.Join(vm.CacheDir, "apt"))
	for _, v := range []string{"5.10", "6.1", "6.12"} {
		pkgs, err := vm.DebianPackages(ctx, v, newLogger(stderr, 1))
		if err != nil {
			fmt.Fprintln(stderr, "twlab vm kernels:", err)
			return exitEnv
		}
		if len(pkgs) == 0 {
			fmt.Fprintf(stdout, "  debian:%-5s -> (none in these suites)\n", v)
			continue
		}
		var builds []string
		for _, p := range pkgs {
			builds = append(builds, "debian:"+strings.TrimSuffix(strings.TrimPrefix(p, "linux-image-"), "-amd64-unsigned"))
		}
		if len(builds) > 6 {
			builds = append([]string{"…"}, builds[len(builds)-6:]...)
		}
		fmt.Fprintf(stdout, "  debian:%-5s -> %s\n      exact builds: %s\n", v, pkgs[len(pkgs)-1], strings.Join(builds, ", "))
	}
	if built := kbuild.List(vm.CacheDir); len(built) > 0 {
		fmt.Fprintf(stdout, "\nbuilt with twlab kernel build (%s):\n", kbuild.BuiltDir(vm.CacheDir))
		for _, k := range built {
			fmt.Fprintf(stdout, "  built:%-12s %s\n", k.Release, k.Image)
		}
	}
	cached, _ := filepath.Glob(filepath.Join(vm.CacheDir, "kernels", "*", ".complete"))
	fmt.Fprintf(stdout, "\ncached in %s:\n", filepath.Join(vm.CacheDir, "kernels"))
	if len(cached) == 0 {
		fmt.Fprintln(stdout, "  (nothing yet)")
	}
	for _, c := range cached {
		fmt.Fprintln(stdout, "  "+filepath.Base(filepath.Dir(c)))
	}
	fmt.Fprintln(stdout, "\nFor tcp_tw_recycle cells bring a kernel older than 4.12: build one from a kernel.org tarball")
	fmt.Fprintln(stdout, "with `twlab kernel build linux-4.9.337.tar.xz`, then twlab vm --kernel built:4.9.337 run …")
	return exitOK
}

// readKernelList reads kernel specs, one per line; blank lines and # comments
// are skipped.
func readKernelList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--kernels: %w", err)
	}
	defer f.Close()
	// Bounded: a device or a pipe (/dev/zero) has no size to check first.
	const maxList = 1 << 20
	b, err := io.ReadAll(io.LimitReader(f, maxList+1))
	if err != nil {
		return nil, fmt.Errorf("--kernels: %w", err)
	}
	if len(b) > maxList {
		return nil, fmt.Errorf("--kernels %s: more than %d bytes; a kernel list is one spec per line", path, maxList)
	}
	var out []string
	for i, line := range strings.Split(string(b), "\n") {
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.ContainsAny(line, " \t") {
			return nil, fmt.Errorf("%s:%d: %q: want one kernel per line", path, i+1, line)
		}
		out = append(out, line)
	}
	return out, nil
}

// vmJUnit is the JUnit XML of a VM matrix: a suite per kernel, named by its
// label (unique, where two kernels may share a release), and one for a
// kernel that ended without a run document too: CI must not read green XML
// while the exit code says a kernel failed.
func vmJUnit(results []*vm.Result, file string) ([]byte, error) {
	var runs []*result.Run
	for _, r := range results {
		var jr result.Run
		if r.Run != nil {
			jr = *r.Run
		} else {
			jr = *notStarted(file, "(kernel)", r.Err)
		}
		jr.Kernel = r.Kernel.Label
		runs = append(runs, &jr)
	}
	return report.JUnit(runs)
}
