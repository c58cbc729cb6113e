package decomp

import (
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

func TestRoundTrip(t *testing.T) {
	want := bytes.Repeat([]byte("twlab "), 10_000)
	for _, f := range []string{None, Gzip, XZ, Zstd} {
		var buf bytes.Buffer
		var w io.WriteCloser
		switch f {
		case None:
			buf.Write(want)
		case Gzip:
			w = gzip.NewWriter(&buf)
		case XZ:
			w, _ = xz.NewWriter(&buf)
		case Zstd:
			w, _ = zstd.NewWriter(&buf)
		}
		if w != nil {
			w.Write(want)
			w.Close()
		}
		r, err := Reader(&buf, f, 1<<20)
		if err != nil {
			t.Fatalf("%q: %v", f, err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%q: %d bytes, %v", f, len(got), err)
		}
	}
	if _, err := Reader(strings.NewReader("x"), "lz4", 1<<20); err == nil {
		t.Error("lz4: no error")
	}
	if _, err := Reader(strings.NewReader("not gzip at all"), Gzip, 1<<20); err == nil {
		t.Error("a damaged gzip stream: no error")
	}
}

func TestByName(t *testing.T) {
	for name, want := range map[string]string{"veth.ko.zst": Zstd, "veth.ko.xz": XZ, "veth.ko.gz": Gzip, "linux.tgz": Gzip, "linux.tar": None, "veth.ko": None} {
		if got := ByName(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}
