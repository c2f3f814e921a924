//go:build linux

package layer

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// Regressions found in review of the parallel applier.
//
// R1: the pool's cached directory descriptor (filePool.dir/dirPath) is
// reused for a path that was removed and made again: the worker creates in
// the deleted directory (ENOENT). Serial succeeds.
func TestApplyRecreatedDirNotCached(t *testing.T) {
	testutil.RequireRoot(t)
	b := testutil.Tar(t, testutil.Dir("d/"), testutil.File("d/f", "1"), testutil.Whiteout("d"), testutil.Dir("d/"), testutil.File("d/g", "2"))
	for _, n := range []int{1, 2} {
		withParallelism(t, n)
		root := t.TempDir()
		_, err := applyTo(t, root, b)
		_, serr := os.Stat(filepath.Join(root, "d/g"))
		t.Logf("workers=%d: Apply err=%v; stat d/g: %v", n, err, serr)
		if err != nil || serr != nil {
			t.Errorf("workers=%d: want success and d/g present", n)
		}
	}
}

// R1b: same stale descriptor, with an in-root symlink: the file lands in the
// directory the path named before, not the one it names now.
func TestApplyRetargetedSymlinkDirNotCached(t *testing.T) {
	testutil.RequireRoot(t)
	b := testutil.Tar(t, testutil.Dir("a/"), testutil.Dir("b/"), testutil.Symlink("l", "a"), testutil.Dir("l/s/"), testutil.File("l/s/f", "1"),
		testutil.Symlink("l", "b"), testutil.Dir("l/s/"), testutil.File("l/s/g", "2"))
	for _, n := range []int{1, 2} {
		withParallelism(t, n)
		root := t.TempDir()
		_, err := applyTo(t, root, b)
		_, ea := os.Lstat(filepath.Join(root, "a/s/g"))
		_, eb := os.Lstat(filepath.Join(root, "b/s/g"))
		t.Logf("workers=%d: err=%v a/s/g:%v b/s/g:%v", n, err, ea == nil, eb == nil)
		if err != nil || ea == nil || eb != nil {
			t.Errorf("workers=%d: want b/s/g only", n)
		}
	}
}

// R2: path-keyed "free name" check defeated by an in-root symlink alias:
// the applier creates d/f (as l/f), then hands d/f to a worker as "free";
// the worker's O_EXCL create fails. Serial replaces the file.
func TestApplySymlinkAliasReplacesFile(t *testing.T) {
	testutil.RequireRoot(t)
	b := testutil.Tar(t, testutil.Dir("d/"), testutil.Symlink("l", "d"), testutil.File("l/f", "1"), testutil.File("d/f", "2"))
	for _, n := range []int{1, 2} {
		withParallelism(t, n)
		root := t.TempDir()
		_, err := applyTo(t, root, b)
		data, _ := os.ReadFile(filepath.Join(root, "d/f"))
		t.Logf("workers=%d: err=%v d/f=%q", n, err, data)
		if err != nil || string(data) != "2" {
			t.Errorf("workers=%d: want success, d/f=2", n)
		}
	}
}

// R3: stale dirInfo (cacheInfo) via an alias of the cached parent: the
// directory becomes setgid group 1234 after its info was cached, the next
// file is created without chown and inherits gid 1234 instead of 0. Also
// with 1 worker (the serial path).
func TestApplyDirInfoNotCachedThroughAlias(t *testing.T) {
	testutil.RequireRoot(t)
	x := testutil.Dir("x/")
	x.Header.Mode, x.Header.Gid = 0o2775, 1234
	b := testutil.Tar(t, testutil.Dir("x/"), testutil.Symlink("l", "x"), testutil.File("l/f", "1"), x, testutil.File("l/g", "2"))
	for _, n := range []int{1, 2} {
		withParallelism(t, n)
		root := t.TempDir()
		if _, err := applyTo(t, root, b); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(filepath.Join(root, "x/g"))
		if err != nil {
			t.Fatal(err)
		}
		gid := fi.Sys().(*syscall.Stat_t).Gid
		t.Logf("workers=%d: x/g gid=%d (entry says 0)", n, gid)
		if gid != 0 {
			t.Errorf("workers=%d: x/g gid %d, want 0", n, gid)
		}
	}
}

var _ = fmt.Sprint
