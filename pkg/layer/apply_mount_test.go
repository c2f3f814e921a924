//go:build linux

package layer

import (
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

// mountTree is a rootfs with mounts inside it, as a container's at the
// createContainer stage: a host directory bind-mounted at /data (a
// volume), one at /srv/vol, a tmpfs at /scratch and a host file at
// /etc/hosts.
type mountTree struct {
	base, root string
	// The mounts' own trees, described from outside the root.
	sources []string
}

func newMountTree(t *testing.T, overlay bool) *mountTree {
	t.Helper()
	testutil.RequireRoot(t)
	// Not t.TempDir: a comma of a test's name would end an overlay option.
	base, err := os.MkdirTemp("", "ocisnap-mounts-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) }) // after the unmounts, registered later
	m := &mountTree{base: base, root: filepath.Join(base, "root")}
	testutil.BuildTree(t, base,
		testutil.File("hostsfile", "127.0.0.1 localhost\n"),
		testutil.Dir("lower/data/"),
		testutil.File("lower/etc/app", "image"),
		testutil.File("lower/etc/hosts", ""),
		testutil.Dir("lower/scratch/"),
		testutil.File("lower/srv/own", "own"),
		testutil.Dir("lower/srv/vol/"),
		testutil.Dir("root/"),
		testutil.Dir("upper/"),
		testutil.File("vol/keep", "precious"),
		testutil.File("vol/sub/f", "nested"),
		testutil.File("vol2/keep", "precious too"),
		testutil.Dir("work/"),
	)
	for _, p := range []string{"vol", "vol/keep", "vol/sub"} {
		if err := os.Lchown(filepath.Join(base, p), 1234, 5678); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(base, "vol"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(base, "vol"), "user.volume", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if overlay {
		opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "work"))
		m.mount(t, "overlay", m.root, "overlay", 0, opts)
	} else {
		if err := exec.Command("cp", "-a", filepath.Join(base, "lower")+"/.", m.root).Run(); err != nil {
			t.Fatal(err)
		}
	}
	m.mount(t, filepath.Join(base, "vol"), filepath.Join(m.root, "data"), "", unix.MS_BIND, "")
	m.mount(t, filepath.Join(base, "vol2"), filepath.Join(m.root, "srv/vol"), "", unix.MS_BIND, "")
	m.mount(t, filepath.Join(base, "hostsfile"), filepath.Join(m.root, "etc/hosts"), "", unix.MS_BIND, "")
	m.mount(t, "tmpfs", filepath.Join(m.root, "scratch"), "tmpfs", 0, "size=1m,mode=0711")
	if err := os.WriteFile(filepath.Join(m.root, "scratch/tmpfile"), []byte("t"), 0o600); err != nil {
		t.Fatal(err)
	}
	m.sources = []string{filepath.Join(base, "vol"), filepath.Join(base, "vol2"), filepath.Join(m.root, "scratch")}
	return m
}

func (m *mountTree) mount(t *testing.T, src, dst, fstype string, flags uintptr, data string) {
	t.Helper()
	if err := unix.Mount(src, dst, fstype, flags, data); err != nil {
		testutil.SkipOrFail(t, "mount %s on %s: %v", src, dst, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dst, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dst, err)
		}
	})
}

// describe describes what is outside the root's mount: the mounts' trees
// (their roots included) and the host file.
func (m *mountTree) describe(t *testing.T) string {
	t.Helper()
	var sb strings.Builder
	for _, s := range m.sources {
		sb.WriteString(testutil.DescribeTree(t, s))
	}
	sb.WriteString(testutil.DescribeTree(t, filepath.Join(m.base, "hostsfile")))
	return sb.String()
}

// mounted reports the mount points still in place.
func (m *mountTree) mounted(t *testing.T) []string {
	t.Helper()
	var rootSt unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, m.root, 0, unix.STATX_MNT_ID, &rootSt); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range []string{"data", "srv/vol", "etc/hosts", "scratch"} {
		var st unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, filepath.Join(m.root, p), unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &st); err == nil && st.Mnt_id != rootSt.Mnt_id {
			out = append(out, p)
		}
	}
	return out
}

// Whatever the snapshot, nothing on another mount inside the root is
// removed, written, chowned, chmodded, touched or given an xattr, and a
// mount point is never removed: the entry that would need it fails the
// restore with ErrCrossesMount and is named. Serial and parallel, on a
// plain directory and on an overlay mount.
func TestApplyMountsInside(t *testing.T) {
	opaque := func(name string) testutil.Node { return testutil.Dir(name).WithOpaque() }
	meta := testutil.Dir("./data/")
	meta.Header.Mode, meta.Header.Uid, meta.Header.Gid, meta.Header.ModTime = 0o777, 42, 43, time.Unix(1, 0)
	meta = meta.WithPAX("SCHILY.xattr.user.planted", "x")
	tests := []struct {
		name    string
		entries []testutil.Node
		names   string // the error names this entry
		detail  string // and this mount point
	}{
		{"whiteout of the volume", []testutil.Node{testutil.Whiteout("./data"), testutil.File("./data/planted", "p")}, `"./data"`, `"data" is a mount point`},
		{"OCI whiteout of the volume", []testutil.Node{testutil.File("./.wh.data", "")}, `"./data"`, `"data"`},
		{"file in the volume", []testutil.Node{testutil.File("./data/planted", "p")}, `"./data/planted"`, `"data" passes through a mount point`},
		{"file replacing a file in the volume", []testutil.Node{testutil.File("./data/keep", "pwned")}, `"./data/keep"`, `"data"`},
		{"directory in the volume", []testutil.Node{testutil.Dir("./data/sub/")}, `"./data/sub"`, `"data"`},
		{"metadata of the volume's root", []testutil.Node{meta}, `"./data"`, `"data" is a mount point`},
		{"opaque volume", []testutil.Node{opaque("./data/"), testutil.File("./data/x", "x")}, `"./data"`, `"data"`},
		{"OCI opaque marker in the volume", []testutil.Node{testutil.File("./data/.wh..wh..opq", "")}, `"./data"`, `"data"`},
		{"whiteout in the volume", []testutil.Node{testutil.Whiteout("./data/keep")}, `"./data/keep"`, `"data"`},
		{"hard link into the volume", []testutil.Node{testutil.File("./f", "f"), testutil.Hardlink("./data/link", "./f")}, `"./data/link"`, `"data"`},
		{"hard link out of the volume", []testutil.Node{testutil.Hardlink("./stolen", "./data/keep")}, `"./stolen"`, `"data"`},
		{"file replacing the volume", []testutil.Node{testutil.File("./data", "file")}, `"./data"`, `"data" is a mount point`},
		{"symlink replacing the volume", []testutil.Node{testutil.Symlink("./data", "/")}, `"./data"`, `"data"`},
		{"whiteout of the volume's parent", []testutil.Node{testutil.Whiteout("./srv")}, `"./srv"`, `"srv/vol" is a mount point`},
		{"file replacing the volume's parent", []testutil.Node{testutil.File("./srv", "file")}, `"./srv"`, `"srv/vol"`},
		{"opaque parent of a volume", []testutil.Node{opaque("./srv/"), testutil.File("./srv/new", "n")}, `"./srv"`, `"srv/vol"`},
		{"opaque parent of a volume, marker last", []testutil.Node{testutil.Dir("./srv/"), testutil.File("./srv/new", "n"), testutil.File("./srv/.wh..wh..opq", "")}, `"./srv"`, `"srv/vol"`},
		{"opaque root", []testutil.Node{opaque("./"), testutil.File("./new", "n")}, `"./"`, `is a mount point`},
		{"tmpfs replaced by a directory entry with children", []testutil.Node{testutil.Whiteout("./scratch"), testutil.Dir("./scratch/")}, `"./scratch"`, `"scratch"`},
		{"bind-mounted file replaced", []testutil.Node{testutil.File("./etc/hosts", "0.0.0.0 evil\n")}, `"./etc/hosts"`, `"etc/hosts" is a mount point`},
		{"bind-mounted file removed", []testutil.Node{testutil.Whiteout("./etc/hosts")}, `"./etc/hosts"`, `"etc/hosts"`},
		{"bind-mounted file replaced by a symlink", []testutil.Node{testutil.Symlink("./etc/hosts", "/etc/shadow")}, `"./etc/hosts"`, `"etc/hosts"`},
		{"empty file over the volume", []testutil.Node{testutil.File("./data", "")}, `"./data"`, `"data" is a mount point`},
		{"bind-mounted file replaced by a directory", []testutil.Node{testutil.Dir("./etc/hosts/")}, `"./etc/hosts"`, `"etc/hosts"`},
		{"hard link to a bind-mounted file", []testutil.Node{testutil.Hardlink("./hosts2", "./etc/hosts")}, `"./hosts2"`, `link target "etc/hosts" is a mount point`},
		{"through a symlink into the volume", []testutil.Node{testutil.Symlink("./l", "data"), testutil.File("./l/planted", "p")}, `"./l/planted"`, `"l" passes through a mount point`},
		{"whiteout through a symlink to the volume's parent", []testutil.Node{testutil.Symlink("./l", "srv"), testutil.Whiteout("./l/vol")}, `"./l/vol"`, `"l/vol" is a mount point`},
	}
	for _, overlay := range []bool{false, true} {
		for _, tt := range tests {
			for _, n := range []int{1, 2} {
				t.Run(fmt.Sprintf("%s/overlay=%v/workers=%d", tt.name, overlay, n), func(t *testing.T) {
					withParallelism(t, n)
					m := newMountTree(t, overlay)
					before := m.describe(t)
					_, err := applyTo(t, m.root, testutil.Tar(t, tt.entries...))
					if !errors.Is(err, ErrCrossesMount) {
						t.Fatalf("err = %v, want ErrCrossesMount", err)
					}
					if !strings.Contains(err.Error(), "apply "+tt.names) || !strings.Contains(err.Error(), tt.detail) {
						t.Errorf("error %q does not name %s and %s", err, tt.names, tt.detail)
					}
					if after := m.describe(t); after != before {
						t.Errorf("a mount inside the root changed:\n%s", testutil.TreeDiff(before, after))
					}
					if got := m.mounted(t); len(got) != 4 {
						t.Errorf("mounts left: %v", got)
					}
				})
			}
		}
	}
}

// Entries beside the mounts apply as usual, a directory time that would
// land on a mount point (its path now leads there through a symlink) is
// not set, and an empty file over a bind-mounted file (an engine's stub in
// a `podman commit` layer) is left under the mount.
func TestApplyMountsInsideUntouched(t *testing.T) {
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("workers=%d", n), func(t *testing.T) {
			withParallelism(t, n)
			m := newMountTree(t, true)
			before := m.describe(t)
			etc := testutil.Dir("./etc/")
			etc.Header.Mode = 0o751
			mustApply(t, m.root, testutil.Tar(t,
				testutil.Dir("./"), etc, testutil.File("./etc/app", "restored"), testutil.Dir("./srv/"), testutil.File("./srv/own", "restored"),
				testutil.Whiteout("./srv/gone"), testutil.Dir("./w/"), testutil.Dir("./w/data/"), testutil.Whiteout("./w"), testutil.Symlink("./w", "."),
				testutil.File("./etc/hosts", ""),
			))
			if after := m.describe(t); after != before {
				t.Errorf("a mount inside the root changed:\n%s", testutil.TreeDiff(before, after))
			}
			if c := readFile(t, filepath.Join(m.root, "etc/app")); c != "restored" {
				t.Errorf("etc/app = %q", c)
			}
			if st := lstat(t, filepath.Join(m.root, "etc")); st.Mode != unix.S_IFDIR|0o751 {
				t.Errorf("etc mode %o", st.Mode)
			}
			if got := m.mounted(t); len(got) != 4 {
				t.Errorf("mounts left: %v", got)
			}
		})
	}
}

// A mount in another mount namespace (a container's, seen from the
// runtime's at createRuntime, through a root opened inside it): unlinking
// its mount point from here would succeed and silently detach it, so the
// names are checked before, not after a failure.
func TestApplyMountInOtherNamespace(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "unshare", "sleep")
	base := t.TempDir()
	testutil.BuildTree(t, base,
		testutil.File("hostsfile", "h"),
		testutil.Dir("root/data/"),
		testutil.File("root/etc/hosts", ""),
		testutil.File("vol/keep", "precious"),
	)
	root := filepath.Join(base, "root")
	script := fmt.Sprintf("mount --bind %s/vol %s/data && mount --bind %s/hostsfile %s/etc/hosts && echo ready && exec sleep 60",
		base, root, base, root)
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		testutil.SkipOrFail(t, "unshare: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("mount namespace not ready: %q, %v", buf, err)
	}
	inNS := fmt.Sprintf("/proc/%d/root%s", cmd.Process.Pid, root)
	nsMounts := func() string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		var ms []string
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], root) {
				ms = append(ms, f[4])
			}
		}
		return strings.Join(ms, " ")
	}
	want := nsMounts()
	if strings.Count(want, root) != 2 {
		t.Fatalf("mounts in the namespace: %q", want)
	}
	for _, tt := range []struct {
		name  string
		entry testutil.Node
	}{
		{"./etc/hosts", testutil.File("./etc/hosts", "evil")},
		{"./etc/hosts", testutil.Whiteout("./etc/hosts")},
		{"./data", testutil.Whiteout("./data")},
		{"./data", testutil.File("./data", "f")},
	} {
		for _, n := range []int{1, 2} {
			withParallelism(t, n)
			before := testutil.DescribeTree(t, filepath.Join(base, "vol")) + testutil.DescribeTree(t, filepath.Join(base, "hostsfile"))
			_, err := applyTo(t, inNS, testutil.Tar(t, tt.entry))
			if !errors.Is(err, ErrCrossesMount) || !strings.Contains(err.Error(), `apply "`+tt.name+`"`) {
				t.Errorf("%s (type %c), %d workers: err = %v, want ErrCrossesMount naming it", tt.name, tt.entry.Header.Typeflag, n, err)
			}
			if got := nsMounts(); got != want {
				t.Fatalf("%s (type %c): the namespace's mounts are now %q, were %q", tt.name, tt.entry.Header.Typeflag, got, want)
			}
			after := testutil.DescribeTree(t, filepath.Join(base, "vol")) + testutil.DescribeTree(t, filepath.Join(base, "hostsfile"))
			if after != before {
				t.Errorf("%s: a mount changed:\n%s", tt.name, testutil.TreeDiff(before, after))
			}
		}
	}
	// The root's own names are changed as usual from here.
	mustApply(t, inNS, testutil.Tar(t, testutil.File("./etc/app", "x"), testutil.Dir("./etc/")))
	if c := readFile(t, filepath.Join(root, "etc/app")); c != "x" {
		t.Errorf("etc/app = %q", c)
	}
}
