// Package kbuild turns a kernel source (a tree or a kernel.org tarball) into
// a bzImage twlab can boot: tinyconfig plus twlab's fragment (everything the
// lab needs built in, no modules), the small fixes old trees need with
// today's compilers, and a cache keyed by source and fragment, so a second
// build of the same source is free. The user's tree is never written: the
// build runs in a copy inside the cache.
package kbuild

import (
	"bufio"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twlab/twlab/lab/internal/flock"
)

// Fragment is twlab's config fragment (lab.config).
//
//go:embed lab.config
var Fragment string

// Essential options must be =y after olddefconfig, whatever the tree: the
// lab cannot run without them. Other fragment lines a tree does not know
// are dropped by olddefconfig and only reported.
var Essential = []string{
	"CONFIG_64BIT", "CONFIG_BLK_DEV_INITRD", "CONFIG_DEVTMPFS", "CONFIG_TMPFS", "CONFIG_PROC_SYSCTL",
	"CONFIG_SERIAL_8250_CONSOLE", "CONFIG_NET_NS", "CONFIG_INET", "CONFIG_VETH", "CONFIG_BRIDGE",
	"CONFIG_NF_CONNTRACK", "CONFIG_NF_NAT", "CONFIG_NF_TABLES", "CONFIG_NFT_NAT", "CONFIG_INET_DIAG",
}

// EssentialIfKnown must be =y where the tree has them: the IPv4 halves of
// conntrack and NAT that later kernels folded into the options above (a
// 4.x tree without them would pass Essential and have no NAT).
var EssentialIfKnown = []string{"CONFIG_NF_CONNTRACK_IPV4", "CONFIG_NF_NAT_IPV4", "CONFIG_NFT_CHAIN_NAT_IPV4", "CONFIG_NFT_CHAIN_NAT"}

// buildVersion changes whenever the recipe (fixes, make variables) does, so
// that a cached kernel built by an older recipe is not taken for a new one.
// 3: HOSTCC carries -fcommon (HOSTCFLAGS replaced the 4.x Makefiles' own
// host flags), no br_netfilter.
const buildVersion = "3"

// Options of one build.
type Options struct {
	Source   string // a kernel tree or tarball
	CacheDir string // the twlab cache; kernels go to CacheDir/kernels-built
	Jobs     int    // make -j; 0 = the CPUs
	// KeepTree keeps the build tree (CacheDir/kbuild/KEY) after a success.
	KeepTree bool
	Log      *slog.Logger
	// Progress receives short status lines while the build runs.
	Progress func(msg string)
}

// Kernel is a built, cached kernel.
type Kernel struct {
	Dir     string // CacheDir/kernels-built/RELEASE-KEY
	Image   string // its bzImage
	Release string // from the tree's Makefile
	Key     string // source and recipe hash
	Cached  bool   // found in the cache, not built now
	Fixes   []string
	Dropped []string // fragment options the tree does not know
	// Compiler is `gcc --version`'s first line at build time. It is not
	// part of Key on purpose: a newer gcc makes the same kernel, and a
	// rebuild costs 20 minutes here; it is recorded for the reader of a
	// regression that only one build shows.
	Compiler string
	BuildS   float64
	// Built is when it was installed in the cache (List): of two builds
	// of one release (an edited tree, a patched tarball) the newer wins.
	Built time.Time
	// Damaged says why its image cannot boot (List), nil when whole.
	Damaged error
}

// BuiltDir is where built kernels live in a cache.
func BuiltDir(cache string) string { return filepath.Join(cache, "kernels-built") }

func (o *Options) progress(format string, a ...any) {
	if o.Progress != nil {
		o.Progress(fmt.Sprintf(format, a...))
	}
}

// Build builds (or finds in the cache) the lab kernel of opt.Source.
func Build(ctx context.Context, opt Options) (*Kernel, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Jobs <= 0 {
		opt.Jobs = runtime.NumCPU()
	}
	src, err := OpenSource(opt.Source)
	if err != nil {
		return nil, err
	}
	// A cache inside the tree would be copied into itself, level after
	// level, and change the tree's hash on every build.
	if !src.Tarball && within(opt.CacheDir, src.Path) {
		return nil, fmt.Errorf("kernel source %s: %w: the cache %s is inside it; give a cache elsewhere (--cache)", opt.Source, ErrBadSource, opt.CacheDir)
	}
	removeStaleTrees(opt.CacheDir)
	opt.progress("hashing %s", opt.Source)
	id, err := src.Identity(ctx)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(id + "\x00" + Fragment + "\x00" + buildVersion))
	key := hex.EncodeToString(sum[:])[:16]
	if k, ok := findBuilt(opt.CacheDir, key); ok {
		return cacheHit(k, opt), nil
	}
	// One build per source at a time: two builds of one source shared the
	// tree and the install's .tmp, each removing the other's under it. The
	// second waits, then takes what the first built.
	unlock, err := flock.Lock(ctx, filepath.Join(opt.CacheDir, "kbuild", key+".lock"), func() {
		opt.progress("waiting for another build of the same source to finish")
	})
	if err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	defer unlock()
	if k, ok := findBuilt(opt.CacheDir, key); ok {
		return cacheHit(k, opt), nil
	}
	// Tools before the unpack (a missing compiler was reported after a
	// minute of it), after the cache (a cached kernel needs none). flex
	// and bison depend on the tree: checked after.
	if err := CheckTools(""); err != nil {
		return nil, err
	}
	tree := filepath.Join(opt.CacheDir, "kbuild", key)
	if err := os.RemoveAll(tree); err != nil {
		return nil, err
	}
	var built bool
	defer func() {
		if built && opt.KeepTree {
			os.WriteFile(filepath.Join(tree, keptMark), nil, 0o644)
			return
		}
		if ctx.Err() != nil {
			opt.progress("removing the build tree %s", tree) // 60 000 files: it takes a while
		}
		os.RemoveAll(tree)
	}()
	opt.progress("unpacking into %s", tree)
	if err := src.Unpack(ctx, tree); err != nil {
		return nil, fmt.Errorf("unpack %s: %w", opt.Source, err)
	}
	release, err := TreeRelease(tree)
	if err != nil {
		return nil, fmt.Errorf("kernel source %s: %w: its top holds no Makefile that sets VERSION and PATCHLEVEL", opt.Source, ErrBadSource)
	}
	if err := CheckTools(tree); err != nil {
		return nil, err
	}
	k := &Kernel{Release: release, Key: key, Compiler: compilerVersion(ctx)}
	if k.Fixes, err = ApplyFixes(tree); err != nil {
		return nil, err
	}
	for _, f := range k.Fixes {
		opt.progress("fix: %s", f)
	}
	logPath := filepath.Join(opt.CacheDir, "kbuild", key+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	start := time.Now()
	mk := func(targets ...string) error {
		// -fcommon for the host tools of old trees (gcc 10 made
		// -fno-common the default; their lexers define yylloc twice), on
		// HOSTCC: HOSTCFLAGS on the command line replaced the 4.x
		// Makefiles' own (-O2 -std=gnu89 …) instead of adding to them.
		args := append([]string{"-C", tree, "ARCH=x86_64", "HOSTCC=gcc -fcommon", fmt.Sprintf("-j%d", opt.Jobs)}, targets...)
		if err := runMake(ctx, args, logf, opt); err != nil {
			if ctx.Err() != nil {
				// Killed by Ctrl-C, not failed: no log tail that reads
				// like a compile error.
				return fmt.Errorf("stopped: %w", ctx.Err())
			}
			return err
		}
		return nil
	}
	opt.progress("configuring %s: tinyconfig + twlab's fragment", release)
	if err := mk("tinyconfig"); err != nil {
		return nil, buildError("make tinyconfig", err, logPath)
	}
	if err := appendFile(filepath.Join(tree, ".config"), "\n"+Fragment); err != nil {
		return nil, err
	}
	if err := mk("olddefconfig"); err != nil {
		return nil, buildError("make olddefconfig", err, logPath)
	}
	cfg, err := readConfig(filepath.Join(tree, ".config"))
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, e := range Essential {
		if cfg[e] != "y" {
			missing = append(missing, e)
		}
	}
	for _, e := range EssentialIfKnown {
		if cfg[e] != "y" && knownInTree(tree, e) {
			missing = append(missing, e)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: after olddefconfig these lab essentials are not built in: %s (the tree may call them differently; see %s)", release, strings.Join(missing, ", "), logPath)
	}
	k.Dropped = dropped(Fragment, cfg)
	if len(k.Dropped) > 0 {
		opt.progress("this tree does not know %d fragment options (fine where they came later): %s", len(k.Dropped), strings.Join(k.Dropped, " "))
	}
	if cfg["CONFIG_STACK_VALIDATION"] == "y" || cfg["CONFIG_UNWINDER_ORC"] == "y" {
		if err := checkLibelf(); err != nil {
			return nil, err
		}
	}
	opt.progress("building %s with make -j%d (a few minutes; log: %s)", release, opt.Jobs, logPath)
	if err := mk("bzImage"); err != nil {
		return nil, buildError("make bzImage", err, logPath)
	}
	k.BuildS = time.Since(start).Seconds()
	// The release the kernel reports (uname -r) is the Makefile's plus any
	// localversion* file or CONFIG_LOCALVERSION; kbuild wrote it down.
	if b, err := os.ReadFile(filepath.Join(tree, "include/config/kernel.release")); err == nil {
		if r := strings.TrimSpace(string(b)); r != "" && r != release {
			opt.progress("release %s (the Makefile says %s; a local version adds the rest)", r, release)
			k.Release, release = r, r
		}
	}
	if err := install(opt.CacheDir, tree, k, logPath, opt.Source); err != nil {
		return nil, err
	}
	os.Remove(logPath) // installed beside the kernel as build.log
	built = true
	opt.progress("built %s in %.0f s: %s", release, k.BuildS, k.Image)
	return k, nil
}

// within says whether path is dir or inside it, symlinks resolved on both
// sides (path need not exist yet: its deepest existing parent decides).
func within(path, dir string) bool {
	resolve := func(p string) string {
		p, err := filepath.Abs(p)
		if err != nil {
			return p
		}
		var rest []string
		for {
			if r, err := filepath.EvalSymlinks(p); err == nil {
				return filepath.Join(append([]string{r}, rest...)...)
			}
			parent := filepath.Dir(p)
			if parent == p {
				return filepath.Join(append([]string{p}, rest...)...)
			}
			rest = append([]string{filepath.Base(p)}, rest...)
			p = parent
		}
	}
	rel, err := filepath.Rel(resolve(dir), resolve(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// knownInTree says whether the tree's netfilter Kconfig files define the
// option (CONFIG_X: "config X").
func knownInTree(tree, option string) bool {
	re := regexp.MustCompile(`(?m)^\s*(menu)?config\s+` + regexp.QuoteMeta(strings.TrimPrefix(option, "CONFIG_")) + `\s*$`)
	for _, k := range []string{"net/netfilter/Kconfig", "net/ipv4/netfilter/Kconfig"} {
		if b, err := os.ReadFile(filepath.Join(tree, k)); err == nil && re.Match(b) {
			return true
		}
	}
	return false
}

// cacheHit reports a cached kernel and makes it the newest of its release:
// built:RELEASE boots the newest, and after a build of another source of
// the same release a cache hit printed one kernel while built: booted the
// other.
func cacheHit(k *Kernel, opt Options) *Kernel {
	now := time.Now()
	os.Chtimes(filepath.Join(k.Dir, "build.txt"), now, now)
	k.Built, k.Cached = now, true
	opt.progress("cached: %s", k.Image)
	return k
}

// keptMark marks a build tree kept on purpose (--keep-tree).
const keptMark = ".twlab-kept"

// removeStaleTrees removes the build trees (~800 MB each) and logs that a
// killed build left in the cache: those whose lock nobody holds and that
// were not kept on purpose. Nothing else ever removed them.
func removeStaleTrees(cache string) {
	dir := filepath.Join(cache, "kbuild")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		key := e.Name()
		if _, err := os.Stat(filepath.Join(dir, key, keptMark)); err == nil {
			continue
		}
		unlock, ok := flock.TryLock(filepath.Join(dir, key+".lock"))
		if !ok {
			continue // a build of it runs
		}
		os.RemoveAll(filepath.Join(dir, key))
		os.Remove(filepath.Join(dir, key+".log"))
		unlock()
	}
}

// runMake runs make in its own process group, so that a cancelled build
// takes every compiler with it, and copies its output to log while telling
// the last compiled file every few seconds.
func runMake(ctx context.Context, args []string, log io.Writer, opt Options) error {
	cmd := exec.CommandContext(ctx, "make", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	fmt.Fprintf(log, "$ make %s\n", strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	steps, last := 0, time.Now()
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(log, line)
		if f := strings.Fields(line); len(f) == 2 && (f[0] == "CC" || f[0] == "LD" || f[0] == "AS" || f[0] == "HOSTCC") {
			steps++
			if time.Since(last) > 5*time.Second {
				opt.progress("  %d build steps done, now %s %s", steps, f[0], f[1])
				last = time.Now()
			}
		}
	}
	io.Copy(io.Discard, out)
	return cmd.Wait()
}

func buildError(what string, err error, log string) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", what, err)
	}
	tail := lastLines(log, 15)
	return fmt.Errorf("%s: %w; the end of %s:\n%s", what, err, log, tail)
}

func lastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readConfig reads CONFIG_X=v lines.
func readConfig(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "CONFIG_") {
			out[k] = v
		}
	}
	return out, nil
}

// dropped lists the fragment's =y options that the final config lacks.
func dropped(fragment string, cfg map[string]string) []string {
	var out []string
	for _, line := range strings.Split(fragment, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && strings.HasPrefix(k, "CONFIG_") && v == "y" && cfg[k] != "y" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// install copies the image, its config and the build log into the cache,
// under a temporary name first: a half-copied kernel is never found.
func install(cache, tree string, k *Kernel, logPath, source string) error {
	final := filepath.Join(BuiltDir(cache), k.Release+"-"+k.Key[:8])
	tmp := final + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	for _, c := range []struct{ from, to string }{
		{filepath.Join(tree, "arch/x86/boot/bzImage"), "bzImage"},
		{filepath.Join(tree, ".config"), "config"},
		{logPath, "build.log"},
	} {
		if err := copyFile(c.from, filepath.Join(tmp, c.to)); err != nil {
			return fmt.Errorf("install %s: %w", c.to, err)
		}
	}
	info := fmt.Sprintf("release %s\nsource %s\nkey %s\nfixes %s\ndropped %s\nbuild_s %.0f\ncompiler %s\n", k.Release, source, k.Key,
		strings.Join(k.Fixes, "; "), strings.Join(k.Dropped, " "), k.BuildS, oneLine(k.Compiler))
	if err := os.WriteFile(filepath.Join(tmp, "build.txt"), []byte(info), 0o644); err != nil {
		return err
	}
	os.RemoveAll(final)
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	k.Dir, k.Image = final, filepath.Join(final, "bzImage")
	return nil
}

// compilerVersion is gcc's own first line ("gcc (Debian 12.2.0-14) 12.2.0"),
// or "" when it cannot say.
func compilerVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "gcc", "--version").Output()
	if err != nil {
		return ""
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return oneLine(first)
}

// oneLine keeps a value on its line of build.txt.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// findBuilt looks for a kernel built with key. A damaged one (cut short by
// a full disk or a kill during the copy) is built again: vm refused it and
// said "build it again", and the build said "cached".
func findBuilt(cache, key string) (*Kernel, bool) {
	for _, k := range List(cache) {
		if k.Key == key && k.Damaged == nil {
			return k, true
		}
	}
	return nil, false
}

// List returns the kernels built into cache, newest release last.
func List(cache string) []*Kernel {
	dirs, _ := filepath.Glob(filepath.Join(BuiltDir(cache), "*"))
	var out []*Kernel
	for _, d := range dirs {
		if strings.HasSuffix(d, ".tmp") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, "build.txt"))
		if err != nil {
			continue
		}
		k := &Kernel{Dir: d, Image: filepath.Join(d, "bzImage")}
		if st, err := os.Stat(filepath.Join(d, "build.txt")); err == nil {
			k.Built = st.ModTime()
		}
		for _, line := range strings.Split(string(b), "\n") {
			name, v, _ := strings.Cut(line, " ")
			switch name {
			case "release":
				k.Release = v
			case "key":
				k.Key = v
			case "compiler":
				k.Compiler = v
			case "fixes":
				if v != "" {
					k.Fixes = strings.Split(v, "; ")
				}
			}
		}
		if st, err := os.Stat(k.Image); err == nil && k.Key != "" {
			k.Damaged = CheckBzImage(k.Image, st.Size())
			out = append(out, k)
		}
	}
	// By release (4.9 before 4.10), and within one release oldest first
	// (the directories come in the order of their keys' hashes).
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Release != out[j].Release {
			return VersionLess(out[i].Release, out[j].Release)
		}
		return out[i].Built.Before(out[j].Built)
	})
	return out
}

// Find returns the built kernel of a release ("4.9.337"), for
// `twlab vm --kernel built:4.9.337`: the newest build of it.
func Find(cache, release string) (*Kernel, error) {
	var found *Kernel
	for _, k := range List(cache) {
		if k.Release == release {
			found = k
		}
	}
	if found == nil {
		var have []string
		for _, k := range List(cache) {
			have = append(have, k.Release)
		}
		if len(have) == 0 {
			have = []string{"none yet: twlab kernel build SRC"}
		}
		return nil, fmt.Errorf("no built kernel %s in %s (built: %s)", release, BuiltDir(cache), strings.Join(have, ", "))
	}
	return found, nil
}

// CheckBzImage checks that a bzImage is whole: its setup header says how
// long it is (the setup sectors and the boot sector, then syssize 16-byte
// units). A file cut short booted to silence.
func CheckBzImage(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr := make([]byte, 0x210)
	if n, _ := f.ReadAt(hdr, 0); n < len(hdr) || string(hdr[0x202:0x206]) != "HdrS" {
		return ErrNotBzImage
	}
	setup := int64(hdr[0x1f1])
	if setup == 0 {
		setup = 4 // the boot protocol's default
	}
	want := (setup+1)*512 + int64(binary.LittleEndian.Uint32(hdr[0x1f4:]))*16
	if size < want {
		return fmt.Errorf("a bzImage cut short: its header says %d bytes, the file has %d (an interrupted copy or download?)", want, size)
	}
	return nil
}

// ErrNotBzImage: a file without a bzImage's setup header.
var ErrNotBzImage = errors.New("not a bzImage: no Linux setup header")

// ErrNoTool: a program or header the build needs is not installed.
var ErrNoTool = errors.New("missing build tool")

// VersionLess compares the numeric runs of two names, so that 4.9.337 <
// 4.10.17 and linux-image-6.1.0-9 < linux-image-6.1.0-56; names with the
// same numbers compare as strings, so that the order is total.
func VersionLess(a, b string) bool {
	na, nb := numRuns(a), numRuns(b)
	for i := 0; i < len(na) && i < len(nb); i++ {
		if na[i] != nb[i] {
			return na[i] < nb[i]
		}
	}
	if len(na) != len(nb) {
		return len(na) < len(nb)
	}
	return a < b
}

var numRE = regexp.MustCompile(`[0-9]+`)

func numRuns(s string) []int {
	var out []int
	for _, m := range numRE.FindAllString(s, -1) {
		n, err := strconv.Atoi(m)
		if err != nil {
			n = math.MaxInt // a run too long for an int is larger than any that fits
		}
		out = append(out, n)
	}
	return out
}
