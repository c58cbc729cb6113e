package vm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/twlab/twlab/lab/internal/decomp"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/twlab/twlab/lab/kernel"
	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/runner"
	"github.com/twlab/twlab/lab/scenario"
	"github.com/twlab/twlab/lab/sysctl"
	"golang.org/x/sys/unix"
)

// Paths inside the initramfs.
const (
	guestArgs     = "/twlab/args.json"
	guestScenario = "/twlab/scenario.yaml"
	guestModules  = "/twlab/modules"
	guestOut      = "/run/twlab-out"
	// Lines on the console that the host reads for progress.
	consolePrefix = "twlab-guest: "
	// Result framing on the second serial port.
	frameBegin = "TWLAB-RESULT-BEGIN"
	frameEnd   = "TWLAB-RESULT-END"
	frameError = "TWLAB-ERROR"
	// maxResult bounds the run document the host accepts (256 cells of
	// figures and series stay far below it).
	maxResult = 256 << 20
	// timeseriesFile is the one attachment that travels with run.json;
	// maxAttachment bounds it (the runner bounds the series far below).
	timeseriesFile = "timeseries.csv"
	maxAttachment  = 64 << 20
	// maxPcapBytes bounds the captures sent back: the serial port carries a
	// few hundred KB/s under emulation, and a capture file may hold 16 MiB.
	maxPcapBytes = 8 << 20
)

// guestArgsDoc is what the host tells the guest.
type guestArgsDoc struct {
	File    string   `json:"file"` // the scenario's name on the host
	Set     []string `json:"set,omitempty"`
	Only    string   `json:"only,omitempty"`
	Modules []string `json:"modules"` // load order
	// ModuleLevels[i] is Modules[i]'s level: a level loads in parallel
	// once the levels below it are in.
	ModuleLevels []int  `json:"module_levels,omitempty"`
	Label        string `json:"label"`
	Pcap         bool   `json:"pcap,omitempty"`
	// Fault damages the result on purpose, for the tests of the host's
	// handling: "cut" sends half the frame, "garble" flips its payload.
	Fault string `json:"fault,omitempty"`
}

// IsGuest reports whether this process is the init of a twlab VM.
func IsGuest() bool {
	if os.Getpid() != 1 {
		return false
	}
	_, err := os.Stat(guestArgs)
	return err == nil
}

// GuestMain is /init inside the VM: set up the minimal system, load the
// modules, run the scenario, send run.json back over the second serial port,
// power off. It never returns normally.
func GuestMain() {
	out := openResultPort()
	defer poweroff()
	defer func() {
		if p := recover(); p != nil {
			sendError(out, fmt.Sprintf("guest panic: %v", p))
		}
	}()
	start := time.Now()
	// Before any goroutine enters a lab namespace.
	rememberErr := sysctl.RememberInitialNS()
	var args guestArgsDoc
	b, argsErr := os.ReadFile(guestArgs)
	if argsErr == nil {
		argsErr = json.Unmarshal(b, &args)
	}
	if args.Fault == "silent" {
		// Tests: a guest that hangs before its console speaks.
		for {
			time.Sleep(time.Hour)
		}
	}
	say("init")
	if err := guestSetup(); err != nil {
		sendError(out, err.Error())
		return
	}
	// The host boots again when the kernel could not calibrate its TSC
	// and runs on jiffies (see boot): every time in the run would be a
	// multiple of the tick.
	say("clocksource " + settledClock(3*time.Second))
	// Before anything reads randomness: a kernel without an entropy source
	// would block getrandom (and crypto/rand) forever.
	seed, err := os.ReadFile(guestSeed)
	if err == nil {
		err = seedRandom("/dev/urandom", seed, 10*time.Second)
	}
	if err != nil {
		sendError(out, "entropy: "+err.Error())
		return
	}
	if argsErr != nil {
		sendError(out, "read args: "+argsErr.Error())
		return
	}
	if rememberErr != nil {
		sendError(out, rememberErr.Error())
		return
	}
	loaded, failed := loadModules(args.Modules, args.ModuleLevels)
	// "ready" is measured from /init's start: seeding the random pool and
	// loading the modules, what the VM costs before the scenario.
	say(fmt.Sprintf("modules loaded=%d failed=%d in %.2fs", loaded, len(failed), time.Since(start).Seconds()))
	say(fmt.Sprintf("ready after %.3fs", time.Since(start).Seconds()))
	for _, f := range failed {
		say("module " + f)
	}
	src, err := os.ReadFile(guestScenario)
	if err != nil {
		sendError(out, err.Error())
		return
	}
	plan, err := scenario.Load(args.File, src, scenario.Options{Set: args.Set, Only: args.Only})
	if err != nil {
		sendError(out, err.Error())
		return
	}
	say(fmt.Sprintf("scenario %s: %d cells", plan.Scenario.Name, len(plan.Cells)))
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sc := time.Now()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		// The host's Ctrl-C arrives as a line on the console (guestStopLine).
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			if strings.TrimSpace(in.Text()) == guestStopLine {
				say("stop requested by the host")
				stop()
				return
			}
		}
	}()
	r, dir, err := runner.Run(ctx, plan, runner.Options{OutDir: guestOut, Log: log, VM: true, Pcap: args.Pcap,
		OnCellStart: func(i, total int, id string) { say(fmt.Sprintf("cell %d/%d %s", i+1, total, id)) },
		Progress: func(done, total int, c *result.Cell) {
			say(fmt.Sprintf("done %d/%d %s %s", done, total, c.Status, c.ID))
		}})
	if err != nil && r == nil {
		sendError(out, err.Error())
		return
	}
	say(fmt.Sprintf("scenario done in %.3fs", time.Since(sc).Seconds()))
	doc, err := os.ReadFile(filepath.Join(dir, "run.json"))
	if err != nil {
		sendError(out, err.Error())
		return
	}
	// The time series travels too, so that the host's report has its plots;
	// without it the report says the series is missing. So do the captures
	// of --pcap, as far as the serial budget allows (the host names the
	// ones that stayed behind).
	if r.Timeseries != nil && filepath.Base(r.Timeseries.Path) == timeseriesFile {
		if ts, err := os.ReadFile(filepath.Join(dir, timeseriesFile)); err == nil && len(ts) <= maxAttachment {
			sendNamedFrame(out, timeseriesFile, ts)
		}
	}
	budget := maxPcapBytes
	for _, c := range r.Cells {
		for _, p := range c.Pcap {
			if !safePcapName(p.Path) {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, p.Path))
			if err != nil || len(b) > budget {
				continue
			}
			budget -= len(b)
			sendNamedFrame(out, p.Path, b)
		}
	}
	switch args.Fault {
	case "cut", "garble":
		var buf bytes.Buffer
		sendFrame(&buf, doc)
		b := buf.Bytes()
		if args.Fault == "cut" {
			b = b[:len(b)/2]
		} else {
			for i := len(b) / 3; i < len(b)/2; i += 7 {
				if b[i] >= 'A' && b[i] <= 'Z' {
					b[i] = 'A' + (b[i]-'A'+13)%26
				}
			}
		}
		out.Write(b)
	default:
		sendFrame(out, doc)
	}
	say("results sent")
}

func say(msg string) { fmt.Fprintf(os.Stdout, "%s%s\n", consolePrefix, msg) }

func guestSetup() error {
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"}, {"tmpfs", "/tmp", "tmpfs"}, {"bpf", "/sys/fs/bpf", "bpf"},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			if m.fs == "bpf" {
				continue // optional
			}
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	return nil
}

// loadModules loads each module with finit_module, a level at a time and
// the modules of one level in parallel; already-loaded or built-in ones are
// fine. Without levels (an older host) they load one by one in order.
func loadModules(names []string, levels []int) (int, []string) {
	if len(levels) != len(names) {
		levels = make([]int, len(names))
		for i := range levels {
			levels[i] = i
		}
	}
	var mu sync.Mutex
	n := 0
	var failed []string
	load := func(name string) {
		err := finit(filepath.Join(guestModules, name+".ko"))
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed = append(failed, name+": "+err.Error())
			return
		}
		n++
	}
	top := slices.Max(append([]int{0}, levels...))
	for lv := 0; lv <= top; lv++ {
		var wg sync.WaitGroup
		for i, name := range names {
			if levels[i] == lv {
				wg.Go(func() { load(name) })
			}
		}
		wg.Wait()
	}
	return n, failed
}

func finit(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

func openResultPort() io.Writer {
	os.MkdirAll("/dev", 0o755)
	unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	if secondUART() {
		if f, err := os.OpenFile("/dev/ttyS1", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
			return f
		}
	}
	return os.Stdout // one serial port (a minimal kernel, QEMU's microvm): frame on the console
}

// secondUART reports whether ttyS1 is real hardware: the 8250 driver makes
// device nodes for four ports whether or not a UART answers, and bytes
// written to a missing one vanish. /proc/tty/driver/serial says
// "uart:unknown" for those. Without /proc yet mounted it mounts it.
func secondUART() bool {
	os.MkdirAll("/proc", 0o755)
	unix.Mount("proc", "/proc", "proc", 0, "")
	b, err := os.ReadFile("/proc/tty/driver/serial")
	if err != nil {
		return true // cannot tell: try the port, as before
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "1: "); ok {
			return !strings.Contains(rest, "uart:unknown")
		}
	}
	return false
}

// sendFrame writes doc between markers with its length and SHA-256,
// compressed and base64 in short lines, so the host can tell a complete
// result from a torn one. A serial port under software emulation carries
// some hundred KB/s; run.json compresses about thirtyfold with zstd.
func sendFrame(w io.Writer, doc []byte) { sendNamedFrame(w, "", doc) }

// sendNamedFrame is sendFrame for a file that travels with run.json (its
// name is the header's last field). Such frames go before run.json's own:
// the host ends QEMU as soon as run.json is complete, and by then every
// attachment has arrived too.
func sendNamedFrame(w io.Writer, name string, doc []byte) {
	sum := sha256.Sum256(doc)
	// zstd at its fastest level: run.json and the time series come out
	// 2.5x smaller than with gzip's fastest (nat-paws on 6.1: 21 KB
	// against 43 KB), and the serial port, not the guest's CPU, is what
	// the transfer waits for.
	zw, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
	if err != nil {
		sendError(w, "compress result: "+err.Error())
		return
	}
	z := zw.EncodeAll(doc, nil)
	zw.Close()
	bw := bufio.NewWriter(w)
	if name == "" {
		fmt.Fprintf(bw, "\n%s %d %s zstd\n", frameBegin, len(doc), hex.EncodeToString(sum[:]))
	} else {
		fmt.Fprintf(bw, "\n%s %d %s zstd %s\n", frameBegin, len(doc), hex.EncodeToString(sum[:]), name)
	}
	enc := base64.StdEncoding.EncodeToString(z)
	for len(enc) > 0 {
		n := min(len(enc), 76)
		bw.WriteString(enc[:n] + "\n")
		enc = enc[n:]
	}
	fmt.Fprintf(bw, "%s\n", frameEnd)
	bw.Flush()
	drain(w)
}

// drain waits until what was written to w has left: on a serial port,
// until the UART has sent it (tcdrain). write(2) returns while up to a few
// KiB still wait in the tty's buffer, and the restart that follows the
// result would race them out: the host would read a torn frame from a
// guest that finished. fsync on a tty only fails with EINVAL.
func drain(w io.Writer) {
	f, ok := w.(*os.File)
	if !ok {
		return
	}
	if err := unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1); err != nil {
		f.Sync() // not a tty (a file in tests)
	}
}

func sendError(w io.Writer, msg string) {
	say("error: " + msg)
	fmt.Fprintf(w, "\n%s %s\n", frameError, strings.ReplaceAll(msg, "\n", "; "))
	drain(w)
}

// poweroff ends the VM. Power-off needs ACPI, which a minimal kernel may
// lack ("reboot: System halted", and QEMU runs on); a restart works on every
// kernel, and QEMU started with -no-reboot exits on it.
func poweroff() {
	drain(os.Stdout) // the console's last lines, and the frame when it went there
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {} // PID 1 must not exit
}

// ParseFrame extracts the run document from what the guest wrote.
func ParseFrame(b []byte) ([]byte, error) {
	doc, _, err := parseResult(b)
	return doc, err
}

// parseResult looks for the guest's result in what has arrived so far.
// final is true when nothing more is needed: a verified document, or a
// complete error line. A frame still arriving is not final, and neither is
// a damaged one (the rest of the stream cannot mend it, but the caller keeps
// waiting for QEMU rather than guessing). Named frames (attachments such as
// timeseries.csv) are passed over: the result is the frame without a name.
func parseResult(b []byte) (doc []byte, final bool, err error) {
	s := string(b)
	for {
		i := strings.Index(s, frameBegin+" ")
		// An error line before the next frame (or after the last one: the
		// guest may fail after sending its attachments) is the guest's
		// final word.
		if e := strings.Index(s, frameError+" "); e >= 0 && (i < 0 || e < i) {
			msg := s[e+len(frameError)+1:]
			j := strings.IndexByte(msg, '\n')
			if j < 0 {
				return nil, false, errors.New("torn error message from the guest")
			}
			return nil, true, fmt.Errorf("guest: %s", strings.TrimSpace(msg[:j]))
		}
		if i < 0 {
			return nil, false, errors.New("no result from the guest (it did not finish; see console.log)")
		}
		s = s[i+len(frameBegin)+1:]
		name, hdr, body, rest, complete, err := frameSpan(s)
		if name != "" && complete {
			s = rest // an attachment, whole or damaged: not the result
			continue
		}
		if err != nil {
			return nil, false, err
		}
		if name == "" {
			doc, err := verifyFrame(hdr, body)
			if err != nil {
				return nil, false, err
			}
			return doc, true, nil
		}
		s = rest
	}
}

// attachments returns the verified named frames of what the guest sent,
// limited to the names in allowed: a damaged or unexpected one is left out
// (the run document alone is the result; an attachment only adds plots).
func attachments(b []byte, allowed ...string) map[string][]byte {
	out := map[string][]byte{}
	s := string(b)
	for {
		i := strings.Index(s, frameBegin+" ")
		if i < 0 {
			return out
		}
		s = s[i+len(frameBegin)+1:]
		// The name first: a frame the host did not ask for is skipped
		// without being decoded.
		name, hdr, body, rest, complete, err := frameSpan(s)
		if !complete {
			return out
		}
		if n, aerr := strconv.Atoi(hdr0(hdr)); err == nil && aerr == nil && n <= maxAttachment && name != "" && slices.Contains(allowed, name) {
			if doc, err := verifyFrame(hdr, body); err == nil {
				out[name] = doc
			}
		}
		s = rest
	}
}

// safePcapName accepts only what the runner names a capture
// ("pcap/cell-01-server.pcap"): a name from the guest becomes a path on
// the host, so nothing else may pass.
func safePcapName(name string) bool {
	dir, base, ok := strings.Cut(name, "/")
	if !ok || dir != "pcap" || !strings.HasPrefix(base, "cell-") || !strings.HasSuffix(base, ".pcap") || len(base) > 64 {
		return false
	}
	for _, r := range base {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return !strings.Contains(base, "..")
}

// frameSpan finds one frame's header, body and end without decoding it:
// the host, polling for the run document while attachments arrive, skips
// those (base64, decompression and a hash of up to 64 MiB each, at every
// poll) and verifies them once, at the end.
func frameSpan(s string) (name string, hdr []string, body, rest string, complete bool, err error) {
	nl := strings.IndexByte(s, '\n')
	if nl < 0 {
		return "", nil, "", "", false, errors.New("torn result header")
	}
	hdr = strings.Fields(s[:nl])
	if len(hdr) < 2 || len(hdr) > 4 {
		return "", nil, "", "", false, fmt.Errorf("result header %q: want LENGTH SHA256 [zstd|gzip [NAME]]", s[:nl])
	}
	if len(hdr) == 4 {
		name = hdr[3]
	}
	body = s[nl+1:]
	end := strings.Index(body, frameEnd)
	if end < 0 {
		return name, hdr, "", "", false, errors.New("torn result: the guest's result was cut off (no end marker)")
	}
	// A frame cut off before its end marker must not take the next frame's
	// end for its own, and the next frame (the run document) with it.
	// The search starts at the header's line break, so a frame cut inside
	// its header (the next begin marker first in body) is caught too.
	if k := strings.Index(s[nl:nl+1+end], "\n"+frameBegin+" "); k >= 0 {
		return name, hdr, "", s[nl+k:], true, errors.New("torn frame: the next one began before its end marker")
	}
	return name, hdr, body[:end], body[end+len(frameEnd):], true, nil
}

// verifyFrame decodes a frame's body and checks it against its header.
func verifyFrame(hdr []string, body string) ([]byte, error) {
	n, err := strconv.Atoi(hdr[0])
	if err != nil || n < 0 || n > maxResult {
		return nil, fmt.Errorf("result header %q: bad length", strings.Join(hdr, " "))
	}
	doc, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(body), ""))
	if err != nil {
		return nil, fmt.Errorf("result damaged on the way (base64: %w)", err)
	}
	if len(hdr) >= 3 {
		// Bounded: a damaged stream cannot make the host allocate more than
		// the header promised.
		if hdr[2] != decomp.Zstd && hdr[2] != decomp.Gzip {
			return nil, fmt.Errorf("result header %q: unknown compression %q (zstd or gzip)", strings.Join(hdr, " "), hdr[2])
		}
		zr, err := decomp.Reader(bytes.NewReader(doc), hdr[2], maxResult+1<<20)
		if err != nil {
			return nil, fmt.Errorf("result damaged on the way (%s: %w)", hdr[2], err)
		}
		defer zr.Close()
		doc, err = io.ReadAll(io.LimitReader(zr, int64(n)+1))
		if err != nil {
			return nil, fmt.Errorf("result damaged on the way (%s: %w)", hdr[2], err)
		}
	}
	sum := sha256.Sum256(doc)
	if len(doc) != n || hex.EncodeToString(sum[:]) != hdr[1] {
		return nil, fmt.Errorf("result damaged: %d bytes (want %d), checksum mismatch", len(doc), n)
	}
	return doc, nil
}

// hdr0 is a frame header's first field, its length ("" if none).
func hdr0(hdr []string) string {
	if len(hdr) == 0 {
		return ""
	}
	return hdr[0]
}

// settledClock is the clock source the guest's cells will run on. A kernel
// without ACPI starts on refined-jiffies and, when its TSC calibrated,
// switches to it about a second later (the calibration is refined by a
// delayed work first), so jiffies at /init's start means nothing yet: it
// waits, at most wait, unless the kernel has said it gave the TSC up.
func settledClock(wait time.Duration) string {
	end := time.Now().Add(wait)
	cs := kernel.Clocksource()
	for result.CoarseClock(cs) && time.Now().Before(end) && !tscGivenUp() {
		time.Sleep(50 * time.Millisecond)
		cs = kernel.Clocksource()
	}
	return cs
}

// tscGivenUp says whether the kernel log says the TSC will not be used
// ("tsc: Marking TSC unstable due to could not calculate TSC khz", or the
// clocksource watchdog's verdict).
func tscGivenUp() bool {
	buf := make([]byte, 256<<10) // a log buffer of the lab kernels (LOG_BUF_SHIFT 17) and then some
	n, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil || n <= 0 {
		return false
	}
	return bytes.Contains(buf[:n], []byte("Marking TSC unstable"))
}
