package kbuild

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// tool is a program the kernel build runs, with the Debian package that
// has it.
type tool struct{ cmd, pkg, why string }

// CheckTools names every missing tool the build of tree needs, with the
// package to install. flex and bison are needed only where the tree does not
// ship its kconfig parser (Linux 4.16 and later); tree "" checks the rest.
func CheckTools(tree string) error {
	need := []tool{
		{"make", "make", ""}, {"gcc", "gcc", ""}, {"ld", "binutils", ""},
		{"bc", "bc", "timeconst"}, {"perl", "perl", "headers"},
	}
	if _, err := os.Stat(filepath.Join(tree, "scripts/kconfig/zconf.tab.c_shipped")); tree != "" && err != nil {
		need = append(need, tool{"flex", "flex", "kconfig"}, tool{"bison", "bison", "kconfig"})
	}
	var missing, pkgs []string
	for _, t := range need {
		if _, err := exec.LookPath(t.cmd); err != nil {
			missing = append(missing, t.cmd)
			pkgs = append(pkgs, t.pkg)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s not found; install them: apt-get install %s", ErrNoTool, strings.Join(missing, ", "), strings.Join(pkgs, " "))
	}
	return nil
}

// checkLibelf: objtool (stack validation, the ORC unwinder) needs libelf's
// headers.
func checkLibelf() error {
	for _, p := range []string{"/usr/include/libelf.h", "/usr/include/gelf.h"} {
		if _, err := os.Stat(p); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: libelf headers not found (objtool needs them for this kernel's unwinder); install them: apt-get install libelf-dev", ErrNoTool)
}
