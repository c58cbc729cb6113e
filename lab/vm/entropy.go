package vm

import (
	"encoding/binary"
	"fmt"
	"os"
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

// seedBytes is the size of the seed: 512 bits, four times what the kernel's
// CRNG needs to count as initialised (128 bits).
const seedBytes = 64

// guestSeed is the seed's path inside the initramfs.
const guestSeed = "/twlab/seed"

// creditEntropy mixes seed into the kernel's input pool and credits it as
// full entropy with RNDADDENTROPY (struct rand_pool_info: entropy_count in
// bits, buf_size in bytes, then the bytes). Needs CAP_SYS_ADMIN, which /init
// has.
func creditEntropy(dev string, seed []byte) error {
	if len(seed) == 0 {
		return fmt.Errorf("entropy seed is empty")
	}
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

// randomReady reports whether getrandom(2) would return without blocking.
func randomReady() bool {
	b := make([]byte, 1)
	_, err := unix.Getrandom(b, unix.GRND_NONBLOCK)
	return err == nil
}
