// Package netnsutil runs code inside a network namespace without leaking that
// namespace into the Go scheduler.
//
// setns(2) changes only the calling OS thread. Every entry therefore happens on
// a fresh goroutine locked to its thread; if switching back fails, the goroutine
// exits still locked, so the runtime throws the thread away instead of reusing a
// thread that sits in a lab namespace.
package netnsutil

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// setNS is netns.Set; tests replace it to make switching back fail.
var setNS = netns.Set

// onThread is the one copy of the namespace switch. On a fresh goroutine
// locked to its OS thread it saves the thread's namespace, runs enter (which
// moves the thread: setns or unshare), runs f, and switches the thread back.
// If switching back fails, the goroutine exits still locked, so the runtime
// throws the thread away instead of reusing a thread that sits in a lab
// namespace. With reuse false the thread is thrown away in any case: a thread
// that has looked at /proc/thread-self/net must never look again from
// another namespace (see DoFresh).
func onThread(enter, f func() error, reuse bool) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		// enter may fail half-way (unshare done, bind mount failed), so the
		// switch back is tried whatever it returned.
		err = safeCall(enter)
		if err == nil && f != nil {
			err = safeCall(f)
		}
		if serr := setNS(orig); serr != nil {
			errc <- errors.Join(err, fmt.Errorf("leave netns (thread discarded): %w", serr))
			return // still locked: the thread dies with this goroutine
		}
		if reuse {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Do runs f on an OS thread that has entered ns and waits for it. f must not
// start goroutines that expect to stay in ns: new goroutines may run on any
// thread. Files and sockets opened inside f keep ns for their whole life.
func Do(ns netns.NsHandle, f func() error) error {
	return onThread(func() error { return enterErr(setNS(ns)) }, f, true)
}

// DoFresh is Do on a thread that is thrown away afterwards. Before about
// Linux 4.18 the entries under /proc/<tid>/net are cached per thread across
// setns(2): a thread that opened /proc/thread-self/net/… in one namespace
// reads the same namespace's files after entering another. As long as every
// look at /proc/thread-self/net happens in DoFresh, no live thread carries
// such a cache.
func DoFresh(ns netns.NsHandle, f func() error) error {
	return onThread(func() error { return enterErr(setNS(ns)) }, f, false)
}

func enterErr(err error) error {
	if err != nil {
		return fmt.Errorf("enter netns: %w", err)
	}
	return nil
}

// safeCall turns a panic in f into an error so that the namespace switch back
// still happens and the lab can be torn down by the caller.
func safeCall(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in namespace: %v", r)
		}
	}()
	return f()
}

// Thread is a goroutine pinned inside one namespace that runs submitted
// functions. It amortises the thread switch for callers that enter the same
// namespace many times per second, such as the load generator's socket maker.
type Thread struct {
	work      chan func()
	done      chan struct{}
	closeOnce sync.Once
}

// NewThread starts a pinned goroutine in ns. Close stops it.
func NewThread(ns netns.NsHandle) (*Thread, error) {
	t := &Thread{work: make(chan func()), done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		defer close(t.done)
		err := onThread(func() error { return enterErr(setNS(ns)) }, func() error {
			ready <- nil
			for f := range t.work {
				f()
			}
			return nil
		}, true)
		if err != nil {
			select {
			case ready <- err: // entering failed: NewThread is still waiting
			default:
			}
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return t, nil
}

// Run executes f inside the thread's namespace and waits for it.
func (t *Thread) Run(f func() error) error {
	errc := make(chan error, 1)
	t.work <- func() { errc <- safeCall(f) }
	return <-errc
}

// Close stops the thread and waits for it; calling it again does nothing.
func (t *Thread) Close() {
	t.closeOnce.Do(func() { close(t.work) })
	<-t.done
}

// NewNamed creates a network namespace bind-mounted at /run/netns/name (so
// that `ip netns exec` and `twlab cleanup` can find it) without ever moving
// the caller's thread into it for longer than the creation takes.
func NewNamed(name string) (netns.NsHandle, error) {
	h, err := NewNamedWith(name, nil)
	if err != nil && h.IsOpen() {
		// The namespace exists but the caller gets no handle to remove it
		// with: its mount goes here, or it outlives the run.
		h.Close()
		p := filepath.Join(netnsDir, name)
		unix.Unmount(p, unix.MNT_DETACH)
		os.Remove(p)
		return netns.None(), err
	}
	return h, err
}

// NewNamedWith is NewNamed that also runs inside, if not nil, on the thread
// while it is in the new namespace: what must be opened there (a netlink
// socket) costs no second switch into it. If inside fails, the namespace
// is still returned, with the error, for the caller to remove.
func NewNamedWith(name string, inside func() error) (netns.NsHandle, error) {
	if err := EnsureNetnsDir(); err != nil {
		return netns.None(), err
	}
	h := netns.None()
	err := onThread(func() error {
		var err error
		h, err = netns.NewNamed(name) // unshares this thread, then bind-mounts
		if err != nil {
			// The library creates the file, then mounts onto it; a failed
			// mount left the file behind, and the next cell of the run (the
			// same names) failed on "file exists". A file that existed
			// before is someone else's.
			if !errors.Is(err, os.ErrExist) {
				removeUnmounted(filepath.Join(netnsDir, name))
			}
			return fmt.Errorf("create netns %s: %w", name, err)
		}
		return nil
	}, inside, true)
	if err != nil && !h.IsOpen() {
		return netns.None(), err
	}
	return h, err
}

// removeUnmounted removes p if it is an empty file with no namespace
// mounted on it: what a namespace creation that failed at its mount leaves.
func removeUnmounted(p string) bool {
	var fs unix.Statfs_t
	st, err := os.Lstat(p)
	if err != nil || !st.Mode().IsRegular() || st.Size() != 0 || unix.Statfs(p, &fs) != nil || fs.Type == unix.NSFS_MAGIC {
		return false
	}
	return os.Remove(p) == nil
}

// ErrExecSetup: Exec failed before the command ran (the namespace could not
// be opened or entered, /sys not mounted): twlab's failure, not the
// command's; errors.Is(err, ErrNoNamespace) when the namespace is gone.
var (
	ErrExecSetup   = errors.New("could not enter the node")
	ErrNoNamespace = errors.New("no such namespace")
)

// Exec replaces the process with argv running inside the named namespace,
// as `ip netns exec` does: the calling thread enters the namespace and
// execve(2) keeps only that thread. It returns only on failure.
func Exec(nsName string, argv []string, env []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("exec: no command")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		// exec.Error says "exec: " itself, and the caller names the
		// command it runs: one prefix is enough.
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("%s: %w", argv[0], exec.ErrNotFound)
		}
		var ee *exec.Error
		if errors.As(err, &ee) {
			return fmt.Errorf("%s: %w", argv[0], ee.Err)
		}
		return err
	}
	h, err := netns.GetFromName(nsName)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("exec: open netns %s: %w (%w, %w)", nsName, err, ErrExecSetup, ErrNoNamespace)
		}
		return fmt.Errorf("exec: open netns %s: %w (%w)", nsName, err, ErrExecSetup)
	}
	runtime.LockOSThread()
	if err := netns.Set(h); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("exec: enter netns %s: %w (%w)", nsName, err, ErrExecSetup)
	}
	// On failure the thread stays locked and in the namespace; the caller
	// exits right after, so it is never reused.
	if err := privateSysfs(nsName); err != nil {
		return fmt.Errorf("exec: %w (%w)", err, ErrExecSetup)
	}
	// The kernel's refusal (a script whose interpreter is missing, a file
	// that is no program) names the command, as a shell does.
	return fmt.Errorf("%s: %w", argv[0], syscall.Exec(path, argv, env))
}

// privateSysfs gives the calling thread a mount namespace of its own with
// a sysfs of its network namespace at /sys, as `ip netns exec` does: /sys
// shows the links of the namespace a sysfs was mounted in, so without it a
// command in a lab node would list, and could write, the host's links
// under /sys/class/net. The host's mounts are not changed: the new mount
// namespace is a slave of the host's, and the remount happens in it only.
func privateSysfs(nsName string) error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("a mount namespace for /sys: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make / a slave mount: %w", err)
	}
	if err := unix.Unmount("/sys", unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount the host's /sys: %w", err)
	}
	if err := unix.Mount(nsName, "/sys", "sysfs", 0, ""); err != nil {
		return fmt.Errorf("mount /sys of %s: %w", nsName, err)
	}
	return nil
}

const netnsDir = "/run/netns"

var netnsDirOnce sync.Once
var netnsDirErr error

// EnsureNetnsDir makes /run/netns a shared bind mount of itself, exactly as
// iproute2 does on its first `ip netns add`. Doing it before the first lab
// namespace matters: if iproute2 did it later, while labs are up, its new
// mount would shadow their namespace files, which could then be neither
// unmounted nor removed by path.
func EnsureNetnsDir() error {
	netnsDirOnce.Do(func() {
		if err := os.MkdirAll(netnsDir, 0o755); err != nil {
			netnsDirErr = fmt.Errorf("create %s: %w", netnsDir, err)
			return
		}
		err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if errors.Is(err, unix.EINVAL) && mountsBelow(netnsDir) {
			// Not a mount point, but namespaces are already mounted in it
			// (a run of an older twlab, or another tool): binding the
			// directory over itself now would hide them. Leave it as it is.
			err = nil
		}
		if errors.Is(err, unix.EINVAL) { // not a mount point yet
			if err = unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err == nil {
				err = unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
			}
		}
		if err != nil {
			netnsDirErr = fmt.Errorf("make %s a shared mount (as iproute2 does): %w", netnsDir, err)
		}
	})
	return netnsDirErr
}

// mountsBelow reports whether anything is mounted inside dir.
func mountsBelow(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return true // unsure: do not risk hiding anything
	}
	prefix := []byte(" " + dir + "/")
	for _, line := range bytes.Split(b, []byte("\n")) {
		// Field 5 is the mount point: "ID PARENT MAJ:MIN ROOT MOUNTPOINT ..."
		f := bytes.Fields(line)
		if len(f) > 4 && bytes.HasPrefix(append([]byte(" "), f[4]...), prefix) {
			return true
		}
	}
	return false
}
