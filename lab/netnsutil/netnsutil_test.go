package netnsutil

import (
	"errors"
	"fmt"
	"os"
	"strconv"
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
