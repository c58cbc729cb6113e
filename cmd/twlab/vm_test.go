package main

import (
	"encoding/xml"
	"strings"
	"testing"

	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/vm"
)

// A kernel that never produced a run document still gets a failing suite,
// and two kernels with one release get a suite each.
func TestVMJUnitHasEveryKernel(t *testing.T) {
	ok := func(label string) *vm.Result {
		return &vm.Result{Kernel: &vm.Kernel{Label: label}, Run: &result.Run{ScenarioFile: "nat-paws.yaml", Kernel: "4.10.17", Status: result.RunOK,
			Cells: []*result.Cell{{ID: "a", Status: result.CellOK}}}}
	}
	dead := &vm.Result{Kernel: &vm.Kernel{Label: "5.10.0-46"}, Err: "the guest showed no sign of life"}
	b, err := vmJUnit([]*vm.Result{ok("4.10.17"), ok("4.10.17-2"), dead}, "nat-paws.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Name string `xml:"name,attr"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range doc.Suites {
		names = append(names, s.Name)
	}
	if len(names) != 3 || names[0] == names[1] || doc.Failures != 1 {
		t.Errorf("suites %q with %d failures; want 3 distinct suites and the dead kernel's failure", names, doc.Failures)
	}
	if !strings.Contains(string(b), "no sign of life") {
		t.Errorf("the dead kernel's reason is missing:\n%s", b)
	}
}

// A --kernels list with no size to check first is read only up to a bound:
// /dev/zero took 1.2 GB in 3 s.
func TestKernelListBounded(t *testing.T) {
	if _, err := readKernelList("/dev/zero"); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("/dev/zero: %v", err)
	}
}
