//go:build linux

package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// applyTo applies the tar b onto the directory root.
func applyTo(t testing.TB, root string, b []byte, opts ...ApplyOpt) (Stats, error) {
	t.Helper()
	f, err := os.OpenFile(root, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Apply(context.Background(), f, bytes.NewReader(b), opts...)
}

func mustApply(t testing.TB, root string, b []byte, opts ...ApplyOpt) Stats {
	t.Helper()
	st, err := applyTo(t, root, b, opts...)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return st
}

func lstat(t testing.TB, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat: %v", err)
	}
	return &st
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func getxattr(t testing.TB, p, name string) string {
	t.Helper()
	buf := make([]byte, 1024)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(buf[:n])
}

// listDir returns the sorted names in dir.
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func wantNames(t testing.TB, dir string, want ...string) {
	t.Helper()
	got := listDir(t, dir)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
}

func tsEqual(ts unix.Timespec, want time.Time) bool {
	return ts.Sec == want.Unix() && ts.Nsec == int64(want.Nanosecond())
}

var (
	tMtime  = time.Unix(1600000000, 987654321)
	tAtime  = time.Unix(1500000000, 111111111)
	dirTime = time.Unix(1400000000, 222222222)
)

func TestApplyEntries(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()

	dir := testutil.Dir("./dir/")
	dir.Header.ModTime, dir.Header.Mode, dir.Header.Uid, dir.Header.Gid = dirTime, 0o2750, 1234, 5678
	dir = dir.WithPAX("SCHILY.xattr.user.dir", "dirval")
	sticky := testutil.Dir("./tmp/")
	sticky.Header.Mode = 0o1777
	file := testutil.File("./dir/file", "hello").WithPAX("SCHILY.xattr.user.test", "val", "SCHILY.xattr.trusted.overlay.origin", "x")
	file.Header.Mode, file.Header.Uid, file.Header.Gid, file.Header.ModTime, file.Header.AccessTime = 0o4755, 1234, 5678, tMtime, tAtime
	setgid := testutil.File("./dir/sgid", "")
	setgid.Header.Mode = 0o2711
	sym := testutil.Symlink("./dir/sym", "file").WithPAX("SCHILY.xattr.trusted.test", "t", "SCHILY.xattr.user.skipped", "u")
	sym.Header.Uid, sym.Header.Gid, sym.Header.ModTime = 1234, 5678, tMtime
	fifo := testutil.Fifo("./dir/fifo")
	fifo.Header.Uid, fifo.Header.Gid, fifo.Header.Mode = 42, 43, 0o4620
	link := testutil.Hardlink("./dir/hard", "./dir/file")
	// Entries after the directory's own: they must not undo its mtime.
	late := testutil.File("./dir/sub/late", "late")
	b := testutil.Tar(t, testutil.Dir("./"), dir, sticky, file, setgid, sym, fifo, link, testutil.Dir("./dir/sub/"), late)

	st := mustApply(t, root, b)
	if st.Entries != 10 || st.Bytes != int64(len("hello")+len("late")) {
		t.Errorf("stats %+v", st)
	}

	d := lstat(t, filepath.Join(root, "dir"))
	if d.Mode != unix.S_IFDIR|0o2750 || d.Uid != 1234 || d.Gid != 5678 {
		t.Errorf("dir: mode %o ids %d:%d", d.Mode, d.Uid, d.Gid)
	}
	if !tsEqual(d.Mtim, dirTime) {
		t.Errorf("dir mtime %v, want %v (children must not change it)", time.Unix(d.Mtim.Unix()), dirTime)
	}
	if v := getxattr(t, filepath.Join(root, "dir"), "user.dir"); v != "dirval" {
		t.Errorf("dir user.dir = %q", v)
	}
	if m := lstat(t, filepath.Join(root, "tmp")).Mode; m != unix.S_IFDIR|0o1777 {
		t.Errorf("tmp mode %o", m)
	}

	fp := filepath.Join(root, "dir/file")
	f := lstat(t, fp)
	if f.Mode != unix.S_IFREG|0o4755 || f.Uid != 1234 || f.Gid != 5678 || f.Nlink != 2 {
		t.Errorf("file: mode %o ids %d:%d nlink %d", f.Mode, f.Uid, f.Gid, f.Nlink)
	}
	if !tsEqual(f.Mtim, tMtime) || !tsEqual(f.Atim, tAtime) {
		t.Errorf("file times: mtime %v atime %v", time.Unix(f.Mtim.Unix()), time.Unix(f.Atim.Unix()))
	}
	if c := readFile(t, fp); c != "hello" {
		t.Errorf("file content %q", c)
	}
	if v := getxattr(t, fp, "user.test"); v != "val" {
		t.Errorf("file user.test = %q", v)
	}
	if v := getxattr(t, fp, "trusted.overlay.origin"); !strings.Contains(v, "no data") {
		t.Errorf("trusted.overlay.origin applied: %q", v)
	}
	if m := lstat(t, filepath.Join(root, "dir/sgid")).Mode; m != unix.S_IFREG|0o2711 {
		t.Errorf("sgid mode %o", m)
	}

	sp := filepath.Join(root, "dir/sym")
	s := lstat(t, sp)
	if s.Mode&unix.S_IFMT != unix.S_IFLNK || s.Uid != 1234 || s.Gid != 5678 || !tsEqual(s.Mtim, tMtime) {
		t.Errorf("symlink: mode %o ids %d:%d mtime %v", s.Mode, s.Uid, s.Gid, time.Unix(s.Mtim.Unix()))
	}
	if target, _ := os.Readlink(sp); target != "file" {
		t.Errorf("symlink target %q", target)
	}
	if v := getxattr(t, sp, "trusted.test"); v != "t" {
		t.Errorf("symlink trusted.test = %q", v)
	}

	ff := lstat(t, filepath.Join(root, "dir/fifo"))
	if ff.Mode != unix.S_IFIFO|0o4620 || ff.Uid != 42 || ff.Gid != 43 {
		t.Errorf("fifo: mode %o ids %d:%d", ff.Mode, ff.Uid, ff.Gid)
	}
	if h := lstat(t, filepath.Join(root, "dir/hard")); h.Ino != f.Ino {
		t.Errorf("hard link: inode %d, want %d", h.Ino, f.Ino)
	}
	if c := readFile(t, filepath.Join(root, "dir/sub/late")); c != "late" {
		t.Errorf("late content %q", c)
	}
}

// Parents missing from the snapshot are created (0755).
func TestApplyMissingParents(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	mustApply(t, root, testutil.Tar(t, testutil.File("a/b/c/file", "x"), testutil.File("a/b/other", "y")))
	if c := readFile(t, filepath.Join(root, "a/b/c/file")); c != "x" {
		t.Fatalf("content %q", c)
	}
	if m := lstat(t, filepath.Join(root, "a/b")).Mode; m != unix.S_IFDIR|0o755 {
		t.Errorf("created parent mode %o", m)
	}
}

func TestApplyReplaces(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	root := filepath.Join(base, "root")
	testutil.BuildTree(t, base,
		testutil.File("root/dirdir/old", "old"),
		testutil.File("root/dirdir/sub/nested", "n"),
		testutil.File("root/diroverfile", "file"),
		testutil.Symlink("root/diroversym", "../victimdir"),
		testutil.File("root/fifooverfile", "f"),
		testutil.File("root/fileoverdir/x/y", "y"),
		testutil.File("root/fileoverfile", "old content, longer than the new"),
		testutil.Symlink("root/fileoversym", "../victim"),
		testutil.Symlink("root/hardtosym", "../victim"),
		testutil.Symlink("root/linkoversym", "/etc/passwd"),
		testutil.File("root/symoverfile", "file"),
		testutil.Symlink("root/whiteoutsym", "../victimdir"),
		testutil.File("victim", "precious"),
		testutil.File("victimdir/keep", "keep"),
	)
	if err := os.Chmod(filepath.Join(base, "victimdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	victimBefore := lstat(t, filepath.Join(base, "victim"))

	dd := testutil.Dir("dirdir/")
	dd.Header.Mode, dd.Header.Uid, dd.Header.Gid = 0o711, 7, 8
	dos := testutil.Dir("diroversym/")
	dos.Header.Mode = 0o777
	b := testutil.Tar(t,
		dd,
		testutil.File("fileoverdir", "now a file"),
		testutil.Dir("diroverfile/"),
		testutil.File("diroverfile/child", "c"),
		testutil.Symlink("symoverfile", "target"),
		testutil.File("fileoversym", "not through the symlink"),
		dos,
		testutil.File("fileoverfile", "new"),
		testutil.Hardlink("linkoversym", "fileoverfile"),
		testutil.Whiteout("whiteoutsym"),
		testutil.Fifo("fifooverfile"),
		testutil.Hardlink("viasym", "hardtosym"), // links the symlink itself
	)
	mustApply(t, root, b)

	d := lstat(t, filepath.Join(root, "dirdir"))
	if d.Mode != unix.S_IFDIR|0o711 || d.Uid != 7 || d.Gid != 8 {
		t.Errorf("dir over dir: mode %o ids %d:%d", d.Mode, d.Uid, d.Gid)
	}
	wantNames(t, filepath.Join(root, "dirdir"), "old", "sub")
	if c := readFile(t, filepath.Join(root, "fileoverdir")); c != "now a file" {
		t.Errorf("file over dir: %q", c)
	}
	if c := readFile(t, filepath.Join(root, "diroverfile/child")); c != "c" {
		t.Errorf("dir over file: %q", c)
	}
	if target, err := os.Readlink(filepath.Join(root, "symoverfile")); err != nil || target != "target" {
		t.Errorf("symlink over file: %q, %v", target, err)
	}
	if c := readFile(t, filepath.Join(root, "fileoversym")); c != "not through the symlink" {
		t.Errorf("file over symlink: %q", c)
	}
	if m := lstat(t, filepath.Join(root, "diroversym")).Mode; m != unix.S_IFDIR|0o777 {
		t.Errorf("dir over symlink: mode %o", m)
	}
	if c := readFile(t, filepath.Join(root, "fileoverfile")); c != "new" {
		t.Errorf("file over file: %q", c)
	}
	if c := readFile(t, filepath.Join(root, "linkoversym")); c != "new" {
		t.Errorf("hard link over symlink: %q", c)
	}
	if exists(filepath.Join(root, "whiteoutsym")) {
		t.Error("whiteout of a symlink left it")
	}
	if m := lstat(t, filepath.Join(root, "fifooverfile")).Mode; m&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifo over file: mode %o", m)
	}
	if target, _ := os.Readlink(filepath.Join(root, "viasym")); target != "../victim" {
		t.Errorf("hard link to a symlink: %q", target)
	}

	// Nothing outside the root changed.
	if c := readFile(t, filepath.Join(base, "victim")); c != "precious" {
		t.Errorf("victim content %q", c)
	}
	if v := lstat(t, filepath.Join(base, "victim")); v.Mode != victimBefore.Mode || v.Mtim != victimBefore.Mtim {
		t.Errorf("victim changed: mode %o", v.Mode)
	}
	if m := lstat(t, filepath.Join(base, "victimdir")).Mode; m != unix.S_IFDIR|0o700 {
		t.Errorf("victimdir mode %o", m)
	}
	wantNames(t, filepath.Join(base, "victimdir"), "keep")
	wantNames(t, base, "root", "victim", "victimdir")
}

func TestApplyWhiteouts(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	testutil.BuildTree(t, root,
		testutil.File("d1/a/b", "x"),
		testutil.File("d2/a", "x"),
		testutil.File("f1", "1"),
		testutil.File("f2", "2"),
		testutil.File("f3", "3"),
		testutil.File("f4", "4"),
		testutil.File("keep", "k"),
		testutil.File("sub/f5", "5"),
	)
	b := testutil.Tar(t,
		testutil.Dir("./"),
		testutil.Whiteout("./d1"),         // overlay whiteout of a directory
		testutil.Whiteout("./f1"),         // overlay whiteout of a file
		testutil.Hardlink("./f2", "./f1"), // gVisor: later whiteouts link to the first
		testutil.File("./.wh.f3", ""),     // OCI whiteout of a file
		testutil.File("./.wh.d2", ""),     // OCI whiteout of a directory
		testutil.Whiteout("./absent"),     // absent: fine
		testutil.File("./.wh.absent2", ""),
		testutil.Whiteout("./nodir/absent"), // absent parent: fine
		testutil.Dir("./sub/"),
		testutil.Hardlink("./sub/f5", "./f1"),
	)
	st := mustApply(t, root, b)
	if st.Entries != 11 || st.Bytes != 0 {
		t.Errorf("stats %+v", st)
	}
	wantNames(t, root, "f4", "keep", "sub")
	wantNames(t, filepath.Join(root, "sub"))
}

// An opaque directory keeps only what the snapshot puts in it, whether the
// marker comes before its children or after them.
func TestApplyOpaque(t *testing.T) {
	testutil.RequireRoot(t)
	old := []testutil.Node{
		testutil.File("d/keepname", "old content"), testutil.File("d/old", "o"),
		testutil.File("d/oldsub/x", "x"), testutil.File("d/sub/oldnested", "o"),
	}
	opaqueDir := func(name string, kv ...string) testutil.Node {
		d := testutil.Dir(name).WithPAX(kv...)
		d.Header.Mode, d.Header.Uid, d.Header.ModTime = 0o750, 99, dirTime
		return d
	}
	children := []testutil.Node{testutil.File("d/keepname", "new"), testutil.Dir("d/sub/"), testutil.File("d/sub/new", "n")}
	tests := []struct {
		name     string
		entries  []testutil.Node
		markerMd bool // the directory keeps its old metadata (marker only)
	}{
		{"overlay trusted.overlay.opaque", append([]testutil.Node{opaqueDir("d/", "SCHILY.xattr.trusted.overlay.opaque", "y")}, children...), false},
		{"gVisor user.overlay.opaque", append([]testutil.Node{opaqueDir("d/", "SCHILY.xattr.user.overlay.opaque", "y")}, children...), false},
		{"OCI marker before the children", append([]testutil.Node{opaqueDir("d/"), testutil.File("d/.wh..wh..opq", "")}, children...), false},
		{"OCI marker after the children", append(append([]testutil.Node{opaqueDir("d/")}, children...), testutil.File("d/.wh..wh..opq", "")), false},
		{"OCI marker without the directory entry", append([]testutil.Node{testutil.File("d/.wh..wh..opq", "")}, children...), true},
		{"OCI marker last, no directory entry", append(append([]testutil.Node{}, children...), testutil.File("d/.wh..wh..opq", "")), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			testutil.BuildTree(t, root, old...)
			if err := os.Chmod(filepath.Join(root, "d"), 0o701); err != nil {
				t.Fatal(err)
			}
			if err := unix.Setxattr(filepath.Join(root, "d"), "user.old", []byte("1"), 0); err != nil {
				t.Fatal(err)
			}
			mustApply(t, root, testutil.Tar(t, tt.entries...))
			wantNames(t, filepath.Join(root, "d"), "keepname", "sub")
			wantNames(t, filepath.Join(root, "d/sub"), "new")
			if c := readFile(t, filepath.Join(root, "d/keepname")); c != "new" {
				t.Errorf("keepname %q", c)
			}
			st := lstat(t, filepath.Join(root, "d"))
			if tt.markerMd {
				if st.Mode != unix.S_IFDIR|0o701 || getxattr(t, filepath.Join(root, "d"), "user.old") != "1" {
					t.Errorf("marker lost the directory's metadata: mode %o", st.Mode)
				}
			} else if st.Mode != unix.S_IFDIR|0o750 || st.Uid != 99 || !tsEqual(st.Mtim, dirTime) {
				t.Errorf("opaque dir: mode %o uid %d mtime %v", st.Mode, st.Uid, time.Unix(st.Mtim.Unix()))
			}
		})
	}
}

// The cached parent directory is dropped when that directory is removed or
// replaced.
func TestApplyParentCache(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	mustApply(t, root, testutil.Tar(t,
		testutil.Dir("a/"), testutil.File("a/x", "x"), testutil.Dir("a/b/"), testutil.File("a/b/y", "y"),
		testutil.Whiteout("a"), testutil.Dir("a/"), testutil.File("a/z", "z"), // whiteout, then again
		testutil.Dir("c/"), testutil.File("c/1", "1"), testutil.File("c", "now a file"),
		testutil.Dir("d/"), testutil.File("d/1", "1"),
		testutil.Dir("d/").WithPAX("SCHILY.xattr.trusted.overlay.opaque", "y"), testutil.File("d/2", "2"),
		testutil.Dir("e/"), testutil.Dir("e/f/"), testutil.File("e/f/1", "1"), testutil.File("e/.wh..wh..opq", ""), testutil.File("e/f/2", "2"),
	))
	wantNames(t, filepath.Join(root, "a"), "z")
	if c := readFile(t, filepath.Join(root, "c")); c != "now a file" {
		t.Errorf("c = %q", c)
	}
	wantNames(t, filepath.Join(root, "d"), "1", "2")
	wantNames(t, filepath.Join(root, "e/f"), "1", "2")
}

func TestApplyOpaqueRoot(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	testutil.BuildTree(t, root, testutil.File("kept/old", "o"), testutil.File("old", "o"), testutil.File("olddir/x", "x"))
	mustApply(t, root, testutil.Tar(t,
		testutil.Dir("./").WithPAX("SCHILY.xattr.trusted.overlay.opaque", "y"),
		testutil.Dir("./kept/"),
		testutil.File("./new", "n"),
	))
	wantNames(t, root, "kept", "new")
	wantNames(t, filepath.Join(root, "kept"))
}

func TestApplyIDMap(t *testing.T) {
	testutil.RequireRoot(t)
	m := &IDMap{
		UIDs: []IDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GIDs: []IDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}},
	}
	root := t.TempDir()
	f := testutil.File("f", "x")
	f.Header.Uid, f.Header.Gid = 1000, 1001
	s := testutil.Symlink("s", "f")
	mustApply(t, root, testutil.Tar(t, testutil.Dir("./"), f, s), WithIDMap(m))
	for p, want := range map[string][2]uint32{"": {100000, 200000}, "f": {101000, 201001}, "s": {100000, 200000}} {
		st := lstat(t, filepath.Join(root, p))
		if st.Uid != want[0] || st.Gid != want[1] {
			t.Errorf("%q: ids %d:%d, want %d:%d", p, st.Uid, st.Gid, want[0], want[1])
		}
	}

	bad := testutil.File("unmapped", "x")
	bad.Header.Uid = 70000
	_, err := applyTo(t, t.TempDir(), testutil.Tar(t, bad), WithIDMap(m))
	if !errors.Is(err, ErrUnmappedID) || !strings.Contains(err.Error(), "unmapped") {
		t.Fatalf("err = %v, want ErrUnmappedID naming the entry", err)
	}
}

func TestApplyLimits(t *testing.T) {
	testutil.RequireRoot(t)
	b := testutil.Tar(t, testutil.File("a", "12345"), testutil.File("b", "67890"), testutil.File("c", ""))
	if _, err := applyTo(t, t.TempDir(), b, WithMaxBytes(10), WithMaxEntries(3)); err != nil {
		t.Fatalf("at the limits: %v", err)
	}
	root := t.TempDir()
	_, err := applyTo(t, root, b, WithMaxBytes(9))
	if !errors.Is(err, ErrLimitExceeded) || !strings.Contains(err.Error(), `"./b"`) || !strings.Contains(err.Error(), "max bytes") {
		t.Errorf("max bytes: %v", err)
	}
	if exists(filepath.Join(root, "b")) {
		t.Error("the entry over the limit was written")
	}
	_, err = applyTo(t, t.TempDir(), b, WithMaxEntries(2))
	if !errors.Is(err, ErrLimitExceeded) || !strings.Contains(err.Error(), `"./c"`) || !strings.Contains(err.Error(), "max entries") {
		t.Errorf("max entries: %v", err)
	}
	// Data carried by OCI whiteout files counts too.
	_, err = applyTo(t, t.TempDir(), testutil.Tar(t, testutil.File(".wh.x", strings.Repeat("z", 100))), WithMaxBytes(10))
	if !errors.Is(err, ErrLimitExceeded) {
		t.Errorf("whiteout data: %v", err)
	}
	for _, opt := range []ApplyOpt{WithMaxBytes(-1), WithMaxEntries(-1)} {
		if _, err := applyTo(t, t.TempDir(), b, opt); err == nil {
			t.Error("negative limit accepted")
		}
	}
}

func TestApplyDevices(t *testing.T) {
	testutil.RequireRoot(t)
	null := testutil.Whiteout("dev/null")
	null.Header.Devmajor, null.Header.Devminor, null.Header.Mode = 1, 3, 0o666
	blk := testutil.Node{Header: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/loop9", Devmajor: 7, Devminor: 9, Mode: 0o660, ModTime: testutil.BuildTime}}
	for _, dev := range []testutil.Node{null, blk} {
		root := t.TempDir()
		_, err := applyTo(t, root, testutil.Tar(t, testutil.Dir("dev/"), dev))
		if !errors.Is(err, ErrDeviceNotAllowed) || !strings.Contains(err.Error(), dev.Header.Name) {
			t.Errorf("%s: err = %v, want ErrDeviceNotAllowed naming it", dev.Header.Name, err)
		}
		if exists(filepath.Join(root, dev.Header.Name)) {
			t.Errorf("%s created", dev.Header.Name)
		}
	}
	root := t.TempDir()
	mustApply(t, root, testutil.Tar(t, testutil.Dir("dev/"), null, blk), WithAllowDevices(true))
	if st := lstat(t, filepath.Join(root, "dev/null")); st.Mode != unix.S_IFCHR|0o666 || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("dev/null: mode %o rdev %x", st.Mode, st.Rdev)
	}
	if st := lstat(t, filepath.Join(root, "dev/loop9")); st.Mode != unix.S_IFBLK|0o660 || st.Rdev != unix.Mkdev(7, 9) {
		t.Errorf("dev/loop9: mode %o rdev %x", st.Mode, st.Rdev)
	}
}

func TestApplyUnsupported(t *testing.T) {
	testutil.RequireRoot(t)
	odd := testutil.Node{Header: tar.Header{Typeflag: 'Z', Name: "odd", ModTime: testutil.BuildTime}}
	_, err := applyTo(t, t.TempDir(), testutil.Tar(t, odd))
	if !errors.Is(err, ErrUnsupportedEntry) || !strings.Contains(err.Error(), `"./odd"`) {
		t.Errorf("err = %v", err)
	}
	rootFile := testutil.File(".", "")
	_, err = applyTo(t, t.TempDir(), testutil.Tar(t, rootFile))
	if !errors.Is(err, ErrUnsupportedEntry) {
		t.Errorf("root as a file: %v", err)
	}
	_, err = applyTo(t, t.TempDir(), testutil.Tar(t, testutil.Whiteout(".")))
	if !errors.Is(err, ErrInsecurePath) {
		t.Errorf("whiteout of the root: %v", err)
	}
}

// Hostile snapshots: each fails with an error naming the entry, and nothing
// outside the root changes.
func TestApplyHostile(t *testing.T) {
	testutil.RequireRoot(t)
	dev := testutil.Whiteout("sda")
	dev.Header.Devmajor = 8
	type hostile struct {
		name    string
		setup   []testutil.Node // created under the root first; "{base}" in a link target is the base
		entries func(base string) []testutil.Node
		want    error
		names   string // the error names this entry
	}
	one := func(es ...testutil.Node) func(string) []testutil.Node {
		return func(string) []testutil.Node { return es }
	}
	tests := []hostile{
		{name: "dotdot", entries: one(testutil.File("../x", "pwned")), want: ErrInsecurePath, names: "../x"},
		{name: "absolute", entries: one(testutil.File("/abs", "pwned")), want: ErrInsecurePath, names: "/abs"},
		{name: "dotdot in the middle", entries: one(testutil.File("a/../../x", "pwned")), want: ErrInsecurePath, names: "a/../../x"},
		{name: "dot-slash dotdot", entries: one(testutil.File("./../x", "pwned")), want: ErrInsecurePath, names: "./../x"},
		{name: "dotdot directory", entries: one(testutil.Dir("../")), want: ErrInsecurePath, names: "../"},
		{name: "symlink to / then through it", entries: func(base string) []testutil.Node {
			return []testutil.Node{testutil.Symlink("evil", "/"), testutil.File("evil"+base+"/x", "pwned")}
		}, want: ErrInsecurePath, names: "evil"},
		{name: "symlink to .. then through it", entries: one(testutil.Symlink("evil", ".."), testutil.File("evil/x", "pwned")), want: ErrInsecurePath, names: "evil/x"},
		{name: "symlink to ../.. then through it", entries: func(base string) []testutil.Node {
			return []testutil.Node{testutil.Symlink("evil", "../.."), testutil.File("evil/"+filepath.Base(base)+"/x", "pwned")}
		}, want: ErrInsecurePath, names: "evil/"},
		{name: "symlink to / then a directory through it", entries: one(testutil.Symlink("evil", "/"), testutil.Dir("evil/tmp/")), want: ErrInsecurePath, names: "evil/tmp"},
		{name: "nested symlink chain out", entries: one(testutil.Dir("a/"), testutil.Symlink("a/up", ".."), testutil.Symlink("a/up2", "up/.."), testutil.File("a/up2/x", "pwned")), want: ErrInsecurePath, names: "a/up2/x"},
		{name: "hard link to /etc/shadow", entries: one(testutil.Hardlink("shadow", "/etc/shadow")), want: ErrInsecurePath, names: "/etc/shadow"},
		{name: "hard link to ../victim", entries: one(testutil.Hardlink("v", "../victim")), want: ErrInsecurePath, names: "../victim"},
		{name: "hard link through a symlink", entries: one(testutil.Symlink("evil", ".."), testutil.Hardlink("v", "evil/victim")), want: ErrInsecurePath, names: "./v"},
		{name: "OCI whiteout ../.wh.victim", entries: one(testutil.File("../.wh.victim", "")), want: ErrInsecurePath, names: "../.wh.victim"},
		{name: "char-dev whiteout ../victim", entries: one(testutil.Whiteout("../victim")), want: ErrInsecurePath, names: "../victim"},
		{name: "whiteout through a symlink", entries: one(testutil.Symlink("evil", ".."), testutil.Whiteout("evil/victim")), want: ErrInsecurePath, names: "evil/victim"},
		{name: "OCI whiteout through a symlink", entries: one(testutil.Symlink("evil", ".."), testutil.File("evil/.wh.victim", "")), want: ErrInsecurePath, names: "evil/victim"},
		{name: "opaque marker ../.wh..wh..opq", entries: one(testutil.File("../.wh..wh..opq", "")), want: ErrInsecurePath, names: "../.wh..wh..opq"},
		{name: "opaque marker through a symlink", entries: one(testutil.Symlink("evil", ".."), testutil.File("evil/victimdir/.wh..wh..opq", "")), want: ErrInsecurePath, names: "evil/victimdir"},
		{name: "opaque directory through a symlink", entries: one(testutil.Symlink("evil", ".."), testutil.Dir("evil/victimdir/").WithPAX("SCHILY.xattr.trusted.overlay.opaque", "y")), want: ErrInsecurePath, names: "evil/victimdir"},
		{name: "directory replaced by a symlink out", entries: one(testutil.Dir("a/"), testutil.File("a/x", "x"), testutil.Symlink("a", ".."), testutil.File("a/victim", "pwned")),
			want: ErrInsecurePath, names: "a/victim"},
		{name: "device node", entries: one(dev), want: ErrDeviceNotAllowed, names: "sda"},
		{name: "pre-existing absolute symlink out", setup: []testutil.Node{testutil.Symlink("link", "{base}/victimdir")},
			entries: one(testutil.File("link/x", "pwned")), want: ErrInsecurePath, names: "link/x"},
		{name: "pre-existing relative symlink out", setup: []testutil.Node{testutil.Symlink("etc/link", "../../victimdir")},
			entries: one(testutil.Dir("etc/"), testutil.File("etc/link/x", "pwned")), want: ErrInsecurePath, names: "etc/link/x"},
		{name: "pre-existing symlink out, chmod through it", setup: []testutil.Node{testutil.Symlink("link", "../victimdir")},
			entries: one(testutil.Dir("link/sub/")), want: ErrInsecurePath, names: "link/sub"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			root := filepath.Join(base, "root")
			testutil.BuildTree(t, base, testutil.Dir("root/"), testutil.File("victim", "precious"), testutil.File("victimdir/keep", "keep"))
			for _, n := range tt.setup {
				n.Header.Linkname = strings.ReplaceAll(n.Header.Linkname, "{base}", base)
				testutil.BuildTree(t, root, n)
			}
			before := outside(t, base)
			_, err := applyTo(t, root, testutil.Tar(t, tt.entries(base)...))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.names) {
				t.Errorf("error %q does not name %q", err, tt.names)
			}
			t.Log(err)
			if after := outside(t, base); after != before {
				t.Errorf("outside the root changed:\n%s", testutil.TreeDiff(before, after))
			}
		})
	}
}

// The real use: the root is a merged overlay mount (a container's rootfs);
// the changes land in its upper directory, whiteouts and opaque directories
// as overlayfs writes them.
func TestApplyOverlayMount(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	lower, upper, work, merged := filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	testutil.BuildTree(t, base,
		testutil.File("lower/gone", "g"),
		testutil.File("lower/gonedir/x", "x"),
		testutil.File("lower/keep", "k"),
		testutil.File("lower/late/keepname", "old"),
		testutil.File("lower/late/old", "o"),
		testutil.File("lower/oci/old", "o"),
		testutil.File("lower/oldfile", "f"),
		testutil.File("lower/opq/old1", "1"),
		testutil.File("lower/opq/oldsub/x", "x"),
		testutil.File("lower/plain/old", "o"),
		testutil.Dir("merged/"),
		testutil.Dir("upper/"),
		testutil.Dir("work/"),
	)
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		testutil.SkipOrFail(t, "mount overlay: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(merged, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})

	b := testutil.Tar(t,
		testutil.Dir("./"),
		testutil.Whiteout("./gone"),
		testutil.Hardlink("./gonedir", "./gone"),
		testutil.Dir("./late/"),
		testutil.File("./late/keepname", "new"),
		testutil.File("./late/.wh..wh..opq", ""), // marker after a child
		testutil.Dir("./oci/"),
		testutil.File("./oci/.wh..wh..opq", ""),
		testutil.File("./oci/new", "n"),
		testutil.Dir("./oldfile/"), // a directory over a lower file
		testutil.File("./oldfile/x", "x"),
		testutil.Dir("./opq/").WithPAX("SCHILY.xattr.trusted.overlay.opaque", "y"),
		testutil.File("./opq/new", "n"),
		testutil.Dir("./plain/"),
		testutil.File("./plain/new", "n"),
	)
	mustApply(t, merged, b)

	wantNames(t, merged, "keep", "late", "oci", "oldfile", "opq", "plain")
	wantNames(t, filepath.Join(merged, "opq"), "new")
	wantNames(t, filepath.Join(merged, "oci"), "new")
	wantNames(t, filepath.Join(merged, "late"), "keepname")
	wantNames(t, filepath.Join(merged, "plain"), "new", "old")
	wantNames(t, filepath.Join(merged, "oldfile"), "x")
	if c := readFile(t, filepath.Join(merged, "late/keepname")); c != "new" {
		t.Errorf("late/keepname %q", c)
	}

	// The upper holds what overlayfs writes for such changes: char 0/0
	// whiteouts, and opaque directories.
	for _, w := range []string{"gone", "gonedir"} {
		st := lstat(t, filepath.Join(upper, w))
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("upper/%s: mode %o rdev %d, want a whiteout", w, st.Mode, st.Rdev)
		}
	}
	for _, d := range []string{"opq", "oci"} {
		if v := getxattr(t, filepath.Join(upper, d), "trusted.overlay.opaque"); v != "y" {
			t.Errorf("upper/%s: trusted.overlay.opaque = %q, want y", d, v)
		}
	}
	if v := getxattr(t, filepath.Join(upper, "plain"), "trusted.overlay.opaque"); v == "y" {
		t.Error("upper/plain is opaque")
	}
	// Lower untouched.
	wantNames(t, filepath.Join(lower, "opq"), "old1", "oldsub")
	if c := readFile(t, filepath.Join(lower, "gone")); c != "g" {
		t.Errorf("lower/gone %q", c)
	}
}

func TestApplyProgressAndCancel(t *testing.T) {
	testutil.RequireRoot(t)
	var entries []testutil.Node
	for i := 0; i < 200; i++ {
		entries = append(entries, testutil.File(fmt.Sprintf("f%03d", i), "x"))
	}
	b := testutil.Tar(t, entries...)
	var calls []Stats
	st := mustApply(t, t.TempDir(), b, WithProgress(func(s Stats) { calls = append(calls, s) }))
	if len(calls) < 3 || len(calls) > 5 || calls[len(calls)-1] != st {
		t.Errorf("progress calls %+v, final %+v", calls, st)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Apply(ctx, f, bytes.NewReader(b)); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
}

func TestApplyIntegrity(t *testing.T) {
	testutil.RequireRoot(t)
	valid := testutil.Tar(t, testutil.File("a", "aaaa"), testutil.File("b", strings.Repeat("b", 2000)))
	gz := compress(t, valid, CompressionGzip)
	gz[len(gz)-8] ^= 0xff
	for name, in := range map[string][]byte{
		"truncated":     valid[:len(valid)-1024],
		"truncated mid": valid[:len(valid)-1500],
		"bad gzip crc":  gz,
		"not a tar":     bytes.Repeat([]byte("nope"), 300),
	} {
		if _, err := applyTo(t, t.TempDir(), in); err == nil {
			t.Errorf("%s: applied", name)
		}
	}
	if _, err := applyTo(t, t.TempDir(), compress(t, valid, CompressionZstd)); err != nil {
		t.Errorf("zstd: %v", err)
	}
}

// A snapshot applied twice (a container restarted from its own export)
// gives the same tree.
func TestApplyIdempotent(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	b := testutil.Tar(t, gvisorUpper()...)
	mustApply(t, root, b)
	first := testutil.DescribeTree(t, root, testutil.WithoutCtime())
	mustApply(t, root, b)
	if second := testutil.DescribeTree(t, root, testutil.WithoutCtime()); second != first {
		t.Errorf("second apply differs:\n%s", testutil.TreeDiff(first, second))
	}
}

func BenchmarkApply(b *testing.B) {
	testutil.RequireRoot(b)
	entries := []testutil.Node{testutil.Dir("./")}
	for d := 0; d < 50; d++ {
		entries = append(entries, testutil.Dir(fmt.Sprintf("./d%02d/", d)))
		for f := 0; f < 100; f++ {
			entries = append(entries, testutil.File(fmt.Sprintf("./d%02d/f%03d", d, f), strings.Repeat("x", 4096)))
		}
	}
	tarball := testutil.Tar(b, entries...)
	b.SetBytes(int64(len(tarball)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		root := b.TempDir()
		b.StartTimer()
		if _, err := applyTo(b, root, tarball); err != nil {
			b.Fatal(err)
		}
	}
}

// GNU tar's own PAX archives apply as GNU tar would extract them: sparse
// files, hard links, fifos, xattrs, setuid, nanosecond times, and the
// 10 KiB record padding after the end-of-archive blocks.
func TestApplyGNUTar(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "tar")
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	testutil.BuildTree(t, base,
		testutil.Dir("dst/"),
		testutil.File("src/bin/tool", "#!/bin/sh\n"),
		testutil.Dir("src/empty/"),
		testutil.File("src/etc/app.conf", "key=value\n"),
		testutil.Symlink("src/sym", "etc/app.conf"),
	)
	sparse := filepath.Join(src, "sparse")
	if err := os.WriteFile(sparse, []byte("head"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(sparse, 8<<20); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "etc/app.conf"), filepath.Join(src, "hard")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(src, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "bin/tool"), 0o4755); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(src, "etc/app.conf"), 1234, 5678); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(src, "etc/app.conf"), "user.origin", []byte("gnu"), 0); err != nil {
		t.Fatal(err)
	}
	ts := []unix.Timespec{unix.NsecToTimespec(tAtime.UnixNano()), unix.NsecToTimespec(tMtime.UnixNano())}
	for _, p := range []string{"etc/app.conf", "etc", "sym", "empty", "."} {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(src, p), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("tar", "--format=pax", "--xattrs", "--xattrs-include=*", "--sparse", "--numeric-owner",
		"-C", src, "-cf", "-", ".").Output()
	if err != nil {
		t.Fatalf("tar: %v", err)
	}
	if len(out)%10240 != 0 {
		t.Fatalf("tar wrote %d bytes, want whole 10 KiB records", len(out))
	}
	mustApply(t, dst, out)

	if got, want := testutil.DescribeTree(t, dst, testutil.WithoutCtime(), testutil.WithoutTimesOf(".")), testutil.DescribeTree(t, src, testutil.WithoutCtime(), testutil.WithoutTimesOf(".")); got != want {
		t.Errorf("applied tree differs from the source:\n got:\n%s\nwant:\n%s", got, want)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dst, "sparse"), &st); err == nil && st.Blocks*512 > 1<<20 {
		t.Logf("sparse file written dense: %d blocks (holes are not recreated)", st.Blocks)
	}
}

// Restore a snapshot onto a container's rootfs, with the container's user
// namespace mapping and limits. (Not run: it needs root.)
func ExampleApply() {
	root, err := os.OpenFile("/run/containers/storage/overlay/abc/merged", os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		panic(err)
	}
	defer root.Close()
	snap, err := os.Open("/var/lib/ocisnap/web.tar.zst")
	if err != nil {
		panic(err)
	}
	defer snap.Close()
	st, err := Apply(context.Background(), root, snap,
		WithIDMap(&IDMap{
			UIDs: []IDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
			GIDs: []IDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
		}),
		WithMaxBytes(10<<30),
		WithMaxEntries(500_000))
	if err != nil {
		panic(err) // names the entry: apply "./evil/x": layer: insecure path: ...
	}
	fmt.Printf("%d entries, %d bytes\n", st.Entries, st.Bytes)
}

// TestApplySelfHardlink: GNU tar archives a path named twice (tar -cf x
// ./ ./etc) a second time as a hard link to itself; applying it keeps the
// file its first entry made, rather than remove it and fail linking to it.
func TestApplySelfHardlink(t *testing.T) {
	root := t.TempDir()
	mustApply(t, root, testutil.Tar(t,
		testutil.Dir("./"), testutil.Dir("./etc/"), testutil.File("./etc/motd", "hello"),
		testutil.Dir("./etc/"), testutil.Hardlink("./etc/motd", "./etc/motd")))
	if got := readFile(t, filepath.Join(root, "etc/motd")); got != "hello" {
		t.Fatalf("etc/motd holds %q, want %q", got, "hello")
	}
}
