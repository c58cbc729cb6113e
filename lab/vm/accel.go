package vm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// A /dev/kvm that accepts KVM_CREATE_VM may still never run a guest (seen
// here under nested virtualisation: the guest hangs silently), and CI
// runners usually have a KVM that works. So whether to use KVM is decided
// by running a guest: a 64-byte multiboot image whose only instruction of
// substance writes to QEMU's isa-debug-exit port. QEMU then exits with
// (value<<1)|1 at once; a KVM that cannot run guests never gets there, and
// the probe gives up after probeTimeout.

const (
	probeValue   = 0x31
	probeExit    = probeValue<<1 | 1
	probeTimeout = 3 * time.Second
)

// probeImage is a flat multiboot (version 1) kernel: the header with the
// address fields (bit 16: loaded as it is at 1 MiB), then 32-bit code:
// mov dx,0xf4; mov al,0x31; out dx,al; cli; hlt; jmp $-1.
func probeImage() []byte {
	const load = 0x100000
	const magic, flags = 0x1BADB002, 0x00010000
	b := make([]byte, 64)
	le := binary.LittleEndian
	le.PutUint32(b[0:], magic)
	le.PutUint32(b[4:], flags)
	var sum uint32 = magic + flags
	le.PutUint32(b[8:], -sum)     // magic + flags + checksum = 0 (mod 2^32)
	le.PutUint32(b[12:], load)    // header_addr
	le.PutUint32(b[16:], load)    // load_addr
	le.PutUint32(b[20:], 0)       // load_end_addr: the whole file
	le.PutUint32(b[24:], 0)       // bss_end_addr: none
	le.PutUint32(b[28:], load+32) // entry_addr
	copy(b[32:], []byte{0x66, 0xba, 0xf4, 0x00, 0xb0, probeValue, 0xee, 0xfa, 0xf4, 0xeb, 0xfd})
	return b
}

// ProbeAccel runs the probe guest under accel ("kvm" or "tcg") and says
// whether it ran to its end within probeTimeout.
func ProbeAccel(ctx context.Context, accel string) error {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return errors.New("qemu-system-x86_64 not found")
	}
	f, err := os.CreateTemp("", "twlab-probe-*.bin")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(probeImage()); err != nil {
		f.Close()
		return err
	}
	f.Close()
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	args := append([]string{"-M", "pc", "-m", "16", "-nodefaults", "-display", "none", "-no-reboot",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", f.Name()}, accelArgs(accel)...)
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("a %s guest did not run to its end within %s", accel, probeTimeout)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == probeExit {
		return nil
	}
	return fmt.Errorf("%s probe guest: %v: %s", accel, err, lastLine(string(out)))
}

// ChooseAccel resolves "auto": KVM when a probe guest runs under it, else
// software emulation; it says why.
func ChooseAccel(ctx context.Context, want string) (string, string) {
	if want != "auto" {
		return want, "asked for"
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return "tcg", "no /dev/kvm"
	}
	if err := ProbeAccel(ctx, "kvm"); err != nil {
		return "tcg", "KVM unusable: " + err.Error()
	}
	return "kvm", "a probe guest ran under KVM"
}
