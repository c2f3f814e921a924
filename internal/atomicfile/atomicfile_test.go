package atomicfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

func openRoot(t *testing.T, dir string) *os.Root {
	t.Helper()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// temps lists the temporary files in dir.
func temps(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if IsTemp(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

func assertContent(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Fatalf("%s holds %.40q (%d bytes), want %.40q (%d bytes)", path, b, len(b), want, len(want))
	}
}

// TestWriteFile: a new file, a replaced one and one with a 255-byte name
// (whose temporary name still fits NAME_MAX) get their content and mode,
// and no temporary file is left.
func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	root := openRoot(t, dir)
	long := strings.Repeat("n", 250) + ".json"
	for _, c := range []struct{ name, content string }{
		{"rec.json", "first"}, {"rec.json", "second, longer than the first"}, {"rec.json", ""}, {long, "long"},
	} {
		if err := WriteFile(root, c.name, []byte(c.content), 0o600); err != nil {
			t.Fatalf("%.20s: %v", c.name, err)
		}
		assertContent(t, filepath.Join(dir, c.name), c.content)
		if got := temps(t, dir); len(got) != 0 {
			t.Fatalf("temporary files left: %v", got)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "rec.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v; want 0600", fi.Mode(), err)
	}
	if n := tempName(long); len(n) > nameMax || !isTempOf(n, long) {
		t.Errorf("temporary name of a 255-byte name: %d bytes, %q", len(n), n)
	}
}

// TestCreate: each writer of a name gets its own hidden temporary file,
// flocked while written; the last to commit wins, whole.
func TestCreate(t *testing.T) {
	dir := t.TempDir()
	root := openRoot(t, dir)
	a, err := Create(root, "f", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Create(root, "f", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if a.TempName() == b.TempName() || !isTempOf(a.TempName(), "f") || !isTempOf(b.TempName(), "f") {
		t.Fatalf("temporary names %q and %q", a.TempName(), b.TempName())
	}
	// Locked: a cleaner keeps both.
	if removed, err := CleanStale(root); err != nil || len(removed) != 0 {
		t.Fatalf("CleanStale removed live writers' files: %v, %v", removed, err)
	}
	a.Write([]byte("from a"))
	b.Write([]byte("from b"))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	assertContent(t, filepath.Join(dir, "f"), "from b")
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	assertContent(t, filepath.Join(dir, "f"), "from a")
	if got := temps(t, dir); len(got) != 0 {
		t.Errorf("temporary files left: %v", got)
	}
	if err := a.Commit(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("second Commit = %v, want os.ErrClosed", err)
	}
	if err := a.Abort(); err != nil {
		t.Errorf("Abort after Commit = %v", err)
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Commit = %v, want os.ErrClosed", err)
	}
	assertContent(t, filepath.Join(dir, "f"), "from a")
	for _, bad := range []string{"", ".", "..", "a/b", "/f"} {
		if f, err := Create(root, bad, 0o600); err == nil {
			f.Abort()
			t.Errorf("Create(%q) succeeded", bad)
		}
	}
}

// TestOldFileKept: whatever fails before the rename, the old file stays
// whole and the temporary file goes.
func TestOldFileKept(t *testing.T) {
	t.Run("abort mid-write", func(t *testing.T) {
		dir := t.TempDir()
		root := openRoot(t, dir)
		os.WriteFile(filepath.Join(dir, "f"), []byte("old"), 0o600)
		f, err := Create(root, "f", 0o600)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(bytes.Repeat([]byte("new"), 1<<16))
		if err := f.Abort(); err != nil {
			t.Fatal(err)
		}
		if err := f.Commit(); !errors.Is(err, os.ErrClosed) {
			t.Errorf("Commit after Abort = %v, want os.ErrClosed", err)
		}
		assertContent(t, filepath.Join(dir, "f"), "old")
		if got := temps(t, dir); len(got) != 0 {
			t.Errorf("temporary files left: %v", got)
		}
	})
	t.Run("disk full mid-write", func(t *testing.T) {
		testutil.RequireRoot(t)
		dir := t.TempDir()
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256k,mode=0700"); err != nil {
			testutil.SkipOrFail(t, "mount tmpfs: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
		root := openRoot(t, dir)
		old := strings.Repeat("old!", 16<<10) // 64 KiB
		if err := WriteFile(root, "f", []byte(old), 0o600); err != nil {
			t.Fatal(err)
		}
		err := WriteFile(root, "f", bytes.Repeat([]byte("new!"), 128<<10), 0o600) // 512 KiB
		if !errors.Is(err, unix.ENOSPC) {
			t.Fatalf("WriteFile on a full disk = %v, want ENOSPC", err)
		}
		if !strings.Contains(err.Error(), TempInfix) {
			t.Errorf("error %q does not name the temporary file", err)
		}
		assertContent(t, filepath.Join(dir, "f"), old)
		if got := temps(t, dir); len(got) != 0 {
			t.Errorf("temporary files left: %v", got)
		}
	})
	t.Run("rename fails", func(t *testing.T) {
		dir := t.TempDir()
		root := openRoot(t, dir)
		// The name is a non-empty directory by the time of Commit.
		f, err := Create(root, "d", 0o600)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("new"))
		if err := os.MkdirAll(filepath.Join(dir, "d/child"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := f.Commit(); err == nil || !strings.Contains(err.Error(), "rename") {
			t.Fatalf("Commit over a directory = %v", err)
		}
		if fi, err := os.Stat(filepath.Join(dir, "d/child")); err != nil || !fi.IsDir() {
			t.Errorf("the directory changed: %v", err)
		}
		if got := temps(t, dir); len(got) != 0 {
			t.Errorf("temporary files left: %v", got)
		}
	})
}

// TestCleanStale: an unlocked temporary file (its writer died) goes, for
// any name; a locked one and files that only look like temporary files
// stay.
func TestCleanStale(t *testing.T) {
	dir := t.TempDir()
	root := openRoot(t, dir)
	live, err := Create(root, "snap.tar", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Abort()
	dead := []string{".snap.tar" + TempInfix + "fedcba9876543210", ".other" + TempInfix + "aaaaaaaaaaaaaaaa"}
	kept := []string{
		".snap.tar" + TempInfix + "short",
		".snap.tar" + TempInfix + "0123456789ABCDEF",
		"snap.tar" + TempInfix + "0123456789abcdef",
		"snap.tar",
	}
	for _, n := range append(append([]string{}, dead...), kept...) {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Not a regular file: kept.
	fifo := ".fifo" + TempInfix + "0123456789abcdef"
	if err := unix.Mkfifo(filepath.Join(dir, fifo), 0o600); err != nil {
		t.Fatal(err)
	}
	kept = append(kept, fifo, live.TempName())
	removed, err := CleanStale(root)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(removed, ",") != strings.Join([]string{dead[1], dead[0]}, ",") &&
		strings.Join(removed, ",") != strings.Join(dead, ",") {
		t.Errorf("removed %v, want %v", removed, dead)
	}
	for _, n := range kept {
		if _, err := os.Lstat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	for _, n := range dead {
		if _, err := os.Lstat(filepath.Join(dir, n)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s kept: %v", n, err)
		}
	}
}

func TestIsTempOf(t *testing.T) {
	tests := []struct {
		name, base string
		want       bool
	}{
		{".snap.tar.ocisnap-tmp-0123456789abcdef", "snap.tar", true},
		{".snap.tar.ocisnap-tmp-0123456789abcdef", "", true},
		{".snap.tar.ocisnap-tmp-0123456789abcdef", "snap", false},
		{".snap.tar.ocisnap-tmp-0123456789abcdef", "nap.tar", false},
		{".a.ocisnap-tmp-x.ocisnap-tmp-0123456789abcdef", "a", false},
		{".a.ocisnap-tmp-x.ocisnap-tmp-0123456789abcdef", "a.ocisnap-tmp-x", true},
		{"..ocisnap-tmp-0123456789abcdef", "", false},
		{".snap.tar.ocisnap-tmp-0123456789abcdeg", "", false},
		{".snap.tar.ocisnap-tmp-0123456789ABCDEF", "", false},
		{".snap.tar.ocisnap-tmp-0123456789abcde", "", false},
		{"snap.tar.ocisnap-tmp-0123456789abcdef", "", false},
		{".snap.tar", "", false},
	}
	for _, tt := range tests {
		if got := isTempOf(tt.name, tt.base); got != tt.want {
			t.Errorf("isTempOf(%q, %q) = %v, want %v", tt.name, tt.base, got, tt.want)
		}
	}
	if n := tempName("snap.tar"); !isTempOf(n, "snap.tar") {
		t.Errorf("tempName gives %q, not a temp of snap.tar", n)
	}
}
