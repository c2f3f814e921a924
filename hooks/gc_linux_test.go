package hooks

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// staleTemp is the name of a temporary export file whose writer is gone
// (nobody holds its flock): what cleanTemps removes.
const staleTemp = ".snap.tar.ocisnap-tmp-0123456789abcdef"

func writeStale(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, staleTemp)
	if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestCleanTempsSymlinkedDir: a subdirectory of an allowed directory that
// is a symlink to elsewhere is not walked; the real subdirectories are.
func TestCleanTempsSymlinkedDir(t *testing.T) {
	allow, outside := t.TempDir(), t.TempDir()
	victim := writeStale(t, outside)
	mkdir(t, filepath.Join(outside, "sub"))
	deepVictim := writeStale(t, filepath.Join(outside, "sub"))
	if err := os.Symlink(outside, filepath.Join(allow, "link")); err != nil {
		t.Fatal(err)
	}
	mkdir(t, filepath.Join(allow, "real", "sub"))
	stale := writeStale(t, filepath.Join(allow, "real", "sub"))

	removed, err := cleanTemps(context.Background(), allow)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{stale}) {
		t.Errorf("removed %v, want [%s]", removed, stale)
	}
	for _, p := range []string{victim, deepVictim} {
		if b, err := os.ReadFile(p); err != nil || string(b) != "partial" {
			t.Errorf("%s outside the allowed directory: %q, %v", p, b, err)
		}
	}
}

// TestCleanTempsSwappedDir: a subdirectory swapped for a symlink to outside
// the allowed directory while gc walks (renameat2 RENAME_EXCHANGE, over and
// over) never leads gc out of it. Walking by path, the first run already
// removed the outside files.
func TestCleanTempsSwappedDir(t *testing.T) {
	allow, outside := t.TempDir(), t.TempDir()
	mkdir(t, filepath.Join(outside, "b"))
	victims := []string{filepath.Join(outside, staleTemp), filepath.Join(outside, "b", staleTemp)}
	for _, v := range victims {
		writeStale(t, filepath.Dir(v))
	}
	a, x := filepath.Join(allow, "a"), filepath.Join(allow, "x")
	mkdir(t, filepath.Join(a, "b"))
	if err := os.Symlink(outside, x); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			// a and x trade places: a directory, then a symlink out.
			if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, x, unix.RENAME_EXCHANGE); err != nil {
				t.Errorf("exchange %s and %s: %v", a, x, err)
				return
			}
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()

	root, err := os.OpenRoot(allow)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	inside := 0 // stale files removed inside the allowed directory
	for i := range 2000 {
		// Re-plant the inside file in whichever name holds the directory
		// (through root: never through the symlink).
		for _, d := range []string{"a", "x"} {
			root.WriteFile(filepath.Join(d, "b", staleTemp), []byte("partial"), 0o600)
		}
		removed, _ := cleanTemps(context.Background(), allow)
		inside += len(removed)
		for _, v := range victims {
			if b, err := os.ReadFile(v); err != nil || string(b) != "partial" {
				t.Fatalf("run %d: %s outside the allowed directory: %q, %v (removed %v)", i, v, b, err, removed)
			}
		}
	}
	if inside == 0 {
		t.Error("gc never removed the stale file inside the allowed directory: the walk did not descend")
	}
}
