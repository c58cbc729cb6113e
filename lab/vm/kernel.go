// Package vm runs scenarios on other kernels under QEMU: it resolves a
// kernel (a file, or a Debian package fetched with apt into a cache, never
// installed on the host), builds an initramfs with the static twlab binary as
// /init plus the modules the lab needs, boots it, and collects the run
// document from the guest's second serial port. Inside the guest the whole
// VM is the lab, so knobs that are global on old kernels may be written.
package vm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/twlab/twlab/lab/internal/flock"
	"github.com/twlab/twlab/lab/kbuild"
	"golang.org/x/sys/unix"
)

// DefaultCacheDir is where kernels are cached unless TWLAB_CACHE (or
// `twlab vm --cache`) says otherwise.
const DefaultCacheDir = "/var/cache/twlab"

// CacheDir holds downloaded packages, extracted kernels and unpacked images.
// Every path below it is created on first use: a new machine starts empty.
var CacheDir = envOr("TWLAB_CACHE", DefaultCacheDir)

// SeedDir, when set (TWLAB_SEED), is a read-only folder of Debian kernel
// packages (*.deb) looked at before apt-get download: a CI system may keep
// downloads there across runs while its cache starts empty every time.
var SeedDir = os.Getenv("TWLAB_SEED")

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Kernel is a bootable kernel with its modules.
type Kernel struct {
	Spec       string `json:"spec"`    // as given: a path or debian:VERSION
	Label      string `json:"label"`   // short name for folders and columns
	Image      string `json:"image"`   // bzImage / vmlinuz
	ModulesDir string `json:"modules"` // /lib/modules/RELEASE tree, "" for a built-in kernel
	Release    string `json:"release"` // from the image header when readable
	Package    string `json:"package,omitempty"`
	// Append is added to this kernel's command line.
	Append string `json:"append,omitempty"`
	// fault makes the guest damage its result (tests only).
	fault string
}

// MachineError is a kernel this machine could not fetch, unpack or keep
// (network, apt, disk, a damaged cache), as against a --kernel argument
// that names no kernel: the command's exit code tells them apart.
type MachineError struct{ Err error }

func (e *MachineError) Error() string { return e.Err.Error() }
func (e *MachineError) Unwrap() error { return e.Err }

func machineErr(err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	return &MachineError{err}
}

// Resolve turns a --kernel argument into a Kernel. modulesDir applies to a
// path argument of a modular kernel.
func Resolve(ctx context.Context, spec, modulesDir string, log *slog.Logger) (*Kernel, error) {
	if ver, ok := strings.CutPrefix(spec, "debian:"); ok {
		return resolveDebian(ctx, spec, ver, log)
	}
	if rel, ok := strings.CutPrefix(spec, "built:"); ok {
		b, err := kbuild.Find(CacheDir, rel)
		if err != nil {
			return nil, fmt.Errorf("--kernel %s: %w", spec, err)
		}
		if err := checkCachedImage(b.Image); err != nil {
			return nil, machineErr(fmt.Errorf("--kernel %s: the built kernel in the cache is damaged (%w): build it again with twlab kernel build", spec, err))
		}
		return &Kernel{Spec: spec, Image: b.Image, Release: b.Release, Label: labelOf(b.Release, rel)}, nil
	}
	st, err := os.Stat(spec)
	if err != nil {
		if v := strings.TrimPrefix(spec, "debian"); errors.Is(err, fs.ErrNotExist) && (debVerRE.MatchString(v) || debExactRE.MatchString(v)) {
			return nil, fmt.Errorf("--kernel %s: no such file; a Debian kernel is named debian:%s", spec, v)
		}
		return nil, fmt.Errorf("--kernel %s: %w", spec, err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("--kernel %s: is a directory; want a bzImage/vmlinuz file or debian:VERSION", spec)
	}
	if !st.Mode().IsRegular() {
		// A FIFO would block the read below for ever, Ctrl-C or not.
		return nil, fmt.Errorf("--kernel %s: not a regular file (%s); want a bzImage/vmlinuz file", spec, st.Mode().Type())
	}
	if err := checkImage(spec, st.Size()); err != nil {
		return nil, fmt.Errorf("--kernel %s: %w", spec, err)
	}
	k := &Kernel{Spec: spec, Image: spec, ModulesDir: modulesDir}
	k.Release, _ = ImageRelease(spec)
	k.Label = labelOf(k.Release, filepath.Base(spec))
	if modulesDir != "" {
		if _, err := os.Stat(filepath.Join(modulesDir, "kernel")); err != nil {
			return nil, fmt.Errorf("--modules %s: no kernel/ subtree (want a /lib/modules/RELEASE folder)", modulesDir)
		}
		// Modules of another release do not load (the guest counted 21
		// failures and the run went on as if nothing was missing).
		if rel := filepath.Base(filepath.Clean(modulesDir)); k.Release != "" && rel != k.Release {
			return nil, fmt.Errorf("--modules %s: modules of %s for a kernel of release %s; want /lib/modules/%s", modulesDir, rel, k.Release, k.Release)
		}
	}
	return k, nil
}

func labelOf(release, fallback string) string {
	l := release
	if l == "" {
		l = fallback
	}
	l = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' || r == '+' {
			return r
		}
		return '_'
	}, l)
	// The label names a folder under --out: a release string read from an
	// image ("..", ".hidden", "") must not name its parent or hide it.
	if l == "" || l[0] == '.' || l[0] == '-' {
		l = "k" + l
	}
	return l
}

// checkImage refuses what QEMU could not boot before QEMU is asked: a file
// that is no kernel (QEMU failed in a tenth of a second, reported as "no
// result from the guest", exit 1) and a bzImage cut short (it booted to
// silence and cost two 60 s waits). A bzImage's setup header says how long
// it is: the setup sectors and boot sector, then syssize 16-byte units. An
// ELF (a vmlinux with a PVH note) is left to QEMU.
func checkImage(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr := make([]byte, 0x210)
	n, _ := f.ReadAt(hdr, 0)
	if n >= 4 && string(hdr[:4]) == "\x7fELF" {
		if notesHavePVH(f, size) {
			return nil
		}
		return errors.New("an ELF file without a PVH entry note: QEMU boots an uncompressed kernel (vmlinux) only through PVH (Linux 5.0+ with CONFIG_PVH); give its bzImage instead")
	}
	err = kbuild.CheckBzImage(path, size)
	if errors.Is(err, kbuild.ErrNotBzImage) {
		return errors.New("not a Linux kernel image: want a bzImage (arch/x86/boot/bzImage, /boot/vmlinuz-*), debian:VERSION or built:RELEASE")
	}
	return err
}

// checkCachedImage is checkImage of a file in the cache.
func checkCachedImage(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	return checkImage(path, st.Size())
}

// ImageRelease reads the version string from a bzImage's setup header
// ("kernel_version" at 0x20e points into the setup code).
func ImageRelease(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	hdr := make([]byte, 0x210)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return "", err
	}
	if string(hdr[0x202:0x206]) != "HdrS" {
		return "", errors.New("not a bzImage (no HdrS signature)")
	}
	off := int64(binary.LittleEndian.Uint16(hdr[0x20e:])) + 0x200
	buf := make([]byte, 256)
	n, _ := f.ReadAt(buf, off)
	s := string(buf[:n])
	if i := strings.IndexAny(s, " \x00"); i >= 0 {
		s = s[:i]
	}
	return s, nil
}

var (
	debVerRE   = regexp.MustCompile(`^[0-9]+(\.[0-9]+)*$`)
	debExactRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+[-+][0-9a-z+.~-]+$`) // 6.1.0-47, 6.12.117+deb12
)

// resolveDebian picks the newest linux-image-VER…-amd64-unsigned package,
// downloads it with apt (cached) and extracts it; nothing is installed.
func resolveDebian(ctx context.Context, spec, ver string, log *slog.Logger) (*Kernel, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var pkgs []string
	switch {
	case debExactRE.MatchString(ver):
		// One exact build, e.g. an older one from before a backport.
		pkgs = []string{"linux-image-" + ver + "-amd64-unsigned"}
	case debVerRE.MatchString(ver):
		var err error
		if pkgs, err = DebianPackages(ctx, ver, log); err != nil {
			return nil, machineErr(err)
		}
	default:
		return nil, fmt.Errorf("--kernel %s: want debian:MAJOR.MINOR (the newest build, e.g. debian:6.1) or an exact build (debian:6.1.0-47)", spec)
	}
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("--kernel %s: twlab's Debian suites have no linux-image-%s.*-amd64-unsigned package (`twlab vm kernels` lists what there is)", spec, ver)
	}
	pkg := pkgs[len(pkgs)-1]
	dest := filepath.Join(CacheDir, "kernels", pkg)
	if _, err := os.Stat(filepath.Join(dest, ".complete")); err != nil {
		log.Info("fetching kernel package", "package", pkg)
		if err := fetchDeb(ctx, pkg, dest); err != nil {
			return nil, machineErr(err)
		}
	} else if imgs, _ := filepath.Glob(filepath.Join(dest, "boot", "vmlinuz-*")); len(imgs) == 1 && checkCachedImage(imgs[0]) != nil {
		// The marker says the unpacking finished; a kernel damaged since
		// (a disk error, a hand) would boot to silence on every run.
		log.Warn("the cached kernel is damaged; unpacking its package again", "image", imgs[0], "err", checkCachedImage(imgs[0]))
		// Another run may be healing it too: the marker it removed first
		// is no error (fetchDeb takes the package's lock and unpacks once).
		if err := os.Remove(filepath.Join(dest, ".complete")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, machineErr(fmt.Errorf("kernel cache: %w", err))
		}
		if err := fetchDeb(ctx, pkg, dest); err != nil {
			return nil, machineErr(err)
		}
	}
	imgs, _ := filepath.Glob(filepath.Join(dest, "boot", "vmlinuz-*"))
	mods, _ := filepath.Glob(filepath.Join(dest, "lib", "modules", "*"))
	if len(mods) == 0 { // merged /usr (trixie and later)
		mods, _ = filepath.Glob(filepath.Join(dest, "usr", "lib", "modules", "*"))
	}
	if len(imgs) != 1 || len(mods) != 1 {
		return nil, machineErr(fmt.Errorf("%s: unexpected package layout (%d images, %d module trees)", pkg, len(imgs), len(mods)))
	}
	if err := checkCachedImage(imgs[0]); err != nil {
		return nil, machineErr(fmt.Errorf("%s: %w", imgs[0], err))
	}
	k := &Kernel{Spec: spec, Image: imgs[0], ModulesDir: mods[0], Package: pkg, Release: filepath.Base(mods[0])}
	k.Label = labelOf(k.Release, pkg)
	return k, nil
}

// DebianPackages lists linux-image-VER.*-amd64-unsigned packages of
// twlab's Debian suites, oldest first, refreshing its lists when needed.
func DebianPackages(ctx context.Context, ver string, log *slog.Logger) ([]string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	unlock, err := aptLock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	incomplete, err := aptPrepare(ctx, log)
	if err != nil {
		return nil, err
	}
	// The generic flavour only: its name ends in a digit before -amd64
	// (6.1.0-56-amd64, 6.12.117+deb12-amd64); -rt- and -cloud- do not.
	re := `^linux-image-` + regexp.QuoteMeta(ver) + `\.[0-9][^ ]*[0-9]-amd64-unsigned$`
	args := append(aptOptions(), "search", "--names-only", re)
	out, err := exec.CommandContext(ctx, "apt-cache", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache search (twlab's lists): %w", err)
	}
	seen := map[string]bool{}
	var pkgs []string
	for _, line := range strings.Split(string(out), "\n") {
		if name, _, ok := strings.Cut(line, " - "); ok && !seen[strings.TrimSpace(name)] {
			seen[strings.TrimSpace(name)] = true
			pkgs = append(pkgs, strings.TrimSpace(name))
		}
	}
	sort.Slice(pkgs, func(i, j int) bool { return kbuild.VersionLess(pkgs[i], pkgs[j]) })
	if len(pkgs) == 0 && incomplete != "" {
		return nil, fmt.Errorf("twlab's Debian package lists could not be refreshed (%s) and hold no linux-image-%s.* package: check the way to the Debian mirror (%s)", incomplete, ver, debianMirror())
	}
	return pkgs, nil
}

// findOrDownloadDeb gives pkg's .deb: from the cache (cached), the seed
// folder, or downloaded. apt-get download writes under the final name as
// it goes, so it downloads into a folder of its own and the file is moved
// into the cache only when apt has finished (and checked it against the
// lists' hashes): a download cut short leaves no .deb that looks whole.
func findOrDownloadDeb(ctx context.Context, pkg, debs string) (deb string, cached bool, err error) {
	if m, _ := filepath.Glob(filepath.Join(debs, pkg+"_*.deb")); len(m) > 0 {
		return m[0], true, nil
	}
	if SeedDir != "" {
		if m, _ := filepath.Glob(filepath.Join(SeedDir, pkg+"_*.deb")); len(m) > 0 {
			return m[0], false, nil
		}
	}
	unlock, err := aptLock(ctx)
	if err != nil {
		return "", false, err
	}
	defer unlock()
	if _, err := aptPrepare(ctx, slog.New(slog.DiscardHandler)); err != nil {
		return "", false, err
	}
	// Under the apt lock no other download runs: what such folders hold
	// is a killed run's.
	if old, _ := filepath.Glob(filepath.Join(debs, ".download-*")); len(old) > 0 {
		for _, o := range old {
			os.RemoveAll(o)
		}
	}
	dl, err := os.MkdirTemp(debs, ".download-")
	if err != nil {
		return "", false, fmt.Errorf("kernel cache: %w", err)
	}
	defer os.RemoveAll(dl)
	cmd := exec.CommandContext(ctx, "apt-get", append(aptOptions(), "download", "-q", pkg)...)
	cmd.Dir = dl
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", false, fmt.Errorf("apt-get download %s: %w: %s%s", pkg, err, strings.TrimSpace(string(out)), diskHint(debs))
	}
	m, _ := filepath.Glob(filepath.Join(dl, pkg+"_*.deb"))
	if len(m) != 1 {
		return "", false, fmt.Errorf("apt-get download %s: %d .deb files appeared, want 1", pkg, len(m))
	}
	deb = filepath.Join(debs, filepath.Base(m[0]))
	if err := os.Rename(m[0], deb); err != nil {
		return "", false, fmt.Errorf("kernel cache: %w", err)
	}
	return deb, false, nil
}

// extractDeb unpacks deb into tmp, leaving nothing there on failure.
func extractDeb(ctx context.Context, deb, tmp string) error {
	os.RemoveAll(tmp)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		os.RemoveAll(tmp) // no half-extracted kernel stays in the cache
		return fmt.Errorf("dpkg-deb -x %s: %w: %s", deb, err, lastLine(string(out)))
	}
	return nil
}

func fetchDeb(ctx context.Context, pkg, dest string) error {
	debs := filepath.Join(CacheDir, "debs")
	for _, d := range []string{debs, filepath.Dir(dest)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("kernel cache: %w", err)
		}
	}
	// One process at a time unpacks a package: two twlab vm runs naming the
	// same kernel shared dest.tmp, one removing it under the other, or one
	// replacing dest while the other read modules from it.
	unlockPkg, err := flock.Lock(ctx, dest+".lock", nil)
	if err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	defer unlockPkg()
	if _, err := os.Stat(filepath.Join(dest, ".complete")); err == nil {
		return nil // made by another process while this one waited
	}
	deb, cached, err := findOrDownloadDeb(ctx, pkg, debs)
	if err != nil {
		return err
	}
	tmp := dest + ".tmp"
	err = extractDeb(ctx, deb, tmp)
	if err != nil && cached && ctx.Err() == nil {
		// A package file from before that cannot be unpacked (one a
		// killed twlab of an older version left cut short) is fetched
		// again, once, instead of failing every run from now on.
		slog.Warn("a cached kernel package could not be unpacked; fetching it again", "file", deb, "err", err)
		os.Remove(deb)
		if deb, _, err = findOrDownloadDeb(ctx, pkg, debs); err == nil {
			err = extractDeb(ctx, deb, tmp)
		}
	}
	if err != nil {
		return fmt.Errorf("%w%s", err, diskHint(filepath.Dir(dest)))
	}
	// The extracted files reach the disk before the marker says they are
	// complete, so a crash cannot leave a marked but truncated kernel; their
	// writeback then also happens here, and not in the middle of the first
	// boot, whose timing it disturbed (boot 2.7 s instead of 2.0 s).
	if err := syncFS(tmp); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("kernel cache: %w%s", err, diskHint(filepath.Dir(dest)))
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("kernel cache: %w%s", err, diskHint(filepath.Dir(dest)))
	}
	os.RemoveAll(dest)
	return os.Rename(tmp, dest)
}

// syncFS writes out everything pending on the filesystem that holds dir.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
