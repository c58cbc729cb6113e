package capture

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// synFrame is an Ethernet/IPv4/TCP SYN; fragOff is the IPv4 fragment
// offset field (in 8-byte units).
func synFrame(fragOff uint16) []byte {
	f := make([]byte, 14+20+20)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 40)
	binary.BigEndian.PutUint16(ip[6:], fragOff)
	ip[9] = 6
	t := ip[20:]
	binary.BigEndian.PutUint16(t[0:], 50000)
	binary.BigEndian.PutUint16(t[2:], 8080)
	t[12] = 5 << 4
	t[13] = FlagSYN
	return f
}

// A later fragment of a datagram carries payload where a TCP header would
// be: it is no segment (it was counted as a SYN when its bytes looked like
// one).
func TestFragmentIsNoSegment(t *testing.T) {
	if s, ok := ParseTCP(synFrame(0)); !ok || s.Flags != FlagSYN || s.SrcPort != 50000 {
		t.Fatalf("a plain SYN: %+v %v", s, ok)
	}
	if s, ok := ParseTCP(synFrame(1480 / 8)); ok {
		t.Errorf("a fragment at offset 1480 read as a segment: %+v", s)
	}
}

// A file cut inside a record header is an error, not a shorter capture.
func TestTruncatedRecordHeader(t *testing.T) {
	var b []byte
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr, 0xa1b23c4d)
	b = append(b, hdr...)
	f := synFrame(0)
	rec := make([]byte, 16)
	binary.LittleEndian.PutUint32(rec[8:], uint32(len(f)))
	binary.LittleEndian.PutUint32(rec[12:], uint32(len(f)))
	b = append(append(b, rec...), f...)
	path := filepath.Join(t.TempDir(), "x.pcap")
	os.WriteFile(path, b, 0o644)
	if fr, err := ReadFile(path); err != nil || len(fr) != 1 {
		t.Fatalf("a whole file: %d frames, %v", len(fr), err)
	}
	os.WriteFile(path, append(b, 1, 2, 3, 4, 5, 6, 7, 8), 0o644)
	if fr, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("8 stray bytes after the last record: %d frames, %v; want a truncation error", len(fr), err)
	}
}
