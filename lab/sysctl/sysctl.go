// Package sysctl reads and writes kernel knobs inside a lab namespace through
// /proc/sys, from a thread that has entered the namespace.
//
// The namespace of a /proc/sys/net file is the one of the thread that opens it,
// so every open happens inside netnsutil.Do. Before anything is written, a knob
// is probed: a knob that does not exist on this kernel, or that exists only in
// the initial namespace (global on this kernel), is never written; the caller
// marks the cell n/a with the reason. The host namespace is never written.
package sysctl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/twlab/twlab/lab/internal/kver"
	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Root is where sysctls live.
const Root = "/proc/sys"

var nameRE = regexp.MustCompile(`^net(\.[A-Za-z0-9_-]+)+$`)

// ValidName checks that name is a dotted net.* sysctl name without path
// tricks; only net.* knobs are namespaced, so only they may be set per node.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("sysctl name %q is not valid: want dotted segments of letters, digits, '_' or '-' under net., e.g. net.ipv4.tcp_rfc1337", name)
	}
	return nil
}

// Path is the /proc/sys file of a dotted name.
func Path(name string) string { return Root + "/" + strings.ReplaceAll(name, ".", "/") }

// Normalize makes values comparable: the kernel prints vectors tab-separated
// with a trailing newline, scenarios write them space-separated; and it
// reads integers as base 0 (0x1f, 010 octal) but prints them in decimal, so
// "0x1" is the 1 an expectation compares with and a host holds, and "010"
// is 8, not 10.
func Normalize(v string) string {
	f := strings.Fields(v)
	for i, x := range f {
		if kernelIntRE.MatchString(x) {
			if n, err := strconv.ParseInt(x, 0, 64); err == nil {
				f[i] = strconv.FormatInt(n, 10)
			}
		}
	}
	return strings.Join(f, " ")
}

// kernelIntRE is an integer as the kernel's proc handlers read it (no '+',
// no '_', which Go's base 0 would take).
var kernelIntRE = regexp.MustCompile(`^-?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$`)

// absentMeans lists knobs whose absence is the same as one of their values:
// a kernel without tcp_tw_recycle behaves as tcp_tw_recycle=0.
var absentMeans = map[string]string{
	"net.ipv4.tcp_tw_recycle": "0",
}

// history explains why a knob may be missing; detection decides, this only
// helps the reader of the reason.
var history = map[string]string{
	"net.ipv4.tcp_tw_recycle":                          "removed in Linux 4.12",
	"net.ipv4.tcp_tw_reuse_delay":                      "added in Linux 6.14",
	"net.ipv4.tcp_tw_reuse":                            "per-namespace since about Linux 4.11",
	"net.ipv4.tcp_timestamps":                          "per-namespace since about Linux 4.13",
	"net.ipv4.tcp_rfc1337":                             "per-namespace since about Linux 4.15",
	"net.ipv4.tcp_max_tw_buckets":                      "per-namespace since about Linux 4.11",
	"net.netfilter.nf_conntrack_tcp_timeout_time_wait": "needs nf_conntrack",
}

// sharedBefore lists knobs whose file a network namespace shows writable
// while it holds the one global value, up to the kernel (major, minor) that
// made it read-only there (commit 2671fa4dc010, Linux 5.13): written in a
// lab namespace, it would change the host's conntrack limit for good.
var sharedBefore = map[string][2]int{
	"net.netfilter.nf_conntrack_max":        {5, 13},
	"net.netfilter.nf_conntrack_expect_max": {5, 13},
}

// runningRelease is the running kernel's release; tests replace it.
var runningRelease = func() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// releaseBefore says whether release is older than mm; an unreadable
// release counts as older, the safe side for sharedBefore and removedIn.
func releaseBefore(release string, mm [2]int) bool {
	before, ok := kver.Before(release, mm[0], mm[1])
	return before || !ok
}

// Availability is what a probe found out about one knob in one namespace.
type Availability struct {
	Exists   bool   // the file exists in the lab namespace
	Writable bool   // and may be written there
	Host     bool   // the file exists in the host namespace
	Reason   string // why it cannot be applied, when it cannot
}

// Probe finds out, without writing anything, whether name can be set in ns.
func Probe(ns netns.NsHandle, name string) (Availability, error) {
	if err := ValidName(name); err != nil {
		return Availability{}, err
	}
	p := Path(name)
	var a Availability
	err := netnsutil.Do(ns, func() error {
		_, err := os.Stat(p)
		switch {
		case err == nil:
			a.Exists = true
			a.Writable = unix.Access(p, unix.W_OK) == nil
		case errors.Is(err, fs.ErrNotExist):
		default:
			return fmt.Errorf("stat %s: %w", p, err)
		}
		return nil
	})
	if err != nil {
		return a, err
	}
	// Reading the host's view is allowed; writing it never is.
	if _, err := os.Stat(p); err == nil {
		a.Host = true
	}
	note := ""
	if h, ok := history[name]; ok {
		note = " (" + h + ")"
	}
	shared := false
	if mm, ok := sharedBefore[name]; ok && a.Exists && a.Host && releaseBefore(runningRelease(), mm) {
		// Global, whatever the file's mode says: callers treat it as a
		// knob of the initial namespace (compared on a host, set there
		// and put back in a VM), never as a node's.
		a.Writable, shared = false, true
	}
	switch {
	case shared:
		a.Reason = fmt.Sprintf("%s is global on this kernel: a network namespace shows it writable but holds the host's one value (per-namespace read-only from Linux %d.%d); run it in a VM (twlab vm)", name, sharedBefore[name][0], sharedBefore[name][1])
	case a.Exists && a.Writable:
	case a.Exists:
		a.Reason = fmt.Sprintf("%s is read-only in a network namespace on this kernel: not per-namespace%s; run it in a VM (twlab vm)", name, note)
	case a.Host:
		a.Reason = fmt.Sprintf("%s exists only in the host namespace on this kernel: not per-namespace%s; run it in a VM (twlab vm)", name, note)
	default:
		a.Reason = fmt.Sprintf("%s does not exist on this kernel%s", name, note)
	}
	return a, nil
}

// removedIn is the kernel (major, minor) that removed a knob of absentMeans.
var removedIn = map[string][2]int{
	"net.ipv4.tcp_tw_recycle": {4, 12},
}

// AbsentEquivalent reports whether asking for value of a missing knob is the
// same as the kernel's behaviour without the knob. Only on a kernel that
// no longer has it: on an older one a knob absent here is a global one
// twlab cannot see (run inside a container's namespace), and the machine's
// value, maybe tcp_tw_recycle=1, is in force.
func AbsentEquivalent(name, value string) bool {
	v, ok := absentMeans[name]
	if mm, known := removedIn[name]; known && releaseBefore(runningRelease(), mm) {
		return false
	}
	return ok && Normalize(v) == Normalize(value)
}

// Setting is one knob with the value asked for and the value the kernel holds
// after the write.
type Setting struct {
	Name      string `json:"name"`
	Requested string `json:"requested"`
	Actual    string `json:"actual"`
}

// Apply writes each knob in ns and reads it back. The error names the knob and
// what the kernel said.
func Apply(ns netns.NsHandle, knobs []Setting) ([]Setting, error) {
	out := make([]Setting, 0, len(knobs))
	err := netnsutil.Do(ns, func() error {
		for _, k := range knobs {
			if err := ValidName(k.Name); err != nil {
				return err
			}
			p := Path(k.Name)
			if err := writeWhole(p, k.Requested); err != nil {
				return &RefusedError{Name: k.Name, Value: k.Requested, Err: err}
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("read back %s: %w", k.Name, unwrapPath(err))
			}
			k.Actual = Normalize(string(b))
			// A value of fewer parts than the knob has ("40000" for
			// ip_local_port_range) is taken whole and changes only what
			// it names: the read-back has more parts than the request.
			if want, got := len(strings.Fields(k.Requested)), len(strings.Fields(k.Actual)); want != got {
				values := "values"
				if got == 1 {
					values = "value"
				}
				return &RefusedError{Name: k.Name, Value: k.Requested,
					Err: fmt.Errorf("it holds %d %s here, not %d (now %q)", got, values, want, k.Actual)}
			}
			out = append(out, k)
		}
		return nil
	})
	return out, err
}

// writeWhole writes v to the sysctl file p in one write(2) and refuses what
// the kernel did not take. A knob of one value given "1 0" takes the "1"
// and reports a short write; a writer that carried on with the rest, as
// os.WriteFile does, had it ignored (kernel.sysctl_writes_strict=1, the
// default) or applied as a new value (=0): either way the cell ran with
// something else than asked, and said nothing.
func writeWhole(p, v string) error {
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	data := []byte(v + "\n")
	n, err := unix.Write(fd, data)
	if err != nil {
		return err
	}
	if n < len(data) {
		return fmt.Errorf("it took %q and not the rest, %q: one value too many, or a list where it takes one", strings.TrimSpace(string(data[:n])), strings.TrimSpace(string(data[n:])))
	}
	return nil
}

// Read returns the current values of names in ns; missing knobs are left out.
func Read(ns netns.NsHandle, names []string) (map[string]string, error) {
	vals := map[string]string{}
	err := netnsutil.Do(ns, func() error {
		for _, n := range names {
			v, err := readValue(n)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			vals[n] = v
		}
		return nil
	})
	return vals, err
}

// PerDevice tells a knob of one network device (net.ipv4.conf.eth0.…,
// net.ipv6.neigh.eth0.…) from a knob of the namespace: one that exists only
// in the host because its device is there is not global, whatever its value.
// The all and default entries are the namespace's.
func PerDevice(name string) bool {
	parts := strings.Split(name, ".")
	for i := 0; i+1 < len(parts); i++ {
		if (parts[i] == "conf" || parts[i] == "neigh") && i >= 2 && parts[i+1] != "all" && parts[i+1] != "default" {
			return true
		}
	}
	return false
}

// ReadHost reads name as the namespace twlab was started in sees it, from
// the calling thread (only pinned threads ever enter a lab namespace, and
// they are never shared). For a knob that is not per-namespace on this
// kernel that is the value in force for the whole machine, labs included.
// Reading the host is allowed; writing it never is.
func ReadHost(name string) (string, error) {
	v, err := readValue(name)
	if err != nil {
		return "", fmt.Errorf("in the host namespace: %w", err)
	}
	return v, nil
}

// readValue reads name in the calling thread's namespace, normalized; a
// missing knob is an error that is fs.ErrNotExist.
func readValue(name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	b, err := os.ReadFile(Path(name))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", name, unwrapPath(err))
	}
	return Normalize(string(b)), nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// RefusedError is a value the kernel would not take: bad input, not a bug.
type RefusedError struct {
	Name, Value string
	Err         error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("write %s=%q: the kernel refused it: %v", e.Name, e.Value, e.Err)
}

func (e *RefusedError) Unwrap() error { return e.Err }

// initialNS is the namespace RememberInitialNS saw, or -1.
var initialNS = netns.None()

// RememberInitialNS keeps a handle on the calling thread's network
// namespace as the initial one. A twlab VM's /init calls it first thing,
// before any thread has switched: /proc/1/ns/net names the namespace of
// PID 1's main thread, which Go may be running inside a lab namespace at
// that very moment (seen on 4.10: a global knob written "in the initial
// namespace" failed with ENOENT because it was written in a lab's).
func RememberInitialNS() error {
	h, err := netns.Get()
	if err != nil {
		return fmt.Errorf("initial network namespace: %w", err)
	}
	initialNS = h
	return nil
}

// InitialNS opens the initial network namespace: the one remembered by
// RememberInitialNS, else PID 1's. Only a twlab VM writes there: inside the
// VM, PID 1 is twlab and the whole machine is the lab. On a host, PID 1's
// namespace is the host's, which twlab never writes. The caller closes the
// handle.
func InitialNS() (netns.NsHandle, error) {
	if initialNS.IsOpen() {
		fd, err := unix.FcntlInt(uintptr(initialNS), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return netns.None(), fmt.Errorf("initial network namespace: %w", err)
		}
		return netns.NsHandle(fd), nil
	}
	h, err := netns.GetFromPath("/proc/1/ns/net")
	if err != nil {
		return netns.None(), fmt.Errorf("initial network namespace: %w", err)
	}
	return h, nil
}
