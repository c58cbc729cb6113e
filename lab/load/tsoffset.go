package load

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Before Linux 4.10 a TCP socket's timestamp offset (tsoffset, there since
// 3.9 for connection repair) is left alone by connect(2): set in repair mode
// on a fresh socket, it moves that connection's whole timestamp clock, and
// the kernel itself takes it off the TSecr it receives. That gives exact
// clocks where the eBPF program cannot run (4.4 has no clsact qdisc and no
// bpf_skb_load_bytes). From 4.10 on, connect overwrites the offset with the
// kernel's own (random, or 0 with tcp_timestamps=2), so there only eBPF
// works; detection (kernel.Facts.SocketSkew) tells which applies. The load
// generator applies it (Config.SocketOffsets) since it makes the sockets.

// SetSocketOffset gives the not yet connected TCP socket fd a timestamp
// clock offsetTicks ahead of (or, negative, behind) the kernel's. It needs
// CAP_NET_ADMIN. Repair mode is left again before returning; leaving it
// clears SO_REUSEADDR, so set that afterwards.
func SetSocketOffset(fd int, offsetTicks int32) error {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, 1); err != nil {
		return fmt.Errorf("TCP_REPAIR on: %w", err)
	}
	now, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_TIMESTAMP)
	if err == nil {
		// tsoffset = value - the kernel's clock
		err = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_TIMESTAMP, int(uint32(now)+uint32(offsetTicks)))
	}
	if oerr := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, 0); err == nil && oerr != nil {
		err = fmt.Errorf("TCP_REPAIR off: %w", oerr)
	}
	if err != nil {
		return fmt.Errorf("socket timestamp offset: %w", err)
	}
	return nil
}
