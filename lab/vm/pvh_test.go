package vm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// noteELF is the smallest ELF64 the note scan reads: a header and one
// PT_NOTE program header whose size field says filesz.
func noteELF(filesz uint64) []byte {
	b := make([]byte, 64+56)
	copy(b, "\x7fELF\x02\x01\x01")
	le := binary.LittleEndian
	le.PutUint16(b[16:], 2)  // ET_EXEC
	le.PutUint16(b[18:], 62) // x86-64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[32:], 64) // program headers right after the header
	le.PutUint16(b[52:], 64)
	le.PutUint16(b[54:], 56)
	le.PutUint16(b[56:], 1)
	le.PutUint32(b[64:], 4) // PT_NOTE at offset 0
	le.PutUint64(b[64+32:], filesz)
	return b
}

// A kernel image is input: a note whose size field claims more than the
// image holds must make it "no PVH note", not a panic that ends every
// kernel's run of the matrix.
func TestNoteSizeFromTheImageIsBounded(t *testing.T) {
	for _, n := range []uint64{1 << 62, 1 << 40, 121} {
		if hasPVHNote(noteELF(n)) {
			t.Errorf("filesz %d: a PVH note found in an image without one", n)
		}
	}
}

// A SIGKILLed twlab leaves its initramfs in the temporary folder; the next
// run removes it, and never one of a live process.
func TestStaleInitrdsRemoved(t *testing.T) {
	dead := 0
	for pid := 4_000_000; pid > 3_000_000; pid-- {
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			dead = pid
			break
		}
	}
	if dead == 0 {
		t.Skip("no unused pid found")
	}
	stale := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d-test.cpio", initrdPrefix, dead))
	live := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d-test.cpio", initrdPrefix, os.Getppid()))
	for _, p := range []string{stale, live} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(p)
	}
	if got := RemoveStaleInitrds(); !slices.Contains(got, stale) || slices.Contains(got, live) {
		t.Errorf("removed %q; want the stale one and not the live one", got)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Error("the initramfs of a process that is gone stayed")
	}
	if _, err := os.Stat(live); err != nil {
		t.Error("the initramfs of a live process was removed")
	}
}

// Two kernels of one run may make the same cache entry at once (one kernel
// named twice, -j2): each write is whole, and what stays is whole.
func TestConcurrentCacheWrites(t *testing.T) {
	old := writeChunkDelay
	writeChunkDelay = time.Millisecond
	defer func() { writeChunkDelay = old }()
	want := bytes.Repeat([]byte("pvh-kernel-"), 600_000) // ~6.6 MiB, 7 chunks
	path := filepath.Join(t.TempDir(), "k.elf")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = writeAtomic(path, want) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
		t.Errorf("the cached file is not what was written (%d bytes of %d)", len(got), len(want))
	}
}
