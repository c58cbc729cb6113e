package kbuild

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/twlab/twlab/lab/internal/decomp"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Source is a kernel source: a tree on disk or a tarball (.tar, .tar.gz,
// .tgz, .tar.xz), e.g. one downloaded from kernel.org.
type Source struct {
	Path    string
	Tarball bool
}

// ErrBadSource: what was given is not a kernel source (bad input).
var ErrBadSource = errors.New("not a kernel source")

// OpenSource checks what path is. A tree is checked here, before anything
// is hashed or copied: `kernel build .` in the wrong folder copied it whole
// and then named the cache's copy as "not a kernel tree".
func OpenSource(path string) (Source, error) {
	// The walks that hash and copy a tree do not enter a symlinked root: a
	// `linux -> linux-4.10.17` link hashed as one file and copied nothing.
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return Source{}, fmt.Errorf("kernel source %s: %w", path, err)
	}
	st, err := os.Stat(real)
	if err != nil {
		return Source{}, fmt.Errorf("kernel source %s: %w", path, err)
	}
	if st.IsDir() {
		if _, err := TreeRelease(real); err != nil {
			return Source{}, fmt.Errorf("kernel source %s: %w: want the top folder of a Linux tree (its Makefile sets VERSION and PATCHLEVEL)", path, ErrBadSource)
		}
		return Source{Path: real}, nil
	}
	switch {
	case strings.HasSuffix(path, ".tar"), strings.HasSuffix(path, ".tar.gz"), strings.HasSuffix(path, ".tgz"), strings.HasSuffix(path, ".tar.xz"):
		return Source{Path: real, Tarball: true}, nil
	}
	return Source{}, fmt.Errorf("kernel source %s: %w: want a kernel tree (a folder) or a tarball (.tar, .tar.gz, .tgz, .tar.xz)", path, ErrBadSource)
}

// Identity is a hash that changes when the source does: a tarball's bytes,
// or a tree's file names, sizes, modes and modification times (hashing
// every byte of a tree would take longer than it saves). .git is ignored.
// Hashing and unpacking hear ctx: a tarball of 100+ MiB takes the pure-Go
// xz decoder about a minute, and Ctrl-C must not wait it out.
func (s Source) Identity(ctx context.Context) (string, error) {
	h := sha256.New()
	if s.Tarball {
		f, err := os.Open(s.Path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		if _, err := io.Copy(h, ctxReader{ctx, f}); err != nil {
			return "", fmt.Errorf("hash %s: %w", s.Path, err)
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	var lines []string
	err := filepath.WalkDir(s.Path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.Path, p)
		lines = append(lines, fmt.Sprintf("%s\x00%d\x00%o\x00%d", rel, info.Size(), info.Mode(), info.ModTime().UnixNano()))
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", s.Path, err)
	}
	sort.Strings(lines)
	for _, l := range lines {
		io.WriteString(h, l+"\n")
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Unpack puts the source into dst (which must not exist): a tarball is
// extracted with its top folder stripped, a tree is copied. The user's own
// tree is never written: fixes and the build happen in the copy.
func (s Source) Unpack(ctx context.Context, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if !s.Tarball {
		return copyTree(ctx, s.Path, dst)
	}
	err := extract(ctx, s.Path, dst, true)
	if errors.Is(err, errNoTopFolder) {
		// `git archive HEAD` and `tar -C tree .` put the tree's files at
		// the top: stripping a folder mangled them (arch/x86 became x86).
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		return extract(ctx, s.Path, dst, false)
	}
	return err
}

// errNoTopFolder: the tarball's entries do not all sit in one top folder.
var errNoTopFolder = errors.New("no single top folder")

// ctxReader ends a read once ctx has ended.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}

// extract unpacks a tarball into dst, without its top folder if strip is
// set (errNoTopFolder if the entries have no single one).
func extract(ctx context.Context, path, dst string, strip bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := decomp.Reader(bufio.NewReaderSize(ctxReader{ctx, f}, 1<<20), decomp.ByName(path), 1<<30)
	if err != nil {
		return fmt.Errorf("%s: %w (%w)", path, ErrBadSource, err)
	}
	defer r.Close()
	// Every write goes through an os.Root of dst: the kernel doing the
	// path walk refuses what leaves the tree, so an entry that climbs out
	// through a symlink planted by an earlier entry (a/evil -> /etc, then
	// a/evil/cron.d/x) fails instead of writing outside as root.
	root, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer root.Close()
	var written int64
	var top string // the top folder, once the first entry has named it
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// A tarball cut short or not a tarball at all: bad input.
			return fmt.Errorf("%s: %w (%w)", path, ErrBadSource, err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader || h.Typeflag == tar.TypeXHeader {
			continue
		}
		rel, ok := strings.TrimPrefix(h.Name, "./"), rest(h.Name) != "" || !strip
		if strip {
			var t string
			t, rel = topOf(h.Name), rest(h.Name)
			if top == "" {
				top = t
			}
			if t != top || rel == "" && h.Typeflag != tar.TypeDir {
				return errNoTopFolder // a second top folder, or a file at the top
			}
		}
		if !ok || rel == "" {
			continue // the top folder itself
		}
		if _, err := inside(dst, rel); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		rel = filepath.Clean(rel)
		if h.Typeflag != tar.TypeDir {
			// A later entry replaces an earlier one of the same name, as
			// tar does: never write through what the earlier one was.
			if err := root.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%s: %s: %w", path, h.Name, err)
			}
			if dir := filepath.Dir(rel); dir != "." {
				if err := root.MkdirAll(dir, 0o755); err != nil {
					return fmt.Errorf("%s: %s: %w", path, h.Name, err)
				}
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = root.MkdirAll(rel, 0o755)
		case tar.TypeReg:
			if written += h.Size; written > maxUnpacked {
				return fmt.Errorf("%s: more than %d GiB unpacked: not a kernel source tree", path, maxUnpacked>>30)
			}
			err = writeFileIn(root, rel, tr, fs.FileMode(h.Mode)&0o777)
		case tar.TypeSymlink:
			err = root.Symlink(h.Linkname, rel)
		case tar.TypeLink:
			lrel := strings.TrimPrefix(h.Linkname, "./")
			if strip {
				if topOf(h.Linkname) != top || rest(h.Linkname) == "" {
					return fmt.Errorf("%s: hard link %s to %s", path, h.Name, h.Linkname)
				}
				lrel = rest(h.Linkname)
			}
			if _, err = inside(dst, lrel); err == nil {
				err = root.Link(filepath.Clean(lrel), rel)
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %s: %w", path, h.Name, err)
		}
	}
}

// maxUnpacked bounds what a source tarball may unpack to: a kernel tree is
// about 1.5 GiB; a decompression bomb must not fill the cache's disk.
const maxUnpacked = 8 << 30

func writeFileIn(root *os.Root, name string, r io.Reader, mode fs.FileMode) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode|0o200)
	if err != nil {
		return err
	}
	return fill(f, r)
}

// fill copies r into f and closes it.
func fill(f *os.File, r io.Reader) error {
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// topOf is the first component of a tarball entry ("linux-4.9.337" of
// "linux-4.9.337/Makefile"), rest what follows it ("Makefile").
func topOf(name string) string {
	t, _, _ := strings.Cut(strings.TrimPrefix(name, "./"), "/")
	return t
}

func rest(name string) string {
	_, r, _ := strings.Cut(strings.TrimPrefix(name, "./"), "/")
	return r
}

// inside joins rel to root and refuses a path that would leave it.
func inside(root, rel string) (string, error) {
	p := filepath.Join(root, rel)
	if !strings.HasPrefix(p, filepath.Clean(root)+string(filepath.Separator)) {
		return "", fmt.Errorf("entry %q leaves the tree", rel)
	}
	return p, nil
}

func writeFile(path string, r io.Reader, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode|0o200)
	if err != nil {
		return err
	}
	return fill(f, r)
}

func copyTree(ctx context.Context, src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." {
			return nil
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return writeFile(target, f, info.Mode().Perm())
		}
		return nil // sockets, devices: nothing a kernel tree needs
	})
}

var makeVarRE = regexp.MustCompile(`(?m)^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(\S*)\s*$`)

// TreeRelease reads VERSION.PATCHLEVEL.SUBLEVEL(EXTRAVERSION) from the top
// Makefile of a tree.
func TreeRelease(tree string) (string, error) {
	b, err := os.ReadFile(filepath.Join(tree, "Makefile"))
	if err != nil {
		return "", err
	}
	v := map[string]string{}
	for _, m := range makeVarRE.FindAllStringSubmatch(string(b), -1) {
		if _, seen := v[m[1]]; !seen {
			v[m[1]] = m[2]
		}
	}
	if v["VERSION"] == "" || v["PATCHLEVEL"] == "" {
		return "", fmt.Errorf("%s/Makefile: no VERSION/PATCHLEVEL: not a kernel tree", tree)
	}
	r := v["VERSION"] + "." + v["PATCHLEVEL"]
	if v["SUBLEVEL"] != "" {
		r += "." + v["SUBLEVEL"]
	}
	return r + v["EXTRAVERSION"], nil
}
