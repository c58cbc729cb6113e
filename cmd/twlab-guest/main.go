// Command twlab-guest is the init of twlab's VMs: `twlab vm` puts it into
// the guest's initramfs as /init when it sits next to the twlab executable
// and was built from the same sources (make build stamps both). It is twlab
// without the commands, reports and plots a guest never needs: 7 MB instead
// of 18.5, which a VM under emulation loads, unpacks and starts ~0.1 s
// sooner. Without it, twlab uses itself.
package main

import (
	"fmt"
	"os"

	"github.com/twlab/twlab/lab/vm"
)

func main() {
	if vm.IsGuest() {
		vm.GuestMain()
		return
	}
	if len(os.Args) == 2 && os.Args[1] == vm.StampFlag {
		fmt.Println(vm.BuildStamp)
		return
	}
	fmt.Fprintln(os.Stderr, "twlab-guest is the init of twlab's VMs and runs only there; use twlab vm")
	os.Exit(2)
}
