//go:build linux

package layer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// withParallelism runs Apply and Write with n workers (1: serial) until the
// test ends.
func withParallelism(t testing.TB, n int) {
	t.Helper()
	old := parallelism
	parallelism = n
	t.Cleanup(func() { parallelism = old })
}

// manyFiles is a new directory of n small files with varied owners,
// modes and xattrs.
func manyFiles(dir string, n int) []testutil.Node {
	out := []testutil.Node{testutil.Dir(dir + "/")}
	for i := 0; i < n; i++ {
		e := testutil.File(fmt.Sprintf("%s/f%03d", dir, i), strings.Repeat(string(rune('a'+i%26)), i*37%5000))
		switch i % 6 {
		case 1:
			e.Header.Uid, e.Header.Gid = 1000, 1000
		case 2:
			e.Header.Mode = 0o4755
		case 3:
			e.Header.Mode = 0o666
		case 4:
			e.Header.Gid = 1234
		case 5:
			e = e.WithPAX("SCHILY.xattr.user.origin", fmt.Sprint(i))
		}
		out = append(out, e)
	}
	return out
}

// The parallel applier gives what the serial one gives, error included,
// also where a later entry meets a file a worker has yet to create.
func TestApplyParallelMatchesSerial(t *testing.T) {
	testutil.RequireRoot(t)
	big := testutil.File("d/big", strings.Repeat("B", poolMaxFile+1))
	cases := []struct {
		name    string
		setup   []testutil.Node
		entries []testutil.Node
	}{
		{"new files", nil, append(append(manyFiles("d", 300), manyFiles("e", 50)...), big)},
		{"whiteout of a file being created", nil, append(manyFiles("d", 100), testutil.Whiteout("d/f050"), testutil.Whiteout("d"), testutil.File("d/f001", "again"))},
		{"name reused", nil, append(manyFiles("d", 100), testutil.File("d/f007", "second"), testutil.File("d/f008", "third"))},
		{"hard link to a file being created", nil, append(manyFiles("d", 100), testutil.Dir("e/"), testutil.Hardlink("e/link", "d/f099"), testutil.Hardlink("d/f100", "d/f003"))},
		{"path through a file being created", nil, append(manyFiles("d", 50), testutil.File("d/f049/x", "x"))},
		{"file replaced by a directory", nil, append(manyFiles("d", 50), testutil.Dir("d/f010/"), testutil.File("d/f010/x", "x"))},
		{"directory metadata after its files", nil, func() []testutil.Node {
			es := manyFiles("d", 50)
			again := testutil.Dir("d/")
			again.Header.Mode, again.Header.Gid = 0o2775, 1234
			es = append(es, again)
			return append(es, manyFiles("d", 80)[51:]...)
		}()},
		{"opaque marker after its files", []testutil.Node{testutil.File("o/old", "old"), testutil.File("o/sub/x", "x")},
			append(manyFiles("o", 40), testutil.File("o/.wh..wh..opq", ""))},
		{"existing directories", []testutil.Node{testutil.File("etc/f005", "old"), testutil.File("etc/keep", "k")}, manyFiles("etc", 60)},
		{"symlink in the way", []testutil.Node{testutil.Dir("d/"), testutil.Symlink("d/f003", "/etc/passwd")}, manyFiles("d", 10)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := testutil.Tar(t, c.entries...)
			var want, wantErr string
			for i, n := range []int{1, 2, 4} {
				withParallelism(t, n)
				root := t.TempDir()
				if c.setup != nil {
					testutil.BuildTree(t, root, c.setup...)
				}
				_, err := applyTo(t, root, b)
				// Times the snapshot does not set: the setup's, and the
				// directories' when Apply stopped before setting them.
				noTimes := []string{"."}
				for _, s := range c.setup {
					noTimes = append(noTimes, strings.TrimSuffix(s.Header.Name, "/"))
				}
				for _, e := range c.entries {
					if err != nil && e.Header.Typeflag == '5' {
						noTimes = append(noTimes, strings.TrimSuffix(e.Header.Name, "/"))
					}
				}
				got, gotErr := testutil.DescribeTree(t, root, testutil.WithoutCtime(), testutil.WithoutTimesOf(noTimes...)), fmt.Sprint(err)
				if i == 0 {
					want, wantErr = got, gotErr
					continue
				}
				if gotErr != wantErr {
					t.Errorf("%d workers: error %s, serial %s", n, gotErr, wantErr)
				}
				if got != want {
					t.Errorf("%d workers: tree differs from the serial one: %s", n, "\n"+testutil.TreeDiff(want, got))
				}
			}
		})
	}
}

// A new file gets exactly the entry's owner and mode, whatever the
// directory (setgid, another group, a default ACL) and the umask: creating
// it with its mode and without a chown must not change the result.
func TestApplyCreatedOwnerAndMode(t *testing.T) {
	testutil.RequireRoot(t)
	old := unix.Umask(0o027)
	defer unix.Umask(old)
	for _, n := range []int{1, 2} {
		withParallelism(t, n)
		root := t.TempDir()
		testutil.BuildTree(t, root, testutil.Dir("acl/"), testutil.Dir("grp/"), testutil.Dir("sgid/"))
		if err := os.Chown(filepath.Join(root, "sgid"), 0, 1234); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(root, "sgid"), 0o2775); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(root, "grp"), 0, 1234); err != nil {
			t.Fatal(err)
		}
		acl := true
		if err := unix.Setxattr(filepath.Join(root, "acl"), "system.posix_acl_default", defaultACL(0o7, 0, 0), 0); err != nil {
			if !errors.Is(err, unix.EOPNOTSUPP) {
				t.Fatal(err)
			}
			acl = false
		}
		newDir := testutil.Dir("new/")
		newDir.Header.Mode, newDir.Header.Gid = 0o2755, 1234
		var es []testutil.Node
		for _, dir := range []string{"sgid", "grp", "acl", "new", "plain"} {
			if dir == "new" {
				es = append(es, newDir)
			}
			for i, mode := range []int64{0o644, 0o640, 0o755, 0o666, 0o4755, 0o1777, 0o600} {
				e := testutil.File(fmt.Sprintf("%s/m%d", dir, i), "x")
				e.Header.Mode = mode
				es = append(es, e)
			}
			own := testutil.File(dir+"/owned", "y")
			own.Header.Gid = 1234
			es = append(es, own)
		}
		mustApply(t, root, testutil.Tar(t, es...))
		for _, e := range es {
			if e.Header.Typeflag != '0' {
				continue
			}
			if !acl && strings.HasPrefix(e.Header.Name, "acl/") {
				continue
			}
			st := lstat(t, filepath.Join(root, e.Header.Name))
			if st.Mode&0o7777 != uint32(e.Header.Mode) || int(st.Uid) != e.Header.Uid || int(st.Gid) != e.Header.Gid {
				t.Errorf("%d workers: %s: mode %o owner %d:%d, want %o %d:%d", n, e.Header.Name, st.Mode&0o7777, st.Uid, st.Gid, e.Header.Mode, e.Header.Uid, e.Header.Gid)
			}
		}
	}
}

// defaultACL encodes a default ACL (user::, group::, other:: permissions)
// in the kernel's xattr format (include/uapi/linux/posix_acl_xattr.h).
func defaultACL(user, group, other uint16) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range [][2]uint16{{0x01, user}, {0x04, group}, {0x20, other}} {
		b = binary.LittleEndian.AppendUint16(b, e[0])
		b = binary.LittleEndian.AppendUint16(b, e[1])
		b = binary.LittleEndian.AppendUint32(b, 0xffffffff)
	}
	return b
}

// A worker's failure names its entry and stops the restore.
func TestApplyParallelError(t *testing.T) {
	testutil.RequireRoot(t)
	withParallelism(t, 2)
	root := t.TempDir()
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=256k"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(root, unix.MNT_DETACH)
	var es []testutil.Node
	for i := 0; i < 200; i++ {
		es = append(es, testutil.File(fmt.Sprintf("d/f%03d", i), strings.Repeat("z", 8192)))
	}
	_, err := applyTo(t, root, testutil.Tar(t, append([]testutil.Node{testutil.Dir("d/")}, es...)...))
	if !errors.Is(err, unix.ENOSPC) || !strings.HasPrefix(err.Error(), `apply "./d/f`) {
		t.Errorf("err = %v, want ENOSPC naming a file", err)
	}
}

// The two-stage Write gives the serial Write's bytes, and its error.
func TestWriteParallelMatchesSerial(t *testing.T) {
	testutil.RequireRoot(t)
	upper := t.TempDir()
	files := []testutil.Node{testutil.File("big", strings.Repeat("0123456789", exportSmallFile/5)), testutil.Symlink("l", "big"), testutil.Dir("e/")}
	for i := 0; i < 500; i++ {
		files = append(files, testutil.File(fmt.Sprintf("d%d/f%03d", i%7, i), strings.Repeat("x", i*13)))
	}
	testutil.BuildTree(t, upper, files...)
	if err := os.Link(filepath.Join(upper, "d1/f001"), filepath.Join(upper, "d1/hard")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(upper, "gone"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(upper, "d2"), XattrOpaque, []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	write := func(n int, opts ...WriteOpt) ([]byte, error) {
		withParallelism(t, n)
		var buf bytes.Buffer
		_, err := Write(context.Background(), &buf, upper, opts...)
		return buf.Bytes(), err
	}
	for _, f := range []Format{FormatOverlay, FormatOCI} {
		want, err := write(1, WithFormat(f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := write(2, WithFormat(f))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: two stages: %d bytes, %v; serial %d bytes", f, len(got), err, len(want))
		}
	}
	// A metacopy file without lowers fails the export at that file.
	if err := unix.Setxattr(filepath.Join(upper, "d3/f003"), XattrMetacopy, nil, 0); err != nil {
		t.Fatal(err)
	}
	_, serialErr := write(1)
	_, err := write(2)
	if serialErr == nil || fmt.Sprint(err) != serialErr.Error() {
		t.Errorf("two stages: %v; serial: %v", err, serialErr)
	}
}
