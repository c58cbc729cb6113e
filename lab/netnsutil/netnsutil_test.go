package netnsutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func skipUnlessRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces (run `sudo make test`)")
	}
}

// scratch creates an unnamed namespace for one test.
func scratch(t *testing.T) netns.NsHandle {
	t.Helper()
	name := fmt.Sprintf("twlab-t%03x-nsutil", os.Getpid()%4096)
	h, err := NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	netns.DeleteNamed(name)
	t.Cleanup(func() { h.Close() })
	return h
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func threadAlive(tid int) bool {
	_, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid))
	return err == nil
}

// waitGone waits until thread tid has exited (the runtime ends a thread
// whose goroutine exits locked a moment later).
func waitGone(tid int) bool {
	for range 200 {
		if !threadAlive(tid) {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

func TestDoSwitchesAndRestores(t *testing.T) {
	skipUnlessRoot(t)
	ns := scratch(t)
	var want unix.Stat_t
	if err := unix.Fstat(int(ns), &want); err != nil {
		t.Fatal(err)
	}
	host := inode(t, "/proc/thread-self/ns/net")
	var inside uint64
	var tid int
	if err := Do(ns, func() error {
		inside, tid = inode(t, "/proc/thread-self/ns/net"), unix.Gettid()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if inside != want.Ino {
		t.Errorf("f ran in namespace %d, want %d", inside, want.Ino)
	}
	// Every thread of the process is back in the host namespace, the one
	// that ran f included.
	if got := inode(t, fmt.Sprintf("/proc/self/task/%d/ns/net", tid)); threadAlive(tid) && got != host {
		t.Errorf("thread %d still in namespace %d after Do", tid, got)
	}
	if err := Do(ns, func() error { return errors.New("boom") }); err == nil || err.Error() != "boom" {
		t.Errorf("f's error: %v", err)
	}
	if err := Do(ns, func() error { panic("in namespace") }); err == nil {
		t.Error("a panic in f was not turned into an error")
	}
}

// TestRestoreFailureDiscardsTheThread makes switching back fail: the thread
// must not return to the scheduler, so it has to be gone afterwards.
func TestRestoreFailureDiscardsTheThread(t *testing.T) {
	skipUnlessRoot(t)
	ns := scratch(t)
	calls := 0
	setNS = func(h netns.NsHandle) error {
		calls++
		if calls == 2 { // the switch back
			return unix.EPERM
		}
		return netns.Set(h)
	}
	defer func() { setNS = netns.Set }()
	var tid int
	err := Do(ns, func() error { tid = unix.Gettid(); return nil })
	if err == nil {
		t.Fatal("a failed switch back went unreported")
	}
	// The runtime ends a thread whose goroutine exits locked, except the
	// main thread, which it parks for good instead: either way no goroutine
	// runs on it again.
	if tid != os.Getpid() && !waitGone(tid) {
		t.Errorf("thread %d, left in the lab namespace, is still alive: %v", tid, err)
	}
}

func TestDoFreshDiscardsTheThread(t *testing.T) {
	skipUnlessRoot(t)
	ns := scratch(t)
	var tid int
	if err := DoFresh(ns, func() error { tid = unix.Gettid(); return nil }); err != nil {
		t.Fatal(err)
	}
	if tid != os.Getpid() && !waitGone(tid) {
		t.Errorf("DoFresh's thread %d lives on", tid)
	}
}

func TestThreadCloseTwice(t *testing.T) {
	skipUnlessRoot(t)
	th, err := NewThread(scratch(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := th.Run(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	th.Close()
	th.Close() // must not panic
}

// TestExecSeesItsOwnSysfs: a command run in a node (twlab exec) sees the
// node's links under /sys/class/net, not the host's, and the host's /sys
// is left as it was.
func TestExecSeesItsOwnSysfs(t *testing.T) {
	if name := os.Getenv("TWLAB_TEST_EXEC_NS"); name != "" {
		err := Exec(name, []string{"ls", "/sys/class/net"}, os.Environ())
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	skipUnlessRoot(t)
	name := fmt.Sprintf("twlab-t%03x-sysfs", os.Getpid()%4096)
	h, err := NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { h.Close(); netns.DeleteNamed(name) }()
	before, _ := os.ReadDir("/sys/class/net")
	cmd := exec.Command(os.Args[0], "-test.run", "^TestExecSeesItsOwnSysfs$")
	cmd.Env = append(os.Environ(), "TWLAB_TEST_EXEC_NS="+name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("exec: %v: %s", err, out)
	}
	if got := strings.Fields(string(out)); len(got) != 1 || got[0] != "lo" {
		t.Errorf("/sys/class/net in a fresh namespace lists %q; want only lo", got)
	}
	after, _ := os.ReadDir("/sys/class/net")
	if len(after) != len(before) || len(before) < 2 {
		t.Errorf("the host's /sys/class/net changed: %d entries before, %d after", len(before), len(after))
	}
}

// What a namespace creation that failed at its bind mount leaves (an empty
// file in /run/netns) is removed; a mounted namespace never is.
func TestRemoveUnmounted(t *testing.T) {
	skipUnlessRoot(t)
	if err := EnsureNetnsDir(); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("twlab-t%03x-unmnt", (os.Getpid()+1)%4096)
	p := netnsDir + "/" + name
	if err := os.WriteFile(p, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(p)
	if !removeUnmounted(p) {
		t.Error("an empty file with nothing mounted on it stays")
	}
	h, err := NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	defer netns.DeleteNamed(name)
	if removeUnmounted(p) {
		t.Fatal("a mounted namespace was removed")
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("the namespace's file: %v", err)
	}
}
