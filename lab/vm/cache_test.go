package vm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Two twlab vm runs that need the same kernel package at once: each must
// get a complete unpacked kernel, and neither may remove the other's work
// under it (they shared one dest.tmp, and the second replaced dest).
func TestConcurrentUnpackOfOnePackage(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed: make deps")
	}
	// A small package with the layout of a Debian kernel image, built here.
	root := t.TempDir()
	pkg := "linux-image-9.9.9-twlabtest-amd64-unsigned"
	tree := filepath.Join(root, "tree")
	for _, d := range []string{"DEBIAN", "boot", "lib/modules/9.9.9-twlabtest/kernel"} {
		os.MkdirAll(filepath.Join(tree, d), 0o755)
	}
	os.WriteFile(filepath.Join(tree, "DEBIAN/control"), []byte("Package: "+pkg+"\nVersion: 1\nArchitecture: amd64\nMaintainer: twlab\nDescription: test\n"), 0o644)
	big := make([]byte, 4<<20) // enough that extracting takes a moment
	os.WriteFile(filepath.Join(tree, "boot/vmlinuz-9.9.9-twlabtest"), big, 0o644)
	for i := range 200 {
		os.WriteFile(filepath.Join(tree, "lib/modules/9.9.9-twlabtest/kernel", "m"+string(rune('a'+i%26))+string(rune('a'+i/26))+".ko"), big[:20<<10], 0o644)
	}
	seed := filepath.Join(root, "seed")
	os.MkdirAll(seed, 0o755)
	if out, err := exec.Command("dpkg-deb", "-Zgzip", "-b", tree, filepath.Join(seed, pkg+"_1_amd64.deb")).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -b: %v: %s", err, out)
	}
	oldCache, oldSeed := CacheDir, SeedDir
	CacheDir, SeedDir = filepath.Join(root, "cache"), seed
	defer func() { CacheDir, SeedDir = oldCache, oldSeed }()
	dest := filepath.Join(CacheDir, "kernels", pkg)
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() { errs[i] = fetchDeb(context.Background(), pkg, dest) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("run %d: %v", i, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dest, ".complete")); err != nil {
		t.Fatalf("no complete kernel: %v", err)
	}
	mods, _ := filepath.Glob(filepath.Join(dest, "lib/modules/9.9.9-twlabtest/kernel/*.ko"))
	if len(mods) != 200 {
		t.Errorf("%d of 200 modules in the cache", len(mods))
	}
	if left, _ := filepath.Glob(dest + ".tmp*"); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}
