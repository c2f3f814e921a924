//go:build linux

package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// wtOverlay is a real overlay mount in a test's temporary directory.
type wtOverlay struct {
	lowers              []string
	upper, work, merged string
}

// wtMountOverlay mounts an overlay of fresh upper/work directories over
// lowers (top first) with extra mount options.
func wtMountOverlay(t testing.TB, lowers []string, opts string) *wtOverlay {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	o := &wtOverlay{lowers: lowers, upper: dir + "/upper", work: dir + "/work", merged: dir + "/merged"}
	for _, d := range []string{o.upper, o.work, o.merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lowers, ":"), o.upper, o.work)
	if opts != "" {
		data += "," + opts
	}
	if err := unix.Mount("overlay", o.merged, "overlay", 0, data); err != nil {
		testutil.SkipOrFail(t, "mount overlay %s: %v", data, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(o.merged, unix.MNT_DETACH) })
	return o
}

func (o *wtOverlay) unmount(t testing.TB) {
	t.Helper()
	if err := unix.Unmount(o.merged, 0); err != nil {
		t.Fatalf("unmount: %v", err)
	}
}

func (o *wtOverlay) m(p string) string { return filepath.Join(o.merged, p) }

func wtWrite(t testing.TB, upper string, opts ...WriteOpt) ([]byte, Stats) {
	t.Helper()
	var buf bytes.Buffer
	st, err := Write(context.Background(), &buf, upper, opts...)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes(), st
}

func wtNames(hs []wtHeader) []string {
	var out []string
	for _, h := range hs {
		out = append(out, fmt.Sprintf("%s %c", h.Name, typeChar(h.Type)))
	}
	return out
}

func typeChar(t byte) byte {
	switch t {
	case tar.TypeReg:
		return 'f'
	case tar.TypeDir:
		return 'd'
	case tar.TypeSymlink:
		return 'l'
	case tar.TypeLink:
		return 'h'
	case tar.TypeChar:
		return 'c'
	case tar.TypeBlock:
		return 'b'
	case tar.TypeFifo:
		return 'p'
	}
	return '?'
}

func wtByName(hs []wtHeader) map[string]wtHeader {
	m := make(map[string]wtHeader, len(hs))
	for _, h := range hs {
		m[h.Name] = h
	}
	return m
}

// wtNoOverlayXattrs fails if any entry carries an overlay xattr other than
// the overlay format's opaque marker.
func wtNoOverlayXattrs(t *testing.T, hs []wtHeader, f Format) {
	t.Helper()
	for _, h := range hs {
		for k := range h.Xattrs {
			if k == XattrOpaque && f == FormatOverlay && h.Type == tar.TypeDir {
				continue
			}
			if strings.HasPrefix(k, overlayXattrPrefix) {
				t.Errorf("%s: overlay xattr %q exported", h.Name, k)
			}
		}
	}
}

func TestWriteOverlay(t *testing.T) {
	testutil.RequireRoot(t)
	lower := t.TempDir()
	testutil.BuildTree(t, lower,
		testutil.File("del-dir/a", "a"),
		testutil.File("del-dir/sub/b", "b"),
		testutil.File("del-file", "gone"),
		testutil.File("etc/app.conf", "v1\n"),
		testutil.File("keep/untouched", "same"),
		testutil.File("opq/old-dir/x", "x"),
		testutil.File("opq/old1", "old"),
		testutil.Dir("run/"),
		testutil.File("usr/bin/tool", "#!/bin/sh\n"),
		testutil.File("usr/lib/libx.so.1", "elf"),
	)
	o := wtMountOverlay(t, []string{lower}, "")
	mtime := time.Unix(1600000000, 987654321)
	capV2 := string([]byte{0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) // VFS_CAP_REVISION_2, cap_net_bind_service permitted
	steps := []func() error{
		func() error { return os.MkdirAll(o.m("new"), 0o755) },
		func() error { return os.WriteFile(o.m("new/file.txt"), []byte("new file\n"), 0o640) },
		func() error { return appendFile(o.m("etc/app.conf"), "v2\n") },
		func() error { return os.Remove(o.m("del-file")) },
		func() error { return os.RemoveAll(o.m("del-dir")) },
		func() error { return os.RemoveAll(o.m("opq")) },
		func() error { return os.Mkdir(o.m("opq"), 0o700) },
		func() error { return os.WriteFile(o.m("opq/new"), []byte("fresh"), 0o644) },
		func() error { return os.Symlink("../etc/app.conf", o.m("new/link")) },
		func() error { return os.Link(o.m("new/file.txt"), o.m("new/hard")) },
		func() error { return unix.Mkfifo(o.m("new/fifo"), 0o620) },
		func() error { return os.Chmod(o.m("new/fifo"), 0o620) },
		func() error { return unix.Setxattr(o.m("new/file.txt"), "user.comment", []byte("hello"), 0) },
		func() error { return os.WriteFile(o.m("new/suid"), []byte("#!/bin/true\n"), 0o755) },
		func() error { return os.Chmod(o.m("new/suid"), 0o755|os.ModeSetuid|os.ModeSetgid) },
		func() error { return unix.Setxattr(o.m("usr/bin/tool"), "security.capability", []byte(capV2), 0) },
		func() error { return os.WriteFile(o.m("new/owned"), nil, 0o600) },
		func() error { return os.Lchown(o.m("new/owned"), 1234, 5678) },
		func() error { return os.WriteFile(o.m("new/empty"), nil, 0o644) },
		func() error { return os.Mkdir(o.m("new/sticky"), 0o1777) },
		func() error { return os.Chmod(o.m("new/sticky"), 0o777|os.ModeSticky) },
		// The runtime's mountpoint stubs, to be excluded.
		func() error { return os.WriteFile(o.m("etc/hosts"), nil, 0o644) },
		func() error { return os.MkdirAll(o.m("dev/pts"), 0o755) },
		func() error { return os.WriteFile(o.m("dev/null"), nil, 0o644) },
		func() error { return os.WriteFile(o.m("run/.containerenv"), nil, 0o644) },
		func() error {
			return unix.UtimesNano(o.m("new/file.txt"), []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())})
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	o.unmount(t)
	excl := WithExclude("/etc/hosts", "/dev", "run/.containerenv", "/does/not/exist")

	wantOverlay := []string{
		"./ d", "./del-dir c", "./del-file c", "./etc/ d", "./etc/app.conf f",
		"./new/ d", "./new/empty f", "./new/fifo p", "./new/file.txt f", "./new/hard h", "./new/link l",
		"./new/owned f", "./new/sticky/ d", "./new/suid f",
		"./opq/ d", "./opq/new f", "./run/ d",
		"./usr/ d", "./usr/bin/ d", "./usr/bin/tool f",
	}
	wantOCI := []string{
		"./ d", "./.wh.del-dir f", "./.wh.del-file f", "./etc/ d", "./etc/app.conf f",
		"./new/ d", "./new/empty f", "./new/fifo p", "./new/file.txt f", "./new/hard h", "./new/link l",
		"./new/owned f", "./new/sticky/ d", "./new/suid f",
		"./opq/ d", "./opq/.wh..wh..opq f", "./opq/new f", "./run/ d",
		"./usr/ d", "./usr/bin/ d", "./usr/bin/tool f",
	}
	for _, tc := range []struct {
		f    Format
		want []string
	}{{FormatOverlay, wantOverlay}, {FormatOCI, wantOCI}} {
		t.Run(string(tc.f), func(t *testing.T) {
			b, st := wtWrite(t, o.upper, WithFormat(tc.f), excl)
			hs := wtReadTar(t, b)
			if got := wtNames(hs); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("entries:\n got %q\nwant %q", got, tc.want)
			}
			if st.Entries != int64(len(hs)) {
				t.Errorf("Stats.Entries = %d, want %d", st.Entries, len(hs))
			}
			var bytes int64
			for _, h := range hs {
				bytes += h.Size
			}
			if st.Bytes != bytes {
				t.Errorf("Stats.Bytes = %d, want %d", st.Bytes, bytes)
			}
			wtNoOverlayXattrs(t, hs, tc.f)
			m := wtByName(hs)
			check := func(name string, ok bool, format string, args ...any) {
				t.Helper()
				if !ok {
					t.Errorf("%s: "+format+"; header %+v", append(append([]any{name}, args...), m[name])...)
				}
			}
			for _, wo := range []string{"del-dir", "del-file"} {
				name := "./" + wo
				if tc.f == FormatOCI {
					name = "./.wh." + wo
				}
				h := m[name]
				check(name, h.Mode == 0 && h.Uid == 0 && h.Gid == 0 && h.Mtime.Equal(epoch) && h.Size == 0 && h.Major == 0 && h.Minor == 0 && h.Xattrs == nil,
					"whiteout not canonical")
			}
			opq := m["./opq/"]
			if tc.f == FormatOverlay {
				check("./opq/", opq.Xattrs[XattrOpaque] == "y" && len(opq.Xattrs) == 1, "not opaque")
			} else {
				check("./opq/", opq.Xattrs == nil, "xattrs on an oci opaque dir")
			}
			check("./opq/", opq.Mode == 0o700, "mode %o", opq.Mode)
			check("./etc/", m["./etc/"].Xattrs == nil, "copied-up dir has xattrs")
			check("./", m["./"].Xattrs == nil, "root has xattrs")
			check("./etc/app.conf", m["./etc/app.conf"].Content == "v1\nv2\n", "content")
			f := m["./new/file.txt"]
			check("./new/file.txt", f.Content == "new file\n" && f.Mode == 0o640 && f.Mtime.Equal(mtime) &&
				reflect.DeepEqual(f.Xattrs, map[string]string{"user.comment": "hello"}), "file")
			check("./new/hard", m["./new/hard"].Link == "./new/file.txt", "hard link")
			check("./new/link", m["./new/link"].Link == "../etc/app.conf", "symlink")
			check("./new/fifo", m["./new/fifo"].Mode == 0o620, "fifo mode %o", m["./new/fifo"].Mode)
			check("./new/suid", m["./new/suid"].Mode == 0o6755, "suid mode %o", m["./new/suid"].Mode)
			check("./new/sticky/", m["./new/sticky/"].Mode == 0o1777, "sticky mode %o", m["./new/sticky/"].Mode)
			check("./new/owned", m["./new/owned"].Uid == 1234 && m["./new/owned"].Gid == 5678, "owner")
			check("./new/empty", m["./new/empty"].Size == 0 && m["./new/empty"].Type == tar.TypeReg, "empty file")
			check("./usr/bin/tool", m["./usr/bin/tool"].Xattrs["security.capability"] == capV2 &&
				m["./usr/bin/tool"].Content == "#!/bin/sh\n", "capability xattr")
		})
	}

	// Deterministic: the same upper gives the same bytes.
	a, _ := wtWrite(t, o.upper, excl)
	b, _ := wtWrite(t, o.upper, excl)
	if !bytes.Equal(a, b) {
		t.Error("two exports of the same upper differ")
	}
}

func appendFile(p, s string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	return errors.Join(err, f.Close())
}

func TestWriteExcludeSubtree(t *testing.T) {
	upper := t.TempDir()
	testutil.BuildTree(t, upper,
		testutil.File("etc/keep", "k"),
		testutil.File("etc/resolv.conf", ""),
		testutil.Dir("proc/"),
		testutil.File("sys/kernel/x", "x"),
		testutil.File("sysfoo/y", "y"),
		testutil.File("var/run/secrets/token", "t"),
	)
	b, _ := wtWrite(t, upper, WithExclude("/proc", "/sys", "/etc/resolv.conf", "/var/run/secrets/"))
	got := wtNames(wtReadTar(t, b))
	want := []string{"./ d", "./etc/ d", "./etc/keep f", "./sysfoo/ d", "./sysfoo/y f", "./var/ d", "./var/run/ d"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if _, err := Write(context.Background(), io.Discard, upper, WithExclude("/")); err == nil {
		t.Error("excluding the root succeeded")
	}
}

// TestWriteMaxExportBytes: an export whose file content passes
// WithMaxExportBytes fails with ErrLimitExceeded naming the file and the
// limit; one at the limit is written whole.
func TestWriteMaxExportBytes(t *testing.T) {
	upper := t.TempDir()
	testutil.BuildTree(t, upper,
		testutil.File("a", strings.Repeat("a", 600)),
		testutil.File("b", strings.Repeat("b", 400)),
	)
	_, st := wtWrite(t, upper, WithMaxExportBytes(1000))
	if st.Bytes != 1000 {
		t.Errorf("at the limit: %d bytes written, want 1000", st.Bytes)
	}
	_, err := Write(context.Background(), io.Discard, upper, WithMaxExportBytes(999))
	if !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("over the limit: err %v, want ErrLimitExceeded", err)
	}
	if msg := err.Error(); !strings.Contains(msg, `"/b"`) || !strings.Contains(msg, "999") {
		t.Errorf("error %q does not name the file and the limit", msg)
	}
	if _, err := Write(context.Background(), io.Discard, upper, WithMaxExportBytes(0)); err != nil {
		t.Errorf("no limit: %v", err)
	}
}

func TestWriteIDMap(t *testing.T) {
	testutil.RequireRoot(t)
	upper := t.TempDir()
	testutil.BuildTree(t, upper, testutil.File("a", "a"), testutil.File("d/b", "b"), testutil.Symlink("l", "a"))
	for p, id := range map[string]int{"": 100000, "a": 100000, "d": 100005, "d/b": 165535, "l": 100001} {
		if err := os.Lchown(filepath.Join(upper, p), id, id+1); err != nil {
			t.Fatal(err)
		}
	}
	m := &IDMap{
		UIDs: []IDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GIDs: []IDMapping{{ContainerID: 0, HostID: 100000, Size: 65537}},
	}
	b, _ := wtWrite(t, upper, WithIDMap(m))
	got := map[string][2]int{}
	for _, h := range wtReadTar(t, b) {
		got[h.Name] = [2]int{h.Uid, h.Gid}
	}
	want := map[string][2]int{"./": {0, 1}, "./a": {0, 1}, "./d/": {5, 6}, "./d/b": {65535, 65536}, "./l": {1, 2}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}

	if err := os.Lchown(filepath.Join(upper, "d/b"), 42, 100000); err != nil {
		t.Fatal(err)
	}
	_, err := Write(context.Background(), io.Discard, upper, WithIDMap(m))
	if !errors.Is(err, ErrUnmappedID) || !strings.Contains(err.Error(), `"/d/b"`) {
		t.Errorf("unmapped uid: got %v, want ErrUnmappedID naming /d/b", err)
	}
}

// TestWriteSharedWhiteout: overlayfs links every whiteout to one shared
// inode; each must still be exported as a whiteout, not a hard link.
func TestWriteSharedWhiteout(t *testing.T) {
	testutil.RequireRoot(t)
	upper := t.TempDir()
	if err := unix.Mknod(filepath.Join(upper, "a"), unix.S_IFCHR|0, 0); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"b", "d/c"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(upper, n)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(filepath.Join(upper, "a"), filepath.Join(upper, n)); err != nil {
			t.Fatal(err)
		}
	}
	// An empty file with the whiteout xattr is a whiteout too.
	if err := os.WriteFile(filepath.Join(upper, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(upper, "x"), XattrWhiteout, nil, 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f    Format
		want []string
	}{
		{FormatOverlay, []string{"./ d", "./a c", "./b c", "./d/ d", "./d/c c", "./x c"}},
		{FormatOCI, []string{"./ d", "./.wh.a f", "./.wh.b f", "./d/ d", "./d/.wh.c f", "./.wh.x f"}},
	} {
		b, _ := wtWrite(t, upper, WithFormat(tc.f))
		if got := wtNames(wtReadTar(t, b)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %q\nwant %q", tc.f, got, tc.want)
		}
	}
}

func TestWriteUserXattr(t *testing.T) {
	testutil.RequireRoot(t)
	lower := t.TempDir()
	testutil.BuildTree(t, lower, testutil.File("d/old", "o"), testutil.File("gone", "g"), testutil.File("keep", "k"))
	o := wtMountOverlay(t, []string{lower}, "userxattr")
	for i, step := range []func() error{
		func() error { return os.Remove(o.m("gone")) },
		func() error { return os.RemoveAll(o.m("d")) },
		func() error { return os.Mkdir(o.m("d"), 0o755) },
		func() error { return os.WriteFile(o.m("d/new"), []byte("n"), 0o644) },
		func() error { return unix.Setxattr(o.m("keep"), "user.note", []byte("x"), 0) },
	} {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	o.unmount(t)
	if v, err := getxattrString(filepath.Join(o.upper, "d"), XattrOpaqueUser); err != nil || v != "y" {
		t.Fatalf("upper d: %s = %q, %v; want y (userxattr mount)", XattrOpaqueUser, v, err)
	}
	// A zero-size file with user.overlay.whiteout.
	wo := filepath.Join(o.upper, "wo")
	if err := os.WriteFile(wo, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(wo, XattrWhiteoutUser, nil, 0); err != nil {
		t.Fatal(err)
	}

	b, _ := wtWrite(t, o.upper, WithUserXattr(true))
	hs := wtReadTar(t, b)
	want := []string{"./ d", "./d/ d", "./d/new f", "./gone c", "./keep f", "./wo c"}
	if got := wtNames(hs); !reflect.DeepEqual(got, want) {
		t.Fatalf("userxattr: got %q\nwant %q", got, want)
	}
	m := wtByName(hs)
	if !reflect.DeepEqual(m["./d/"].Xattrs, map[string]string{XattrOpaque: "y"}) {
		t.Errorf("d: xattrs %v, want only the opaque marker", m["./d/"].Xattrs)
	}
	if !reflect.DeepEqual(m["./keep"].Xattrs, map[string]string{"user.note": "x"}) {
		t.Errorf("keep: xattrs %v", m["./keep"].Xattrs)
	}
	for _, h := range hs {
		for k := range h.Xattrs {
			if strings.HasPrefix(k, overlayUserXattrPfx) {
				t.Errorf("%s: %s exported under userxattr", h.Name, k)
			}
		}
	}

	// Without userxattr, user.overlay.* are ordinary xattrs.
	b, _ = wtWrite(t, o.upper)
	m = wtByName(wtReadTar(t, b))
	if m["./d/"].Xattrs[XattrOpaqueUser] != "y" || m["./d/"].Xattrs[XattrOpaque] != "" {
		t.Errorf("without userxattr: d xattrs %v", m["./d/"].Xattrs)
	}
	if h, ok := m["./wo"]; !ok || h.Type != tar.TypeReg {
		t.Errorf("without userxattr: wo exported as %+v, want a regular file", h)
	}
}

func getxattrString(p, name string) (string, error) {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// wtMergedTree lists a directory tree as wtTarTree lists a snapshot: path →
// type, mode and content.
func wtMergedTree(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v", info.Mode())
		switch {
		case info.Mode().IsRegular():
			c, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", c)
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wtTarTree lists the entries of a snapshot under prefix like wtMergedTree.
func wtTarTree(t testing.TB, b []byte, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, h := range wtReadTar(t, b) {
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		rel, ok := strings.CutPrefix(name, prefix)
		if !ok || (rel != "" && rel[0] != '/') {
			continue
		}
		rel = strings.TrimPrefix(rel, "/")
		if rel == "" {
			rel = "."
		}
		mode := fs.FileMode(h.Mode & 0o777)
		switch h.Type {
		case tar.TypeDir:
			mode |= fs.ModeDir
		case tar.TypeSymlink:
			mode |= fs.ModeSymlink
		}
		desc := fmt.Sprintf("%v", mode)
		switch h.Type {
		case tar.TypeReg:
			desc += fmt.Sprintf(" %x", h.Content)
		case tar.TypeSymlink:
			desc += " -> " + h.Link
		}
		out[rel] = desc
	}
	return out
}

func TestWriteMetacopyRedirect(t *testing.T) {
	testutil.RequireRoot(t)
	big := make([]byte, 3<<20+17)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	lower2, lower1 := t.TempDir(), t.TempDir()
	testutil.BuildTree(t, lower2,
		testutil.File("big", string(big)),
		testutil.File("d/gone", "gone"),
		testutil.Symlink("d/ln", "other"),
		testutil.File("d/other", "other"),
		testutil.File("d/sub/deep/f", "deep"),
		testutil.File("d/sub/g", "g"),
		testutil.File("d2stale/x", ""),
		testutil.File("data/movable", "moved data"),
		testutil.File("dir-a/inner/in", "in"),
		testutil.Dir("dir-b/"),
	)
	// The upper lower layer hides d/gone and adds d/sub/h.
	testutil.BuildTree(t, lower1, testutil.File("d/sub/h", "h"))
	if err := unix.Mknod(filepath.Join(lower1, "d/gone"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	o := wtMountOverlay(t, []string{lower1, lower2}, "metacopy=on,redirect_dir=on,index=off")
	var before map[string]string
	for i, step := range []func() error{
		func() error { return os.Chmod(o.m("big"), 0o600) }, // metacopy copy-up
		func() error { return os.Rename(o.m("d"), o.m("d2")) },
		func() error { return os.WriteFile(o.m("d2/sub/g"), []byte("g changed"), 0o644) },
		func() error { return os.WriteFile(o.m("d2/new"), []byte("new"), 0o644) },
		func() error { return os.Chmod(o.m("data/movable"), 0o600) },
		func() error { return os.Rename(o.m("data/movable"), o.m("d2/sub/moved")) }, // metacopy, absolute redirect
		func() error { return os.Rename(o.m("dir-a"), o.m("dir-b/renamed")) },       // absolute redirect
		func() error { before = wtMergedTree(t, o.merged); return nil },
	} {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	o.unmount(t)
	// What the kernel left: a metacopy big, d2 redirected to d, a whiteout at d.
	if _, err := getxattrString(filepath.Join(o.upper, "big"), XattrMetacopy); err != nil {
		t.Fatalf("upper big is not a metacopy file (%v): test setup broken", err)
	}
	if v, err := getxattrString(filepath.Join(o.upper, "d2"), XattrRedirect); err != nil || v != "d" {
		t.Fatalf("upper d2 redirect = %q, %v", v, err)
	}
	if v, err := getxattrString(filepath.Join(o.upper, "dir-b/renamed"), XattrRedirect); err != nil || v != "/dir-a" {
		t.Fatalf("upper dir-b/renamed redirect = %q, %v", v, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(o.upper, "d"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Fatalf("no whiteout at the old name d: %v", err)
	}

	for _, f := range []Format{FormatOverlay, FormatOCI} {
		t.Run(string(f), func(t *testing.T) {
			b, _ := wtWrite(t, o.upper, WithFormat(f), WithLowers(lower1, lower2))
			hs := wtReadTar(t, b)
			wtNoOverlayXattrs(t, hs, f)
			m := wtByName(hs)
			bg := m["./big"]
			if bg.Type != tar.TypeReg || bg.Mode != 0o600 || bg.Size != int64(len(big)) || bg.Content != string(big) {
				t.Errorf("big: type %c mode %o size %d, content equal %v; want the lower's %d bytes with mode 600",
					bg.Type, bg.Mode, bg.Size, bg.Content == string(big), len(big))
			}
			old := "./d"
			if f == FormatOCI {
				old = "./.wh.d"
			}
			if _, ok := m[old]; !ok {
				t.Errorf("no whiteout %s at the old name", old)
			}
			for _, dir := range []string{"d2", "dir-b/renamed"} {
				h := m["./"+dir+"/"]
				if f == FormatOverlay && h.Xattrs[XattrOpaque] != "y" {
					t.Errorf("%s: redirected dir not exported opaque: %v", dir, h.Xattrs)
				}
				if f == FormatOCI {
					if _, ok := m["./"+dir+"/"+WhiteoutOpaque]; !ok {
						t.Errorf("%s: redirected dir not exported opaque", dir)
					}
				}
				// The export holds exactly what the merged view showed.
				got, want := wtTarTree(t, b, dir), map[string]string{}
				for p, d := range before {
					if rel, ok := strings.CutPrefix(p, dir); ok && (rel == "" || rel[0] == '/') {
						rel = strings.TrimPrefix(rel, "/")
						if rel == "" {
							rel = "."
						}
						want[rel] = d
					}
				}
				delete(got, WhiteoutOpaque)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s: export\n%v\nmerged view\n%v", dir, got, want)
				}
			}
		})
	}

	// Without the lowers the metacopy file cannot be exported.
	_, err := Write(context.Background(), io.Discard, o.upper)
	if err == nil || !strings.Contains(err.Error(), `"/big"`) {
		t.Errorf("Write without lowers: %v, want an error naming /big", err)
	}
}

func TestWriteOptions(t *testing.T) {
	upper := t.TempDir()
	for _, tc := range []struct {
		name string
		opt  WriteOpt
		want error
	}{
		{"format", WithFormat("tarball"), ErrUnknownFormat},
		{"compression", WithCompression("lz4"), ErrUnknownCompression},
		{"apply-only", WithMaxBytes(1), errors.ErrUnsupported},
	} {
		if _, err := Write(context.Background(), io.Discard, upper, tc.opt); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := Write(context.Background(), io.Discard, upper, WithLowers("relative/dir")); err == nil {
		t.Error("relative lower accepted")
	}
	if _, err := Write(context.Background(), io.Discard, filepath.Join(upper, "missing")); err == nil {
		t.Error("missing upper accepted")
	}

	// Progress (shared with Apply) is reported, last with the totals.
	testutil.BuildTree(t, upper, testutil.File("a", "abc"), testutil.File("b/c", "de"))
	var last Stats
	calls := 0
	st, err := Write(context.Background(), io.Discard, upper, WithProgress(func(s Stats) { last = s; calls++ }))
	if err != nil || calls == 0 || last != st || st.Bytes != 5 || st.Entries != 4 {
		t.Errorf("progress: %d calls, last %+v, stats %+v, err %v", calls, last, st, err)
	}

	// A cancelled context stops the export.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Write(ctx, io.Discard, upper); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestWriteCompression(t *testing.T) {
	upper := t.TempDir()
	testutil.BuildTree(t, upper, testutil.File("a", strings.Repeat("x", 100000)))
	plain, _ := wtWrite(t, upper)
	for _, c := range []Compression{CompressionGzip, CompressionZstd} {
		cw := &wtCloseCounter{}
		if _, err := Write(context.Background(), cw, upper, WithCompression(c)); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if cw.closed {
			t.Errorf("%s: Write closed its writer", c)
		}
		rc, got, err := Decompress(bytes.NewReader(cw.Bytes()))
		if err != nil || got != c {
			t.Fatalf("%s: Decompress: %v, %v", c, got, err)
		}
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, plain) {
			t.Errorf("%s: decompressed snapshot differs from the plain one", c)
		}
	}
}

type wtCloseCounter struct {
	bytes.Buffer
	closed bool
}

func (c *wtCloseCounter) Close() error { c.closed = true; return nil }

// BenchmarkWrite exports a generated upper of 5,000 files (4 KiB each, 50
// directories).
func BenchmarkWrite(b *testing.B) {
	upper := b.TempDir()
	content := bytes.Repeat([]byte("0123456789abcdef"), 256)
	for d := 0; d < 50; d++ {
		dir := filepath.Join(upper, fmt.Sprintf("dir%02d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := 0; f < 100; f++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file%03d", f)), content, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		st, err := Write(context.Background(), io.Discard, upper)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(st.Bytes)
	}
}

// TestWriteApplyMatchesMerged is the end-to-end property: applying the
// export of a container's upper onto a copy of its image gives what the
// container saw.
func TestWriteApplyMatchesMerged(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "cp")
	lower2, lower1 := t.TempDir(), t.TempDir()
	testutil.BuildTree(t, lower2,
		testutil.File("big", strings.Repeat("big data ", 100000)),
		testutil.Symlink("d/ln", "other"),
		testutil.File("d/other", "o"),
		testutil.File("d/sub/f", "f"),
		testutil.File("etc/app.conf", "v1"),
		testutil.File("etc/keep", "k"),
		testutil.File("gone", "g"),
		testutil.File("gone-dir/a/b", "b"),
		testutil.File("mv/src", "moved"),
		testutil.File("opq/old", "old"),
	)
	testutil.BuildTree(t, lower1, testutil.File("d/sub/h", "h"), testutil.File("etc/added", "a"))
	if err := unix.Mknod(filepath.Join(lower1, "etc/keep"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	o := wtMountOverlay(t, []string{lower1, lower2}, "metacopy=on,redirect_dir=on,index=off")
	for i, step := range []func() error{
		func() error { return os.Chmod(o.m("big"), 0o600) },
		func() error { return appendFile(o.m("etc/app.conf"), "v2") },
		func() error { return os.Rename(o.m("d"), o.m("d-renamed")) },
		func() error { return os.WriteFile(o.m("d-renamed/sub/f"), []byte("f2"), 0o644) },
		func() error { return os.Rename(o.m("mv/src"), o.m("d-renamed/moved")) },
		func() error { return os.RemoveAll(o.m("gone-dir")) },
		func() error { return os.Remove(o.m("gone")) },
		func() error { return os.RemoveAll(o.m("opq")) },
		func() error { return os.MkdirAll(o.m("opq/new"), 0o755) },
		func() error { return os.Link(o.m("etc/app.conf"), o.m("etc/hard")) },
		func() error { return os.Lchown(o.m("etc/added"), 1000, 1000) },
		func() error { return os.Symlink("/etc/app.conf", o.m("abs-link")) },
	} {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	// What the container saw; overlayfs counts a merged directory's links
	// its own way.
	describe := func(root string) string {
		return testutil.DescribeTree(t, root, testutil.WithoutCtime(), testutil.WithoutDirTimes(), testutil.WithoutDirSizes(), testutil.WithoutNlink())
	}
	want := describe(o.merged)
	o.unmount(t)

	// The image: the lowers merged, copied to a plain directory.
	image := t.TempDir() + "/image"
	ro := t.TempDir()
	if err := unix.Mount("overlay", ro, "overlay", unix.MS_RDONLY, "lowerdir="+lower1+":"+lower2); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("cp", "-a", ro, image).CombinedOutput()
	_ = unix.Unmount(ro, 0)
	if err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	for _, f := range []Format{FormatOverlay, FormatOCI} {
		t.Run(string(f), func(t *testing.T) {
			root := t.TempDir() + "/root"
			if out, err := exec.Command("cp", "-a", image, root).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v: %s", err, out)
			}
			snap, _ := wtWrite(t, o.upper, WithFormat(f), WithLowers(lower1, lower2), WithCompression(CompressionZstd))
			dir, err := os.Open(root)
			if err != nil {
				t.Fatal(err)
			}
			defer dir.Close()
			if _, err := Apply(context.Background(), dir, bytes.NewReader(snap)); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if got := describe(root); got != want {
				t.Errorf("restored tree (+) differs from what the container saw (-):\n%s", testutil.TreeDiff(want, got))
			}
		})
	}
}
