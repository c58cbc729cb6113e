package load

import (
	"runtime"
	"sync"
)

// loadProcs is how many Ps the runtime has while a load runs: twice the
// CPUs (see raiseProcs).
var loadProcs = 2 * runtime.NumCPU()

var procsMu sync.Mutex
var procsUsers int
var procsBefore int

// raiseProcs gives the runtime more Ps than CPUs while a load runs and
// returns the function that restores the previous setting. Most of the
// generator's CPU time is kernel work inside connect, write and close (the
// packets cross veth, bridge, NAT and the server's TCP stack within the
// syscall), and a goroutine in a syscall keeps its P: with one P per CPU,
// the other chains and the server's handlers, ready to run, wait for a P
// while a CPU is free. The profile showed the process at ~1.3 of 2 CPUs
// with all chains ready; with 2 Ps per CPU it uses both (twlab bench load:
// ~27k -> ~31k connections/s on 2 cores; 3, 4, 6 and 8 Ps measured alike).
func raiseProcs() func() {
	procsMu.Lock()
	defer procsMu.Unlock()
	if procsUsers == 0 {
		procsBefore = runtime.GOMAXPROCS(0)
		if loadProcs > procsBefore {
			runtime.GOMAXPROCS(loadProcs)
		}
	}
	procsUsers++
	return func() {
		procsMu.Lock()
		defer procsMu.Unlock()
		procsUsers--
		if procsUsers == 0 && runtime.GOMAXPROCS(0) != procsBefore {
			runtime.GOMAXPROCS(procsBefore)
		}
	}
}
