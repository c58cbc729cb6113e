package vm

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/twlab/twlab/lab/internal/flock"
	"golang.org/x/sys/unix"
)

// Debian kernels are found through twlab's own apt state in the cache
// (sources, lists, archives), never the host's: the host may list only its
// own release, and twlab must not change what the host's apt sees. The
// suites cover the kernels the matrix wants: 5.10 (bullseye), 6.1
// (bookworm), 6.12 (bookworm-security backports and trixie).
var aptSuites = []struct{ path, suite string }{
	{"debian", "bullseye"},
	{"debian-security", "bullseye-security"},
	{"debian", "bookworm"},
	{"debian-security", "bookworm-security"},
	{"debian", "trixie"},
}

// DebianKeyring signs the suites; the debian-archive-keyring package puts
// it there on every Debian system.
const DebianKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// aptMaxAge is how old twlab's package lists may be before a resolve
// refreshes them.
const aptMaxAge = 24 * time.Hour

func aptDir() string { return filepath.Join(CacheDir, "apt") }

// debianMirror is the archive's base URL ($TWLAB_DEBIAN_MIRROR, for a local
// mirror).
func debianMirror() string {
	return strings.TrimRight(envOr("TWLAB_DEBIAN_MIRROR", "http://deb.debian.org"), "/")
}

// aptOptions point apt-get and apt-cache at twlab's state only.
func aptOptions() []string {
	d := aptDir()
	o := []string{
		"Dir::Etc::SourceList=" + filepath.Join(d, "sources.list"),
		"Dir::Etc::SourceParts=" + filepath.Join(d, "empty"),
		"Dir::Etc::Preferences=/dev/null",
		"Dir::Etc::PreferencesParts=" + filepath.Join(d, "empty"),
		"Dir::State::Lists=" + filepath.Join(d, "lists"),
		"Dir::Cache=" + filepath.Join(d, "cache"),
		"APT::Architecture=amd64",
		"APT::Architectures=amd64",
		"Acquire::Languages=none",
		"Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
		"Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false",
		"Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false",
		"APT::Sandbox::User=root",
		// twlab serialises its own apt runs (aptLock); the host's lock
		// files are not ours to take.
		"Debug::NoLocking=1",
	}
	var args []string
	for _, x := range o {
		args = append(args, "-o", x)
	}
	return args
}

// aptLock serialises apt runs of concurrent twlab processes on one cache.
func aptLock(ctx context.Context) (func(), error) {
	unlock, err := flock.Lock(ctx, filepath.Join(aptDir(), "lock"), nil)
	if err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	return unlock, nil
}

// aptPrepare writes twlab's sources and refreshes its package lists when
// they are missing or older than aptMaxAge. The caller holds aptLock. A
// refresh that could not fetch every list (apt-get update then only warns
// and exits 0: offline, a mirror down) is not stamped, so that the next
// run tries again, and is returned as incomplete: stamped, an offline
// first run left twlab sure for a day that Debian had no such kernels.
func aptPrepare(ctx context.Context, log *slog.Logger) (incomplete string, err error) {
	if _, err := os.Stat(DebianKeyring); err != nil {
		return "", fmt.Errorf("debian:VERSION needs the Debian archive keyring (%s): apt-get install debian-archive-keyring", DebianKeyring)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", fmt.Errorf("debian:VERSION needs apt-get (a Debian or Ubuntu host); or give --kernel a bzImage")
	}
	d := aptDir()
	for _, sub := range []string{"empty", "lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			return "", fmt.Errorf("kernel cache: %w", err)
		}
	}
	var src strings.Builder
	for _, s := range aptSuites {
		fmt.Fprintf(&src, "deb [signed-by=%s] %s/%s %s main\n", DebianKeyring, debianMirror(), s.path, s.suite)
	}
	list := filepath.Join(d, "sources.list")
	old, _ := os.ReadFile(list)
	changed := string(old) != src.String()
	if changed {
		if err := writeAtomic(list, []byte(src.String())); err != nil {
			return "", fmt.Errorf("kernel cache: %w", err)
		}
	}
	stamp := filepath.Join(d, "updated")
	if st, err := os.Stat(stamp); err == nil && !changed && time.Since(st.ModTime()) < aptMaxAge {
		return "", nil
	}
	log.Info("refreshing twlab's Debian package lists", "suites", len(aptSuites), "dir", d)
	args := append(aptOptions(), "-q", "update")
	out, err := exec.CommandContext(ctx, "apt-get", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("apt-get update (twlab's own lists in %s): %w: %s%s", d, err, lastLine(string(out)), diskHint(d))
	}
	if failed := aptFetchFailure(string(out)); failed != "" {
		os.Remove(stamp)
		log.Warn("twlab's Debian package lists could not all be refreshed; using what there is", "why", failed)
		return failed, nil
	}
	return "", os.WriteFile(stamp, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
}

// aptFetchFailure is the first line of apt-get update's output that says a
// list could not be fetched, or "".
func aptFetchFailure(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); strings.Contains(l, "Failed to fetch") || strings.Contains(l, "Some index files failed to download") {
			return l
		}
	}
	return ""
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// diskHint explains a failed write into dir when its file system is (nearly)
// full, which tools such as apt and dpkg-deb do not always say.
func diskHint(dir string) string {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return ""
	}
	free := st.Bavail * uint64(st.Bsize)
	if free < 64<<20 {
		return fmt.Sprintf(" (no space left: %d KiB free on the cache's file system)", free>>10)
	}
	return ""
}
