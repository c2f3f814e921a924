package cgroupfreeze

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// hierarchies returns a fresh test cgroup directory in each mounted
// hierarchy that has a freezer.
func hierarchies(t *testing.T) map[Version]string {
	t.Helper()
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[Version]string{}
	for _, m := range mounts {
		if m.Root != "/" {
			continue
		}
		v := V2
		if m.FSType == "cgroup" {
			if !slices.Contains(strings.Split(m.VFSOptions, ","), "freezer") {
				continue
			}
			v = V1
		}
		if _, ok := out[v]; ok {
			continue
		}
		dir := filepath.Join(m.Mountpoint, "ocisnap-test-"+strconv.Itoa(os.Getpid())+"-"+strconv.Itoa(int(v)))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("create test cgroup: %v", err)
		}
		t.Cleanup(func() { os.Remove(dir) })
		out[v] = dir
	}
	if len(out) == 0 {
		t.Fatal("no cgroup hierarchy with a freezer is mounted")
	}
	return out
}

// busy starts a shell that writes a line to a pipe as fast as it can,
// inside cgroup dir; the counter is the bytes read from it so far. A pipe,
// not a file: a write to a file can stall for seconds on a busy disk (its
// journal), which looked like a frozen process.
func busy(t *testing.T, dir string) (counter *atomic.Int64, pid int) {
	t.Helper()
	cmd := exec.Command("sh", "-c", `i=0; while :; do i=$((i+1)); echo $i; done`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	counter = new(atomic.Int64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := out.Read(buf)
			counter.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		// Thaw first: a frozen process cannot die.
		if c, err := Open(dir); err == nil {
			c.Thaw()
		}
		cmd.Process.Kill()
		cmd.Wait()
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Fatalf("move process into %s: %v", dir, err)
	}
	waitChanging(t, counter, true, 25)
	return counter, cmd.Process.Pid
}

// changing reports whether the counter changes within 200ms.
func changing(counter *atomic.Int64) bool {
	a := counter.Load()
	time.Sleep(200 * time.Millisecond)
	return counter.Load() != a
}

// waitChanging waits for the counter to be changing (want) or not, over
// at most tries windows of 200ms.
func waitChanging(t *testing.T, counter *atomic.Int64, want bool, tries int) {
	t.Helper()
	for i := 0; i < tries; i++ {
		if changing(counter) == want {
			return
		}
	}
	t.Fatalf("counter changing = %t, want %t", !want, want)
}

func TestFreezeThaw(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "sh")
	for v, dir := range hierarchies(t) {
		t.Run("v"+strconv.Itoa(int(v)), func(t *testing.T) {
			counter, pid := busy(t, dir)
			c, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if c.Version != v {
				t.Fatalf("Open(%s) says v%d, want v%d", dir, c.Version, v)
			}
			if v == V1 {
				// ForPid finds the same cgroup (v1 is preferred when mounted).
				got, err := ForPid(pid)
				if err != nil || got.Path != dir {
					t.Fatalf("ForPid = %v, %v; want %s", got, err, dir)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			release, err := Hold(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if st, _ := c.State(); st != Frozen {
				t.Fatalf("state after Hold = %s", st)
			}
			// Stopped, once the pipe holds nothing more written before
			// the freeze (a read or two): a process that still runs keeps
			// it changing.
			waitChanging(t, counter, false, 5)
			// A second holder (the cgroup is already frozen, as for a
			// paused container) must leave it frozen.
			release2, err := Hold(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if err := release2(); err != nil {
				t.Fatal(err)
			}
			if st, _ := c.State(); st != Frozen {
				t.Fatalf("the inner release thawed a cgroup frozen by someone else: %s", st)
			}
			if err := release(); err != nil {
				t.Fatal(err)
			}
			if err := release(); err != nil {
				t.Fatalf("second release: %v", err)
			}
			if st, _ := c.State(); st != Thawed {
				t.Fatalf("state after release = %s", st)
			}
			waitChanging(t, counter, true, 25)
		})
	}
}

func TestOpenNoFreezer(t *testing.T) {
	if _, err := Open(t.TempDir()); !errors.Is(err, ErrNoFreezer) {
		t.Fatalf("got %v, want ErrNoFreezer", err)
	}
}
