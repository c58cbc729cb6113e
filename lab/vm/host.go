package vm

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/twlab/twlab/lab/result"
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
	MemMB        int
	Binary       string // the static twlab to use as /init; "" = this executable
	Accel        string // "tcg" (default) or "kvm"
	Log          *slog.Logger
	// Progress receives one short status per kernel event.
	Progress func(k *Kernel, msg string)
}

// Result is one kernel's outcome.
type Result struct {
	Kernel    *Kernel     `json:"kernel"`
	Run       *result.Run `json:"-"`
	Dir       string      `json:"dir"`
	BootS     float64     `json:"boot_s"`     // QEMU start until the guest's init speaks
	ScenarioS float64     `json:"scenario_s"` // the scenario inside the guest
	TotalS    float64     `json:"total_s"`    // QEMU start until QEMU exit
	Accel     string      `json:"accel"`
	Boot      string      `json:"boot"` // pvh (uncompressed ELF) or bzImage
	Err       string      `json:"error,omitempty"`
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
		return []string{"-accel", "kvm", "-cpu", "host"}
	}
	return []string{"-accel", "tcg", "-cpu", "max"}
}

// Run boots every kernel in turn (parallel VMs gain nothing on 2 cores) and
// runs the scenario in each.
func Run(ctx context.Context, o Options) ([]*Result, error) {
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		o.Binary = exe
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
	if o.Log == nil {
		o.Log = slog.Default()
	}
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, err
	}
	var out []*Result
	for _, k := range o.Kernels {
		if ctx.Err() != nil {
			break
		}
		r := runKernel(ctx, o, k, bin)
		out = append(out, r)
	}
	return out, nil
}

func (o *Options) progress(k *Kernel, msg string) {
	if o.Progress != nil {
		o.Progress(k, msg)
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
	var mods []Module
	if k.ModulesDir != "" {
		var err error
		if mods, err = ResolveModules(k.ModulesDir, LabModules); err != nil {
			return fail(err)
		}
	}
	a := newArchive()
	a.file("init", 0o755, bin)
	a.file("twlab/scenario.yaml", 0o644, o.Source)
	args := guestArgsDoc{File: o.ScenarioFile, Set: o.Set, Only: o.Only, Label: k.Label, Pcap: o.Pcap}
	for _, m := range mods {
		a.file("twlab/modules/"+m.Name+".ko", 0o644, m.Data)
		args.Modules = append(args.Modules, m.Name)
	}
	ab, _ := json.Marshal(args)
	a.file("twlab/args.json", 0o644, ab)
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "etc"} {
		a.dir(d)
	}
	initrd, err := os.CreateTemp("", "twlab-initrd-*.cpio")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(initrd.Name())
	bw := bufio.NewWriterSize(initrd, 1<<20)
	if _, err := a.writeTo(bw); err != nil {
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
		return fail(err)
	}
	initrd.Close()
	resultFile := filepath.Join(res.Dir, ".serial1")
	os.Remove(resultFile)
	defer os.Remove(resultFile)

	img := k.Image
	res.Boot = "bzImage"
	if pvh, err := pvhImage(ctx, k.Image); err == nil {
		img, res.Boot = pvh, "pvh"
	} else {
		o.Log.Debug("booting the bzImage", "kernel", k.Label, "why", err)
	}
	accel := accelArgs(o.Accel)
	res.Accel = accel[1]
	qargs := append([]string{"-M", "pc", "-m", fmt.Sprint(o.MemMB), "-smp", "2", "-nodefaults", "-display", "none", "-no-reboot",
		"-serial", "stdio", "-serial", "file:" + resultFile,
		"-kernel", img, "-initrd", initrd.Name(),
		"-append", "console=ttyS0 panic=-1 loglevel=4 tsc=reliable rdinit=/init"}, accel...)
	cctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, "qemu-system-x86_64", qargs...)
	cmd.WaitDelay = 2 * time.Second
	console, err := os.Create(filepath.Join(res.Dir, "console.log"))
	if err != nil {
		return fail(err)
	}
	defer console.Close()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, console
	start := time.Now()
	o.progress(k, fmt.Sprintf("booting (%s, %s, %d modules, %s)", res.Accel, res.Boot, len(mods), filepath.Base(k.Image)))
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start qemu: %w", err))
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(console, line)
			msg, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), consolePrefix)
			if !ok {
				if i := strings.Index(line, consolePrefix); i >= 0 {
					msg, ok = line[i+len(consolePrefix):], true
				}
			}
			if !ok {
				continue
			}
			switch {
			case msg == "init":
				res.BootS = round2(time.Since(start).Seconds())
				o.progress(k, fmt.Sprintf("booted in %.1fs", res.BootS))
			case strings.HasPrefix(msg, "scenario done in "):
				fmt.Sscanf(strings.TrimPrefix(msg, "scenario done in "), "%fs", &res.ScenarioS)
			case strings.HasPrefix(msg, "cell "), strings.HasPrefix(msg, "error"), strings.HasPrefix(msg, "modules"):
				o.progress(k, msg)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	werr := cmd.Wait()
	pw.Close()
	wg.Wait()
	res.TotalS = round2(time.Since(start).Seconds())
	if cctx.Err() == context.DeadlineExceeded {
		return fail(fmt.Errorf("no result within %s; QEMU killed (console.log has the guest's console)", o.Timeout))
	}
	if ctx.Err() != nil {
		return fail(errors.New("interrupted"))
	}
	raw, err := os.ReadFile(resultFile)
	if err != nil {
		return fail(fmt.Errorf("read result port: %w", err))
	}
	doc, err := ParseFrame(raw)
	if err != nil {
		if werr != nil {
			err = fmt.Errorf("%w (qemu: %v)", err, werr)
		}
		return fail(err)
	}
	var run result.Run
	if err := json.Unmarshal(doc, &run); err != nil {
		return fail(fmt.Errorf("guest run.json: %w", err))
	}
	res.Run = &run
	if err := result.WriteFileAtomic(filepath.Join(res.Dir, "run.json"), append(bytes.TrimSpace(doc), '\n')); err != nil {
		return fail(err)
	}
	o.progress(k, fmt.Sprintf("done in %.1fs (boot %.1fs, scenario %.1fs): %s", res.TotalS, res.BootS, res.ScenarioS, run.Status))
	return res
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
