package vm

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/therootcompany/xz"
	"golang.org/x/sys/unix"
)

// Under software emulation, decompressing the kernel dominates a boot (4 s
// of 6.1's 4.9 s here). QEMU can boot the uncompressed ELF inside a bzImage
// directly through its PVH entry point, so the payload is unpacked once and
// cached. Kernels without a PVH entry keep booting from the bzImage.

// maxImage bounds the size of a kernel image twlab reads.
const maxImage = 256 << 20

// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY, the PVH entry point.
const xenElfnotePhys32Entry = 18

// pvhImage returns a cached uncompressed kernel with a PVH entry for image,
// creating it if needed. What is cached is verified: the decompressed size
// must equal the one the kernel's build appended to the payload, and the ELF
// must carry the PVH note; a cached file that does not pass is made again.
// It is written under a temporary name and renamed, so a run killed
// mid-way leaves no half kernel that later boots would hang on.
func pvhImage(ctx context.Context, image string) (string, error) {
	// The image is read whole: a device or a huge file named by mistake
	// must be an error, not memory exhausted (bzImages are tens of MiB).
	if st, err := os.Stat(image); err != nil {
		return "", err
	} else if !st.Mode().IsRegular() || st.Size() > maxImage {
		return "", fmt.Errorf("%s: not a kernel image (a regular file of at most %d MiB)", image, maxImage>>20)
	}
	raw, err := os.ReadFile(image)
	if err != nil {
		return "", err
	}
	payload, err := bzPayload(raw)
	if err != nil {
		return "", err
	}
	if len(payload) < 4 {
		return "", errors.New("kernel payload too short")
	}
	// The build appends the uncompressed size (32-bit, little-endian).
	want := int64(binary.LittleEndian.Uint32(payload[len(payload)-4:]))
	sum := sha256.Sum256(raw)
	dir := filepath.Join(CacheDir, "pvh")
	cached := filepath.Join(dir, hex.EncodeToString(sum[:8])+".elf")
	removeStaleTemps(dir)
	if st, err := os.Stat(cached); err == nil {
		if st.Size() == want && cachedHasPVHNote(cached) {
			return cached, nil
		}
		os.Remove(cached) // truncated or foreign: make it again
	}
	out, err := decompress(payload)
	if err != nil {
		return "", err
	}
	if int64(len(out)) != want {
		return "", fmt.Errorf("unpacking the kernel gave %d bytes; its header says %d", len(out), want)
	}
	if !hasPVHNote(out) {
		return "", errors.New("no PVH entry point in the kernel")
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("kernel cache: %w", err)
	}
	if err := writeAtomic(cached, out); err != nil {
		return "", fmt.Errorf("kernel cache: %w%s", err, diskHint(dir))
	}
	return cached, nil
}

// decompress unpacks a kernel payload with the decompressors built into
// twlab; the kernel's trailing size word is not part of the stream.
func decompress(payload []byte) ([]byte, error) {
	stream := payload[:len(payload)-4]
	var r io.Reader
	switch {
	case bytes.HasPrefix(payload, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		// Kernels are xz'd with the x86 BCJ filter in front of LZMA2, which
		// takes a decoder that has filters (XZ Embedded's, in Go).
		xr, err := xz.NewReader(bytes.NewReader(stream), 0)
		if err != nil {
			return nil, fmt.Errorf("kernel payload (xz): %w", err)
		}
		xr.Multistream(false)
		r = xr
	case bytes.HasPrefix(payload, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(bytes.NewReader(stream), zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			return nil, fmt.Errorf("kernel payload (zstd): %w", err)
		}
		defer zr.Close()
		r = zr
	case bytes.HasPrefix(payload, []byte{0x1f, 0x8b}):
		// gzip's own trailer ends with the size: the whole payload is the
		// stream.
		gr, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, fmt.Errorf("kernel payload (gzip): %w", err)
		}
		gr.Multistream(false)
		r = gr
	default:
		return nil, errors.New("kernel payload compression not handled (xz, zstd and gzip are)")
	}
	// A kernel is tens of MiB; 512 MiB bounds a corrupt stream.
	out, err := io.ReadAll(io.LimitReader(r, 512<<20))
	if err != nil {
		return nil, fmt.Errorf("unpack the kernel: %w", err)
	}
	return out, nil
}

// writeAtomic writes b to path through a temporary file in the same folder
// whose name carries this process's pid, synced, then renamed.
func writeAtomic(path string, b []byte) error {
	// pid and a sequence number: two kernels of one run (one kernel named
	// twice, -j2) write the same entry at once, each into its own file.
	tmp := fmt.Sprintf("%s.tmp%d-%d", path, os.Getpid(), tmpSeq.Add(1))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	for len(b) > 0 && err == nil {
		n := min(len(b), 1<<20)
		_, err = f.Write(b[:n])
		b = b[n:]
		if writeChunkDelay > 0 {
			time.Sleep(writeChunkDelay)
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

var tmpSeq atomic.Int64

// writeChunkDelay slows writeAtomic down between 1 MiB chunks: a test kills
// a writer mid-way through it.
var writeChunkDelay time.Duration

// removeStaleTemps removes temporary files of processes that are gone (a
// run killed while writing the cache).
func removeStaleTemps(dir string) {
	tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp*"))
	for _, t := range tmps {
		i := strings.LastIndex(t, ".tmp")
		pidText, _, _ := strings.Cut(t[i+4:], "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || unix.Kill(pid, 0) == unix.ESRCH {
			os.Remove(t)
		}
	}
}

// bzPayload cuts the compressed kernel out of a bzImage (boot protocol
// 2.08+: payload_offset and payload_length in the setup header).
func bzPayload(b []byte) ([]byte, error) {
	if len(b) < 0x250 || string(b[0x202:0x206]) != "HdrS" {
		return nil, errors.New("not a bzImage")
	}
	if binary.LittleEndian.Uint16(b[0x206:]) < 0x208 {
		return nil, errors.New("boot protocol older than 2.08")
	}
	setup := int(b[0x1f1])
	if setup == 0 {
		setup = 4
	}
	off := (setup+1)*512 + int(binary.LittleEndian.Uint32(b[0x248:]))
	n := int(binary.LittleEndian.Uint32(b[0x24c:]))
	if off < 0 || n <= 0 || off+n > len(b) {
		return nil, errors.New("payload outside the image")
	}
	return b[off : off+n], nil
}

// hasPVHNote looks for XEN_ELFNOTE_PHYS32_ENTRY in the ELF's notes.
func hasPVHNote(b []byte) bool { return notesHavePVH(bytes.NewReader(b), int64(len(b))) }

// cachedHasPVHNote checks a cached kernel's note without reading the whole
// file: the headers and the notes are a few KiB of tens of MiB.
func cachedHasPVHNote(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	return err == nil && notesHavePVH(f, st.Size())
}

func notesHavePVH(r io.ReaderAt, size int64) bool {
	f, err := elf.NewFile(r)
	if err != nil {
		return false
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		// The sizes come from the image: a note claiming more than the
		// image holds is not read (make would panic or try exabytes).
		if p.Off > uint64(size) || p.Filesz > uint64(size)-p.Off {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			continue
		}
		for len(data) >= 12 {
			nsz := int(binary.LittleEndian.Uint32(data[0:]))
			dsz := int(binary.LittleEndian.Uint32(data[4:]))
			typ := binary.LittleEndian.Uint32(data[8:])
			name := (nsz + 3) &^ 3
			desc := (dsz + 3) &^ 3
			if 12+name > len(data) {
				break
			}
			if typ == xenElfnotePhys32Entry && bytes.HasPrefix(data[12:12+nsz], []byte("Xen")) {
				return true
			}
			if 12+name+desc > len(data) {
				break
			}
			data = data[12+name+desc:]
		}
	}
	return false
}
