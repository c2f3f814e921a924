package mountns

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/pkg/procstat"
)

// otherNS starts a process in a new mount namespace (a copy of ours) and
// returns it; it is killed at the end of the test.
func otherNS(t *testing.T) Process {
	t.Helper()
	p, _ := otherNSCmd(t)
	return p
}

func otherNSCmd(t *testing.T) (Process, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return process(t, cmd.Process.Pid), cmd
}

func process(t *testing.T, pid int) Process {
	t.Helper()
	start, err := procstat.StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	return Process{Pid: pid, Start: start}
}

func TestSame(t *testing.T) {
	testutil.RequireRoot(t)
	same, err := Same(process(t, os.Getpid()))
	if err != nil || !same {
		t.Fatalf("Same(self) = %v, %v", same, err)
	}
	same, err = Same(otherNS(t))
	if err != nil || same {
		t.Fatalf("Same(other) = %v, %v", same, err)
	}
	if _, err := Same(Process{Pid: -1, Start: 1}); err == nil {
		t.Fatal("Same(-1): no error")
	}
}

// TestDoChecksProcess: Do enters the namespace of the process that started
// at the given time, and of no other: a wrong start time (the pid reused
// by another process), a zombie and a reaped process fail with ErrGone and
// fn does not run.
func TestDoChecksProcess(t *testing.T) {
	testutil.RequireRoot(t)
	p, cmd := otherNSCmd(t)
	entered := func(q Process) (bool, error) {
		ran := false
		err := Do(q, func() error {
			ran = true
			same, err := Same(process(t, os.Getpid()))
			if err == nil && same {
				return errors.New("fn ran in our own namespace")
			}
			return err
		})
		return ran, err
	}
	if ran, err := entered(p); err != nil || !ran {
		t.Fatalf("Do(right start time) = ran %v, %v", ran, err)
	}
	for _, q := range []Process{{Pid: p.Pid, Start: p.Start + 1}, {Pid: p.Pid, Start: p.Start - 1}} {
		if ran, err := entered(q); !errors.Is(err, ErrGone) || ran {
			t.Errorf("Do(start %d, want %d) = ran %v, %v; want ErrGone", q.Start, p.Start, ran, err)
		}
	}
	if _, err := entered(Process{Pid: p.Pid}); err == nil || errors.Is(err, ErrGone) {
		t.Errorf("Do(start time unknown) = %v, want a refusal", err)
	}
	// Killed but not waited for: a zombie, whose namespaces are gone.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(p.Pid) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		if ps, err := procstat.Parse(st); err != nil || !ps.Running() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ran, err := entered(p); !errors.Is(err, ErrGone) || ran {
		t.Errorf("Do(zombie) = ran %v, %v; want ErrGone", ran, err)
	}
	cmd.Wait()
	if ran, err := entered(p); !errors.Is(err, ErrGone) || ran {
		t.Errorf("Do(reaped) = ran %v, %v; want ErrGone", ran, err)
	}
}

// TestNSBoundToProcess: the kernel behaviour Do relies on. A descriptor of
// /proc/<pid> stays bound to its process: once that process is reaped, a
// lookup of ns/mnt through it fails, whoever gets the pid next.
func TestNSBoundToProcess(t *testing.T) {
	testutil.RequireRoot(t)
	p, cmd := otherNSCmd(t)
	dfd, err := unix.Open("/proc/"+strconv.Itoa(p.Pid), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	cmd.Process.Kill()
	cmd.Wait()
	if fd, err := unix.Openat(dfd, "ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
		unix.Close(fd)
		t.Fatal("ns/mnt of a reaped process opened through its old /proc descriptor")
	}
}

// TestDoMountsOnlyThere: a tmpfs mounted inside Do is seen by the other
// process's namespace, not ours, and Do's thread does not leak back.
func TestDoMountsOnlyThere(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	pid := otherNS(t)
	err := Do(pid, func() error {
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, ""); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "inside"), nil, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "inside")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the other namespace's mount is visible here: %v", err)
	}
	// Many calls: no thread of ours ends up in the other namespace.
	for range 50 {
		if err := Do(pid, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
		if same, _ := Same(process(t, os.Getpid())); !same {
			t.Fatal("this thread left our mount namespace")
		}
	}
	var inside bool
	err = Do(pid, func() error {
		_, err := os.Stat(filepath.Join(dir, "inside"))
		inside = err == nil
		// Outside runs on a thread in the caller's namespace.
		return Outside(func() error {
			if _, err := os.Stat(filepath.Join(dir, "inside")); err == nil {
				return errors.New("Outside ran in the other namespace")
			}
			return nil
		})
	})
	if err != nil || !inside {
		t.Fatalf("Do: %v (file seen: %v)", err, inside)
	}
}

// TestCloneAttachAcrossNamespaces: a read-only clone made here is attached
// in the other namespace; writes through it fail with EROFS.
func TestCloneAttachAcrossNamespaces(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	srcDir := filepath.Join(dir, "src")
	dst := filepath.Join(dir, "dst")
	for _, d := range []string{srcDir, dst} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(srcDir, "f"), []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	pid := otherNS(t)
	src, err := os.Open(srcDir)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	tree, err := CloneReadOnly(src)
	if err != nil {
		t.Fatal(err)
	}
	err = Do(pid, func() error {
		target, err := os.OpenFile(dst, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		defer target.Close()
		if err := tree.Attach(target); err != nil {
			return err
		}
		got, err := os.ReadFile(filepath.Join(dst, "f"))
		if err != nil || string(got) != "content" {
			t.Errorf("read through the bind: %q, %v", got, err)
		}
		if err := os.WriteFile(filepath.Join(dst, "f"), []byte("x"), 0o644); !errors.Is(err, unix.EROFS) {
			t.Errorf("write through the bind: %v, want EROFS", err)
		}
		var sfs unix.Statfs_t
		if err := unix.Statfs(dst, &sfs); err != nil {
			return err
		}
		if want := int64(unix.ST_RDONLY | unix.ST_NOSUID | unix.ST_NODEV); sfs.Flags&want != want {
			t.Errorf("bind flags %#x, want ro,nosuid,nodev", sfs.Flags)
		}
		m, err := os.OpenFile(dst, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		defer m.Close()
		if err := Unmount(m); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(dst, "f")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("still mounted after Unmount: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "f")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the bind is visible in our namespace: %v", err)
	}
	// A tree that is never attached is simply closed.
	tree2, err := CloneReadOnly(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := tree2.Close(); err != nil {
		t.Fatal(err)
	}
}
