//go:build linux

package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
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

// tree creates files ("name" → content; a trailing "/" makes a directory;
// "->target" a symlink) under dir.
func tree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		c := files[n]
		var err error
		switch {
		case strings.HasSuffix(n, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(c, "->"):
			err = os.Symlink(c[2:], p)
		default:
			err = os.WriteFile(p, []byte(c), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
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

	dir := tDir("./dir/")
	dir.h.ModTime, dir.h.Mode, dir.h.Uid, dir.h.Gid = dirTime, 0o2750, 1234, 5678
	dir = dir.with("SCHILY.xattr.user.dir", "dirval")
	sticky := tDir("./tmp/")
	sticky.h.Mode = 0o1777
	file := tFile("./dir/file", "hello").with("SCHILY.xattr.user.test", "val", "SCHILY.xattr.trusted.overlay.origin", "x")
	file.h.Mode, file.h.Uid, file.h.Gid, file.h.ModTime, file.h.AccessTime = 0o4755, 1234, 5678, tMtime, tAtime
	setgid := tFile("./dir/sgid", "")
	setgid.h.Mode = 0o2711
	sym := tSymlink("./dir/sym", "file").with("SCHILY.xattr.trusted.test", "t", "SCHILY.xattr.user.skipped", "u")
	sym.h.Uid, sym.h.Gid, sym.h.ModTime = 1234, 5678, tMtime
	fifo := tFifo("./dir/fifo")
	fifo.h.Uid, fifo.h.Gid, fifo.h.Mode = 42, 43, 0o4620
	link := tLink("./dir/hard", "./dir/file")
	// Entries after the directory's own: they must not undo its mtime.
	late := tFile("./dir/sub/late", "late")
	b := buildTar(t, tDir("./"), dir, sticky, file, setgid, sym, fifo, link, tDir("./dir/sub/"), late)

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
	mustApply(t, root, buildTar(t, tFile("a/b/c/file", "x"), tFile("a/b/other", "y")))
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
	tree(t, base, map[string]string{
		"victim":                 "precious",
		"victimdir/keep":         "keep",
		"root/dirdir/old":        "old",
		"root/fileoverdir/x/y":   "y",
		"root/diroverfile":       "file",
		"root/symoverfile":       "file",
		"root/fileoversym":       "->../victim",
		"root/diroversym":        "->../victimdir",
		"root/fileoverfile":      "old content, longer than the new",
		"root/linkoversym":       "->/etc/passwd",
		"root/whiteoutsym":       "->../victimdir",
		"root/fifooverfile":      "f",
		"root/hardtosym":         "->../victim",
		"root/dirdir/sub/nested": "n",
	})
	if err := os.Chmod(filepath.Join(base, "victimdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	victimBefore := lstat(t, filepath.Join(base, "victim"))

	dd := tDir("dirdir/")
	dd.h.Mode, dd.h.Uid, dd.h.Gid = 0o711, 7, 8
	dos := tDir("diroversym/")
	dos.h.Mode = 0o777
	b := buildTar(t,
		dd,
		tFile("fileoverdir", "now a file"),
		tDir("diroverfile/"),
		tFile("diroverfile/child", "c"),
		tSymlink("symoverfile", "target"),
		tFile("fileoversym", "not through the symlink"),
		dos,
		tFile("fileoverfile", "new"),
		tLink("linkoversym", "fileoverfile"),
		tWhiteout("whiteoutsym"),
		tFifo("fifooverfile"),
		tLink("viasym", "hardtosym"), // links the symlink itself
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
	tree(t, root, map[string]string{
		"f1": "1", "f2": "2", "f3": "3", "f4": "4",
		"d1/a/b": "x", "d2/a": "x", "keep": "k", "sub/f5": "5",
	})
	b := buildTar(t,
		tDir("./"),
		tWhiteout("./d1"),     // overlay whiteout of a directory
		tWhiteout("./f1"),     // overlay whiteout of a file
		tLink("./f2", "./f1"), // gVisor: later whiteouts link to the first
		tFile("./.wh.f3", ""), // OCI whiteout of a file
		tFile("./.wh.d2", ""), // OCI whiteout of a directory
		tWhiteout("./absent"), // absent: fine
		tFile("./.wh.absent2", ""),
		tWhiteout("./nodir/absent"), // absent parent: fine
		tDir("./sub/"),
		tLink("./sub/f5", "./f1"),
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
	old := map[string]string{
		"d/old": "o", "d/keepname": "old content", "d/sub/oldnested": "o", "d/oldsub/x": "x",
	}
	opaqueDir := func(name string, kv ...string) tent {
		d := tDir(name).with(kv...)
		d.h.Mode, d.h.Uid, d.h.ModTime = 0o750, 99, dirTime
		return d
	}
	children := []tent{tFile("d/keepname", "new"), tDir("d/sub/"), tFile("d/sub/new", "n")}
	tests := []struct {
		name     string
		entries  []tent
		markerMd bool // the directory keeps its old metadata (marker only)
	}{
		{"overlay trusted.overlay.opaque", append([]tent{opaqueDir("d/", "SCHILY.xattr.trusted.overlay.opaque", "y")}, children...), false},
		{"gVisor user.overlay.opaque", append([]tent{opaqueDir("d/", "SCHILY.xattr.user.overlay.opaque", "y")}, children...), false},
		{"OCI marker before the children", append([]tent{opaqueDir("d/"), tFile("d/.wh..wh..opq", "")}, children...), false},
		{"OCI marker after the children", append(append([]tent{opaqueDir("d/")}, children...), tFile("d/.wh..wh..opq", "")), false},
		{"OCI marker without the directory entry", append([]tent{tFile("d/.wh..wh..opq", "")}, children...), true},
		{"OCI marker last, no directory entry", append(append([]tent{}, children...), tFile("d/.wh..wh..opq", "")), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			tree(t, root, old)
			if err := os.Chmod(filepath.Join(root, "d"), 0o701); err != nil {
				t.Fatal(err)
			}
			if err := unix.Setxattr(filepath.Join(root, "d"), "user.old", []byte("1"), 0); err != nil {
				t.Fatal(err)
			}
			mustApply(t, root, buildTar(t, tt.entries...))
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
	mustApply(t, root, buildTar(t,
		tDir("a/"), tFile("a/x", "x"), tDir("a/b/"), tFile("a/b/y", "y"),
		tWhiteout("a"), tDir("a/"), tFile("a/z", "z"), // whiteout, then again
		tDir("c/"), tFile("c/1", "1"), tFile("c", "now a file"),
		tDir("d/"), tFile("d/1", "1"),
		tDir("d/").with("SCHILY.xattr.trusted.overlay.opaque", "y"), tFile("d/2", "2"),
		tDir("e/"), tDir("e/f/"), tFile("e/f/1", "1"), tFile("e/.wh..wh..opq", ""), tFile("e/f/2", "2"),
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
	tree(t, root, map[string]string{"old": "o", "olddir/x": "x", "kept/old": "o"})
	mustApply(t, root, buildTar(t,
		tDir("./").with("SCHILY.xattr.trusted.overlay.opaque", "y"),
		tDir("./kept/"),
		tFile("./new", "n"),
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
	f := tFile("f", "x")
	f.h.Uid, f.h.Gid = 1000, 1001
	s := tSymlink("s", "f")
	mustApply(t, root, buildTar(t, tDir("./"), f, s), WithIDMap(m))
	for p, want := range map[string][2]uint32{"": {100000, 200000}, "f": {101000, 201001}, "s": {100000, 200000}} {
		st := lstat(t, filepath.Join(root, p))
		if st.Uid != want[0] || st.Gid != want[1] {
			t.Errorf("%q: ids %d:%d, want %d:%d", p, st.Uid, st.Gid, want[0], want[1])
		}
	}

	bad := tFile("unmapped", "x")
	bad.h.Uid = 70000
	_, err := applyTo(t, t.TempDir(), buildTar(t, bad), WithIDMap(m))
	if !errors.Is(err, ErrUnmappedID) || !strings.Contains(err.Error(), "unmapped") {
		t.Fatalf("err = %v, want ErrUnmappedID naming the entry", err)
	}
}

func TestApplyLimits(t *testing.T) {
	testutil.RequireRoot(t)
	b := buildTar(t, tFile("a", "12345"), tFile("b", "67890"), tFile("c", ""))
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
	_, err = applyTo(t, t.TempDir(), buildTar(t, tFile(".wh.x", strings.Repeat("z", 100))), WithMaxBytes(10))
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
	null := tWhiteout("dev/null")
	null.h.Devmajor, null.h.Devminor, null.h.Mode = 1, 3, 0o666
	blk := tent{h: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/loop9", Devmajor: 7, Devminor: 9, Mode: 0o660, ModTime: rtTime}}
	for _, dev := range []tent{null, blk} {
		root := t.TempDir()
		_, err := applyTo(t, root, buildTar(t, tDir("dev/"), dev))
		if !errors.Is(err, ErrDeviceNotAllowed) || !strings.Contains(err.Error(), dev.h.Name) {
			t.Errorf("%s: err = %v, want ErrDeviceNotAllowed naming it", dev.h.Name, err)
		}
		if exists(filepath.Join(root, dev.h.Name)) {
			t.Errorf("%s created", dev.h.Name)
		}
	}
	root := t.TempDir()
	mustApply(t, root, buildTar(t, tDir("dev/"), null, blk), WithAllowDevices(true))
	if st := lstat(t, filepath.Join(root, "dev/null")); st.Mode != unix.S_IFCHR|0o666 || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("dev/null: mode %o rdev %x", st.Mode, st.Rdev)
	}
	if st := lstat(t, filepath.Join(root, "dev/loop9")); st.Mode != unix.S_IFBLK|0o660 || st.Rdev != unix.Mkdev(7, 9) {
		t.Errorf("dev/loop9: mode %o rdev %x", st.Mode, st.Rdev)
	}
}

func TestApplyUnsupported(t *testing.T) {
	testutil.RequireRoot(t)
	odd := tent{h: tar.Header{Typeflag: 'Z', Name: "odd", ModTime: rtTime}}
	_, err := applyTo(t, t.TempDir(), buildTar(t, odd))
	if !errors.Is(err, ErrUnsupportedEntry) || !strings.Contains(err.Error(), `"./odd"`) {
		t.Errorf("err = %v", err)
	}
	rootFile := tFile(".", "")
	_, err = applyTo(t, t.TempDir(), buildTar(t, rootFile))
	if !errors.Is(err, ErrUnsupportedEntry) {
		t.Errorf("root as a file: %v", err)
	}
	_, err = applyTo(t, t.TempDir(), buildTar(t, tWhiteout(".")))
	if !errors.Is(err, ErrInsecurePath) {
		t.Errorf("whiteout of the root: %v", err)
	}
}

// Hostile snapshots: each fails with an error naming the entry, and nothing
// outside the root changes.
func TestApplyHostile(t *testing.T) {
	testutil.RequireRoot(t)
	dev := tWhiteout("sda")
	dev.h.Devmajor = 8
	type hostile struct {
		name    string
		setup   map[string]string // created under the root first
		entries func(base string) []tent
		want    error
		names   string // the error names this entry
	}
	one := func(es ...tent) func(string) []tent { return func(string) []tent { return es } }
	tests := []hostile{
		{name: "dotdot", entries: one(tFile("../x", "pwned")), want: ErrInsecurePath, names: "../x"},
		{name: "absolute", entries: one(tFile("/abs", "pwned")), want: ErrInsecurePath, names: "/abs"},
		{name: "dotdot in the middle", entries: one(tFile("a/../../x", "pwned")), want: ErrInsecurePath, names: "a/../../x"},
		{name: "dot-slash dotdot", entries: one(tFile("./../x", "pwned")), want: ErrInsecurePath, names: "./../x"},
		{name: "dotdot directory", entries: one(tDir("../")), want: ErrInsecurePath, names: "../"},
		{name: "symlink to / then through it", entries: func(base string) []tent {
			return []tent{tSymlink("evil", "/"), tFile("evil"+base+"/x", "pwned")}
		}, want: ErrInsecurePath, names: "evil"},
		{name: "symlink to .. then through it", entries: one(tSymlink("evil", ".."), tFile("evil/x", "pwned")), want: ErrInsecurePath, names: "evil/x"},
		{name: "symlink to ../.. then through it", entries: func(base string) []tent {
			return []tent{tSymlink("evil", "../.."), tFile("evil/"+filepath.Base(base)+"/x", "pwned")}
		}, want: ErrInsecurePath, names: "evil/"},
		{name: "symlink to / then a directory through it", entries: one(tSymlink("evil", "/"), tDir("evil/tmp/")), want: ErrInsecurePath, names: "evil/tmp"},
		{name: "nested symlink chain out", entries: one(tDir("a/"), tSymlink("a/up", ".."), tSymlink("a/up2", "up/.."), tFile("a/up2/x", "pwned")), want: ErrInsecurePath, names: "a/up2/x"},
		{name: "hard link to /etc/shadow", entries: one(tLink("shadow", "/etc/shadow")), want: ErrInsecurePath, names: "/etc/shadow"},
		{name: "hard link to ../victim", entries: one(tLink("v", "../victim")), want: ErrInsecurePath, names: "../victim"},
		{name: "hard link through a symlink", entries: one(tSymlink("evil", ".."), tLink("v", "evil/victim")), want: ErrInsecurePath, names: "./v"},
		{name: "OCI whiteout ../.wh.victim", entries: one(tFile("../.wh.victim", "")), want: ErrInsecurePath, names: "../.wh.victim"},
		{name: "char-dev whiteout ../victim", entries: one(tWhiteout("../victim")), want: ErrInsecurePath, names: "../victim"},
		{name: "whiteout through a symlink", entries: one(tSymlink("evil", ".."), tWhiteout("evil/victim")), want: ErrInsecurePath, names: "evil/victim"},
		{name: "OCI whiteout through a symlink", entries: one(tSymlink("evil", ".."), tFile("evil/.wh.victim", "")), want: ErrInsecurePath, names: "evil/victim"},
		{name: "opaque marker ../.wh..wh..opq", entries: one(tFile("../.wh..wh..opq", "")), want: ErrInsecurePath, names: "../.wh..wh..opq"},
		{name: "opaque marker through a symlink", entries: one(tSymlink("evil", ".."), tFile("evil/victimdir/.wh..wh..opq", "")), want: ErrInsecurePath, names: "evil/victimdir"},
		{name: "opaque directory through a symlink", entries: one(tSymlink("evil", ".."), tDir("evil/victimdir/").with("SCHILY.xattr.trusted.overlay.opaque", "y")), want: ErrInsecurePath, names: "evil/victimdir"},
		{name: "directory replaced by a symlink out", entries: one(tDir("a/"), tFile("a/x", "x"), tSymlink("a", ".."), tFile("a/victim", "pwned")),
			want: ErrInsecurePath, names: "a/victim"},
		{name: "device node", entries: one(dev), want: ErrDeviceNotAllowed, names: "sda"},
		{name: "pre-existing absolute symlink out", setup: map[string]string{"link": "->{base}/victimdir"},
			entries: one(tFile("link/x", "pwned")), want: ErrInsecurePath, names: "link/x"},
		{name: "pre-existing relative symlink out", setup: map[string]string{"etc/link": "->../../victimdir"},
			entries: one(tDir("etc/"), tFile("etc/link/x", "pwned")), want: ErrInsecurePath, names: "etc/link/x"},
		{name: "pre-existing symlink out, chmod through it", setup: map[string]string{"link": "->../victimdir"},
			entries: one(tDir("link/sub/")), want: ErrInsecurePath, names: "link/sub"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			root := filepath.Join(base, "root")
			tree(t, base, map[string]string{"victim": "precious", "victimdir/keep": "keep", "root/": ""})
			for k, v := range tt.setup {
				tree(t, root, map[string]string{k: strings.ReplaceAll(v, "{base}", base)})
			}
			before := outside(t, base)
			_, err := applyTo(t, root, buildTar(t, tt.entries(base)...))
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
	tree(t, base, map[string]string{
		"lower/gone":          "g",
		"lower/gonedir/x":     "x",
		"lower/keep":          "k",
		"lower/opq/old1":      "1",
		"lower/opq/oldsub/x":  "x",
		"lower/oci/old":       "o",
		"lower/late/old":      "o",
		"lower/late/keepname": "old",
		"lower/plain/old":     "o",
		"lower/oldfile":       "f",
		"upper/":              "",
		"work/":               "",
		"merged/":             "",
	})
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		testutil.SkipOrFail(t, "mount overlay: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(merged, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})

	b := buildTar(t,
		tDir("./"),
		tWhiteout("./gone"),
		tLink("./gonedir", "./gone"),
		tDir("./late/"),
		tFile("./late/keepname", "new"),
		tFile("./late/.wh..wh..opq", ""), // marker after a child
		tDir("./oci/"),
		tFile("./oci/.wh..wh..opq", ""),
		tFile("./oci/new", "n"),
		tDir("./oldfile/"), // a directory over a lower file
		tFile("./oldfile/x", "x"),
		tDir("./opq/").with("SCHILY.xattr.trusted.overlay.opaque", "y"),
		tFile("./opq/new", "n"),
		tDir("./plain/"),
		tFile("./plain/new", "n"),
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
	var entries []tent
	for i := 0; i < 200; i++ {
		entries = append(entries, tFile(fmt.Sprintf("f%03d", i), "x"))
	}
	b := buildTar(t, entries...)
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
	valid := buildTar(t, tFile("a", "aaaa"), tFile("b", strings.Repeat("b", 2000)))
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
	b := buildTar(t, gvisorUpper()...)
	mustApply(t, root, b)
	first := testutil.DescribeTree(t, root, testutil.WithoutCtime())
	mustApply(t, root, b)
	if second := testutil.DescribeTree(t, root, testutil.WithoutCtime()); second != first {
		t.Errorf("second apply differs:\n%s", testutil.TreeDiff(first, second))
	}
}

func BenchmarkApply(b *testing.B) {
	testutil.RequireRoot(b)
	entries := []tent{tDir("./")}
	for d := 0; d < 50; d++ {
		entries = append(entries, tDir(fmt.Sprintf("./d%02d/", d)))
		for f := 0; f < 100; f++ {
			entries = append(entries, tFile(fmt.Sprintf("./d%02d/f%03d", d, f), strings.Repeat("x", 4096)))
		}
	}
	tarball := buildTar(b, entries...)
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
	tree(t, base, map[string]string{
		"src/etc/app.conf": "key=value\n",
		"src/bin/tool":     "#!/bin/sh\n",
		"src/sym":          "->etc/app.conf",
		"src/empty/":       "",
		"dst/":             "",
	})
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

	if got, want := describeTree(t, dst, "."), describeTree(t, src, "."); got != want {
		t.Errorf("applied tree differs from the source:\n got:\n%s\nwant:\n%s", got, want)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dst, "sparse"), &st); err == nil && st.Blocks*512 > 1<<20 {
		t.Logf("sparse file written dense: %d blocks (holes are not recreated)", st.Blocks)
	}
}

// describeTree lists root's tree with each inode's type, mode, owner, size,
// link count, content hash, user.origin xattr and mtime (not for the
// paths in noTimes).
func describeTree(t testing.TB, root string, noTimes ...string) string {
	t.Helper()
	var sb strings.Builder
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st := lstat(t, p)
		fmt.Fprintf(&sb, "%s mode=%o ids=%d:%d size=%d nlink=%d", rel, st.Mode, st.Uid, st.Gid, st.Size, st.Nlink)
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			fmt.Fprintf(&sb, " data=%x", sha256.Sum256(b))
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			fmt.Fprintf(&sb, " -> %s", target)
		} else {
			fmt.Fprintf(&sb, " xattr=%s", getxattr(t, p, "user.origin"))
		}
		if !slices.Contains(noTimes, rel) {
			fmt.Fprintf(&sb, " mtime=%d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
		}
		sb.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sb.String()
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
