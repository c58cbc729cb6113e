// Package proc reads what twlab needs to know about other processes from
// /proc: whether one has exited (a zombie) and when it started, so that a
// recorded PID is not mistaken for a live owner or a reused number.
package proc

import (
	"bytes"
	"os"
	"strconv"
)

// stat returns the fields of /proc/PID/stat after the command name (which
// may hold spaces and parentheses); field 3, the state, is the first.
func stat(pid int) [][]byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return bytes.Fields(b[i+1:])
}

// Zombie says whether pid has exited and waits to be reaped: kill(pid, 0)
// still succeeds for it, but it holds and writes nothing any more.
func Zombie(pid int) bool {
	f := stat(pid)
	return len(f) > 0 && string(f[0]) == "Z"
}

// Start is the process's start time in clock ticks since boot (field 22),
// 0 if unknown.
func Start(pid int) uint64 {
	f := stat(pid)
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(string(f[19]), 10, 64)
	return v
}
