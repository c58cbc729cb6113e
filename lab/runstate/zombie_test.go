package runstate

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// A process that has exited but is not reaped yet is no owner.
func TestZombieIsNotAlive(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Skip("cannot start a process:", err)
	}
	defer cmd.Wait()
	pid := cmd.Process.Pid
	for i := 0; i < 200 && !zombie(pid); i++ {
		time.Sleep(5 * time.Millisecond)
	}
	if !zombie(pid) {
		t.Fatal("an exited, unreaped child is not seen as a zombie")
	}
	if zombie(os.Getpid()) {
		t.Error("this running process is seen as a zombie")
	}
}
