package sysctl

import (
	"runtime"
	"testing"

	"github.com/twlab/twlab/lab/internal/roottest"
	"github.com/vishvananda/netns"
)

// TestRememberedInitialNS: once remembered, the initial namespace is the one
// the remembering thread was in, not whatever PID 1's main thread is in at
// the moment of asking; each InitialNS handle is the caller's own to close.
func TestRememberedInitialNS(t *testing.T) {
	roottest.Skip(t)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	scratch, err := netns.New() // switches this thread
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer scratch.Close()
	err = RememberInitialNS()
	if serr := netns.Set(orig); serr != nil {
		t.Fatalf("back to the test's namespace: %v", serr) // the locked thread dies with the test goroutine
	}
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { initialNS.Close(); initialNS = netns.None() }()
	for i := 0; i < 2; i++ {
		h, err := InitialNS()
		if err != nil {
			t.Fatal(err)
		}
		if !h.Equal(scratch) {
			t.Errorf("InitialNS = %s, want the remembered %s", h.UniqueId(), scratch.UniqueId())
		}
		h.Close()
	}
	if !initialNS.Equal(scratch) {
		t.Error("closing a returned handle closed the remembered one")
	}
}
