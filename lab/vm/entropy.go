package vm

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A minimal kernel under software emulation has no entropy source: no
// virtio-rng, no RDRAND on QEMU's default CPU, no disk or network
// interrupts worth counting. getrandom(2) then blocks until the pool is
// initialised, which may be never, and Go's crypto/rand blocks with it (the
// run id, the doctor's scratch names). The host therefore puts a seed of its
// own randomness into every initramfs and /init credits it to the kernel
// before anything reads randomness. The seed is as secret as the initramfs,
// which is fine for a throw-away lab VM.

// seedBytes is the size of the host's seed: 4096 bits.
const seedBytes = 512

// guestSeed is the seed's path inside the initramfs.
const guestSeed = "/twlab/seed"

// seedRandom credits seed to the kernel, a 64-byte slice at a time, until
// getrandom stops blocking (or limit passes). One credit is enough since
// Linux 4.8 (the CRNG counts as ready at 128 bits). Before, getrandom waits
// for the "nonblocking" pool, which credited entropy reaches only in small
// steps: the input pool spills 64 bits into it from a work item when a
// credit leaves it nearly full, alternating with the blocking pool, and
// /dev/urandom pulls from it at most once a minute. Repeated credits get
// the few steps the pool needs.
func seedRandom(dev string, seed []byte, limit time.Duration) error {
	if len(seed) == 0 {
		return fmt.Errorf("entropy seed is empty")
	}
	deadline := time.Now().Add(limit)
	for i := 0; ; i++ {
		chunk := seed[(i*64)%len(seed):]
		if err := creditEntropy(dev, chunk[:min(64, len(chunk))]); err != nil {
			return err
		}
		if randomReady(20 * time.Millisecond) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the kernel's random pool is not initialised after %d credits of the host's seed: getrandom would block", i+1)
		}
	}
}

// creditEntropy mixes seed into the kernel's input pool and credits it as
// full entropy with RNDADDENTROPY (struct rand_pool_info: entropy_count in
// bits, buf_size in bytes, then the bytes). Needs CAP_SYS_ADMIN, which /init
// has.
func creditEntropy(dev string, seed []byte) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dev, err)
	}
	defer f.Close()
	buf := make([]byte, 8+len(seed))
	binary.NativeEndian.PutUint32(buf[0:], uint32(8*len(seed)))
	binary.NativeEndian.PutUint32(buf[4:], uint32(len(seed)))
	copy(buf[8:], seed)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
		return fmt.Errorf("RNDADDENTROPY on %s: %w", dev, errno)
	}
	return nil
}

// randomReady reports whether getrandom(2) returns without blocking,
// trying for up to limit.
func randomReady(limit time.Duration) bool {
	b := make([]byte, 1)
	for deadline := time.Now().Add(limit); ; time.Sleep(5 * time.Millisecond) {
		if _, err := unix.Getrandom(b, unix.GRND_NONBLOCK); err == nil {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
