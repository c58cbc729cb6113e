package proc

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// ZombieChild starts a process that exits at once and is not reaped until
// the test ends, and returns its PID once it is a zombie.
func ZombieChild(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Skip("cannot start a process:", err)
	}
	t.Cleanup(func() { cmd.Wait() })
	pid := cmd.Process.Pid
	for i := 0; i < 200 && !Zombie(pid); i++ {
		time.Sleep(5 * time.Millisecond)
	}
	return pid
}

func TestZombieAndStart(t *testing.T) {
	pid := ZombieChild(t)
	if !Zombie(pid) {
		t.Fatal("an exited, unreaped child is not seen as a zombie")
	}
	if Zombie(os.Getpid()) {
		t.Error("this running process is seen as a zombie")
	}
	if Start(os.Getpid()) == 0 {
		t.Error("no start time for this process")
	}
	if Start(1<<30) != 0 || Zombie(1<<30) {
		t.Error("a PID that does not exist has a start time or is a zombie")
	}
}
