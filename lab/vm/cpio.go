package vm

import (
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// The initramfs is a "newc" cpio archive, the format the kernel unpacks into
// rootfs before running /init. Only regular files, directories and a few
// modes are needed, so the writer is a few lines rather than a dependency.

// entry is one file or directory of the archive.
type entry struct {
	name string
	mode uint32 // including the type bits
	data []byte
}

const (
	modeDir  = 0o040000
	modeFile = 0o100000
)

// archive collects entries and writes them with every parent directory.
type archive struct {
	entries map[string]entry
}

func newArchive() *archive { return &archive{entries: map[string]entry{}} }

func (a *archive) dir(name string) {
	name = strings.Trim(path.Clean("/"+name), "/")
	for name != "" && name != "." {
		if _, ok := a.entries[name]; !ok {
			a.entries[name] = entry{name: name, mode: modeDir | 0o755}
		}
		name = path.Dir(name)
	}
}

func (a *archive) file(name string, perm uint32, data []byte) {
	name = strings.Trim(path.Clean("/"+name), "/")
	a.dir(path.Dir(name))
	a.entries[name] = entry{name: name, mode: modeFile | perm, data: data}
}

// writeTo writes the archive, parents before children, and the trailer.
func (a *archive) writeTo(w io.Writer) (int64, error) {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	sort.Strings(names) // "a" sorts before "a/b": parents first
	cw := &countWriter{w: w}
	ino := uint32(1)
	for _, n := range names {
		e := a.entries[n]
		if err := writeHeader(cw, ino, e.mode, e.name, len(e.data)); err != nil {
			return cw.n, err
		}
		if _, err := cw.Write(e.data); err != nil {
			return cw.n, err
		}
		if err := pad(cw); err != nil {
			return cw.n, err
		}
		ino++
	}
	if err := writeHeader(cw, 0, 0, "TRAILER!!!", 0); err != nil {
		return cw.n, err
	}
	return cw.n, pad(cw)
}

func writeHeader(w *countWriter, ino, mode uint32, name string, size int) error {
	nlink := 1
	if mode&modeDir != 0 {
		nlink = 2
	}
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize, check
	_, err := fmt.Fprintf(w, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, name+"\x00"); err != nil {
		return err
	}
	return pad(w)
}

// pad aligns to 4 bytes, as newc requires after headers and data.
func pad(w *countWriter) error {
	if r := w.n % 4; r != 0 {
		_, err := w.Write(make([]byte, 4-r))
		return err
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
