package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/twlab/twlab/lab/kbuild"
	"github.com/twlab/twlab/lab/vm"
)

const kernelUsage = `Usage:
  twlab kernel build [--jobs N] [--cache DIR] [--keep-tree] SRC
  twlab kernel list [--cache DIR]

build turns a kernel source - a tree or a kernel.org tarball (.tar.xz, .tar.gz,
.tar) - into a bzImage twlab vm can boot: tinyconfig plus twlab's fragment
(veth, bridge, nftables NAT, conntrack, tc eBPF, an 8250 console, all built
in), the small fixes old trees need with today's compilers, cached by source
and fragment. Your tree is never written. Then:
  twlab vm --kernel built:RELEASE run SCENARIO   (or the bzImage path it prints)
`

func cmdKernel(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, kernelUsage)
		return exitUsage
	}
	fs := flag.NewFlagSet("twlab kernel "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&vm.CacheDir, "cache", vm.CacheDir, "the twlab cache `DIR`")
	jobs := fs.Int("jobs", 0, "make -j `N` (default: the CPUs)")
	keep := fs.Bool("keep-tree", false, "keep the build tree in the cache after a success")
	fs.Usage = func() {
		fmt.Fprint(stderr, kernelUsage)
		fs.PrintDefaults()
	}
	switch args[0] {
	case "list":
		// Its own flags: build's --jobs and --keep-tree mean nothing here.
		lfs := flag.NewFlagSet("twlab kernel list", flag.ContinueOnError)
		lfs.SetOutput(stderr)
		lfs.StringVar(&vm.CacheDir, "cache", vm.CacheDir, "the twlab cache `DIR`")
		pos, err := parseInterspersed(lfs, args[1:])
		if err != nil {
			return usageCode(err)
		}
		if len(pos) > 0 {
			fmt.Fprintf(stderr, "twlab kernel list: unexpected argument %q; it takes only --cache\n", pos[0])
			return exitUsage
		}
		ks := kbuild.List(vm.CacheDir)
		if len(ks) == 0 {
			fmt.Fprintf(stdout, "no kernel built into %s yet: twlab kernel build SRC\n", kbuild.BuiltDir(vm.CacheDir))
		}
		for _, k := range ks {
			damaged := ""
			if k.Damaged != nil {
				damaged = fmt.Sprintf("  (damaged: %v; build it again)", k.Damaged)
			}
			by := ""
			if k.Compiler != "" {
				by = "  (" + k.Compiler + ")"
			}
			fmt.Fprintf(stdout, "built:%-12s %s%s%s\n", k.Release, k.Image, by, damaged)
		}
		return exitOK
	case "build":
	case "-h", "--help", "help":
		fs.Usage()
		return exitOK
	default:
		fmt.Fprintf(stderr, "twlab kernel: unknown command %q\n\n%s", args[0], kernelUsage)
		return exitUsage
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return usageCode(err)
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "twlab kernel build: want exactly one SRC (a kernel tree or tarball)")
		return exitUsage
	}
	if *jobs < 0 {
		fmt.Fprintf(stderr, "twlab kernel build: --jobs %d: want 0 (the CPUs) or more\n", *jobs)
		return exitUsage
	}
	ctx, cancel := signalContext(stderr, "stopping the kernel build")
	defer cancel()
	start := time.Now()
	k, err := kbuild.Build(ctx, kbuild.Options{Source: pos[0], CacheDir: vm.CacheDir, Jobs: *jobs, KeepTree: *keep,
		Progress: func(msg string) { fmt.Fprintf(stdout, "[%5.0fs] %s\n", time.Since(start).Seconds(), msg) }})
	if err != nil {
		fmt.Fprintln(stderr, "twlab kernel build:", err)
		if ctx.Err() != nil {
			return exitStopped
		}
		if errors.Is(err, kbuild.ErrNoTool) {
			return exitEnv
		}
		if errors.Is(err, kbuild.ErrBadSource) || errors.Is(err, os.ErrNotExist) && strings.HasPrefix(err.Error(), "kernel source ") {
			return exitUsage // bad input, as a bad --kernel in vm
		}
		return exitFailed
	}
	fmt.Fprintf(stdout, "kernel %s: %s\nboot it: twlab vm --kernel built:%s run nat-paws.yaml\n", k.Release, k.Image, k.Release)
	return exitOK
}
