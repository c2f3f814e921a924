package mountns

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// otherNS starts a process in a new mount namespace (a copy of ours) and
// returns its pid; it is killed at the end of the test.
func otherNS(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

func TestSame(t *testing.T) {
	testutil.RequireRoot(t)
	same, err := Same(os.Getpid())
	if err != nil || !same {
		t.Fatalf("Same(self) = %v, %v", same, err)
	}
	same, err = Same(otherNS(t))
	if err != nil || same {
		t.Fatalf("Same(other) = %v, %v", same, err)
	}
	if _, err := Same(-1); err == nil {
		t.Fatal("Same(-1): no error")
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
		if same, _ := Same(os.Getpid()); !same {
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
