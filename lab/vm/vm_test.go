package vm

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/twlab/twlab/lab/capture"
	"github.com/twlab/twlab/lab/kbuild"
	"github.com/twlab/twlab/lab/result"
)

// readCpio parses a newc archive, enough to check what writeTo produced.
func readCpio(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for p := 0; ; {
		if p+110 > len(b) || string(b[p:p+6]) != "070701" {
			t.Fatalf("bad header at %d", p)
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(b[p+6+8*i:p+14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return int(v)
		}
		size, namesize := field(6), field(11)
		name := string(b[p+110 : p+110+namesize-1])
		p += 110 + namesize
		p = (p + 3) &^ 3
		if name == "TRAILER!!!" {
			return out
		}
		out[name] = b[p : p+size]
		p += size
		p = (p + 3) &^ 3
	}
}

func TestCpio(t *testing.T) {
	a := newArchive()
	a.file("init", 0o755, []byte("#!init"))
	a.file("twlab/modules/veth.ko", 0o644, []byte("ELF"))
	var buf bytes.Buffer
	if _, err := a.writeTo(&buf); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d not 4-aligned", buf.Len())
	}
	files := readCpio(t, buf.Bytes())
	for name, want := range map[string]string{"init": "#!init", "twlab/modules/veth.ko": "ELF", "twlab": "", "twlab/modules": ""} {
		got, ok := files[name]
		if !ok || string(got) != want {
			t.Errorf("%s: %q, %v", name, got, ok)
		}
	}
}

func frame(doc []byte) string {
	sum := sha256.Sum256(doc)
	return fmt.Sprintf("noise\n%s %d %s\n%s\n%s\n", frameBegin, len(doc), hex.EncodeToString(sum[:]), base64.StdEncoding.EncodeToString(doc), frameEnd)
}

func TestParseFrame(t *testing.T) {
	doc := []byte(`{"schema":"twlab.run/v1"}`)
	var buf bytes.Buffer
	sendFrame(&buf, doc)
	got, err := ParseFrame(append([]byte("console noise\n"), buf.Bytes()...))
	if err != nil || !bytes.Equal(got, doc) {
		t.Fatalf("round trip: %q, %v", got, err)
	}
	if _, err := ParseFrame([]byte(frame(doc)[:40])); err == nil {
		t.Error("torn frame accepted")
	}
	bad := strings.Replace(frame(doc), fmt.Sprintf("%s %d", frameBegin, len(doc)), fmt.Sprintf("%s %d", frameBegin, len(doc)+1), 1)
	if _, err := ParseFrame([]byte(bad)); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("wrong length: %v", err)
	}
	if _, err := ParseFrame([]byte("x\n" + frameError + " scenario: bad\n")); err == nil || !strings.Contains(err.Error(), "guest: scenario: bad") {
		t.Errorf("error frame: %v", err)
	}
	if _, err := ParseFrame([]byte("kernel panic\n")); err == nil {
		t.Error("no frame accepted")
	}
	// The guest compresses with zstd; a gzip frame (an older guest) still
	// reads, and a compression the host does not know is named.
	if !strings.Contains(buf.String(), " zstd\n") {
		t.Errorf("frame header not zstd: %q", buf.String()[:80])
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(doc)
	zw.Close()
	sum := sha256.Sum256(doc)
	gz := fmt.Sprintf("\n%s %d %x gzip\n%s\n%s\n", frameBegin, len(doc), sum, base64.StdEncoding.EncodeToString(z.Bytes()), frameEnd)
	if got, err := ParseFrame([]byte(gz)); err != nil || !bytes.Equal(got, doc) {
		t.Errorf("gzip frame: %q, %v", got, err)
	}
	if _, err := ParseFrame([]byte(strings.Replace(gz, " gzip\n", " lz4\n", 1))); err == nil || !strings.Contains(err.Error(), `unknown compression "lz4"`) {
		t.Errorf("unknown compression: %v", err)
	}
}

// TestSafePcapName: a name from the guest becomes a path on the host.
func TestSafePcapName(t *testing.T) {
	for name, want := range map[string]bool{
		"pcap/cell-01-server.pcap": true, "pcap/cell-12-c3.pcap": true,
		"pcap/../run.json": false, "../pcap/cell-01-server.pcap": false, "pcap/cell-01-server.pcap/x": false,
		"/etc/passwd": false, "pcap/cell-01-Server.pcap": false, "pcap/cell-..pcap": false, "timeseries.csv": false,
		"pcap/x.pcap": false, "pcap/cell-01 server.pcap": false,
	} {
		if got := safePcapName(name); got != want {
			t.Errorf("safePcapName(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestAttachments: the time series travels in a named frame before
// run.json's. The result is still the unnamed frame; a damaged attachment
// or one with a name the host does not expect is left out, and never
// spoils the result; an attachment alone is no result.
func TestAttachments(t *testing.T) {
	doc := []byte(`{"schema":"twlab.run/v1"}`)
	ts := []byte("cell,t_ms,series,node,value\n0,100,tw,server,3\n")
	var buf bytes.Buffer
	sendNamedFrame(&buf, timeseriesFile, ts)
	sendNamedFrame(&buf, "../../etc/passwd", []byte("x"))
	sendFrame(&buf, doc)
	stream := append([]byte("console noise\n"), buf.Bytes()...)
	got, err := ParseFrame(stream)
	if err != nil || !bytes.Equal(got, doc) {
		t.Fatalf("result with attachments before it: %q, %v", got, err)
	}
	at := attachments(stream, timeseriesFile)
	if len(at) != 1 || !bytes.Equal(at[timeseriesFile], ts) {
		t.Fatalf("attachments: %q", at)
	}
	var only bytes.Buffer
	sendNamedFrame(&only, timeseriesFile, ts)
	if _, err := ParseFrame(only.Bytes()); err == nil {
		t.Error("an attachment alone was taken for the result")
	}
	// Damage the attachment's checksum: it is dropped, the result stands.
	var dmg bytes.Buffer
	sendNamedFrame(&dmg, timeseriesFile, ts)
	bad := bytes.Replace(dmg.Bytes(), []byte(fmt.Sprintf("%s %d ", frameBegin, len(ts))), []byte(fmt.Sprintf("%s %d ", frameBegin, len(ts)+1)), 1)
	var b2 bytes.Buffer
	b2.Write(bad)
	sendFrame(&b2, doc)
	if got, err := ParseFrame(b2.Bytes()); err != nil || !bytes.Equal(got, doc) {
		t.Errorf("a damaged attachment spoiled the result: %q, %v", got, err)
	}
	if at := attachments(b2.Bytes(), timeseriesFile); len(at) != 0 {
		t.Errorf("damaged attachment kept: %q", at)
	}
	// An attachment cut off mid-way (no end marker) does not swallow the
	// run document that follows it.
	var torn bytes.Buffer
	sendNamedFrame(&torn, timeseriesFile, ts)
	cut := torn.String()[:strings.Index(torn.String(), frameEnd)-3]
	var tb bytes.Buffer
	tb.WriteString(cut)
	sendFrame(&tb, doc)
	if got, err := ParseFrame(tb.Bytes()); err != nil || !bytes.Equal(got, doc) {
		t.Errorf("a torn attachment took the result with it: %q, %v", got, err)
	}
	// ... nor does one cut inside its header line.
	nl := strings.Index(torn.String()[1:], "\n") + 1 // the header's end (the frame starts with \n)
	var hb bytes.Buffer
	hb.WriteString(torn.String()[:nl-4])
	sendFrame(&hb, doc)
	if got, err := ParseFrame(hb.Bytes()); err != nil || !bytes.Equal(got, doc) {
		t.Errorf("an attachment cut in its header took the result with it: %q, %v", got, err)
	}
	// A guest that fails after sending its attachments: its error is the
	// final word, not "no result".
	var late bytes.Buffer
	sendNamedFrame(&late, timeseriesFile, ts)
	late.WriteString("\n" + frameError + " write run.json: no space left\n")
	if _, final, err := parseResult(late.Bytes()); !final || err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("an error after an attachment: final %v, %v", final, err)
	}
}

func TestNamesAndVersions(t *testing.T) {
	if !kbuild.VersionLess("linux-image-6.1.0-9-amd64-unsigned", "linux-image-6.1.0-56-amd64-unsigned") {
		t.Error("6.1.0-9 should sort before 6.1.0-56")
	}
	if l := labelOf("", "bzImage 4.10/x"); l != "bzImage_4.10_x" {
		t.Errorf("label %q", l)
	}
	for _, rel := range []string{"..", ".", "", ".hidden"} {
		if l := labelOf(rel, ""); l == "" || l[0] == '.' {
			t.Errorf("release %q gives label %q: a folder that is not a kernel's own", rel, l)
		}
	}
	ks := []*Kernel{{Label: "4.10.17"}, {Label: "4.10.17"}, {Label: "4.10.17-2"}, {Label: "4.10.17"}}
	uniqueLabels(ks)
	seen := map[string]bool{}
	for _, k := range ks {
		if seen[k.Label] {
			t.Errorf("label %q twice: two kernels would share a results folder", k.Label)
		}
		seen[k.Label] = true
	}
	if ks[0].Label != "4.10.17" {
		t.Errorf("the first kernel's label changed to %q", ks[0].Label)
	}
	if err := CheckStatic("/bin/ls"); err == nil {
		t.Error("/bin/ls is dynamic; CheckStatic should refuse it")
	}
}

// debianKernels resolves debian:6.1 and debian:6.12 (those apt serves here)
// into the cache, fetching them when it is empty, as a user's first
// `twlab vm` does; later tests reuse them. Without apt it skips, which CI
// does not allow (.ci/allowed-skips): there the cache starts empty and the
// tests must fill it.
func debianKernels(t *testing.T) []*Kernel {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: fetches kernels with apt into the cache")
	}
	debianOnce.Do(func() {
		ctx := context.Background()
		for _, v := range []string{"6.1", "6.12"} {
			pkgs, err := DebianPackages(ctx, v, nil)
			if err != nil {
				debianSkip = err.Error()
				return
			}
			if len(pkgs) == 0 {
				continue
			}
			k, err := Resolve(ctx, "debian:"+v, "", nil)
			if err != nil {
				debianErr = err
				return
			}
			debianKs = append(debianKs, k)
		}
		if len(debianKs) == 0 {
			debianSkip = "apt knows no Debian 6.1/6.12 kernel package: run apt-get update (make deps does)"
		}
	})
	if debianSkip != "" {
		t.Skip(debianSkip)
	}
	if debianErr != nil {
		t.Fatal(debianErr)
	}
	return debianKs
}

var (
	debianOnce sync.Once
	debianKs   []*Kernel
	debianErr  error
	debianSkip string
)

// TestResolveIntoEmptyCache resolves a Debian kernel into a cache folder that
// does not exist yet, with no logger, as the first run on a new machine does
// (this panicked on a nil logger and failed on a missing kernels/ folder).
// The package comes from the shared cache through the seed folder, so the
// test does not download it twice.
func TestResolveIntoEmptyCache(t *testing.T) {
	ks := debianKernels(t)
	pkgs, _ := filepath.Glob(filepath.Join(CacheDir, "debs", ks[0].Package+"_*.deb"))
	if len(pkgs) != 1 {
		t.Fatalf("%s: want one cached .deb, have %v", ks[0].Package, pkgs)
	}
	oldCache, oldSeed := CacheDir, SeedDir
	CacheDir, SeedDir = filepath.Join(t.TempDir(), "no", "such", "cache"), filepath.Dir(pkgs[0])
	defer func() { CacheDir, SeedDir = oldCache, oldSeed }()
	k, err := Resolve(context.Background(), ks[0].Spec, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.Image, CacheDir) || k.Release != ks[0].Release {
		t.Errorf("resolved %+v, want an image under %s of release %s", k, CacheDir, ks[0].Release)
	}
	if _, err := pvhImage(context.Background(), k.Image); err != nil {
		t.Errorf("PVH image into an empty cache: %v", err)
	}
}

// TestModulesOfDebianKernels resolves the lab's modules in Debian's
// kernels: dependencies first, and the crc32c implementation before
// libcrc32c.
func TestModulesOfDebianKernels(t *testing.T) {
	for _, k := range debianKernels(t) {
		tree := k.ModulesDir
		mods, missing, err := ResolveModules(tree, LabModules)
		if err != nil {
			t.Fatalf("%s: %v", tree, err)
		}
		if len(missing) > 0 {
			t.Errorf("%s: essential modules missing: %v", tree, missing)
		}
		pos, lvl := map[string]int{}, map[string]int{}
		for i, m := range mods {
			pos[m.Name], lvl[m.Name] = i, m.Level
			if !bytes.HasPrefix(m.Data, []byte("\x7fELF")) {
				t.Errorf("%s: %s is not an ELF after decompression", tree, m.Name)
			}
		}
		for _, pair := range [][2]string{{"nfnetlink", "nf_tables"}, {"nf_conntrack", "nf_nat"}, {"crc32c_generic", "libcrc32c"}, {"nf_tables", "nft_chain_nat"}} {
			a, okA := pos[pair[0]]
			b, okB := pos[pair[1]]
			if okA && okB && a > b {
				t.Errorf("%s: %s loads after %s", tree, pair[0], pair[1])
			}
			// Levels load in parallel: a dependency must be a level below.
			if okA && okB && lvl[pair[0]] >= lvl[pair[1]] {
				t.Errorf("%s: %s (level %d) is not below %s (level %d)", tree, pair[0], lvl[pair[0]], pair[1], lvl[pair[1]])
			}
		}
		if _, ok := pos["veth"]; !ok {
			t.Errorf("%s: veth not resolved", tree)
		}
	}
}

// TestScenarioInDebianVM boots Debian's 6.1 kernel (and 6.12 when apt has
// it) under QEMU with a static twlab as /init and runs the classic cell:
// PAWS rejects must show there too, counted by whichever counter that kernel
// has. Needs root, qemu-system-x86_64 and apt; skipped otherwise.
func TestScenarioInDebianVM(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (apt cache, QEMU)")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed: make deps (apt-get install qemu-system-x86)")
	}
	ctx := context.Background()
	bin := staticTwlab(t)
	kernels := debianKernels(t)
	src, err := os.ReadFile("../../scenarios/nat-paws.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// A comma in the results folder: QEMU's option lists take ",," for one.
	out := filepath.Join(t.TempDir(), "ci,run")
	res, err := Run(ctx, Options{Kernels: kernels, ScenarioFile: "nat-paws.yaml", Source: src, Binary: bin, OutDir: out,
		Set: []string{"load.connections=40"}, Pcap: true,
		Only:     "server.net.ipv4.tcp_rfc1337 == 0 && server.net.ipv4.tcp_tw_recycle == 0",
		Timeout:  4 * time.Minute,
		Progress: func(k *Kernel, msg string) { t.Logf("%s: %s", k.Label, msg) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != "" {
			console, _ := os.ReadFile(filepath.Join(r.Dir, "console.log"))
			t.Fatalf("%s: %s\nconsole:\n%s", r.Kernel.Label, r.Err, console)
		}
		if !strings.HasPrefix(r.Run.Kernel, strings.TrimPrefix(r.Kernel.Spec, "debian:")+".") || !r.Run.Host.VM {
			t.Errorf("%s: run.json says kernel %q, vm %v", r.Kernel.Label, r.Run.Kernel, r.Run.Host.VM)
		}
		if r.Run.Status == result.RunInterrupted || len(r.Run.Cells) != 2 {
			t.Errorf("%s: status %s with %d cells", r.Kernel.Label, r.Run.Status, len(r.Run.Cells))
		}
		for _, c := range r.Run.Cells {
			if c.Load == nil {
				t.Errorf("%s: cell %s: %s %s", r.Kernel.Label, c.ID, c.Status, c.Reason)
				continue
			}
			// An emulated guest on a busy 2-core host can lose a stray
			// connect; the kernel behaviour is what this test is about.
			if c.Load.Failed > 2 {
				t.Errorf("%s: cell %s: %d of %d connects failed: %v", r.Kernel.Label, c.ID, c.Load.Failed, c.Load.Attempts, c.Load.Errors)
			} else if c.Load.Failed > 0 {
				t.Logf("%s: cell %s: %d stray failure(s): %v %v", r.Kernel.Label, c.ID, c.Load.Failed, c.Load.Failures, c.Load.Errors)
			}
			if c.ID == "tw_recycle=0,timestamps=2,rfc1337=0" && (c.Nodes["server"] == nil || c.Nodes["server"].Summary["paws"] == 0) {
				t.Errorf("%s: timestamps on, no PAWS reject in the VM", r.Kernel.Label)
			}
		}
		// The time series came back with run.json: the report has plots.
		if rows, err := result.ReadTimeseries(filepath.Join(r.Dir, "timeseries.csv")); err != nil || len(rows) == 0 {
			t.Errorf("%s: timeseries.csv not brought back from the guest: %d rows, %v", r.Kernel.Label, len(rows), err)
		}
		// So did every capture, frame for frame.
		for _, c := range r.Run.Cells {
			if len(c.Pcap) == 0 {
				t.Errorf("%s: cell %s: no capture listed (--pcap)", r.Kernel.Label, c.ID)
			}
			for _, p := range c.Pcap {
				frames, err := capture.ReadFile(filepath.Join(r.Dir, p.Path))
				if err != nil || len(frames) != p.Packets || p.Packets == 0 {
					t.Errorf("%s: %s: %d frames on the host (%v), run.json says %d", r.Kernel.Label, p.Path, len(frames), err, p.Packets)
				}
			}
		}
		t.Logf("%s: boot %.1fs scenario %.1fs total %.1fs", r.Kernel.Label, r.BootS, r.ScenarioS, r.TotalS)
	}
	t.Log("\n" + Matrix(res))
}

// TestPVHOfDebianKernels unpacks each Debian kernel and checks that the ELF
// carries a PVH entry point (so QEMU boots it without decompressing).
func TestPVHOfDebianKernels(t *testing.T) {
	for _, k := range debianKernels(t) {
		elfPath, err := pvhImage(context.Background(), k.Image)
		if err != nil {
			t.Errorf("%s: %v", k.Image, err)
			continue
		}
		b, err := os.ReadFile(elfPath)
		if err != nil || !hasPVHNote(b) {
			t.Errorf("%s: cached %s has no PVH note (%v)", k.Image, elfPath, err)
		}
		// A cached file of the right size but not a PVH kernel (zeroed by
		// a crash, or a foreign file) is made again, not booted.
		if err := os.WriteFile(elfPath, make([]byte, len(b)), 0o644); err != nil {
			t.Fatal(err)
		}
		again, err := pvhImage(context.Background(), k.Image)
		if err != nil || !cachedHasPVHNote(again) {
			t.Errorf("%s: a zeroed cache entry of the right size was used again (%v)", k.Image, err)
		}
	}
	if _, err := bzPayload([]byte("not a kernel")); err == nil {
		t.Error("bzPayload accepted garbage")
	}
}

// staticTwlab builds twlab as `make build` does, once per test binary.
func staticTwlab(t *testing.T) string {
	t.Helper()
	staticOnce.Do(func() {
		dir, err := os.MkdirTemp("", "twlab-vm-test")
		if err != nil {
			staticErr = err
			return
		}
		staticBin = filepath.Join(dir, "twlab")
		build := exec.Command("go", "build", "-ldflags=-s -w", "-o", staticBin, "../../cmd/twlab")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			staticErr = fmt.Errorf("build static twlab: %v\n%s", err, out)
		}
	})
	if staticErr != nil {
		t.Fatal(staticErr)
	}
	return staticBin
}

var (
	staticOnce sync.Once
	staticBin  string
	staticErr  error
)

// oldKernel finds a pre-4.12 bzImage: $TWLAB_OLD_KERNEL, or the stock 4.10.17
// kept beside the repository (../shared/kernels). Without one the old-kernel
// tests skip; that skip is the one CI allows (.ci/allowed-skips).
func oldKernel(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TWLAB_OLD_KERNEL"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("TWLAB_OLD_KERNEL: %v", err)
		}
		return p
	}
	for _, p := range []string{"../../../shared/kernels/linux-4.10.17-min/bzImage", "/work/shared/kernels/linux-4.10.17-min/bzImage"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("no pre-4.12 kernel given (set TWLAB_OLD_KERNEL to a bzImage, or keep ../shared/kernels/linux-4.10.17-min/bzImage beside the repository)")
	return ""
}

// TestOldKernelNatPaws runs the whole nat-paws scenario on a stock pre-4.12
// kernel (4.10.17: no entropy source, no ACPI, /proc/net cached per thread,
// global tcp_timestamps/tcp_tw_recycle/tcp_rfc1337, global sockstat, 250 Hz
// timestamps, BPF charged to RLIMIT_MEMLOCK) and checks the seed's case and
// that every figure belongs to the node it is reported for.
func TestOldKernelNatPaws(t *testing.T) {
	k, src := oldKernelNatPaws(t)
	res, err := Run(context.Background(), Options{Kernels: []*Kernel{k}, ScenarioFile: "nat-paws.yaml", Source: src, Binary: staticTwlab(t),
		OutDir: t.TempDir(), Timeout: 4 * time.Minute,
		Progress: func(k *Kernel, msg string) { t.Logf("%s: %s", k.Label, msg) }})
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	if r.Err != "" {
		console, _ := os.ReadFile(filepath.Join(r.Dir, "console.log"))
		t.Fatalf("%s: %s\nconsole:\n%s", r.Kernel.Label, r.Err, console)
	}
	run := r.Run
	t.Logf("\n%s", Matrix(res))
	if run.Status != result.RunOK || len(run.Cells) != 6 {
		t.Errorf("status %s with %d cells, want ok with 6", run.Status, len(run.Cells))
	}
	facts, _ := json.Marshal(run.KernelFeatures)
	var kf struct {
		TSHz      int    `json:"ts_hz"`
		TWCount   string `json:"tw_count"`
		TSOffsets string `json:"ts_offsets"`
		EBPF      string `json:"ebpf"`
	}
	json.Unmarshal(facts, &kf)
	if kf.TSHz == 0 || kf.TSHz == 1000 || kf.TWCount != "global" || kf.TSOffsets == "unknown" || kf.EBPF != "ok" {
		t.Errorf("kernel features %s: want a jiffies clock, global sockstat, known offsets, eBPF ok", facts)
	}
	// The guest's clock source is recorded and agrees with the boots it
	// took: a coarse one only after the last boot twlab allows. (Which one
	// a busy machine gets is chance, so either may pass.)
	switch cs := run.KernelFeatures.Clocksource; {
	case cs == "":
		t.Error("kernel_features.clocksource not recorded")
	case strings.Contains(cs, "jiffies") && r.BootAttempts < maxClockAttempts:
		t.Errorf("clock %s after %d boots: the host should have booted again", cs, r.BootAttempts)
	default:
		t.Logf("guest clock %s after %d boot(s)", cs, r.BootAttempts)
	}
	for _, c := range run.Cells {
		if c.Status != result.CellOK {
			t.Errorf("cell %s: %s %s", c.ID, c.Status, c.Reason)
			// The run folder is a TempDir that CI throws away: what a rare
			// failure needs for a diagnosis goes into the log.
			// The nodes' non-zero counters tell the suspects apart: a
			// TIME_WAIT accepted or killed on the server, a port the NAT
			// remapped (conntrack on the box), a SYN without its offset.
			counters := map[string]map[string]int64{}
			for name, n := range c.Nodes {
				if n == nil {
					continue
				}
				counters[name] = map[string]int64{}
				for k, v := range n.Counters {
					if v != 0 {
						counters[name][k] = v
					}
				}
			}
			detail, _ := json.Marshal(struct {
				Load     *result.Load
				SYN      *result.SYN
				Skew     *result.Skew
				Counters map[string]map[string]int64
			}{c.Load, c.SYN, c.Skew, counters})
			t.Logf("cell %s in detail: %s", c.ID, detail)
			continue
		}
		srv, lvs := c.Nodes["server"].Counters, c.Nodes["lvs"].Counters
		if lvs["Tcp.ActiveOpens"] != 0 || lvs["Tcp.PassiveOpens"] != 0 {
			t.Errorf("cell %s: the box opened connections (%d active, %d passive): counters of another namespace", c.ID, lvs["Tcp.ActiveOpens"], lvs["Tcp.PassiveOpens"])
		}
		if srv["Tcp.PassiveOpens"] != int64(c.Load.OK) {
			t.Errorf("cell %s: server PassiveOpens %d, successful connects %d", c.ID, srv["Tcp.PassiveOpens"], c.Load.OK)
		}
		for name, pc := range c.Load.PerClient {
			if got := c.Nodes[name].Counters["Tcp.ActiveOpens"]; got != int64(pc.Attempts+pc.CutShort) {
				t.Errorf("cell %s: %s ActiveOpens %d, connects started %d (%d attempts, %d cut short)", c.ID, name, got, pc.Attempts+pc.CutShort, pc.Attempts, pc.CutShort)
			}
			if tw := c.Nodes[name].TimeWait.Max; tw != 0 {
				t.Errorf("cell %s: %s shows %d TIME_WAIT sockets, but the server closes first: the machine's count, not the node's", c.ID, name, tw)
			}
		}
		if !strings.Contains(c.KnobsActual["clients.net.ipv4.tcp_timestamps"], "(global)") {
			t.Errorf("cell %s: knobs_actual %v: tcp_timestamps is global on this kernel", c.ID, c.KnobsActual)
		}
		passive := srv["TcpExt.PAWSPassive"]
		recycle := c.Matrix["server.net.ipv4.tcp_tw_recycle"] == "1"
		tsOn := c.Matrix["clients.net.ipv4.tcp_timestamps"] == "2"
		switch {
		case recycle && tsOn:
			// The seed: SYNs dropped silently, the client behind times out.
			pc := c.Load.PerClient
			if passive == 0 || c.SYN.Unanswered == 0 || c.SYN.RSTIn != 0 || pc["c2"].OK != 0 || pc["c2"].Attempts == 0 || pc["c1"].OK != pc["c1"].Attempts {
				t.Errorf("cell %s: PAWSPassive %d, unanswered %d, RSTs in %d, c2 %d/%d, c1 %d/%d: want the silent drop of c2 only",
					c.ID, passive, c.SYN.Unanswered, c.SYN.RSTIn, pc["c2"].OK, pc["c2"].Attempts, pc["c1"].OK, pc["c1"].Attempts)
			}
			if sk := c.Skew.Clients["c2"]; sk == nil || sk.OffsetMS != -60000 || int(sk.OffsetTicks) != -60*kf.TSHz {
				t.Errorf("cell %s: c2's skew %+v: want -60 s in ticks of %d Hz", c.ID, sk, kf.TSHz)
			}
		case passive != 0:
			t.Errorf("cell %s: PAWSPassive %d without tw_recycle and timestamps", c.ID, passive)
		}
	}
}

// TestKilledUnpackLeavesNoHalfKernel kills a twlab that is writing the
// unpacked kernel into an empty cache, checks that no half kernel is taken
// for a whole one (neither its temporary file nor a truncated cache entry,
// which an interrupted external xz used to leave), and boots from the cache
// afterwards.
func TestKilledUnpackLeavesNoHalfKernel(t *testing.T) {
	if img := os.Getenv("TWLAB_TEST_UNPACK"); img != "" {
		// The child: unpack slowly until killed.
		writeChunkDelay = 50 * time.Millisecond
		pvhImage(context.Background(), img)
		return
	}
	if testing.Short() {
		t.Skip("unpacks and boots a kernel; skipped with -short")
	}
	ks := debianKernels(t)
	img := ks[0].Image
	cache := t.TempDir()
	pvhDir := filepath.Join(cache, "pvh")
	child := exec.Command(os.Args[0], "-test.run", "^TestKilledUnpackLeavesNoHalfKernel$")
	child.Env = append(os.Environ(), "TWLAB_TEST_UNPACK="+img, "TWLAB_CACHE="+cache)
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		tmps, _ := filepath.Glob(filepath.Join(pvhDir, "*.tmp*"))
		if len(tmps) == 1 {
			if st, err := os.Stat(tmps[0]); err == nil && st.Size() >= 8<<20 {
				child.Process.Kill()
				killed = true
				break
			}
		}
	}
	child.Wait()
	if !killed {
		t.Fatal("the child never got to write the cache")
	}
	if elfs, _ := filepath.Glob(filepath.Join(pvhDir, "*.elf")); len(elfs) != 0 {
		t.Fatalf("a killed writer left a cache entry: %v", elfs)
	}
	old := CacheDir
	CacheDir = cache
	defer func() { CacheDir = old }()
	path, err := pvhImage(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if tmps, _ := filepath.Glob(filepath.Join(pvhDir, "*.tmp*")); len(tmps) != 0 {
		t.Errorf("the killed writer's temporary file is still there: %v", tmps)
	}
	whole, err := os.ReadFile(path)
	if err != nil || !hasPVHNote(whole) {
		t.Fatalf("unpacked after the kill: %v", err)
	}
	// A truncated entry in the cache, as `xz` killed mid-way used to leave,
	// is noticed by its size and made again.
	if err := os.WriteFile(path, whole[:len(whole)/3], 0o644); err != nil {
		t.Fatal(err)
	}
	if path, err = pvhImage(context.Background(), img); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, whole) {
		t.Fatal("a truncated cache entry was used as it was")
	}
	src, err := os.ReadFile("../../scenarios/nat-paws.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Options{Kernels: []*Kernel{ks[0]}, ScenarioFile: "nat-paws.yaml", Source: src, Binary: staticTwlab(t),
		OutDir: t.TempDir(), Timeout: 3 * time.Minute, Set: []string{"load.connections=20"},
		Only: "server.net.ipv4.tcp_tw_recycle == 0 && clients.net.ipv4.tcp_timestamps == 2 && server.net.ipv4.tcp_rfc1337 == 0"})
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.Err != "" || r.Boot != "pvh" || r.Run.Status != result.RunOK {
		t.Errorf("boot after the kill: err %q, boot %s, status %v", r.Err, r.Boot, r.Run)
	}
}

// TestAccelProbe runs the probe guest under software emulation, where it
// must reach its exit port, and decides "auto" on this machine within a
// bounded time whatever /dev/kvm does.
func TestAccelProbe(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed: make deps (apt-get install qemu-system-x86)")
	}
	start := time.Now()
	if err := ProbeAccel(context.Background(), "tcg"); err != nil {
		t.Fatalf("the probe guest does not run under TCG: %v", err)
	}
	t.Logf("tcg probe: %s", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	accel, why := ChooseAccel(context.Background(), "auto")
	if el := time.Since(start); el > probeTimeout+2*time.Second {
		t.Errorf("choosing took %s", el)
	}
	if accel != "tcg" && accel != "kvm" {
		t.Errorf("auto chose %q", accel)
	}
	t.Logf("auto: %s (%s)", accel, why)
}

// qemusOf lists the QEMU processes whose command line mentions dir.
func qemusOf(dir string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), "qemu-system") && strings.Contains(string(b), dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestFaultsStayWithTheirKernel boots one matrix of six kernels: five with
// a fault each - the guest kernel panics, QEMU is killed, the result is cut
// mid-frame or garbled, the guest hangs before it speaks - and a fine one
// after them. Each fault must give a
// clear error for its own kernel only, the fine kernel still runs, and no
// QEMU process or temporary file is left.
func TestFaultsStayWithTheirKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs; skipped with -short")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed: make deps (apt-get install qemu-system-x86)")
	}
	base := *debianKernels(t)[0]
	src, err := os.ReadFile("../../scenarios/nat-paws.yaml")
	if err != nil {
		t.Fatal(err)
	}
	faults := []struct {
		label string
		set   func(k *Kernel)
		want  string // in the kernel's error
	}{
		{"panic", func(k *Kernel) { k.Append = "rdinit=/no/such/init" }, "the guest kernel panicked"},
		{"killed", func(k *Kernel) {}, "QEMU ended (signal: killed)"},
		{"cut", func(k *Kernel) { k.fault = "cut" }, "torn result"},
		{"garbled", func(k *Kernel) { k.fault = "garble" }, "result damaged"},
		{"silent", func(k *Kernel) { k.fault = "silent" }, "the guest showed no sign of life for 15s"},
	}
	var kernels []*Kernel
	for _, f := range faults {
		k := base
		k.Label = f.label
		f.set(&k)
		kernels = append(kernels, &k)
	}
	fine := base
	fine.Label = "fine"
	kernels = append(kernels, &fine)
	out := t.TempDir()
	started := time.Now()
	progress := func(k *Kernel, msg string) {
		t.Logf("%s: %s", k.Label, msg)
		if k.Label == "killed" && strings.HasPrefix(msg, "booted") {
			for _, pid := range qemusOf(filepath.Join(out, "killed")) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	res, err := Run(context.Background(), Options{Kernels: kernels, ScenarioFile: "nat-paws.yaml", Source: src,
		Binary: staticTwlab(t), OutDir: out, Timeout: 3 * time.Minute, BootLimit: 15 * time.Second, Jobs: 1, Progress: progress,
		Set:  []string{"load.connections=10"},
		Only: "server.net.ipv4.tcp_tw_recycle == 0 && clients.net.ipv4.tcp_timestamps == 2 && server.net.ipv4.tcp_rfc1337 == 0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(kernels) {
		t.Fatalf("%d results for %d kernels", len(res), len(kernels))
	}
	for i, f := range faults {
		if r := res[i]; r.Err == "" || !strings.Contains(r.Err, f.want) {
			t.Errorf("%s: error %q, want one saying %q", f.label, r.Err, f.want)
		} else {
			t.Logf("%s: %s", f.label, r.Err)
		}
	}
	// The silent guest is booted twice, the second time on the pc machine.
	if r := res[len(faults)-1]; r.BootAttempts != 2 || r.Machine != "pc" {
		t.Errorf("silent: %d boot attempts, last on %q; want 2, the last on pc", r.BootAttempts, r.Machine)
	}
	if r := res[len(res)-1]; r.Err != "" || r.Run == nil || r.Run.Status != result.RunOK {
		t.Errorf("the fine kernel after the faulty ones: err %q", r.Err)
	}
	if left := qemusOf(out); len(left) != 0 {
		t.Errorf("QEMU processes left: %v", left)
	}
	// This process's only: a twlab vm running beside the test has its own
	// (named by its pid), and removes it when it ends.
	tmps, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("twlab-initrd-%d-*", os.Getpid())))
	for _, tmp := range tmps {
		if st, err := os.Stat(tmp); err == nil && st.ModTime().After(started) {
			t.Errorf("initramfs left: %s", tmp)
		}
	}
}

// TestFullCache resolves and unpacks a kernel into a cache on a 4 MiB
// tmpfs: a clear error naming the full disk, no half-written entry (the next
// resolve in a roomy cache works), and a boot from the full cache falls back
// to the bzImage instead of failing.
func TestFullCache(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a small tmpfs")
	}
	ks := debianKernels(t)
	full := t.TempDir()
	if err := syscall.Mount("tmpfs", full, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatalf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(full, syscall.MNT_DETACH) })
	debs, _ := filepath.Glob(filepath.Join(CacheDir, "debs", ks[0].Package+"_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("no cached .deb of %s", ks[0].Package)
	}
	old, oldSeed := CacheDir, SeedDir
	defer func() { CacheDir, SeedDir = old, oldSeed }()
	CacheDir, SeedDir = full, filepath.Dir(debs[0])
	exact := "debian:" + strings.TrimSuffix(strings.TrimPrefix(ks[0].Package, "linux-image-"), "-amd64-unsigned")
	_, err := Resolve(context.Background(), exact, "", nil)
	if err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("resolve into a full cache: %v", err)
	}
	if _, err := pvhImage(context.Background(), ks[0].Image); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("unpack into a full cache: %v", err)
	}
	var half []string
	filepath.WalkDir(full, func(p string, d os.DirEntry, err error) error {
		if err == nil && (strings.Contains(d.Name(), ".tmp") || d.Name() == ".complete" || strings.HasSuffix(d.Name(), ".elf")) {
			half = append(half, p)
		}
		return nil
	})
	if len(half) != 0 {
		t.Errorf("half-written cache entries left: %v", half)
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return
	}
	src, _ := os.ReadFile("../../scenarios/nat-paws.yaml")
	res, err := Run(context.Background(), Options{Kernels: []*Kernel{ks[0]}, ScenarioFile: "nat-paws.yaml", Source: src,
		Binary: staticTwlab(t), OutDir: t.TempDir(), Timeout: 3 * time.Minute, Set: []string{"load.connections=10"},
		Only: "server.net.ipv4.tcp_tw_recycle == 0 && clients.net.ipv4.tcp_timestamps == 2 && server.net.ipv4.tcp_rfc1337 == 0"})
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.Err != "" || r.Boot != "bzImage" {
		t.Errorf("boot with a full cache: err %q, boot %s (want the bzImage)", r.Err, r.Boot)
	}
}

// TestMachineFor: microvm only for kernels that take the TSC's frequency
// on the command line (5.6 and later); older ones may hang calibrating.
func TestMachineFor(t *testing.T) {
	if os.Getenv("TWLAB_VM_MACHINE") != "" {
		t.Skip("TWLAB_VM_MACHINE overrides the choice")
	}
	for _, c := range []struct {
		release string
		old     bool
	}{{"4.10.17", true}, {"4.4.121", true}, {"5.5.0-rc1", true}, {"", true}, {"5.10.0-46-amd64", false}, {"6.12.117+deb13-amd64", false}} {
		m, arg := machineFor(&Kernel{Release: c.release})
		switch {
		case c.old && m != "pc":
			t.Errorf("%q: machine %s, want pc", c.release, m)
		case !c.old && hostTSCkHz() > 0 && (!strings.HasPrefix(m, "microvm") || !strings.HasPrefix(arg, "tsc_early_khz=")):
			t.Errorf("%q: machine %s %q, want microvm with tsc_early_khz", c.release, m, arg)
		}
	}
}

// The PVH entry of 4.11-4.20 is Xen's: such kernels boot their bzImage.
func TestPVHOnlyFrom5(t *testing.T) {
	for rel, want := range map[string]bool{"4.10.17": false, "4.11.0": false, "4.19.0-27-amd64": false, "4.20.17": false,
		"5.0.0": true, "5.10.0-46-amd64": true, "6.12.117+deb13-amd64": true, "": false, "garbage": false} {
		if got := pvhBootable(rel); got != want {
			t.Errorf("%q: PVH %v, want %v", rel, got, want)
		}
	}
}

// Module trees compressed with zstd (Ubuntu, Arch) or gzip are read like
// xz ones, and essential modules that are neither present nor built in are
// named before the boot (a Debian kernel's veth, recompressed, and a
// modules.builtin that lists nothing).
func TestModulesZstdGzipAndMissing(t *testing.T) {
	ks := debianKernels(t)
	src := ks[0].ModulesDir
	var vethXZ string
	filepath.WalkDir(filepath.Join(src, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && (d.Name() == "veth.ko.xz" || d.Name() == "veth.ko") {
			vethXZ = p
		}
		return nil
	})
	if vethXZ == "" {
		t.Fatalf("%s has no veth module", src)
	}
	elfData, err := readModule(vethXZ)
	if err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{".ko.zst", ".ko.gz"} {
		tree := t.TempDir()
		os.MkdirAll(filepath.Join(tree, "kernel/drivers/net"), 0o755)
		var buf bytes.Buffer
		switch ext {
		case ".ko.zst":
			zw, _ := zstd.NewWriter(&buf)
			zw.Write(elfData)
			zw.Close()
		default:
			gw := gzip.NewWriter(&buf)
			gw.Write(elfData)
			gw.Close()
		}
		os.WriteFile(filepath.Join(tree, "kernel/drivers/net/veth"+ext), buf.Bytes(), 0o644)
		os.WriteFile(filepath.Join(tree, "modules.builtin"), []byte("kernel/net/bridge/bridge.ko\n"), 0o644)
		mods, missing, err := ResolveModules(tree, []string{"veth"})
		if err != nil {
			t.Fatalf("%s: %v", ext, err)
		}
		if len(mods) != 1 || mods[0].Name != "veth" || !bytes.HasPrefix(mods[0].Data, []byte("\x7fELF")) {
			t.Errorf("%s: resolved %d modules", ext, len(mods))
		}
		if want := []string{"nf_tables", "nf_conntrack", "nf_nat"}; !slices.Equal(missing, want) {
			t.Errorf("%s: missing %v, want %v (veth is there, bridge built in)", ext, missing, want)
		}
	}
}

// The TSC frequency a guest is told is measured, not the core's current
// clock: where the kernel was given the TSC's frequency by its hypervisor
// (tsc_known_freq), cpuinfo's exact figure is what comes out; anywhere it
// is plausible or 0 (pc machine). No timing bound: the measurement only
// decides between the exact figure and its own.
func TestHostTSC(t *testing.T) {
	khz := hostTSCkHz()
	if !haveTSC && khz != 0 {
		t.Fatalf("no TSC here, but %d kHz", khz)
	}
	if khz == 0 {
		t.Log("TSC not constant and non-stop here, or its measurements disagreed: guests boot on the pc machine")
		return
	}
	if khz < 100_000 || khz > 10_000_000 {
		t.Fatalf("TSC %d kHz", khz)
	}
	b, _ := os.ReadFile("/proc/cpuinfo")
	var mhz float64
	known := false
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		switch strings.TrimSpace(k) {
		case "cpu MHz":
			if mhz == 0 {
				mhz, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
			}
		case "flags":
			known = known || strings.Contains(v, " tsc_known_freq")
		}
	}
	if known && khz != int(mhz*1000+0.5) && (float64(khz) < mhz*999 || float64(khz) > mhz*1001) {
		t.Errorf("TSC %d kHz, but the hypervisor says %.3f MHz", khz, mhz)
	}
	t.Logf("TSC %d kHz (cpuinfo %.3f MHz, known %v)", khz, mhz, known)
}

// A console line longer than any buffer (a crashing guest's garbage) is
// kept in console.log, and the lines after it are still read: before, the
// reader stopped there, and the guest's "results sent" was never seen.
func TestConsoleOverlongLine(t *testing.T) {
	in := "booting\n" + strings.Repeat("\x00garbage", 300_000) + "\n" + consolePrefix + "ready after 1.0s\n" + consolePrefix + "results sent\n"
	var console bytes.Buffer
	sent, booted := make(chan struct{}, 1), make(chan struct{})
	res := &Result{}
	readConsole(strings.NewReader(in), &console, Options{}, &Kernel{Label: "k"}, res, time.Now(), sent, booted, make(chan string, 1))
	if console.String() != in {
		t.Errorf("console.log holds %d bytes of the %d the guest printed", console.Len(), len(in))
	}
	select {
	case <-sent:
	default:
		t.Error("the line after the long one was not read")
	}
	if res.BootS == 0 && res.readyS == 0 {
		t.Error("no sign of life seen after the long line")
	}
}

// A guest that says its clock is jiffies is reported at once (the host
// boots it again while attempts remain); a fine clock is only recorded.
func TestConsoleCoarseClock(t *testing.T) {
	for _, c := range []struct {
		cs     string
		coarse bool
	}{{"refined-jiffies", true}, {"jiffies", true}, {"tsc", false}} {
		in := consolePrefix + "init\n" + consolePrefix + "clocksource " + c.cs + "\n"
		coarse := make(chan string, 1)
		res := &Result{}
		readConsole(strings.NewReader(in), io.Discard, Options{}, &Kernel{Label: "k"}, res, time.Now(), make(chan struct{}, 1), make(chan struct{}), coarse)
		if res.Clocksource != c.cs {
			t.Errorf("%s: recorded %q", c.cs, res.Clocksource)
		}
		select {
		case got := <-coarse:
			if !c.coarse || got != c.cs {
				t.Errorf("%s: reported coarse (%q)", c.cs, got)
			}
		default:
			if c.coarse {
				t.Errorf("%s: not reported coarse", c.cs)
			}
		}
	}
}

// What QEMU could not boot is refused by Resolve, as bad input, before any
// boot: a file that is no kernel, an ELF without a PVH note, and a bzImage
// cut short (which booted to silence and cost two 60 s waits).
func TestResolveRefusesNonKernels(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "text")
	os.WriteFile(text, []byte("not a kernel\n"), 0o644)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{text: "not a Linux kernel image", self: "an ELF file without a PVH entry note"}
	img := oldKernel(t)
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "bzImage-cut")
	os.WriteFile(cut, b[:len(b)/2], 0o644)
	cases[cut] = fmt.Sprintf("a bzImage cut short: its header says %d bytes, the file has %d", len(b), len(b)/2)
	for path, want := range cases {
		if _, err := Resolve(context.Background(), path, "", nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want an error with %q", filepath.Base(path), err, want)
		}
	}
	if _, err := Resolve(context.Background(), img, "", nil); err != nil {
		t.Errorf("the whole bzImage: %v", err)
	}
}

// Ctrl-C during a VM run keeps the cells the guest finished, as on the
// host: the guest is asked to stop and sends its interrupted run.json
// (killing QEMU at once threw cell 1 away and left no run.json at all).
func TestInterruptKeepsGuestCells(t *testing.T) {
	k, src := oldKernelNatPaws(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var asked time.Time
	res, err := Run(ctx, Options{Kernels: []*Kernel{k}, ScenarioFile: "nat-paws.yaml", Source: src, Binary: staticTwlab(t),
		OutDir: t.TempDir(), Timeout: 4 * time.Minute,
		Only: "server.net.ipv4.tcp_tw_recycle == 0 && clients.net.ipv4.tcp_timestamps == 2",
		Progress: func(k *Kernel, msg string) {
			t.Logf("%s: %s", k.Label, msg)
			if strings.HasPrefix(msg, "cell 2/") && asked.IsZero() {
				asked = time.Now()
				cancel()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(asked)
	r := res[0]
	if r.Run == nil {
		t.Fatalf("no run.json after the interrupt: %s", r.Err)
	}
	if r.Run.Status != result.RunInterrupted || len(r.Run.Cells) != 1 || r.Run.Cells[0].Status != result.CellOK || r.Run.CellsPlanned != 2 {
		t.Errorf("status %s, %d of %d cells (first %v); want interrupted with cell 1 ok", r.Run.Status, len(r.Run.Cells), r.Run.CellsPlanned, r.Run.Cells)
		for _, c := range r.Run.Cells {
			t.Logf("cell %s: %s: %s", c.ID, c.Status, c.Reason)
		}
	}
	if took > stopWait {
		t.Errorf("the guest took %v to stop, more than the %v the host waits", took, stopWait)
	}
	t.Logf("stopped %v after the interrupt, %d cell kept", took.Round(time.Millisecond), len(r.Run.Cells))
}

// oldKernelNatPaws skips t unless the old kernel can boot here, and gives
// it and nat-paws.yaml.
func oldKernelNatPaws(t *testing.T) (*Kernel, []byte) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (QEMU, kernel cache)")
	}
	img := oldKernel(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed: make deps (apt-get install qemu-system-x86)")
	}
	k, err := Resolve(context.Background(), img, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("../../scenarios/nat-paws.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return k, src
}

// A guest kept on jiffies (here by its command line, as a failed TSC
// calibration would) is booted again until the attempts run out, then run
// and recorded as such, whatever the context (a context that cannot be
// cancelled once disabled the retry).
func TestCoarseClockBootsAgain(t *testing.T) {
	k, src := oldKernelNatPaws(t)
	k.Append = "clocksource=refined-jiffies"
	res, err := Run(context.Background(), Options{Kernels: []*Kernel{k}, ScenarioFile: "nat-paws.yaml", Source: src, Binary: staticTwlab(t),
		OutDir: t.TempDir(), Timeout: 4 * time.Minute,
		Only:     "server.net.ipv4.tcp_tw_recycle == 1 && clients.net.ipv4.tcp_timestamps == 0",
		Progress: func(k *Kernel, msg string) { t.Logf("%s: %s", k.Label, msg) }})
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	if r.Run == nil {
		t.Fatalf("no run: %s", r.Err)
	}
	if r.BootAttempts != maxClockAttempts || !strings.Contains(r.Run.KernelFeatures.Clocksource, "jiffies") {
		t.Errorf("%d boots, clock %q; want %d boots and the jiffies clock recorded", r.BootAttempts, r.Run.KernelFeatures.Clocksource, maxClockAttempts)
	}
}

// A KVM that runs the probe guest but not a kernel (this lab machine's,
// under nested virtualisation: not a byte on the console) must not cost a
// run: under --accel auto a guest silent under KVM is booted again under
// software emulation, and the next kernel starts there. The stand-in KVM
// is QEMU with its CPUs stopped (-S), which is silent the same way on any
// machine.
func TestSilentKVMFallsBackToEmulation(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs; skipped with -short")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed: make deps (apt-get install qemu-system-x86)")
	}
	oldArgs, oldLimit := kvmArgs, kvmBootLimit
	kvmArgs, kvmBootLimit = []string{"-accel", "tcg", "-cpu", "max", "-S"}, 3*time.Second
	t.Cleanup(func() { kvmArgs, kvmBootLimit = oldArgs, oldLimit })
	base := *debianKernels(t)[0]
	first, second := base, base
	first.Label, second.Label = "first", "second"
	src, err := os.ReadFile("../../scenarios/nat-paws.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	var msgs []string
	res, err := Run(context.Background(), Options{Kernels: []*Kernel{&first, &second}, ScenarioFile: "nat-paws.yaml", Source: src,
		Binary: staticTwlab(t), OutDir: out, Timeout: 3 * time.Minute, Accel: "kvm", AccelAuto: true, Jobs: 1,
		Progress: func(k *Kernel, msg string) { t.Logf("%s: %s", k.Label, msg); msgs = append(msgs, k.Label+": "+msg) },
		Set:      []string{"load.connections=10"},
		Only:     "server.net.ipv4.tcp_tw_recycle == 0 && clients.net.ipv4.tcp_timestamps == 2 && server.net.ipv4.tcp_rfc1337 == 0"})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		attempts int
	}{{2}, {1}} {
		r := res[i]
		if r.Err != "" || r.Run == nil || r.Run.Status != result.RunOK {
			t.Errorf("%s: err %q", r.Kernel.Label, r.Err)
			continue
		}
		if r.Accel != "tcg" || r.BootAttempts != want.attempts || r.Run.VM == nil || r.Run.VM.Accel != "tcg" {
			t.Errorf("%s: accel %q after %d boots; want tcg after %d", r.Kernel.Label, r.Accel, r.BootAttempts, want.attempts)
		}
	}
	if !slices.ContainsFunc(msgs, func(m string) bool {
		return strings.HasPrefix(m, "first: ") && strings.Contains(m, "no sign of life under KVM for 3s (KVM ran the probe guest, not this kernel): booting again under software emulation")
	}) {
		t.Errorf("the fallback was not said:\n%s", strings.Join(msgs, "\n"))
	}
	if left := qemusOf(out); len(left) != 0 {
		t.Errorf("QEMU processes left: %v", left)
	}
}

// A kernel cache damaged after the fact heals instead of failing every run
// from then on: a package file cut short (an older twlab killed while it
// downloaded wrote under the final name) is fetched again, and an unpacked
// kernel truncated since is unpacked again. The good package comes from the
// seed folder, so the test needs no network.
func TestDamagedCacheHeals(t *testing.T) {
	ks := debianKernels(t)
	pkgs, _ := filepath.Glob(filepath.Join(CacheDir, "debs", ks[0].Package+"_*.deb"))
	if len(pkgs) != 1 {
		t.Fatalf("%s: want one cached .deb, have %v", ks[0].Package, pkgs)
	}
	good, err := os.ReadFile(pkgs[0])
	if err != nil {
		t.Fatal(err)
	}
	oldCache, oldSeed := CacheDir, SeedDir
	CacheDir, SeedDir = t.TempDir(), filepath.Dir(pkgs[0])
	defer func() { CacheDir, SeedDir = oldCache, oldSeed }()
	cut := filepath.Join(CacheDir, "debs", filepath.Base(pkgs[0]))
	if err := os.MkdirAll(filepath.Dir(cut), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cut, good[:len(good)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := Resolve(context.Background(), ks[0].Spec, "", nil)
	if err != nil {
		t.Fatalf("a cut package file in the cache: %v", err)
	}
	if err := checkCachedImage(k.Image); err != nil {
		t.Fatalf("resolved a damaged image: %v", err)
	}
	if _, err := os.Stat(cut); err == nil {
		t.Errorf("the cut package file is still in the cache")
	}
	if err := os.Truncate(k.Image, 3_000_000); err != nil {
		t.Fatal(err)
	}
	k2, err := Resolve(context.Background(), ks[0].Spec, "", nil)
	if err != nil {
		t.Fatalf("a truncated kernel in the cache: %v", err)
	}
	if err := checkCachedImage(k2.Image); err != nil || k2.Image != k.Image {
		t.Errorf("after a truncated kernel: %s, %v", k2.Image, err)
	}
}

// A FIFO given as a kernel is refused at once: reading it would block for
// ever, and Ctrl-C could not end the wait.
func TestKernelFIFORefused(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "f")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := Resolve(context.Background(), fifo, "", nil); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("a FIFO: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Resolve blocked on a FIFO")
	}
}

// apt-get update exits 0 when lists could not be fetched; twlab must see it.
func TestAptFetchFailure(t *testing.T) {
	out := "Hit:1 http://deb.debian.org/debian bookworm InRelease\nW: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure resolving 'deb.debian.org'\nW: Some index files failed to download. They have been ignored, or old ones used instead.\n"
	if got := aptFetchFailure(out); !strings.HasPrefix(got, "W: Failed to fetch") {
		t.Errorf("aptFetchFailure = %q", got)
	}
	if got := aptFetchFailure("Hit:1 http://deb.debian.org/debian bookworm InRelease\nReading package lists...\n"); got != "" {
		t.Errorf("a clean update: %q", got)
	}
}

// A built kernel damaged in the cache is this machine's problem, not a bad
// name: it is refused before any boot as a MachineError (twlab vm exits 3),
// while a name that is not built stays bad input.
func TestDamagedBuiltKernel(t *testing.T) {
	img := oldKernel(t)
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	oldCache := CacheDir
	CacheDir = t.TempDir()
	defer func() { CacheDir = oldCache }()
	dir := filepath.Join(kbuild.BuiltDir(CacheDir), "4.10.17-x")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "build.txt"), []byte("release 4.10.17\nkey k\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "bzImage"), b[:len(b)/2], 0o644)
	_, err = Resolve(context.Background(), "built:4.10.17", "", nil)
	var me *MachineError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "a bzImage cut short") {
		t.Errorf("a damaged built kernel: %v (%T)", err, err)
	}
	_, err = Resolve(context.Background(), "built:9.9", "", nil)
	if err == nil || errors.As(err, &me) {
		t.Errorf("an unknown built kernel: %v (%T), want an input error", err, err)
	}
}

// --kernel 6.1 (a file that is not there) says how a Debian kernel is
// named, and --modules of another release is refused.
func TestKernelArgumentHints(t *testing.T) {
	t.Chdir(t.TempDir())
	if _, err := Resolve(context.Background(), "6.1", "", nil); err == nil || !strings.Contains(err.Error(), "a Debian kernel is named debian:6.1") {
		t.Errorf("--kernel 6.1: %v", err)
	}
	img := oldKernel(t)
	mods := filepath.Join(t.TempDir(), "6.1.0-57-amd64")
	if err := os.MkdirAll(filepath.Join(mods, "kernel"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(context.Background(), img, mods, nil); err == nil || !strings.Contains(err.Error(), "modules of 6.1.0-57-amd64 for a kernel of release 4.10.17") {
		t.Errorf("--modules of another release: %v", err)
	}
}

// Times the guest reports are figures of run.json only when they can be:
// NaN, Inf and 1e300 parse as floats and made -9.2e15 s of cells, and a
// guest clock running fast made cells longer than the whole VM.
func TestTimingTrustsNoGuestTime(t *testing.T) {
	for _, s := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), 1e300, -5, 500} {
		res := &Result{BootS: 2, TotalS: 50, ScenarioS: s, readyS: 3, scenarioEndS: 45, resultS: 46}
		tm := timing(res, &result.Run{KernelFeatures: &result.KernelFeatures{DetectS: s}})
		for name, v := range map[string]float64{"cells": tm.Cells, "detect": tm.Detect, "overhead": tm.Overhead} {
			if math.IsNaN(v) || v < 0 || v > res.TotalS {
				t.Errorf("guest time %g: %s %g, want within 0..%g", s, name, v, res.TotalS)
			}
		}
	}
	res := &Result{BootS: 2, TotalS: 50, ScenarioS: 40}
	if tm := timing(res, &result.Run{KernelFeatures: &result.KernelFeatures{DetectS: 1.5}}); tm.Cells != 38.5 || tm.Detect != 1.5 || tm.Overhead != 11.5 {
		t.Errorf("plausible times: %+v", tm)
	}
}

// The console is looked through once, however often it is polled: a guest
// flooding it made every poll read the whole file again. A frame marker
// cut by a poll, or by the pieces the scan reads in, is still found.
func TestFrameScanReadsOnce(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	con := newFrameScan(dir)
	junk := bytes.Repeat([]byte("[  12.3] oops: garbage line\n"), 1<<14) // 448 KiB
	for range 40 {                                                       // 17.5 MiB in 40 polls
		f.Write(junk)
		if _, ok := con.read(); ok {
			t.Fatal("a frame found in junk")
		}
	}
	if total := int64(40 * len(junk)); con.scanned > total+40*64 {
		t.Errorf("40 polls of a %d-byte console read %d bytes", total, con.scanned)
	}
	// A marker split across two polls, at a 1 MiB piece boundary of the
	// next look.
	f.Write([]byte("\n" + frameBegin[:7]))
	con.read()
	pad := bytes.Repeat([]byte("x"), (1<<20)-100)
	f.Write([]byte(frameBegin[7:] + " 5 abc zstd\n"))
	f.Write(pad)
	b, ok := con.read()
	if !ok || !bytes.HasPrefix(b, []byte(frameBegin+" 5 abc")) {
		t.Fatalf("frame not found (%v): %.40q", ok, b)
	}
	if _, err := readResult(filepath.Join(dir, "none"), con); err == nil {
		t.Error("no result file: no error")
	}
	os.WriteFile(filepath.Join(dir, ".serial1"), nil, 0o644)
	if raw, err := readResult(filepath.Join(dir, ".serial1"), con); err != nil || !bytes.HasPrefix(raw, []byte(frameBegin)) {
		t.Errorf("an empty result port: the console's frame not taken: %v %.30q", err, raw)
	}
	// In one look, a marker across the scan's 1 MiB pieces.
	dir2 := t.TempDir()
	big := append(bytes.Repeat([]byte("y"), (1<<20)-5), []byte(frameError+" guest failed\n")...)
	os.WriteFile(filepath.Join(dir2, "console.log"), big, 0o644)
	if b, ok := newFrameScan(dir2).read(); !ok || !bytes.HasPrefix(b, []byte(frameError)) {
		t.Errorf("an error frame across a piece boundary: %v %.30q", ok, b)
	}
}

// console.log is bounded: a guest flooding its console (an oops loop) wrote
// until the run's timeout. A result frame sent on the console after the
// flood still arrives whole, and the host finds it there.
func TestConsoleLogBounded(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	con := newConsoleLog(f)
	con.limit, con.frames = 1<<20, 1<<20
	doc := []byte(`{"schema":"twlab/run/v1"}`)
	var frame bytes.Buffer
	sendFrame(&frame, doc)
	flood := strings.Repeat("[ 12.3] BUG: soft lockup - CPU#0 stuck for 22s!\n", 100_000) // 4.8 MB
	in := consolePrefix + "init\n" + flood + strings.Repeat("\x00", 200_000) + "\n" + frame.String() + flood + consolePrefix + "results sent\n"
	sent := make(chan struct{}, 1)
	readConsole(strings.NewReader(in), con, Options{}, &Kernel{Label: "k"}, &Result{}, time.Now(), sent, make(chan struct{}), make(chan string, 1))
	con.finish()
	st, _ := f.Stat()
	if st.Size() > 1<<20+int64(frame.Len())+4096 {
		t.Errorf("console.log is %d bytes for a 1 MiB bound", st.Size())
	}
	select {
	case <-sent:
	default:
		t.Error("the guest's lines after the bound were not read")
	}
	b, _ := os.ReadFile(f.Name())
	for _, want := range []string{"console.log cut here at 1 MiB", "bytes of console output left out", frame.String()} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("console.log lacks %.60q", want)
		}
	}
	os.WriteFile(filepath.Join(dir, ".serial1"), nil, 0o644) // the result port, empty
	raw, err := readResult(filepath.Join(dir, ".serial1"), newFrameScan(dir))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ParseFrame(raw); err != nil || !bytes.Equal(got, doc) {
		t.Errorf("frame after the flood: %q, %v", got, err)
	}
	// The frames have a ceiling too.
	con.frames = 0
	readConsole(strings.NewReader(frame.String()), con, Options{}, &Kernel{Label: "k"}, &Result{}, time.Now(), sent, make(chan struct{}), make(chan string, 1))
	if st2, _ := f.Stat(); st2.Size() != int64(len(b)) {
		t.Errorf("a frame past both bounds was kept: %d -> %d bytes", len(b), st2.Size())
	}
}

// A kernel folder an earlier vm run used loses that run's results as the
// kernel starts: a kernel that sends nothing this time sat beside the old
// run.json, which said ok.
func TestKernelFolderHoldsOnlyThisRun(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed: make deps (apt-get install qemu-system-x86)")
	}
	out := t.TempDir()
	img := filepath.Join(t.TempDir(), "bzImage")
	os.WriteFile(img, bytes.Repeat([]byte("not a kernel "), 1000), 0o644)
	k := &Kernel{Spec: img, Label: "bad", Image: img, Release: "4.10.17"}
	dir := filepath.Join(out, k.Label)
	os.MkdirAll(filepath.Join(dir, "pcap"), 0o755)
	stale := []string{"run.json", "timeseries.csv", "report.html", "summary.md", "cells.csv", "pcap/cell-01-server.pcap"}
	for _, f := range stale {
		os.WriteFile(filepath.Join(dir, f), []byte("an earlier run's"), 0o644)
	}
	src, err := os.ReadFile("../../scenarios/nat-paws.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Options{Kernels: []*Kernel{k}, ScenarioFile: "nat-paws.yaml", Source: src,
		Binary: staticTwlab(t), OutDir: out, Timeout: time.Minute, Accel: "tcg", Jobs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err == "" {
		t.Fatalf("a file that is no kernel booted: %+v", res[0])
	}
	for _, f := range stale {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s of the earlier run is still there (this run: %s)", f, res[0].Err)
		}
	}
}
