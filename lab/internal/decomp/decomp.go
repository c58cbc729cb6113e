// Package decomp opens the compressed streams twlab reads - kernel module
// files, kernel source tarballs, the frames a VM guest sends - with the
// decompressors built into twlab (no external tool).
//
// The kernel image's own payload is not among them: it needs the x86 BCJ
// filter in front of LZMA2, which lab/vm/pvh.go takes from another decoder.
package decomp

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Formats a Reader takes, by the names twlab uses for them.
const (
	None = ""
	Gzip = "gzip"
	XZ   = "xz"
	Zstd = "zstd"
)

// ByName is the format of a file by its name's ending (.gz/.tgz, .xz,
// .zst); None for any other.
func ByName(name string) string {
	switch {
	case strings.HasSuffix(name, ".gz"), strings.HasSuffix(name, ".tgz"):
		return Gzip
	case strings.HasSuffix(name, ".xz"):
		return XZ
	case strings.HasSuffix(name, ".zst"):
		return Zstd
	}
	return None
}

// Reader returns r decompressed as format. maxMem bounds what the zstd
// decoder may allocate for a window a damaged or hostile stream claims.
// Close releases the decoder (it does not close r).
func Reader(r io.Reader, format string, maxMem uint64) (io.ReadCloser, error) {
	switch format {
	case None:
		return io.NopCloser(r), nil
	case Gzip:
		return gzip.NewReader(bufio.NewReader(r))
	case XZ:
		xr, err := xz.NewReader(bufio.NewReader(r))
		if err != nil {
			return nil, err
		}
		return io.NopCloser(xr), nil
	case Zstd:
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxMem))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return nil, fmt.Errorf("compression %q not handled (gzip, xz and zstd are)", format)
}
