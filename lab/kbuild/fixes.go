package kbuild

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// A fix makes an old tree build with today's compilers. Each one looks for
// the exact situation it mends and does nothing otherwise, so a tree that
// already has the upstream fix (a later stable release) is left alone.
type fix struct {
	name  string
	apply func(tree string) (bool, error)
}

var fixes = []fix{
	{"arch/x86/tools/relocs.c: R_X86_64_PLT32 handled like R_X86_64_PC32 (binutils >= 2.31 emits it; upstream b21ebf2fb4cd)", relocsPLT32},
}

// ApplyFixes applies every fix the tree needs and names the ones applied.
func ApplyFixes(tree string) ([]string, error) {
	var applied []string
	for _, f := range fixes {
		ok, err := f.apply(tree)
		if err != nil {
			return applied, fmt.Errorf("fix %s: %w", f.name, err)
		}
		if ok {
			applied = append(applied, f.name)
		}
	}
	return applied, nil
}

// relocsPLT32: since binutils 2.31 the assembler emits R_X86_64_PLT32 for
// calls, and the x86 relocs tool of kernels before 4.16 stops with
// "Unsupported relocation type" on it. It is PC-relative like
// R_X86_64_PC32, so it takes the same case.
func relocsPLT32(tree string) (bool, error) {
	path := filepath.Join(tree, "arch/x86/tools/relocs.c")
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// The name is in the relocation-type table of every tree; what old
	// trees lack is the case that handles it.
	if bytes.Contains(b, []byte("case R_X86_64_PLT32:")) {
		return false, nil
	}
	pc32 := []byte("\tcase R_X86_64_PC32:\n")
	i := bytes.Index(b, pc32)
	if i < 0 {
		return false, fmt.Errorf("%s: no R_X86_64_PC32 case to extend", path)
	}
	out := append([]byte{}, b[:i+len(pc32)]...)
	out = append(out, "\tcase R_X86_64_PLT32:\n"...)
	out = append(out, b[i+len(pc32):]...)
	return true, os.WriteFile(path, out, 0o644)
}
