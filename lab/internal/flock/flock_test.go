package flock

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// A second taker waits (and is told so) until the first lets go, and a
// waiter whose context ends gives up instead of waiting for ever.
func TestLockWaitsAndHearsCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k", "x.lock")
	unlock, err := Lock(context.Background(), path, func() { t.Error("the first taker was told to wait") })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := Lock(ctx, path, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a waiter whose context ended: %v, want the context's error", err)
	}
	waited := make(chan struct{})
	got := make(chan struct{})
	go func() {
		u, err := Lock(context.Background(), path, func() { close(waited) })
		if err == nil {
			close(got)
			u()
		}
	}()
	<-waited
	select {
	case <-got:
		t.Fatal("the second taker got the lock while the first held it")
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the second taker did not get the lock once it was free")
	}
}
