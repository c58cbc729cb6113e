// Package tmpfile names the temporary files twlab writes before renaming
// them into place (run.json, timeseries.csv, reports, pcaps, caches of
// others), and removes the ones whose writer is gone.
//
// A SIGKILL or a power loss between creating such a file and renaming it
// leaves it behind. Its name carries the writer's PID, so that the next
// writer of the same file, `twlab report`, the start of the next run and
// `twlab cleanup` can tell a dead writer's file from one being written
// right now.
package tmpfile

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twlab/twlab/lab/internal/proc"
)

// marker separates the final name from the writer's PID: .NAME.tmp-PID-RANDOM
const marker = ".tmp-"

// legacyAge: files named by older twlab versions (.NAME.tmpRANDOM, no PID)
// are taken for dead once this old; a write takes milliseconds.
const legacyAge = time.Hour

// Create creates a new temporary file in dir for the file base, named
// ".base.tmp-PID-RANDOM": hidden, and telling who writes it.
func Create(dir, base string) (*os.File, error) {
	return os.CreateTemp(dir, "."+base+marker+strconv.Itoa(os.Getpid())+"-*")
}

// Sweep removes the temporary files in dir whose writer is gone: of the
// file base, or of any file when base is "". It returns the paths removed.
// Nothing else is ever removed, and a file of a live writer stays.
func Sweep(dir, base string) []string {
	pattern := ".*.tmp*"
	if base != "" {
		pattern = "." + escape(base) + ".tmp*"
	}
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	var removed []string
	for _, p := range m {
		if !stale(p) {
			continue
		}
		if err := os.Remove(p); err == nil {
			removed = append(removed, p)
		}
	}
	return removed
}

// stale says whether path is a regular temporary file of a writer that is
// gone.
func stale(path string) bool {
	name := filepath.Base(path)
	st, err := os.Lstat(path)
	if err != nil || !st.Mode().IsRegular() || !strings.HasPrefix(name, ".") {
		return false
	}
	i := strings.LastIndex(name, marker)
	if i < 0 {
		// .NAME.tmpRANDOM, as os.CreateTemp named it before the PID was
		// in the name.
		j := strings.LastIndex(name, ".tmp")
		return j > 0 && digits(name[j+len(".tmp"):]) && time.Since(st.ModTime()) > legacyAge
	}
	pid, rest, ok := strings.Cut(name[i+len(marker):], "-")
	n, err := strconv.Atoi(pid)
	if !ok || err != nil || n <= 0 || !digits(rest) {
		return false
	}
	return !alive(n)
}

// alive says whether a process n exists (EPERM: it does, someone else's)
// and has not exited: a killed writer whose parent has not reaped it yet
// writes no more, and cleanup, which had judged its run dead, kept its
// file for ever.
func alive(n int) bool {
	if n == os.Getpid() {
		return true
	}
	err := syscall.Kill(n, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	return !proc.Zombie(n)
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// escape quotes glob metacharacters of a file name.
func escape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}
