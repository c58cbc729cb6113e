package kbuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/internal/flock"
	"github.com/ulikunitz/xz"
)

const relocs410 = `static const char *rel_type(unsigned type)
{
	static const char *type_name[] = {
		REL_TYPE(R_X86_64_PC32),
		REL_TYPE(R_X86_64_PLT32),
	};
}

static int do_reloc64(struct section *sec, Elf_Rel *rel, ElfW(Sym) *sym,
		      const char *symname)
{
	switch (r_type) {
	case R_X86_64_NONE:
		break;
	case R_X86_64_PC32:
		/*
		 * PC relative relocations don't need to be adjusted unless
		 * referencing a percpu symbol.
		 */
		if (is_percpu_sym(sym, symname))
			add_reloc(&relocs32neg, offset);
		break;
`

func fakeTree(t *testing.T, relocs string) string {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "arch/x86/tools"), 0o755)
	os.WriteFile(filepath.Join(dir, "Makefile"), []byte("VERSION = 4\nPATCHLEVEL = 9\nSUBLEVEL = 337\nEXTRAVERSION =\nNAME = Roaring Lionus\n"), 0o644)
	if relocs != "" {
		os.WriteFile(filepath.Join(dir, "arch/x86/tools/relocs.c"), []byte(relocs), 0o644)
	}
	return dir
}

func TestRelocsFix(t *testing.T) {
	tree := fakeTree(t, relocs410)
	applied, err := ApplyFixes(tree)
	if err != nil || len(applied) != 1 {
		t.Fatalf("applied %v, %v", applied, err)
	}
	b, _ := os.ReadFile(filepath.Join(tree, "arch/x86/tools/relocs.c"))
	if !strings.Contains(string(b), "\tcase R_X86_64_PC32:\n\tcase R_X86_64_PLT32:\n\t\t/*") {
		t.Errorf("PLT32 not next to PC32:\n%s", b)
	}
	// A second pass, or a tree that has the upstream fix, is left alone.
	if applied, err := ApplyFixes(tree); err != nil || len(applied) != 0 {
		t.Errorf("second pass applied %v, %v", applied, err)
	}
	// No relocs.c (another architecture's tree, or a stripped one): nothing.
	if applied, err := ApplyFixes(fakeTree(t, "")); err != nil || len(applied) != 0 {
		t.Errorf("tree without relocs.c: %v, %v", applied, err)
	}
	// A relocs.c of an unknown shape is an error, not a silent no-op.
	if _, err := ApplyFixes(fakeTree(t, "int main(void) { return 0; }\n")); err == nil {
		t.Error("relocs.c without a PC32 case accepted")
	}
}

func TestTreeRelease(t *testing.T) {
	r, err := TreeRelease(fakeTree(t, ""))
	if err != nil || r != "4.9.337" {
		t.Errorf("release %q, %v", r, err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Makefile"), []byte("all:\n\techo hi\n"), 0o644)
	if _, err := TreeRelease(dir); err == nil {
		t.Error("a Makefile without VERSION taken for a kernel tree")
	}
}

// tarball writes a kernel.org-like tarball (one top folder) of files.
func tarball(t *testing.T, name string, files map[string]string, extra ...*tar.Header) string {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "6962d94c"}})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "linux-4.9.337/", Mode: 0o755})
	for n, body := range files {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "linux-4.9.337/" + n, Mode: 0o644, Size: int64(len(body))})
		tw.Write([]byte(body))
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "linux-4.9.337/link", Linkname: "Makefile"})
	for _, h := range extra {
		tw.WriteHeader(h)
	}
	tw.Close()
	path := filepath.Join(t.TempDir(), name)
	var out bytes.Buffer
	switch {
	case strings.HasSuffix(name, ".gz"):
		zw := gzip.NewWriter(&out)
		zw.Write(raw.Bytes())
		zw.Close()
	case strings.HasSuffix(name, ".xz"):
		zw, _ := xz.NewWriter(&out)
		zw.Write(raw.Bytes())
		zw.Close()
	default:
		out = raw
	}
	os.WriteFile(path, out.Bytes(), 0o644)
	return path
}

func TestUnpackTarballs(t *testing.T) {
	files := map[string]string{"Makefile": "VERSION = 4\nPATCHLEVEL = 9\nSUBLEVEL = 337\n", "arch/x86/tools/relocs.c": relocs410}
	for _, name := range []string{"linux.tar", "linux.tar.gz", "linux.tar.xz"} {
		src, err := OpenSource(tarball(t, name, files))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(t.TempDir(), "tree")
		if err := src.Unpack(context.Background(), dst); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r, err := TreeRelease(dst); err != nil || r != "4.9.337" {
			t.Errorf("%s: release %q, %v", name, r, err)
		}
		if l, err := os.Readlink(filepath.Join(dst, "link")); err != nil || l != "Makefile" {
			t.Errorf("%s: symlink %q, %v", name, l, err)
		}
	}
	evil := tarball(t, "evil.tar", files, &tar.Header{Typeflag: tar.TypeReg, Name: "linux-4.9.337/../../escape", Mode: 0o644})
	src, _ := OpenSource(evil)
	if err := src.Unpack(context.Background(), filepath.Join(t.TempDir(), "tree")); err == nil || !strings.Contains(err.Error(), "leaves the tree") {
		t.Errorf("an entry leaving the tree: %v", err)
	}
	// An entry may not climb out through a symlink an earlier entry
	// planted, nor write through a link of its own name.
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	os.WriteFile(victim, []byte("keep"), 0o644)
	climb := tarball(t, "climb.tar", files,
		&tar.Header{Typeflag: tar.TypeSymlink, Name: "linux-4.9.337/evil", Linkname: outside},
		&tar.Header{Typeflag: tar.TypeReg, Name: "linux-4.9.337/evil/planted", Mode: 0o644})
	src, _ = OpenSource(climb)
	if err := src.Unpack(context.Background(), filepath.Join(t.TempDir(), "tree")); err == nil {
		t.Error("an entry written through a symlink to outside the tree was accepted")
	}
	if _, err := os.Stat(filepath.Join(outside, "planted")); err == nil {
		t.Error("a file was written outside the tree through a symlink")
	}
	over := tarball(t, "over.tar", files,
		&tar.Header{Typeflag: tar.TypeSymlink, Name: "linux-4.9.337/m2", Linkname: victim},
		&tar.Header{Typeflag: tar.TypeReg, Name: "linux-4.9.337/m2", Mode: 0o644})
	src, _ = OpenSource(over)
	dst := filepath.Join(t.TempDir(), "tree")
	if err := src.Unpack(context.Background(), dst); err != nil {
		t.Errorf("a file replacing a symlink of the same name: %v", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("the file a symlink pointed to was overwritten: %q", b)
	}
	if fi, err := os.Lstat(filepath.Join(dst, "m2")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("m2 should be the later, regular entry: %v %v", fi, err)
	}
	if _, err := OpenSource(filepath.Join(t.TempDir(), "x.zip")); err == nil {
		t.Error("a missing .zip accepted")
	}
}

func TestIdentityFollowsTheTree(t *testing.T) {
	tree := fakeTree(t, relocs410)
	src, _ := OpenSource(tree)
	a, err := src.Identity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := src.Identity(context.Background()); a != b {
		t.Error("identity of an unchanged tree changed")
	}
	os.WriteFile(filepath.Join(tree, "arch/x86/tools/relocs.c"), []byte(relocs410+"\n"), 0o644)
	if b, _ := src.Identity(context.Background()); a == b {
		t.Error("identity did not change with a file")
	}
}

func TestDropped(t *testing.T) {
	cfg := map[string]string{"CONFIG_VETH": "y", "CONFIG_NFT_OBJREF": "m"}
	got := dropped("# c\nCONFIG_VETH=y\nCONFIG_NFT_OBJREF=y\nCONFIG_NFT_CHAIN_NAT=y\n", cfg)
	if strings.Join(got, " ") != "CONFIG_NFT_CHAIN_NAT CONFIG_NFT_OBJREF" {
		t.Errorf("dropped %v", got)
	}
	for _, e := range Essential {
		if !strings.Contains(Fragment, e+"=y") {
			t.Errorf("essential %s is not in the fragment", e)
		}
	}
}

func TestMissingToolsAreNamed(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	tree := fakeTree(t, "") // no shipped kconfig parser: flex and bison needed
	err := CheckTools(tree)
	if !errors.Is(err, ErrNoTool) {
		t.Fatalf("%v", err)
	}
	for _, want := range []string{"flex", "bison", "bc", "apt-get install"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not name %s", err, want)
		}
	}
}

// builtTree is a tree as a finished build leaves it, and its build log:
// what install takes into the cache.
func builtTree(t *testing.T) (tree, log string) {
	t.Helper()
	tree = fakeTree(t, "")
	os.MkdirAll(filepath.Join(tree, "arch/x86/boot"), 0o755)
	os.WriteFile(filepath.Join(tree, "arch/x86/boot/bzImage"), fakeBzImage(0), 0o644)
	os.WriteFile(filepath.Join(tree, ".config"), []byte("CONFIG_VETH=y\n"), 0o644)
	log = filepath.Join(t.TempDir(), "log")
	os.WriteFile(log, []byte("make\n"), 0o644)
	return tree, log
}

func TestListAndFind(t *testing.T) {
	cache := t.TempDir()
	tree, log := builtTree(t)
	k := &Kernel{Release: "4.9.337", Key: "0123456789abcdef"}
	if err := install(cache, tree, k, log, "src"); err != nil {
		t.Fatal(err)
	}
	f, err := Find(cache, "4.9.337")
	if err != nil || f.Image != k.Image {
		t.Errorf("find: %+v, %v", f, err)
	}
	if _, err := Find(cache, "4.4.1"); err == nil || !strings.Contains(err.Error(), "built: 4.9.337") {
		t.Errorf("find a missing release: %v", err)
	}
	// A half-installed kernel is never listed.
	os.MkdirAll(filepath.Join(BuiltDir(cache), "4.4.1-aaaaaaaa.tmp"), 0o755)
	if n := len(List(cache)); n != 1 {
		t.Errorf("%d kernels listed", n)
	}
}

// `twlab kernel list` shows releases in version order: 4.10 after 4.9,
// which a string sort puts first.
func TestListVersionOrder(t *testing.T) {
	cache := t.TempDir()
	tree, log := builtTree(t)
	for i, rel := range []string{"4.10.17", "4.9.337", "4.4.302", "5.4.1"} {
		k := &Kernel{Release: rel, Key: fmt.Sprintf("%016x", i+1)}
		if err := install(cache, tree, k, log, "src"); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, k := range List(cache) {
		got = append(got, k.Release)
	}
	if want := []string{"4.4.302", "4.9.337", "4.10.17", "5.4.1"}; !slices.Equal(got, want) {
		t.Errorf("listed %v, want %v", got, want)
	}
}

func TestVersionLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"4.9.337", "4.10.17", true},
		{"4.10.17", "4.9.337", false},
		{"linux-image-6.1.0-9-amd64", "linux-image-6.1.0-56-amd64", true},
		{"4.10", "4.10.1", true},
		{"4.10.0-rc1", "4.10.0-rc2", true},
		{"4.10.17", "4.10.17", false},
		{"4.10.17+", "4.10.17", false}, // same numbers: compared as strings, total
		{"4.10.17", "4.10.17+", true},
		{"99999999999999999999999", "5", false},
	} {
		if got := VersionLess(c.a, c.b); got != c.want {
			t.Errorf("VersionLess(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// fakeToolchain puts a make into PATH that does what a kernel's does to
// the files Build reads (.config, the bzImage, include/config/kernel.release),
// and stand-ins for the other tools CheckTools asks for.
func fakeToolchain(t *testing.T, release string) {
	t.Helper()
	bin := t.TempDir()
	bz := filepath.Join(t.TempDir(), "bzImage")
	os.WriteFile(bz, fakeBzImage(0), 0o644)
	mk := `#!/bin/sh
tree=$2
for a; do target=$a; done
case $target in
tinyconfig) echo CONFIG_64BIT=y > "$tree/.config" ;;
olddefconfig) ;;
bzImage)
	echo "  CC      init/main.o"
	mkdir -p "$tree/arch/x86/boot" "$tree/include/config"
	cp ` + bz + ` "$tree/arch/x86/boot/bzImage"
	echo ` + release + ` > "$tree/include/config/kernel.release" ;;
*) exit 2 ;;
esac
`
	os.WriteFile(filepath.Join(bin, "make"), []byte(mk), 0o755)
	for _, tool := range []string{"gcc", "ld", "bc", "perl", "flex", "bison"} {
		os.WriteFile(filepath.Join(bin, tool), []byte("#!/bin/sh\nexit 0\n"), 0o755)
	}
	t.Setenv("PATH", bin+":/usr/bin:/bin")
}

// A tree with a localversion file (an -rt tree, say) boots as
// 4.9.337-rt1: the cache and built:RELEASE must call it that, not what
// the Makefile alone says.
func TestBuildTakesTheKernelsRelease(t *testing.T) {
	fakeToolchain(t, "4.9.337-rt1")
	cache := t.TempDir()
	k, err := Build(context.Background(), Options{Source: fakeTree(t, ""), CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if k.Release != "4.9.337-rt1" {
		t.Errorf("release %q, want 4.9.337-rt1", k.Release)
	}
	if f, err := Find(cache, "4.9.337-rt1"); err != nil || f.Image != k.Image {
		t.Errorf("find built:4.9.337-rt1: %+v, %v", f, err)
	}
}

// TestBuildRealKernel builds a lab kernel from $TWLAB_KERNEL_SRC (a tree or
// tarball; a few minutes on 2 cores) and then finds it in the cache.
func TestBuildRealKernel(t *testing.T) {
	src := os.Getenv("TWLAB_KERNEL_SRC")
	if src == "" {
		t.Skip("no kernel source given (TWLAB_KERNEL_SRC: a kernel tree or kernel.org tarball)")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	cache := t.TempDir()
	var msgs []string
	k, err := Build(context.Background(), Options{Source: src, CacheDir: cache, Progress: func(m string) { msgs = append(msgs, m); t.Log(m) }})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(k.Image); err != nil || len(b) < 512 || string(b[0x202:0x206]) != "HdrS" {
		t.Errorf("%s is not a bzImage (%v)", k.Image, err)
	}
	again, err := Build(context.Background(), Options{Source: src, CacheDir: cache})
	if err != nil || !again.Cached || again.Image != k.Image {
		t.Errorf("second build: %+v, %v (want the cached one)", again, err)
	}
}

// The compiler is kept with the kernel (a regression seen in one build only
// may be the compiler's), on one line whatever gcc printed.
func TestCompilerRecorded(t *testing.T) {
	cache := t.TempDir()
	tree, log := builtTree(t)
	k := &Kernel{Release: "4.9.337", Key: "abcd000000000000", Compiler: "gcc (Debian 12.2.0-14)\n 12.2.0"}
	if err := install(cache, tree, k, log, "src"); err != nil {
		t.Fatal(err)
	}
	ks := List(cache)
	if len(ks) != 1 || ks[0].Compiler != "gcc (Debian 12.2.0-14) 12.2.0" || ks[0].Release != "4.9.337" {
		t.Fatalf("listed %+v; want one 4.9.337 kernel with its compiler on one line", ks)
	}
	if _, err := exec.LookPath("gcc"); err == nil && !strings.HasPrefix(compilerVersion(context.Background()), "gcc") {
		t.Errorf("compilerVersion() = %q, want gcc's first line", compilerVersion(context.Background()))
	}
}

// Two builds of one release (an edited tree): built:RELEASE is the newer,
// whatever order their directories (named by key hashes) come in.
func TestFindNewestOfARelease(t *testing.T) {
	cache := t.TempDir()
	tree, log := builtTree(t)
	now := time.Now()
	for i, key := range []string{"ffff000000000000", "0000ffff00000000", "8888000000000000"} {
		k := &Kernel{Release: "4.10.17", Key: key}
		if err := install(cache, tree, k, log, "src"); err != nil {
			t.Fatal(err)
		}
		// installed in this order, an hour apart: the middle key is newest
		at := now.Add(time.Duration([]int{-2, 0, -1}[i]) * time.Hour)
		if err := os.Chtimes(filepath.Join(k.Dir, "build.txt"), at, at); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Find(cache, "4.10.17")
	if err != nil || f.Key != "0000ffff00000000" {
		t.Fatalf("found %+v, %v; want the newest build, key 0000ffff00000000", f, err)
	}
}

// Ctrl-C stops hashing and unpacking: both hear the context (a big .tar.xz
// takes the Go decoder about a minute).
func TestHashAndUnpackHearCancel(t *testing.T) {
	files := map[string]string{"Makefile": "VERSION = 4\nPATCHLEVEL = 9\nSUBLEVEL = 337\n"}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, path := range []string{tarball(t, "linux.tar.xz", files), fakeTree(t, "")} {
		src, err := OpenSource(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.Identity(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: hash after cancel: %v", path, err)
		}
		if err := src.Unpack(ctx, filepath.Join(t.TempDir(), "tree")); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: unpack after cancel: %v", path, err)
		}
	}
}

// fakeBzImage is a bzImage header of one setup sector and no payload,
// short by cut bytes.
func fakeBzImage(cut int) []byte {
	b := make([]byte, 1024)
	b[0x1f1] = 1
	copy(b[0x202:], "HdrS")
	return b[:len(b)-cut]
}

// git archive and tar -C tree . put the files at the top: stripping a
// folder turned arch/x86 into x86 and lost the Makefile.
func TestUnpackToplessTarballs(t *testing.T) {
	for _, prefix := range []string{"", "./"} {
		var raw bytes.Buffer
		tw := tar.NewWriter(&raw)
		if prefix != "" {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755})
		}
		for n, body := range map[string]string{"arch/x86/Makefile": "x", "Makefile": "VERSION = 4\nPATCHLEVEL = 9\nSUBLEVEL = 1\n"} {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: prefix + n, Mode: 0o644, Size: int64(len(body))})
			tw.Write([]byte(body))
		}
		tw.Close()
		path := filepath.Join(t.TempDir(), "flat.tar")
		os.WriteFile(path, raw.Bytes(), 0o644)
		src, err := OpenSource(path)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(t.TempDir(), "tree")
		if err := src.Unpack(context.Background(), dst); err != nil {
			t.Fatalf("prefix %q: %v", prefix, err)
		}
		if r, err := TreeRelease(dst); err != nil || r != "4.9.1" {
			t.Errorf("prefix %q: release %q, %v", prefix, r, err)
		}
		if _, err := os.Stat(filepath.Join(dst, "arch/x86/Makefile")); err != nil {
			t.Errorf("prefix %q: arch/x86/Makefile: %v", prefix, err)
		}
	}
}

// A symlink to a tree is the tree (the walks do not enter a symlinked
// root: it hashed as one file and copied nothing); a folder that is no
// kernel tree is refused before anything is copied, as bad input.
func TestOpenSourceChecksTheTree(t *testing.T) {
	tree := fakeTree(t, "")
	link := filepath.Join(t.TempDir(), "linux")
	if err := os.Symlink(tree, link); err != nil {
		t.Fatal(err)
	}
	src, err := OpenSource(link)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy")
	if err := src.Unpack(context.Background(), dst); err != nil {
		t.Fatal(err)
	}
	if _, err := TreeRelease(dst); err != nil {
		t.Errorf("the copy of a symlinked tree: %v", err)
	}
	if _, err := OpenSource(t.TempDir()); !errors.Is(err, ErrBadSource) {
		t.Errorf("an empty folder: %v, want ErrBadSource", err)
	}
	_, err = Build(context.Background(), Options{Source: tree, CacheDir: filepath.Join(tree, "cache")})
	if !errors.Is(err, ErrBadSource) || !strings.Contains(err.Error(), "inside it") {
		t.Errorf("a cache inside the tree: %v", err)
	}
	// Relative, and through symlinks on either side.
	t.Chdir(tree)
	_, err = Build(context.Background(), Options{Source: ".", CacheDir: "./cache"})
	if !errors.Is(err, ErrBadSource) {
		t.Errorf("kernel build --cache ./cache . in the tree: %v", err)
	}
	cacheLink := filepath.Join(t.TempDir(), "cache")
	os.Mkdir(filepath.Join(tree, "c2"), 0o755)
	os.Symlink(filepath.Join(tree, "c2"), cacheLink)
	if _, err = Build(context.Background(), Options{Source: link, CacheDir: cacheLink}); !errors.Is(err, ErrBadSource) {
		t.Errorf("a symlinked cache inside a symlinked tree: %v", err)
	}
}

// A damaged image is not a built kernel (vm said "build it again" and the
// build said "cached"); a cache hit makes its kernel the one built:RELEASE
// boots.
func TestCacheHoldsWholeImagesAndHitsWin(t *testing.T) {
	cache := t.TempDir()
	tree, log := builtTree(t)
	a := &Kernel{Release: "4.9.999", Key: "aaaa000000000000"}
	b := &Kernel{Release: "4.9.999", Key: "bbbb000000000000"}
	for _, k := range []*Kernel{a, b} {
		if err := install(cache, tree, k, log, "src"); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(a.Dir, "build.txt"), old, old)
	if f, _ := Find(cache, "4.9.999"); f == nil || f.Key != b.Key {
		t.Fatalf("found %+v, want b, the newer", f)
	}
	k, ok := findBuilt(cache, a.Key)
	if !ok {
		t.Fatal("a is not found by its key")
	}
	cacheHit(k, Options{})
	if f, _ := Find(cache, "4.9.999"); f == nil || f.Key != a.Key {
		t.Errorf("after a cache hit of a, built:4.9.999 is %+v", f)
	}
	os.WriteFile(a.Image, fakeBzImage(100), 0o644)
	if _, ok := findBuilt(cache, a.Key); ok {
		t.Error("a bzImage cut short counts as built")
	}
}

// A killed build's tree (~800 MB) went nowhere; one kept on purpose or
// being built stays.
func TestStaleTreesGo(t *testing.T) {
	cache := t.TempDir()
	dir := filepath.Join(cache, "kbuild")
	for _, k := range []string{"dead", "kept", "busy"} {
		os.MkdirAll(filepath.Join(dir, k, "arch"), 0o755)
		os.WriteFile(filepath.Join(dir, k+".log"), nil, 0o644)
	}
	os.WriteFile(filepath.Join(dir, "kept", keptMark), nil, 0o644)
	unlock, err := flock.Lock(context.Background(), filepath.Join(dir, "busy.lock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	removeStaleTrees(cache)
	for k, want := range map[string]bool{"dead": false, "kept": true, "busy": true} {
		if _, err := os.Stat(filepath.Join(dir, k)); (err == nil) != want {
			t.Errorf("tree %s: there %v, want %v", k, err == nil, want)
		}
	}
}

func TestKnownInTree(t *testing.T) {
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "net/ipv4/netfilter"), 0o755)
	os.WriteFile(filepath.Join(tree, "net/ipv4/netfilter/Kconfig"), []byte("config NF_NAT_IPV4\n\ttristate \"IPv4 NAT\"\nconfig NF_NAT_IPV4_X\n"), 0o644)
	if !knownInTree(tree, "CONFIG_NF_NAT_IPV4") {
		t.Error("NF_NAT_IPV4 is defined in the tree")
	}
	if knownInTree(tree, "CONFIG_NFT_CHAIN_NAT") || knownInTree(tree, "CONFIG_NF_NAT") {
		t.Error("an option the tree does not define is known")
	}
}
