package vm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twlab/twlab/lab/internal/kver"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/runner"
	"github.com/twlab/twlab/lab/runstate"
)

// Options configure a VM run.
type Options struct {
	Kernels      []*Kernel
	ScenarioFile string // name on the host
	Source       []byte
	Set          []string
	Only         string
	Pcap         bool
	OutDir       string        // one folder per kernel below it
	Timeout      time.Duration // per kernel, hard: QEMU is killed after it
	// BootLimit is how long a guest may stay silent before it counts as
	// hung at boot and is booted once more; 0 = 60 s.
	BootLimit time.Duration
	MemMB     int
	Binary    string // the static twlab to use as /init; "" = twlab-guest next to this executable (see GuestBinary), else this executable
	Accel     string // "tcg" (default) or "kvm"; resolve "auto" with ChooseAccel first
	// AccelAuto says Accel was chosen by ChooseAccel("auto"): KVM ran the
	// probe guest, which does not prove it runs a kernel (seen under
	// nested virtualisation: the probe ran, Linux never printed a byte).
	// A KVM guest silent for kvmBootLimit is then booted again under
	// software emulation, and the kernels after it start there.
	AccelAuto bool
	kvmFailed *atomic.Bool
	// Jobs is how many VMs run at once; 0 = what the cores allow (each
	// guest has two virtual CPUs).
	Jobs int
	Log  *slog.Logger
	// Progress receives one short status per kernel event.
	Progress func(k *Kernel, msg string)
}

// Result is one kernel's outcome.
type Result struct {
	Kernel    *Kernel     `json:"kernel"`
	Run       *result.Run `json:"-"`
	Dir       string      `json:"dir"`
	BootS     float64     `json:"boot_s"`     // QEMU start until the guest's init speaks
	ScenarioS float64     `json:"scenario_s"` // the scenario inside the guest (detection and cells)
	TotalS    float64     `json:"total_s"`    // QEMU start until QEMU exit
	// Timing splits the kernel's time; Overhead is all but the cells.
	Timing *result.VMTiming `json:"timing,omitempty"`
	// Host-side instants (since QEMU start) that Timing is made of.
	readyS, scenarioEndS, resultS float64
	// panicLine is the guest kernel's panic message, if it printed one.
	panicLine string
	// Clocksource is what the guest's kernel keeps time with (its init
	// says so first thing); refined-jiffies means a boot whose TSC
	// calibration failed, which is booted again while attempts remain.
	Clocksource string `json:"clocksource,omitempty"`
	// retryCoarse: boot kills a guest whose clock is coarse (set by
	// runKernel while it may boot again).
	retryCoarse bool
	Accel       string `json:"accel"`
	Boot        string `json:"boot"`    // pvh (uncompressed ELF) or bzImage
	Machine     string `json:"machine"` // QEMU's machine: microvm or pc
	// BootAttempts is 2 when the first boot showed no sign of life.
	BootAttempts int    `json:"boot_attempts"`
	Err          string `json:"error,omitempty"`
}

// CheckStatic refuses a dynamically linked binary: /init has no loader.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; the VM's /init must be static: build with `make build` (CGO_ENABLED=0)", path)
		}
	}
	return nil
}

// accelArgs returns QEMU's acceleration flags. Software emulation is the
// default: a /dev/kvm that accepts KVM_CREATE_VM may still never run a guest
// (seen here under nested virtualisation: the guest hangs silently), so KVM
// is used only when asked for.
func accelArgs(accel string) []string {
	if accel == "kvm" {
		return slices.Clone(kvmArgs)
	}
	return []string{"-accel", "tcg", "-cpu", "max"}
}

// kvmArgs are QEMU's arguments for KVM; a test stands in a KVM that never
// runs a guest (TCG with the CPUs stopped, -S).
var kvmArgs = []string{"-accel", "kvm", "-cpu", "host"}

// initrdPrefix names the guests' initramfs files in the temporary folder;
// the writer's pid follows, so that what a killed twlab left can be told
// from what a running one uses.
const initrdPrefix = "twlab-initrd-"

// RemoveStaleInitrds removes the initramfs files of twlab vm processes that
// died (SIGKILL: its deferred removal never ran) and returns their paths;
// `twlab cleanup` calls it too.
func RemoveStaleInitrds() []string {
	var removed []string
	names, _ := filepath.Glob(filepath.Join(os.TempDir(), initrdPrefix+"*-*.cpio"))
	for _, p := range names {
		pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(p), initrdPrefix), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) && os.Remove(p) == nil {
			removed = append(removed, p)
		}
	}
	return removed
}

// Run boots every kernel in turn (parallel VMs gain nothing on 2 cores) and
// runs the scenario in each.
func Run(ctx context.Context, o Options) ([]*Result, error) {
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		o.Binary = GuestBinary(exe)
	}
	if err := CheckStatic(o.Binary); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return nil, errors.New("qemu-system-x86_64 not found: apt-get install qemu-system-x86")
	}
	if o.MemMB == 0 {
		o.MemMB = 512
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.BootLimit == 0 {
		o.BootLimit = time.Minute
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.kvmFailed = new(atomic.Bool)
	// Registered as a run writing into its folder, as twlab run is: a second
	// run or vm given the same --out refuses it instead of removing this
	// one's results as it starts.
	if o.OutDir != "" {
		unreg, err := claimOut(o.OutDir, o.ScenarioFile)
		if err != nil {
			return nil, err
		}
		defer unreg()
	}
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, err
	}
	uniqueLabels(o.Kernels)
	RemoveStaleInitrds()
	jobs := o.Jobs
	if jobs <= 0 {
		jobs = max(1, runtime.NumCPU()/2)
	}
	// Results keep the kernels' order whatever order they finish in.
	out := make([]*Result, len(o.Kernels))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(jobs, len(o.Kernels)) {
		wg.Go(func() {
			for i := range next {
				out[i] = runKernel(ctx, o, o.Kernels[i], bin)
			}
		})
	}
	// The hand-off waits for a free worker or Ctrl-C: an interrupt must not
	// prepare and boot one more kernel only to kill it.
dispatch:
	for i := range o.Kernels {
		if ctx.Err() != nil {
			break // select picks at random when both are ready
		}
		select {
		case next <- i:
		case <-ctx.Done():
			break dispatch
		}
	}
	close(next)
	wg.Wait()
	done := out[:0]
	for _, r := range out {
		if r != nil {
			done = append(done, r)
		}
	}
	return done, nil
}

// uniqueLabels makes every kernel's label, the name of its results folder,
// unique: two images with the same release string (or one kernel named
// twice) would otherwise write one folder, the second run overwriting the
// first's run.json, or two guests sharing a console log.
func uniqueLabels(ks []*Kernel) {
	seen := map[string]bool{}
	for _, k := range ks {
		l := k.Label
		for n := 2; seen[l]; n++ {
			l = fmt.Sprintf("%s-%d", k.Label, n)
		}
		k.Label = l
		seen[l] = true
	}
}

// progress reports msg; what it carries from the guest (console lines, a
// panic line, the guest's error) reaches the user's terminal, so control
// characters are replaced first.
func (o *Options) progress(k *Kernel, msg string) {
	if o.Progress != nil {
		o.Progress(k, strings.ReplaceAll(result.Printable(msg), "\n", " "))
	}
}

func runKernel(ctx context.Context, o Options, k *Kernel, bin []byte) *Result {
	res := &Result{Kernel: k, Dir: filepath.Join(o.OutDir, k.Label)}
	fail := func(err error) *Result {
		res.Err = err.Error()
		o.progress(k, "failed: "+res.Err)
		return res
	}
	if err := result.MkdirAll(res.Dir); err != nil {
		return fail(err)
	}
	// A folder an earlier vm run used: its run.json said ok for a kernel
	// that may not boot this time.
	runner.ClearStale(res.Dir, o.Log, "run.json", result.TimeseriesName)
	initrd, nmods, err := buildInitrd(o, k, bin)
	if err != nil {
		return fail(err)
	}
	defer os.Remove(initrd)
	resultFile := filepath.Join(res.Dir, ".serial1")
	os.Remove(resultFile)
	defer os.Remove(resultFile)

	img := k.Image
	res.Boot = "bzImage"
	if !pvhBootable(k.Release) {
		o.Log.Debug("booting the bzImage", "kernel", k.Label, "why", "PVH boot outside Xen needs Linux 5.0")
	} else if pvh, err := pvhImage(ctx, k.Image); err == nil {
		img, res.Boot = pvh, "pvh"
	} else {
		o.Log.Debug("booting the bzImage", "kernel", k.Label, "why", err)
	}
	if o.Accel != "kvm" || o.AccelAuto && o.kvmFailed != nil && o.kvmFailed.Load() {
		o.Accel = "tcg" // the default, or an earlier kernel's guest never ran under KVM
	}
	accel := accelArgs(o.Accel)
	res.Accel = o.Accel
	machine, tscArg := machineFor(k)
	consoleFile, err := os.Create(filepath.Join(res.Dir, "console.log"))
	if err != nil {
		return fail(err)
	}
	defer consoleFile.Close()
	console := newConsoleLog(consoleFile)
	defer console.finish()
	var doc []byte
	var start time.Time
	// A guest that prints nothing at all for bootLimit hung before its
	// console came up (seen rarely under emulation, e.g. calibrating the
	// timer); a second boot, on the plain pc machine, costs less than
	// waiting out the timeout.
	// Each kind of retry has its own budget: a coarse clock's reboots must
	// not use up a silent guest's second chance. None after Ctrl-C.
	clockBoots, noLifeRetried, oopsRetried := 1, false, false
	for attempt := 1; ; attempt++ {
		bo := o
		if o.Accel == "kvm" && o.AccelAuto {
			// A working KVM guest speaks within a second or two.
			bo.BootLimit = min(o.BootLimit, kvmBootLimit)
		}
		// The result goes out on a second UART to a file of its own: no
		// kernel message can interleave with it, as on a shared console.
		qargs := append([]string{"-M", machine, "-m", fmt.Sprint(o.MemMB), "-smp", "2", "-nodefaults", "-display", "none", "-no-reboot",
			"-serial", "stdio", "-chardev", "file,id=twlabresult,path=" + qemuOptValue(resultFile),
			"-device", "isa-serial,chardev=twlabresult,index=1,iobase=0x2f8,irq=3",
			"-kernel", img, "-initrd", initrd,
			"-append", kernelArgs(k, tscArg)}, accel...)
		res.Machine, res.BootAttempts = strings.SplitN(machine, ",", 2)[0], attempt
		start = time.Now()
		o.progress(k, fmt.Sprintf("booting (%s, %s, %s, %d modules, %s, init %s)", res.Accel, res.Machine, res.Boot, nmods, filepath.Base(k.Image), filepath.Base(o.Binary)))
		res.retryCoarse = clockBoots < maxClockAttempts
		doc, err = boot(ctx, bo, k, res, qargs, console, resultFile, start)
		res.TotalS = round2(time.Since(start).Seconds())
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, errCoarseClock) {
			clockBoots++
			o.progress(k, err.Error()+": booting again")
			console.note("\n--- twlab: %s; boot attempt %d ---\n", err, attempt+1)
			os.Remove(resultFile)
			continue
		}
		if errors.Is(err, errNoLife) && o.Accel == "kvm" && o.AccelAuto {
			o.Accel, accel = "tcg", accelArgs("tcg")
			res.Accel = o.Accel
			if o.kvmFailed != nil {
				o.kvmFailed.Store(true)
			}
			msg := fmt.Sprintf("the guest showed no sign of life under KVM for %s (KVM ran the probe guest, not this kernel): booting again under software emulation", bo.BootLimit)
			o.progress(k, msg)
			console.note("\n--- twlab: %s; boot attempt %d ---\n", msg, attempt+1)
			os.Remove(resultFile)
			continue
		}
		if errors.Is(err, errNoLife) && !noLifeRetried {
			noLifeRetried = true
			o.progress(k, err.Error()+": booting again on the pc machine")
			console.note("\n--- twlab: %s; boot attempt %d on the pc machine ---\n", err, attempt+1)
			os.Remove(resultFile)
			if os.Getenv("TWLAB_VM_MACHINE") == "" {
				machine, tscArg = "pc", ""
			}
			img, res.Boot = k.Image, "bzImage" // the plainest boot there is
			continue
		}
		// An oops before /init spoke is the emulator's doing as often as
		// the kernel's: under TCG a vCPU has been seen executing a
		// half-patched instruction (int3 in enqueue_timer on 6.12, once
		// in some hundred boots). One more boot tells the two apart; a
		// panic that is no oops (no init, no root) is not retried.
		if err != nil && !oopsRetried && res.BootS == 0 && strings.Contains(res.panicLine, "Fatal exception") {
			oopsRetried = true
			o.progress(k, err.Error()+": booting again")
			console.note("\n--- twlab: %s; boot attempt %d ---\n", err, attempt+1)
			os.Remove(resultFile)
			res.panicLine = ""
			continue
		}
		break
	}
	if err != nil {
		return fail(err)
	}
	// What the guest sends is input like any run folder's: a guest that
	// misbehaves (a kernel bug, a damaged transfer) must not crash the
	// host with a nil cell, nor put control characters on its terminal.
	run, err := result.ParseRun("guest run.json", doc)
	if err != nil {
		return fail(err)
	}
	res.Run = run
	res.Timing = timing(res, run)
	if result.CoarseClock(res.Clocksource) {
		o.progress(k, fmt.Sprintf("warning: the guest's clock is %s after %d boots (its TSC could not be calibrated, e.g. on a busy host): every time measured is a multiple of its tick", res.Clocksource, res.BootAttempts))
	}
	run.VM = res.Timing
	// The time series and the captures, when they arrived whole, go next
	// to run.json, under the names run.json gives them; the report draws
	// its plots from the series.
	allowed := []string{timeseriesFile}
	for _, c := range run.Cells {
		for _, p := range c.Pcap {
			if safePcapName(p.Path) {
				allowed = append(allowed, p.Path)
			}
		}
	}
	if raw, err := readResult(resultFile, newFrameScan(res.Dir)); err == nil {
		got := attachments(raw, allowed...)
		for name, b := range got {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(res.Dir, name)), 0o755); err != nil {
				return fail(err)
			}
			if err := result.WriteFileAtomic(filepath.Join(res.Dir, name), b); err != nil {
				return fail(err)
			}
		}
		var missing []string
		for _, name := range allowed[1:] {
			if got[name] == nil {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			o.progress(k, fmt.Sprintf("%d capture(s) stayed in the guest (over the %d MiB the serial port carries back, or damaged): %s",
				len(missing), maxPcapBytes>>20, strings.Join(missing, ", ")))
		}
	}
	if err := run.WriteJSON(filepath.Join(res.Dir, "run.json")); err != nil {
		return fail(err)
	}
	t := res.Timing
	o.progress(k, fmt.Sprintf("done in %.1fs: cells %.1fs, overhead %.1fs (boot %.1f, modules %.1f, detection %.1f, transfer %.2f, exit %.2f): %s",
		t.Total, t.Cells, t.Overhead, t.Boot, t.Modules, t.Detect, t.Transfer, t.Exit, run.Status))
	return res
}

// timing splits a kernel's time from the host's instants and the guest's
// own figures (the detection's duration is in run.json).
func timing(res *Result, run *result.Run) *result.VMTiming {
	t := &result.VMTiming{Accel: res.Accel, BootFrom: res.Boot, Machine: res.Machine, BootAttempts: res.BootAttempts, Boot: res.BootS, Total: res.TotalS}
	if res.readyS > res.BootS {
		t.Modules = round3(res.readyS - res.BootS)
	}
	// The guest's own clock measured DetectS and ScenarioS: beyond the
	// whole boot as the host saw it, neither is a time of this VM.
	if kf := run.KernelFeatures; kf != nil {
		if t.Detect = round3(kf.DetectS); t.Detect < 0 || t.Detect > t.Total {
			t.Detect = 0
		}
	}
	if t.Cells = round3(max(0, res.ScenarioS-t.Detect)); t.Cells > t.Total {
		t.Cells = 0
	}
	if res.resultS > res.scenarioEndS && res.scenarioEndS > 0 {
		t.Transfer = round3(res.resultS - res.scenarioEndS)
	}
	if res.TotalS > res.resultS && res.resultS > 0 {
		t.Exit = round3(res.TotalS - res.resultS)
	}
	t.Overhead = round3(t.Total - t.Cells)
	return t
}

// round3 rounds a duration in seconds to milliseconds. What a guest
// reported (NaN, Inf, 1e300 parse as floats) or a guest clock running fast
// must not become a figure of run.json: it is 0 unless finite and within
// a day, the longest any run is bounded to.
func round3(f float64) float64 {
	if !(f >= -86400 && f <= 86400) {
		return 0
	}
	return math.Round(f*1000) / 1000
}

// buildInitrd writes the guest's initramfs to a temporary file: twlab as
// /init, the scenario, the modules of a modular kernel, the arguments and a
// seed for the guest's random pool.
func buildInitrd(o Options, k *Kernel, bin []byte) (path string, nmods int, err error) {
	var mods []Module
	if k.ModulesDir != "" {
		var missing []string
		if mods, missing, err = ResolveModules(k.ModulesDir, LabModules); err != nil {
			return "", 0, err
		}
		if len(missing) > 0 {
			// Said before the boot: the lab would fail later with an
			// nftables or netlink error that does not name a module.
			o.progress(k, fmt.Sprintf("warning: %s has neither as a module nor built in: %s", k.ModulesDir, strings.Join(missing, ", ")))
		}
	}
	seed := make([]byte, seedBytes)
	if _, err := rand.Read(seed); err != nil {
		return "", 0, fmt.Errorf("entropy seed for the guest: %w", err)
	}
	a := newArchive()
	a.file("init", 0o755, bin)
	a.file(strings.TrimPrefix(guestScenario, "/"), 0o644, o.Source)
	a.file(strings.TrimPrefix(guestSeed, "/"), 0o600, seed)
	args := guestArgsDoc{File: o.ScenarioFile, Set: o.Set, Only: o.Only, Label: k.Label, Pcap: o.Pcap, Fault: k.fault}
	for _, m := range mods {
		a.file(strings.TrimPrefix(guestModules, "/")+"/"+m.Name+".ko", 0o644, m.Data)
		args.Modules = append(args.Modules, m.Name)
		args.ModuleLevels = append(args.ModuleLevels, m.Level)
	}
	ab, _ := json.Marshal(args)
	a.file(strings.TrimPrefix(guestArgs, "/"), 0o644, ab)
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "etc"} {
		a.dir(d)
	}
	f, err := os.CreateTemp("", initrdPrefix+strconv.Itoa(os.Getpid())+"-*.cpio")
	if err != nil {
		return "", 0, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	_, err = a.writeTo(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", 0, fmt.Errorf("initramfs: %w", err)
	}
	return f.Name(), len(mods), nil
}

// kernelArgs is the guest's command line. Besides the console and /init:
// no crypto self-tests, no KDF self-test and kprobe tracer at boot (their
// initcalls are the slowest of a distribution kernel under emulation), no
// jitter entropy source (80 ms on 6.12: the guest's pool is seeded by the
// host), no X.509 certificates loaded for module signatures (35 ms on 6.12;
// the modules travel unsigned, see stripSignature), no
// speculation mitigations (a throw-away lab VM; they slow emulated code),
// no read-only kernel text and data (rodata=off: marking them read-only
// and checking for W+X mappings cost 0.1-0.25 s of a 2 s boot under
// emulation, four alternated rounds on 6.1).
// $TWLAB_VM_APPEND adds to it (for trying options without rebuilding twlab).
func kernelArgs(k *Kernel, extra string) string {
	a := "console=ttyS0 panic=-1 loglevel=4 tsc=reliable rdinit=/init" +
		" cryptomgr.notests initcall_blacklist=crypto_kdf108_init,init_kprobe_trace,jent_mod_init,load_system_certificate_list mitigations=off rodata=off"
	for _, x := range []string{extra, os.Getenv("TWLAB_VM_APPEND"), k.Append} {
		if x != "" {
			a += " " + x
		}
	}
	return a
}

// machineFor picks QEMU's machine for k. The microvm machine (no PCI, no
// firmware to run) boots a few tenths of a second faster under emulation
// than pc, but its guests may hang calibrating the timer unless told the
// TSC's frequency (tsc_early_khz, Linux 5.6 and later), so it is used only
// for such kernels and when the host's frequency is known; pc otherwise.
// $TWLAB_VM_MACHINE overrides both. The result goes out on a second serial
// port that both machines get (see runKernel).
func machineFor(k *Kernel) (machine, kernelArg string) {
	if m := os.Getenv("TWLAB_VM_MACHINE"); m != "" {
		return m, ""
	}
	if major, minor, ok := kver.Parse(k.Release); !ok || major < 5 || major == 5 && minor < 6 {
		return "pc", ""
	}
	if khz := hostTSCkHz(); khz > 0 {
		return "microvm,x-option-roms=off,rtc=on", fmt.Sprintf("tsc_early_khz=%d", khz)
	}
	return "pc", ""
}

// pvhBootable says whether a kernel of release rel can start at its PVH
// entry under QEMU. The ELF note that names the entry exists from Linux
// 4.11, but until 5.0 (CONFIG_PVH) that entry is Xen's and expects a Xen
// hypervisor: such a kernel would die before its console came up. An
// unknown release boots the bzImage, which always works.
func pvhBootable(rel string) bool {
	major, _, ok := kver.Parse(rel)
	return ok && major >= 5
}

// hostTSCkHz is the host's TSC frequency in kHz, which a guest's TSC runs
// at under KVM and TCG alike (0 when unknown). It is measured: /proc/cpuinfo's
// "cpu MHz" is the core's current clock, which on a host that scales its
// frequency (a laptop, turbo) is not the TSC's; a guest told it would keep
// time 20 % wrong, and with it every timeout, duration and timestamp of its
// cells. Only a constant, non-stop TSC (cpuinfo's flags) is measured at all.
func hostTSCkHz() int {
	tscOnce.Do(func() { tscKHz = measureTSCkHz() })
	return tscKHz
}

var (
	tscOnce sync.Once
	tscKHz  int
)

func measureTSCkHz() int {
	if !haveTSC {
		return 0
	}
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	var flags string
	var cpuMHz float64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		switch k = strings.TrimSpace(k); {
		case !ok:
		case k == "flags" && flags == "":
			flags = " " + v + " "
		case k == "cpu MHz" && cpuMHz == 0:
			cpuMHz, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if !strings.Contains(flags, " constant_tsc ") || !strings.Contains(flags, " nonstop_tsc ") {
		return 0
	}
	// Three 10 ms windows against the monotonic clock on one thread; their
	// median, if the three agree within 0.1 %.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var f [3]float64
	for i := range f {
		t0, c0 := time.Now(), rdtsc()
		time.Sleep(10 * time.Millisecond)
		c1, el := rdtsc(), time.Since(t0)
		f[i] = float64(c1-c0) / el.Seconds() / 1000
	}
	slices.Sort(f[:])
	if f[0] < 100_000 || f[2] > 10_000_000 || (f[2]-f[0]) > f[1]/1000 {
		return 0
	}
	// A hypervisor's cpuinfo figure is the TSC's exactly; a measurement
	// of 10 ms is good to ~0.01 %. Where they agree, the exact one.
	if c := cpuMHz * 1000; c > 0 && c > f[1]*0.999 && c < f[1]*1.001 {
		return int(c + 0.5)
	}
	return int(f[1] + 0.5)
}

// kvmBootLimit is how long a guest under a KVM that only the probe vouched
// for may stay silent: under KVM the kernels here reach /init in about a
// second, and waiting out BootLimit (made for emulation) would cost a
// minute per kernel.
var kvmBootLimit = 15 * time.Second // a test shortens it

// errNoLife is a guest whose /init never spoke.
var errNoLife = errors.New("the guest showed no sign of life")

// guestStopLine, written to the guest's console, asks it to stop as a
// Ctrl-C stops a run on the host: the cell in progress ends, the finished
// ones are kept and sent. stopWait bounds how long the host waits for them
// (a cell's teardown and the transfer, under emulation).
const (
	guestStopLine = "twlab-stop"
	stopWait      = 20 * time.Second
	maxStopWait   = 2 * time.Minute // while what it sends keeps growing
)

// errCoarseClock: the guest kernel keeps time with jiffies.
var errCoarseClock = errors.New("the guest's clock fell back to jiffies")

// maxClockAttempts bounds the boots a coarse guest clock costs; the last
// one runs whatever its clock (run.json's kernel_features.clocksource
// then says so).
const maxClockAttempts = 3

// resultGrace is how long QEMU may take to exit by itself once the guest's
// result is complete; then it is ended.
const resultGrace = 200 * time.Millisecond

// boot runs QEMU until the guest's result is complete and verified, QEMU
// exits, the per-kernel timeout passes or ctx ends. The result port is read
// while QEMU runs: a guest that cannot power off (no ACPI) or hangs after
// sending must not cost its result.
func boot(ctx context.Context, o Options, k *Kernel, res *Result, qargs []string, console *consoleLog, resultFile string, start time.Time) ([]byte, error) {
	cmd := exec.Command("qemu-system-x86_64", qargs...)
	cmd.WaitDelay = 2 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, console
	// The guest's console input: Ctrl-C is passed on as a stop request, so
	// that the guest ends its cell and sends the cells it finished (see
	// guestStopLine), which killing QEMU outright threw away.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("qemu stdin: %w", err)
	}
	defer stdin.Close()
	// QEMU dies with twlab, even a twlab killed with SIGKILL: otherwise it
	// runs until its guest powers off, for ever if the guest hangs. The
	// death signal follows the thread that started QEMU, so that thread is
	// held, locked, until QEMU has exited.
	// Its own process group: a Ctrl-C reaches twlab, which ends QEMU after
	// taking what arrived, not QEMU first (then the result was lost and the
	// error read "no result from the guest").
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	exited := make(chan error, 1)
	startErr := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		if err != nil {
			startErr <- err
			return
		}
		startErr <- nil
		exited <- cmd.Wait()
	}()
	if err := <-startErr; err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	sent := make(chan struct{}, 1)
	booted := make(chan struct{})
	coarse := make(chan string, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		readConsole(pr, console, o, k, res, start, sent, booted, coarse)
	}()
	silent := time.NewTimer(min(o.BootLimit, o.Timeout))
	defer silent.Stop()
	deadline := time.NewTimer(o.Timeout)
	defer deadline.Stop()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	done := ctx.Done()
	var stopTimer <-chan time.Time
	var stopAsked, grewAt time.Time
	stopping := false
	var coarseErr error // the guest's clock is jiffies: boot again
	var (
		doc     []byte
		gotErr  error // a complete error frame from the guest
		grace   <-chan time.Time
		werr    error
		reason  string
		noLife  bool
		running = true
	)
	// What the guest sent is read again only when it has grown: a poll of
	// an unchanged file costs a stat, not a read of megabytes.
	var seen int64 = -1
	con := newFrameScan(res.Dir)
	check := func() {
		if doc != nil || gotErr != nil {
			return
		}
		size := int64(0)
		for _, p := range []string{resultFile, filepath.Join(res.Dir, "console.log")} {
			if st, err := os.Stat(p); err == nil {
				size += st.Size()
			}
		}
		if size == seen {
			return
		}
		seen, grewAt = size, time.Now()
		raw, err := readResult(resultFile, con)
		if err != nil {
			return
		}
		d, final, perr := parseResult(raw)
		switch {
		case d != nil:
			doc = d
		case final:
			gotErr = perr
		default:
			return
		}
		res.resultS = time.Since(start).Seconds()
		grace = time.After(resultGrace)
	}
	for running {
		select {
		case werr = <-exited:
			running = false
		case <-poll.C:
			check()
		case <-sent:
			check() // the guest says the result is out: look at once
		case <-grace:
			cmd.Process.Kill()
			werr, running = <-exited, false
		case cs := <-coarse:
			if !res.retryCoarse || stopping { // no reboot once Ctrl-C asked the guest to stop
				continue
			}
			coarseErr = fmt.Errorf("%w (%s: the guest kernel could not calibrate its TSC, and every time it measured would be a multiple of its tick)", errCoarseClock, cs)
			cmd.Process.Kill()
			werr, running = <-exited, false
		case <-booted:
			booted = nil
			silent.Stop()
		case <-silent.C:
			if booted == nil || o.BootLimit >= o.Timeout {
				continue
			}
			select {
			case <-booted: // both were ready, and select picked the timer
				booted = nil
				continue
			default:
			}
			noLife = true
			cmd.Process.Kill()
			werr, running = <-exited, false
		case <-deadline.C:
			reason = fmt.Sprintf("no result within %s; QEMU killed (console.log has the guest's console)", o.Timeout)
			cmd.Process.Kill()
			werr, running = <-exited, false
		case <-done:
			// Asked once; the guest has stopWait to end its cell and send
			// what it has, then QEMU is killed as before. (done is nil
			// from the start for a context that cannot end: stopping, not
			// done, says whether Ctrl-C came.)
			done, stopping = nil, true
			reason = "interrupted"
			if booted != nil {
				// Not yet running the scenario: nothing to keep.
				cmd.Process.Kill()
				werr, running = <-exited, false
				continue
			}
			o.progress(k, "interrupted: asking the guest to stop and send the cells it finished")
			io.WriteString(stdin, guestStopLine+"\n")
			stopAsked, stopTimer = time.Now(), time.After(stopWait)
		case <-stopTimer:
			// A guest still sending (captures go before run.json, at a
			// few hundred KB/s) gets more time, within a bound.
			if time.Since(grewAt) < 2*time.Second && time.Since(stopAsked) < maxStopWait {
				stopTimer = time.After(2 * time.Second)
				continue
			}
			cmd.Process.Kill()
			werr, running = <-exited, false
		}
	}
	pw.Close()
	wg.Wait()
	// What arrived last may complete the result even when QEMU was killed.
	check()
	switch {
	case doc != nil:
		return doc, nil // after an interrupt too: its run.json says interrupted
	case gotErr != nil:
		return nil, gotErr
	case coarseErr != nil:
		return nil, coarseErr
	case reason != "":
		return nil, errors.New(reason)
	case noLife && res.panicLine == "":
		return nil, fmt.Errorf("%w for %s (console.log has what it printed)", errNoLife, min(o.BootLimit, o.Timeout))
	}
	if res.panicLine != "" {
		return nil, fmt.Errorf("the guest kernel panicked: %s (console.log has the rest)", res.panicLine)
	}
	raw, err := readResult(resultFile, con)
	if err != nil {
		if werr != nil {
			// QEMU ended before it made its result file: it refused its
			// options or could not start; its stderr is in console.log.
			return nil, fmt.Errorf("QEMU ended (%v) before the guest could send anything (console.log has QEMU's own messages): %w", werr, err)
		}
		return nil, fmt.Errorf("read result port: %w", err)
	}
	_, _, perr := parseResult(raw)
	if werr != nil {
		perr = fmt.Errorf("QEMU ended (%v) without a result: %w", werr, perr)
	}
	return nil, perr
}

// readResult returns what the guest sent on its result port, or - a
// machine or kernel with one serial port - on its console, from its first
// frame on.
func readResult(resultFile string, con *frameScan) ([]byte, error) {
	raw, err := os.ReadFile(resultFile)
	if err != nil {
		return nil, err
	}
	if markerIndex(raw) < 0 {
		if c, ok := con.read(); ok {
			return c, nil
		}
	}
	return raw, nil
}

// markerIndex is where the first frame (a result or an error) starts in b,
// or -1.
func markerIndex(b []byte) int {
	i, e := bytes.Index(b, []byte(frameBegin)), bytes.Index(b, []byte(frameError))
	if i < 0 || e >= 0 && e < i {
		return e
	}
	return i
}

// frameScan looks for the guest's first frame in console.log, reading only
// what was added since its last look, in pieces: a guest flooding its
// console (an oops loop, garbage) made every 50 ms poll read the whole file
// again - 8.9 GB read and 1.25 GB of memory for a 190 MB console in 40 s.
type frameScan struct {
	path    string
	off     int64 // looked through up to here
	at      int64 // where the first frame starts; -1 until found
	scanned int64 // bytes read while looking (tests)
}

func newFrameScan(dir string) *frameScan {
	return &frameScan{path: filepath.Join(dir, "console.log"), at: -1}
}

// read returns the console from the first frame on, once there is one.
func (f *frameScan) read() ([]byte, bool) {
	file, err := os.Open(f.path)
	if err != nil {
		return nil, false
	}
	defer file.Close()
	if f.at < 0 {
		st, err := file.Stat()
		if err != nil {
			return nil, false
		}
		size := st.Size()
		// A marker cut by the last look's end is found whole this time.
		overlap := int64(max(len(frameBegin), len(frameError)))
		buf := make([]byte, 1<<20)
		for pos := max(0, f.off-overlap); pos < size; {
			n, _ := file.ReadAt(buf[:min(int64(len(buf)), size-pos)], pos)
			f.scanned += int64(n)
			if n <= 0 {
				break
			}
			if i := markerIndex(buf[:n]); i >= 0 {
				f.at = pos + int64(i)
				break
			}
			if pos+int64(n) >= size {
				break
			}
			pos += int64(n) - overlap
		}
		f.off = size
		if f.at < 0 {
			return nil, false
		}
	}
	b, err := io.ReadAll(io.NewSectionReader(file, f.at, math.MaxInt64-f.at))
	return b, err == nil
}

// readConsole copies the guest's console to console.log and turns its
// "twlab-guest:" lines into progress and timings.
func readConsole(r io.Reader, console io.Writer, o Options, k *Kernel, res *Result, start time.Time, sent, booted chan<- struct{}, coarse chan<- string) {
	// Every byte goes to console.log; a line longer than the reader's
	// buffer (a crashing guest's binary garbage) is copied in pieces and
	// not interpreted, and the lines after it are read as ever. (A scanner
	// stopped at its first over-long line, and with it console.log and,
	// on a one-UART machine, the result.)
	br := bufio.NewReaderSize(r, 64<<10)
	long := false
	// A result frame (a one-UART guest sends it here) is kept past
	// console.log's bound: from its first line to its end marker.
	fw, _ := console.(interface{ writeFrame([]byte) })
	inFrame, lineStart := false, true
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			return
		}
		frameLine := inFrame
		if lineStart && !inFrame && fw != nil {
			switch {
			case bytes.Contains(chunk, []byte(frameBegin)):
				inFrame, frameLine = true, true
			case bytes.Contains(chunk, []byte(frameError)):
				frameLine = true
			}
		}
		if inFrame && !isPrefix && bytes.Contains(chunk, []byte(frameEnd)) {
			inFrame = false
		}
		lineStart = !isPrefix
		if frameLine && fw != nil {
			fw.writeFrame(chunk)
			if !isPrefix {
				fw.writeFrame([]byte("\n"))
			}
		} else {
			console.Write(chunk)
			if !isPrefix {
				io.WriteString(console, "\n")
			}
		}
		if isPrefix {
			long = true
			continue
		}
		if long {
			long = false // the end of an over-long line
			continue
		}
		line := string(chunk)
		if i := strings.Index(line, "Kernel panic - not syncing"); i >= 0 && res.panicLine == "" {
			res.panicLine = strings.TrimSpace(line[i:])
		}
		msg, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), consolePrefix)
		if !ok {
			if i := strings.Index(line, consolePrefix); i >= 0 {
				msg, ok = line[i+len(consolePrefix):], true
			}
		}
		if !ok {
			continue
		}
		// Any line of /init is a sign of life, not only its first: a kernel
		// message printed into the middle of "init" (an RCU stall under a
		// loaded host) must not get a working guest killed as silent.
		if booted != nil {
			res.BootS = round2(time.Since(start).Seconds())
			close(booted)
			booted = nil
			o.progress(k, fmt.Sprintf("booted in %.1fs", res.BootS))
		}
		switch {
		case strings.HasPrefix(msg, "clocksource "):
			res.Clocksource = strings.TrimPrefix(msg, "clocksource ")
			if result.CoarseClock(res.Clocksource) {
				select {
				case coarse <- res.Clocksource:
				default:
				}
			}
		case strings.HasPrefix(msg, "ready after "):
			res.readyS = time.Since(start).Seconds()
		case strings.HasPrefix(msg, "scenario done in "):
			fmt.Sscanf(strings.TrimPrefix(msg, "scenario done in "), "%fs", &res.ScenarioS)
			res.scenarioEndS = time.Since(start).Seconds()
		case msg == "results sent":
			select {
			case sent <- struct{}{}:
			default:
			}
		case strings.HasPrefix(msg, "cell "), strings.HasPrefix(msg, "error"), strings.HasPrefix(msg, "modules"), strings.HasPrefix(msg, "entropy"):
			o.progress(k, msg)
		}
	}
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// qemuOptValue escapes a value inside a QEMU option list, where a comma
// separates options and ",," stands for a comma: a results folder named
// "a,b" made QEMU refuse -chardev and the VM never start.
func qemuOptValue(v string) string { return strings.ReplaceAll(v, ",", ",,") }

// claimOut registers this process as the run writing into dir, unless a
// live run already is.
func claimOut(dir, scenario string) (func(), error) {
	abs, err := runstate.ResultsPath(dir)
	if err != nil {
		return nil, fmt.Errorf("results folder: %w", err)
	}
	id, err := runstate.NewRunID()
	if err != nil {
		return nil, err
	}
	if err := runstate.RegisterRun(id, "vm:"+scenario, abs); err != nil {
		return nil, err
	}
	if err := runstate.CheckResults(id, dir, abs); err != nil {
		runstate.Unregister(id)
		return nil, err
	}
	return func() { runstate.Unregister(id) }, nil
}
