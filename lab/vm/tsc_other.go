//go:build !amd64

package vm

func rdtsc() uint64 { return 0 }

// haveTSC: no TSC to measure on this host; guests boot on the pc machine.
const haveTSC = false
