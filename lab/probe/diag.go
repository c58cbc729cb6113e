package probe

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// /proc/net/sockstat's "tw" is the count of the namespace's TIME_WAIT
// sockets only on kernels with per-namespace TIME_WAIT accounting; before,
// every namespace shows the machine's total. A sock_diag dump of the
// namespace's TIME_WAIT sockets is right on every kernel (inet_diag since
// 2.6, SOCK_DIAG_BY_FAMILY since 3.3), at the price of one message per
// socket. The netlink socket is created inside the namespace and keeps it.

const (
	tcpTimeWait = 6 // TCP_TIME_WAIT in the kernel's TCP state numbering
	tcpFinWait2 = 5
	// diagTimerTW is inet_diag_msg's idiag_timer of a timewait socket.
	diagTimerTW = 3

	sizeofNlMsghdr     = 16
	sizeofInetDiagReq2 = 56 // family, protocol, ext, pad, states, inet_diag_sockid (48)
)

// diagSocket is a NETLINK_SOCK_DIAG socket of one namespace.
type diagSocket struct {
	fd  int
	seq uint32
	buf []byte
}

func openDiag() (*diagSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sock_diag bind: %w", err)
	}
	// A dump can be long; a receive timeout bounds a kernel that never
	// ends it.
	tv := unix.Timeval{Sec: 2}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return &diagSocket{fd: fd, buf: make([]byte, 64<<10)}, nil
}

func (d *diagSocket) close() {
	if d != nil && d.fd >= 0 {
		unix.Close(d.fd)
		d.fd = -1
	}
}

// countTimeWait dumps the namespace's timewait sockets, IPv4 and IPv6, and
// counts them: what sockstat's "tw" counts where it is per namespace. The
// kernel filters a timewait socket by its substate, so an orphaned
// FIN_WAIT2 one (the active closer waiting for the peer's FIN) is asked for
// too and told from a full FIN_WAIT2 socket by its timer.
func (d *diagSocket) countTimeWait() (int, error) {
	total := 0
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		n, err := d.dump(fam, 1<<tcpTimeWait|1<<tcpFinWait2)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// dump sends one inet_diag_req_v2 dump request and counts the sockets of
// the requested states in the answer.
func (d *diagSocket) dump(family uint8, states uint32) (int, error) {
	d.seq++
	req := make([]byte, sizeofNlMsghdr+sizeofInetDiagReq2)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], d.seq)
	r := req[sizeofNlMsghdr:]
	r[0], r[1] = family, unix.IPPROTO_TCP
	ne.PutUint32(r[4:], states)
	if err := unix.Sendto(d.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("sock_diag request: %w", err)
	}
	count := 0
	for {
		n, _, err := unix.Recvfrom(d.fd, d.buf, 0)
		if err != nil {
			return 0, fmt.Errorf("sock_diag dump: %w", err)
		}
		done, c, err := countDiagMessages(d.buf[:n], d.seq)
		count += c
		if err != nil || done {
			return count, err
		}
	}
}

// countDiagMessages counts the inet_diag_msg answers of sequence seq in one
// datagram of netlink messages that are timewait sockets (in substate
// TIME_WAIT or FIN_WAIT2), and says whether the dump ended.
func countDiagMessages(b []byte, seq uint32) (done bool, count int, err error) {
	ne := binary.NativeEndian
	for len(b) >= sizeofNlMsghdr {
		l := int(ne.Uint32(b[0:]))
		typ := ne.Uint16(b[4:])
		mseq := ne.Uint32(b[8:])
		if l < sizeofNlMsghdr || l > len(b) {
			return true, count, errors.New("sock_diag: malformed netlink message")
		}
		body := b[sizeofNlMsghdr:l]
		if mseq == seq {
			switch typ {
			case unix.NLMSG_DONE:
				return true, count, nil
			case unix.NLMSG_ERROR:
				if len(body) >= 4 {
					if e := int32(ne.Uint32(body)); e != 0 {
						return true, count, fmt.Errorf("sock_diag: %w", unix.Errno(-e))
					}
				}
				return true, count, nil
			case unix.SOCK_DIAG_BY_FAMILY:
				// inet_diag_msg: family, state, timer, retrans, …
				if len(body) >= 3 && (body[1] == tcpTimeWait || body[1] == tcpFinWait2) && body[2] == diagTimerTW {
					count++
				}
			}
		}
		next := (l + 3) &^ 3
		if next > len(b) {
			break
		}
		b = b[next:]
	}
	return false, count, nil
}
