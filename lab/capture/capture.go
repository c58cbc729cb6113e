// Package capture writes what crosses one lab link to a pcap file, so a
// teacher can open the exact SYN that was rejected in Wireshark.
//
// An AF_PACKET socket is opened inside the link's namespace and bound to the
// link; it sees packets in both directions. It is created with protocol 0,
// which receives nothing, and only bind() names ETH_P_ALL together with the
// link: a socket created for ETH_P_ALL would queue frames of every interface
// of the namespace between socket() and bind(). Frames carry the kernel's
// receive timestamp (SO_TIMESTAMPNS), not the time user space got to them,
// and the kernel's drop count (PACKET_STATISTICS) is read when the capture
// stops, so a capture that lost frames says so. Frames are cut to a snap
// length and the file stops growing at a packet and byte limit, so a long
// cell can never fill a disk. The file is written to a temporary name and
// renamed when the capture stops.
package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/tmpfile"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Limits bound one capture.
type Limits struct {
	Snaplen    int   // bytes kept per frame (headers of interest fit in 128)
	MaxPackets int   // frames written at most
	MaxBytes   int64 // file size at most
}

// DefaultLimits keep headers with room for TCP options and cap a file at 16 MiB.
var DefaultLimits = Limits{Snaplen: 160, MaxPackets: 200_000, MaxBytes: 16 << 20}

// Stats describe a finished capture (run.json records them as
// result.Capture).
type Stats struct {
	Path      string
	Link      string
	Packets   int
	Bytes     int64
	Truncated bool // a limit was reached; later frames were not written
	// NotWritten counts the frames seen after the limit was reached: how
	// much of the cell the file lacks (its end).
	NotWritten int
	// KernelDrops are frames the kernel could not queue to the capture
	// (PACKET_STATISTICS): they are in no file, and a count that should be
	// exact is not.
	KernelDrops uint64
	// UserTimestamps counts frames that came without a kernel timestamp
	// and carry the time they were read instead (none expected).
	UserTimestamps int
}

// Capture is a running capture.
type Capture struct {
	f    *os.File // the AF_PACKET socket
	out  *os.File
	w    *bufio.Writer
	tmp  string
	lim  Limits
	st   Stats
	done chan struct{}
	once sync.Once
	err  error
	// stopping tells the reader that the deadline which woke it is Stop's.
	stopping atomic.Bool
	// werr is the first failed write of the file (a full disk): the file
	// is incomplete from there on and is not put in place.
	werr error
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Start captures link in ns into path.
func Start(ns netns.NsHandle, link, path string, lim Limits) (*Capture, error) {
	if lim.Snaplen <= 0 {
		lim = DefaultLimits
	}
	var fd int
	opened := false
	err := netnsutil.Do(ns, func() error {
		ifi, err := net.InterfaceByName(link)
		if err != nil {
			return fmt.Errorf("find %s: %w", link, err)
		}
		// Protocol 0: nothing is queued until bind names the link.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		// Room for a burst while the reader is not scheduled: the default
		// (~208 KiB) holds a few hundred small frames, or three 64 KiB
		// segments that veth passes up unsplit. Best effort: a refusal
		// leaves the default, and drops are counted either way.
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			unix.Close(fd)
			return fmt.Errorf("packet socket: kernel timestamps: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket to %s: %w", link, err)
		}
		// Reset the kernel's counters: only drops from now on count.
		unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
		opened = true
		return nil
	})
	if err != nil {
		if opened { // made, but the thread could not switch back
			unix.Close(fd)
		}
		return nil, fmt.Errorf("capture: %w", err)
	}
	c := &Capture{f: os.NewFile(uintptr(fd), "packet:"+link), lim: lim, done: make(chan struct{})}
	c.st.Path, c.st.Link = path, link
	// Written under a temporary name, renamed when the capture stops; one
	// that a killed run left for this path goes first.
	tmpfile.Sweep(filepath.Dir(path), filepath.Base(path))
	c.out, err = tmpfile.Create(filepath.Dir(path), filepath.Base(path))
	if err != nil {
		c.f.Close()
		return nil, fmt.Errorf("capture: %w", err)
	}
	c.tmp = c.out.Name()
	c.w = bufio.NewWriterSize(c.out, 64<<10)
	c.writeHeader()
	go c.loop()
	return c, nil
}

// writeHeader writes a pcap global header with nanosecond timestamps.
func (c *Capture) writeHeader() {
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], 0xa1b23c4d) // nanosecond-resolution magic
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], uint32(c.lim.Snaplen))
	binary.LittleEndian.PutUint32(h[20:], 1) // LINKTYPE_ETHERNET
	c.w.Write(h[:])
	c.st.Bytes = 24
}

func (c *Capture) loop() {
	defer close(c.done)
	defer func() {
		if p := recover(); p != nil {
			c.err = fmt.Errorf("capture: internal error (panic): %v", p)
		}
	}()
	rc, err := c.f.SyscallConn()
	if err != nil {
		c.err = err
		return
	}
	buf := make([]byte, c.lim.Snaplen)
	oob := make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))))
	for {
		var n, oobn int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_TRUNC)
			return rerr != unix.EAGAIN
		})
		if err != nil {
			if c.stopping.Load() {
				c.drain(rc, buf, oob)
			}
			return
		}
		if rerr != nil {
			if errors.Is(rerr, unix.EINTR) || errors.Is(rerr, unix.ENETDOWN) {
				continue
			}
			c.err = rerr
			return
		}
		c.frame(buf, oob, n, oobn)
	}
}

// drain writes the frames the socket had already queued when Stop came:
// they were on the link while the capture ran (a last retransmitted SYN,
// a final RST), and closing the socket would drop them uncounted. It is
// bounded, so a link that keeps sending cannot hold Stop.
func (c *Capture) drain(rc syscall.RawConn, buf, oob []byte) {
	rc.Control(func(fd uintptr) {
		for range 1 << 16 {
			n, oobn, _, _, err := unix.Recvmsg(int(fd), buf, oob, unix.MSG_TRUNC|unix.MSG_DONTWAIT)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return // EAGAIN: nothing more queued
			}
			c.frame(buf, oob, n, oobn)
		}
	})
}

// frame writes one received frame of n bytes (buf holds what the snap
// length kept) with its control messages oob[:oobn].
func (c *Capture) frame(buf, oob []byte, n, oobn int) {
	if c.st.Truncated || c.werr != nil {
		c.st.NotWritten++
		return // keep draining so Stop is quick; write nothing more
	}
	capLen := min(n, len(buf))
	if c.st.Packets >= c.lim.MaxPackets || c.st.Bytes+16+int64(capLen) > c.lim.MaxBytes {
		c.st.Truncated = true
		c.st.NotWritten++
		return
	}
	at, ok := kernelTime(oob[:oobn])
	if !ok {
		at = time.Now()
		c.st.UserTimestamps++
	}
	var rec [16]byte
	binary.LittleEndian.PutUint32(rec[0:], uint32(at.Unix()))
	binary.LittleEndian.PutUint32(rec[4:], uint32(at.Nanosecond()))
	binary.LittleEndian.PutUint32(rec[8:], uint32(capLen))
	binary.LittleEndian.PutUint32(rec[12:], uint32(n))
	c.w.Write(rec[:])
	if _, err := c.w.Write(buf[:capLen]); err != nil { // bufio's error sticks: one check covers both
		c.werr = err
		c.st.NotWritten++
		return
	}
	c.st.Packets++
	c.st.Bytes += 16 + int64(capLen)
}

// kernelTime finds the SCM_TIMESTAMPNS control message of one frame.
func kernelTime(oob []byte) (time.Time, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			ts := *(*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
			return time.Unix(ts.Sec, ts.Nsec), true
		}
	}
	return time.Time{}, false
}

// Stop ends the capture and puts the file in place.
func (c *Capture) Stop() (Stats, error) {
	var errs []error
	c.once.Do(func() {
		// The reader is woken by a deadline, not by closing the socket, so
		// that it can first write what is still queued (drain); the kernel's
		// drop count is read after that, then the socket closed.
		c.stopping.Store(true)
		c.f.SetReadDeadline(time.Now())
		<-c.done
		if rc, err := c.f.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) {
				if st, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
					c.st.KernelDrops += uint64(st.Drops)
				}
			})
		}
		c.f.Close()
		flushErr := c.w.Flush()
		if c.werr != nil {
			flushErr = nil // bufio's sticky error: the same one again
		}
		errs = append(errs, c.err, c.werr, flushErr, c.out.Sync(), c.out.Close(), os.Chmod(c.tmp, 0o644))
		// A file that could not be written whole is not put in place: a
		// pcap cut in the middle of a frame under its final name (seen on
		// a full disk) reads as the capture of the cell.
		if errors.Join(errs...) != nil {
			os.Remove(c.tmp)
		} else if err := os.Rename(c.tmp, c.st.Path); err != nil {
			errs = append(errs, err)
			os.Remove(c.tmp)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return c.st, fmt.Errorf("capture %s: %w", c.st.Link, err)
	}
	return c.st, nil
}
