package result_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestReadersNeedNoRootPackages: reading run.json (lab/result) and
// reporting on it (lab/report) link neither eBPF nor netlink, nor the
// packages that measure, so that twlab report and compare stay light and
// the run document cannot be shaped by a generator's fields. Validating a
// scenario (lab/scenario, for twlab validate/list/show) links no kernel
// interface either: the modes it shares with the lab live in lab/spec.
func TestReadersNeedNoRootPackages(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not on PATH: cannot list the packages' dependencies")
	}
	kernelIfaces := []string{"github.com/cilium/ebpf", "github.com/vishvananda/netlink", "github.com/google/nftables"}
	measuring := []string{
		"github.com/twlab/twlab/lab/load", "github.com/twlab/twlab/lab/skew", "github.com/twlab/twlab/lab/capture",
		"github.com/twlab/twlab/lab/kernel", "github.com/twlab/twlab/lab/nat",
	}
	rules := map[string][]string{
		"github.com/twlab/twlab/lab/result":   append(append([]string{"github.com/twlab/twlab/lab/scenario"}, kernelIfaces...), measuring...),
		"github.com/twlab/twlab/lab/report":   append(append([]string{"github.com/twlab/twlab/lab/scenario"}, kernelIfaces...), measuring...),
		"github.com/twlab/twlab/lab/scenario": append(kernelIfaces, measuring...),
	}
	for pkg, banned := range rules {
		out, err := exec.Command(goTool, "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for dep := range strings.FieldsSeq(string(out)) {
			for _, b := range banned {
				if dep == b || strings.HasPrefix(dep, b+"/") {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
