package procstat

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

func statLine(comm, state string, start string) []byte {
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
	// majflt cmajflt utime stime cutime cstime priority nice threads
	// itrealvalue starttime vsize ...
	return []byte("1234 (" + comm + ") " + state +
		" 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 " + start + " 999 888 777\n")
}

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		data  []byte
		start uint64
		state byte
		bad   bool
	}{
		{name: "plain", data: statLine("sleep", "S", "4242"), start: 4242, state: 'S'},
		{name: "comm with ) (", data: statLine("x) (y) 1 2", "R", "77"), start: 77, state: 'R'},
		{name: "comm that fakes fields", data: statLine("a) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 1 (", "S", "5"), start: 5, state: 'S'},
		{name: "comm with newline", data: statLine("a\nb", "Z", "9"), start: 9, state: 'Z'},
		{name: "empty comm", data: statLine("", "S", "1"), start: 1, state: 'S'},
		{name: "empty", data: nil, bad: true},
		{name: "no paren", data: []byte("1234 sleep S 1 2 3"), bad: true},
		{name: "truncated", data: []byte("1234 (sleep) S 1 2 3 4 5"), bad: true},
		{name: "non-numeric start", data: statLine("sleep", "S", "x"), bad: true},
		{name: "negative start", data: statLine("sleep", "S", "-1"), bad: true},
		{name: "non-numeric ppid", data: []byte("1234 (sleep) S x 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 1 2"), bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := Parse(tt.data)
			if tt.bad {
				if err == nil {
					t.Fatalf("parsed %+v, want an error", st)
				}
				return
			}
			if err != nil || st.Start != tt.start || st.State != tt.state || st.PPid != 1 {
				t.Fatalf("Parse = %+v, %v; want start %d state %c ppid 1", st, err, tt.start, tt.state)
			}
		})
	}
}

// startHostile runs /bin/sleep under a name whose comm has ") (" in it.
func startHostile(t *testing.T) *exec.Cmd {
	t.Helper()
	testutil.RequireTools(t, "sleep")
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "x) (y) 1 2")
	if err := os.Symlink(sleep, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Wait until the child has exec'd (its comm is the link's name).
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/comm")
		if strings.TrimSpace(string(b)) == "x) (y) 1 2" {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("child comm is %q", b)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStartTime(t *testing.T) {
	self, err := StartTime(os.Getpid())
	if err != nil || self == 0 {
		t.Fatalf("StartTime(self) = %d, %v", self, err)
	}
	cmd := startHostile(t)
	pid := cmd.Process.Pid
	child, err := StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if child < self {
		t.Errorf("child started at %d, before its parent (%d)", child, self)
	}
	if !Alive(pid, child) {
		t.Error("running child not alive")
	}
	for _, pid := range []int{0, -1} {
		if _, err := StartTime(pid); err == nil {
			t.Errorf("StartTime(%d) succeeded", pid)
		}
	}
}

// TestReadSelf: the one parser gives this process's parent (the ppid a
// createContainer hook records) and its start time.
func TestReadSelf(t *testing.T) {
	self, err := ReadSelf()
	if err != nil {
		t.Fatal(err)
	}
	start, err := StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self.PPid != os.Getppid() || self.Start != start || !self.Running() {
		t.Errorf("ReadSelf = %+v; want ppid %d, start %d, running", self, os.Getppid(), start)
	}
	parent, err := Read(self.PPid)
	if err != nil || parent.Start > self.Start {
		t.Errorf("parent %d: %+v, %v; want started before this process (%d)", self.PPid, parent, err, self.Start)
	}
}

func TestAlive(t *testing.T) {
	self, err := StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !Alive(os.Getpid(), self) {
		t.Error("self not alive")
	}
	// The same pid number with another start time: a reused pid.
	if Alive(os.Getpid(), self+1) || Alive(os.Getpid(), self-1) || Alive(os.Getpid(), 0) {
		t.Error("self alive with a wrong start time")
	}
	for _, pid := range []int{0, -1, -os.Getpid(), 1 << 30} {
		if Alive(pid, self) {
			t.Errorf("Alive(%d) = true", pid)
		}
	}

	// A zombie (killed, not reaped) has exited: not alive.
	cmd := startHostile(t)
	pid := cmd.Process.Pid
	start, err := StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Process.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for Alive(pid, start) {
		if time.Now().After(deadline) {
			t.Fatal("killed child still alive")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
		t.Fatalf("zombie not in /proc: %v", err)
	}
	// Reaped: gone.
	cmd.Wait()
	if Alive(pid, start) {
		t.Error("dead, reaped child alive")
	}
}
