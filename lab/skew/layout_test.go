package skew_test

import (
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/capture"
	"github.com/twlab/twlab/lab/internal/labtest"
	"github.com/twlab/twlab/lab/netnsutil"
	"github.com/twlab/twlab/lab/skew"
	"github.com/twlab/twlab/lab/topo"
	"golang.org/x/sys/unix"
)

// csum16 is the Internet checksum's folded one's complement sum.
func csum16(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return sum
}

func tcpChecksumOK(src, dst [4]byte, seg []byte) bool {
	var ph [12]byte
	copy(ph[0:], src[:])
	copy(ph[4:], dst[:])
	ph[9] = unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(ph[10:], uint16(len(seg)))
	return csum16(csum16(0, ph[:]), seg) == 0xffff
}

// synWithOptions is an IPv4 SYN (header without options, checksum left to
// the kernel) carrying opts, whose timestamp option has TSval tsval.
func synWithOptions(src, dst [4]byte, sport uint16, opts []byte) []byte {
	tcp := make([]byte, 20+len(opts))
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], 80)
	binary.BigEndian.PutUint32(tcp[4:], 1000)
	tcp[12] = byte((20+len(opts))/4) << 4
	tcp[13] = 0x02 // SYN
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	copy(tcp[20:], opts)
	var ph [12]byte
	copy(ph[0:], src[:])
	copy(ph[4:], dst[:])
	ph[9] = unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(ph[10:], uint16(len(tcp)))
	binary.BigEndian.PutUint16(tcp[16:], ^uint16(csum16(csum16(0, ph[:]), tcp)))
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
	ip[8] = 64
	ip[9] = unix.IPPROTO_TCP
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	return append(ip, tcp...)
}

// TestChecksumEveryOptionLayout: the egress program rewrites TSval wherever
// the timestamp option sits and the TCP checksum stays right. Linux puts
// the option at an even offset; another stack may not (MSS, NOP, TS puts it
// at 5), and there the checksum fix must treat the field's bytes as the
// other halves of their 16-bit words.
func TestChecksumEveryOptionLayout(t *testing.T) {
	l := labtest.Routed(t, 1)
	c := l.Clients[0]
	const offset = -60000
	a, err := skew.Attach(c.NS, c.Link, offset)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	pcap := filepath.Join(t.TempDir(), "server.pcap")
	capt, err := capture.Start(l.Server.NS, l.Server.Link, pcap, capture.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	ts := func(v uint32) []byte {
		b := []byte{8, 10, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[2:], v)
		return b
	}
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		for len(out)%4 != 0 {
			out = append(out, 0) // EOL padding
		}
		return out
	}
	mss := []byte{2, 4, 0x05, 0xb4}
	layouts := map[uint16][]byte{ // source port: options
		40000: cat(ts(1000000)),                                                  // TS at 0
		40001: cat([]byte{1}, ts(1000001)),                                       // at 1
		40002: cat([]byte{1, 1}, ts(1000002)),                                    // at 2
		40003: cat([]byte{1, 1, 1}, ts(1000003)),                                 // at 3
		40005: cat(mss, []byte{1}, ts(1000005)),                                  // at 5
		40006: cat(mss, []byte{1, 1}, ts(0xffffffff-1000)),                       // at 6, TSval wraps
		40007: cat(mss, []byte{1, 1, 1}, ts(0x00ff00ff)),                         // at 7
		40009: cat(mss, mss, []byte{1}, ts(1000009)),                             // at 9
		40030: cat(mss, mss, mss, mss, mss, mss, mss, []byte{1, 1}, ts(1000030)), // at 30
	}
	var src, dst [4]byte
	copy(src[:], c.Addr.To4())
	copy(dst[:], topo.ServerAddr.To4())
	err = netnsutil.Do(c.NS, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Addr: dst}
		for sport, opts := range layouts {
			if err := unix.Sendto(fd, synWithOptions(src, dst, sport, opts), 0, to); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := capt.Stop(); err != nil {
		t.Fatal(err)
	}
	frames, err := capture.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint16]bool{}
	for _, f := range frames {
		s, ok := capture.ParseTCP(f.Data)
		if !ok || s.Flags != capture.FlagSYN || layouts[s.SrcPort] == nil {
			continue
		}
		seen[s.SrcPort] = true
		opts := layouts[s.SrcPort]
		var sent uint32
		for i := 0; i+10 <= len(opts); i++ {
			if opts[i] == 8 && opts[i+1] == 10 {
				sent = binary.BigEndian.Uint32(opts[i+2:])
				break
			}
		}
		if want := uint32(int64(sent) + offset); !s.HasTS || s.TSval != want {
			t.Errorf("port %d: TSval %d (has %v), want %d", s.SrcPort, s.TSval, s.HasTS, want)
		}
		seg := f.Data[14+20:]
		if !tcpChecksumOK(src, dst, seg) {
			t.Errorf("port %d (timestamp option at a %s offset): TCP checksum wrong after the rewrite", s.SrcPort, map[bool]string{true: "odd", false: "even"}[(s.SrcPort%2) == 1])
		}
	}
	if len(seen) != len(layouts) {
		t.Errorf("captured %d of %d SYNs", len(seen), len(layouts))
	}
}
