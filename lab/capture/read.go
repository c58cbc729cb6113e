package capture

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"time"
)

// Frame is one captured frame.
type Frame struct {
	Time    time.Time
	Data    []byte
	OrigLen int
}

// ReadFile reads a pcap file written by Capture (nanosecond or microsecond
// little-endian pcap, Ethernet).
func ReadFile(path string) ([]Frame, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 24 {
		return nil, fmt.Errorf("%s: too short for a pcap header", path)
	}
	var nsec bool
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b23c4d:
		nsec = true
	case 0xa1b2c3d4:
	default:
		return nil, fmt.Errorf("%s: not a little-endian pcap file", path)
	}
	var out []Frame
	p := 24
	for p+16 <= len(b) {
		sec := binary.LittleEndian.Uint32(b[p:])
		frac := binary.LittleEndian.Uint32(b[p+4:])
		caplen := int(binary.LittleEndian.Uint32(b[p+8:]))
		orig := int(binary.LittleEndian.Uint32(b[p+12:]))
		p += 16
		if p+caplen > len(b) {
			return out, fmt.Errorf("%s: truncated record", path)
		}
		if !nsec {
			frac *= 1000
		}
		out = append(out, Frame{Time: time.Unix(int64(sec), int64(frac)), Data: b[p : p+caplen], OrigLen: orig})
		p += caplen
	}
	if p != len(b) {
		return out, fmt.Errorf("%s: truncated record header (%d stray bytes at the end)", path, len(b)-p)
	}
	return out, nil
}

// TCP flags.
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagACK = 0x10
)

// Segment is the TCP view of a frame.
type Segment struct {
	Src, Dst         net.IP
	SrcPort, DstPort uint16
	Flags            uint8
	Seq, Ack         uint32
	HasTS            bool
	TSval, TSecr     uint32
	PayloadLen       int
}

// ParseTCP decodes an Ethernet/IPv4/TCP frame; ok is false for anything else.
func ParseTCP(f []byte) (s Segment, ok bool) {
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return s, false
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || ip[9] != 6 || len(ip) < ihl+20 {
		return s, false
	}
	if binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
		return s, false // a later fragment: its bytes are payload, not a TCP header
	}
	total := int(binary.BigEndian.Uint16(ip[2:]))
	t := ip[ihl:]
	doff := int(t[12]>>4) * 4
	s = Segment{Src: net.IP(ip[12:16]), Dst: net.IP(ip[16:20]),
		SrcPort: binary.BigEndian.Uint16(t[0:]), DstPort: binary.BigEndian.Uint16(t[2:]),
		Seq: binary.BigEndian.Uint32(t[4:]), Ack: binary.BigEndian.Uint32(t[8:]), Flags: t[13],
		PayloadLen: total - ihl - doff}
	if doff < 20 || len(t) < doff {
		return s, true // options cut by the snap length
	}
	opts := t[20:doff]
	for i := 0; i < len(opts); {
		switch opts[i] {
		case 0:
			return s, true
		case 1:
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return s, true
		}
		if opts[i] == 8 && opts[i+1] == 10 {
			s.HasTS = true
			s.TSval = binary.BigEndian.Uint32(opts[i+2:])
			s.TSecr = binary.BigEndian.Uint32(opts[i+6:])
		}
		i += int(opts[i+1])
	}
	return s, true
}
