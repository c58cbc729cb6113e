package result_test

import (
	"bufio"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/twlab/twlab/lab/result"
	"github.com/twlab/twlab/lab/tmpfile"
	"golang.org/x/sys/unix"
)

// writerEnv makes the test binary the child of TestKilledWritersLeaveNoTemp:
// it writes run.json into the folder it names, in a loop, until killed.
const writerEnv = "TWLAB_TEST_ATOMIC_WRITER"

func TestAtomicWriterChild(t *testing.T) {
	dir := os.Getenv(writerEnv)
	if dir == "" {
		return // not a skip: CI fails on skips it does not know
	}
	b := readReal(t, "run.json")
	p := filepath.Join(dir, "run.json")
	for i := 0; ; i++ {
		if err := result.WriteFileAtomic(p, b); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			os.Stdout.WriteString("ready\n")
		}
	}
}

// TestKilledWritersLeaveNoTemp kills a process that writes run.json through
// the atomic writer, many times, at random moments. After every kill
// run.json must be whole, and once the next writer of the file, or a sweep
// of the folder (what `twlab report`, the next run and `twlab cleanup` do),
// has been by, no temporary file may be left.
func TestKilledWritersLeaveNoTemp(t *testing.T) {
	n := 100
	if testing.Short() {
		n = 25
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "run.json")
	real := readReal(t, "run.json")
	temps := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, ".*.tmp*"))
		return m
	}
	left := 0
	begin := time.Now()
	for i := 0; i < n; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestAtomicWriterChild$")
		cmd.Env = append(os.Environ(), writerEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan bool, 1)
		go func() {
			line, _ := bufio.NewReader(out).ReadString('\n')
			ready <- line == "ready\n"
		}()
		select {
		case ok := <-ready:
			if !ok {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatal("the writer did not start")
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("the writer did not start within 30 s")
		}
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		cmd.Process.Kill()
		cmd.Wait()
		if _, err := result.ReadRun(p); err != nil {
			t.Fatalf("kill %d: run.json not whole: %v", i, err)
		}
		if len(temps()) > 0 {
			left++
		}
		if i%2 == 0 {
			if err := result.WriteFileAtomic(p, real); err != nil {
				t.Fatal(err)
			}
		} else {
			tmpfile.Sweep(dir, "")
		}
		if m := temps(); len(m) > 0 {
			t.Fatalf("kill %d: temporary files left after the next write or a sweep: %v", i, m)
		}
	}
	t.Logf("%d kills in %v; %d left a temporary file, none survived the next write or sweep", n, time.Since(begin).Round(time.Millisecond), left)
	if left == 0 && n >= 100 {
		t.Errorf("no kill out of %d landed during a write: the test did not test anything", n)
	}
}

// Under sudo the files a run writes belong to the user who ran it, set on
// the open file before it gets its name; a symlink already at the name is
// replaced, and what it pointed to keeps its owner.
func TestWriteOwnedBySudoUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
	t.Setenv("SUDO_UID", "4242")
	t.Setenv("SUDO_GID", "4343")
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("root's"), 0o600)
	path := filepath.Join(dir, "run.json")
	os.Symlink(victim, path)
	if err := result.WriteFileAtomic(path, []byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	var st, vst unix.Stat_t
	unix.Lstat(path, &st)
	unix.Stat(victim, &vst)
	if st.Uid != 4242 || st.Gid != 4343 || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o777 != 0o644 {
		t.Errorf("run.json: uid %d gid %d mode %o; want 4242 4343, a regular file, 0644", st.Uid, st.Gid, st.Mode)
	}
	if vst.Uid != 0 {
		t.Errorf("the file a symlink pointed to was given to uid %d", vst.Uid)
	}
}

// A path the user gave that is no regular file is written through, not
// replaced: a rename turned a --junit /dev/stdout (a symlink) or --html
// /dev/null (a device) into a plain file, and starved a FIFO's reader.
func TestWriteThroughWhatIsNoFile(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.html")
	link := filepath.Join(dir, "link.html")
	os.WriteFile(real, []byte("old"), 0o644)
	os.Symlink(real, link)
	if err := result.WriteUserFile(link, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Lstat(link); st.Mode()&os.ModeSymlink == 0 {
		t.Error("the symlink was replaced by a file")
	}
	if b, _ := os.ReadFile(real); string(b) != "new" {
		t.Errorf("the link's target holds %q", b)
	}

	fifo := filepath.Join(dir, "pipe")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		b, _ := os.ReadFile(fifo)
		got <- string(b)
	}()
	if err := result.WriteUserFile(fifo, []byte("through the pipe")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "through the pipe" {
			t.Errorf("the FIFO's reader got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Error("the FIFO's reader got nothing")
	}
	if st, _ := os.Lstat(fifo); st.Mode()&os.ModeNamedPipe == 0 {
		t.Error("the FIFO was replaced by a file")
	}
	if err := result.WriteUserFile(dir, []byte("x")); err == nil {
		t.Error("a directory was written")
	}
}
