package overlay

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

func unmountAtCleanup(t *testing.T, mp string) {
	t.Cleanup(func() {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Errorf("unmount %q: %v", mp, err)
		}
	})
}

// mountCmd runs mount(8) in dir, as containers/storage mounts from its home.
func mountCmd(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("mount", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mount %q in %q: %v: %s", args, dir, err, out)
	}
	unmountAtCleanup(t, filepath.Join(dir, args[len(args)-1]))
}

// The real thing: mount with relative paths from the home, as
// containers/storage does for long option strings; Find must give absolute,
// existing, symlink-free directories.
func TestFindRelativeMount(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mount")
	home := newStorageHome(t)
	mountCmd(t, home, "-t", "overlay", "overlay", "-o", "lowerdir=l/AAA:l/BBB,upperdir=c1/diff,workdir=c1/work", "c1/merged")

	m, err := Find(filepath.Join(home, "c1", "merged"))
	if err != nil {
		t.Fatal(err)
	}
	checkStorageMount(t, m, home)

	// Resolution needs the l/ links, the result must not: it is recorded
	// at createRuntime and used at poststop.
	if err := os.RemoveAll(filepath.Join(home, "l")); err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Lowers {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("lower %q depends on the l/ link: %v", d, err)
		}
	}
}

// The new mount API with absolute paths holding a colon, a comma and a space,
// and a data-only layer; the kernel shows lowerdir+=/datadir+= options.
func TestFindNewMountAPI(t *testing.T) {
	testutil.RequireRoot(t)
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{}
	for _, n := range []string{"low:1", "low,2 x", "data", "upper", "work", "merged"} {
		dirs[n] = filepath.Join(base, n)
		if err := os.Mkdir(dirs[n], 0o700); err != nil {
			t.Fatal(err)
		}
	}
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		testutil.SkipOrFail(t, "fsopen overlay: %v", err)
	}
	defer unix.Close(fd)
	for _, kv := range [][2]string{
		{"lowerdir+", dirs["low:1"]}, {"lowerdir+", dirs["low,2 x"]}, {"datadir+", dirs["data"]},
		{"upperdir", dirs["upper"]}, {"workdir", dirs["work"]}, {"metacopy", "on"},
	} {
		if err := unix.FsconfigSetString(fd, kv[0], kv[1]); err != nil {
			testutil.SkipOrFail(t, "fsconfig %s=%s (kernel < 6.8?): %v", kv[0], kv[1], err)
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		t.Fatal(err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, dirs["merged"], unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		t.Fatal(err)
	}
	unmountAtCleanup(t, dirs["merged"])

	m, err := Find(dirs["merged"])
	if err != nil {
		t.Fatal(err)
	}
	want := Mount{
		Mountpoint:  dirs["merged"],
		Upper:       dirs["upper"],
		Work:        dirs["work"],
		Lowers:      []string{dirs["low:1"], dirs["low,2 x"]},
		DataDirs:    []string{dirs["data"]},
		Metacopy:    true,
		RedirectDir: true,
	}
	t.Logf("options: %q", m.Options)
	m.Options = nil
	if !reflect.DeepEqual(*m, want) {
		t.Errorf("got  %+v\nwant %+v", *m, want)
	}
}

// A legacy mount whose lowerdir holds an escaped colon, userxattr.
func TestFindEscapedColon(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mount")
	home := newStorageHome(t)
	if err := os.Mkdir(filepath.Join(home, "c:2"), 0o700); err != nil {
		t.Fatal(err)
	}
	mp := filepath.Join(home, "c1", "merged")
	mountCmd(t, home, "-t", "overlay", "overlay", "-o",
		`lowerdir=`+filepath.Join(home, `c\:2`)+`:l/BBB,upperdir=c1/diff,workdir=c1/work,userxattr`, "c1/merged")
	m, err := Find(mp)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(home, "c:2"), filepath.Join(home, "L2", "diff")}
	if !reflect.DeepEqual(m.Lowers, want) || !m.UserXattr {
		t.Errorf("lowers %q userxattr %v, want %q; options %q", m.Lowers, m.UserXattr, want, m.Options)
	}
}

func TestFindNotOverlay(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mount")
	home := newStorageHome(t)
	mp := filepath.Join(home, "c1", "merged")

	if _, err := Find(mp); !errors.Is(err, ErrNotMounted) {
		t.Errorf("plain directory: got %v, want ErrNotMounted", err)
	}

	mountCmd(t, home, "-t", "overlay", "overlay", "-o", "lowerdir=l/AAA,upperdir=c1/diff,workdir=c1/work", "c1/merged")
	if _, err := Find(mp); err != nil {
		t.Fatal(err)
	}

	// A tmpfs stacked on the overlay is what the container would see.
	mountCmd(t, home, "-t", "tmpfs", "tmpfs", "c1/merged")
	_, err := Find(mp)
	if !errors.Is(err, ErrNotOverlay) || !strings.Contains(err.Error(), "tmpfs") {
		t.Errorf("tmpfs on top: got %v, want ErrNotOverlay naming tmpfs", err)
	}
	if err := unix.Unmount(mp, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Find(mp); err != nil {
		t.Errorf("overlay again after unmounting the tmpfs: %v", err)
	}
}

// TestFindPodmanMount: a real containers/storage mount made by `podman
// mount`, of the image named by OCISNAP_TEST_PODMAN_IMAGE (already in
// podman's own storage) when set, else of a one-file image imported into a
// podman storage of the test's own (no registry needed), so that it runs,
// or under CI=true fails, everywhere (but under -short: `make unit`).
func TestFindPodmanMount(t *testing.T) {
	testutil.SkipIfShort(t, "podman")
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "podman")
	var global []string // podman's global options
	podman := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("podman", slices.Concat(global, args)...).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				out = ee.Stderr
			}
			t.Fatalf("podman %q: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	image := os.Getenv("OCISNAP_TEST_PODMAN_IMAGE")
	if image == "" {
		// Short: podman refuses a runroot longer than 50 characters.
		dir, err := os.MkdirTemp("", "pm")
		if err != nil {
			t.Fatal(err)
		}
		storage := filepath.Join(dir, "storage")
		t.Cleanup(func() {
			_ = exec.Command("umount", "-R", storage).Run()
			os.RemoveAll(dir)
		})
		global = []string{"--root", storage, "--runroot", filepath.Join(dir, "run"),
			"--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "file"}
		img := filepath.Join(dir, "img.tar")
		writeImageTar(t, img)
		image = "localhost/ocisnap-overlay-test:latest"
		podman("import", "-q", img, image)
	}
	id := podman("create", image, "true")
	t.Cleanup(func() { _ = exec.Command("podman", slices.Concat(global, []string{"rm", "-f", id})...).Run() })
	mp := podman("mount", id)

	m, err := Find(mp)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *m)
	if m.Upper != filepath.Join(filepath.Dir(mp), "diff") || m.Work != filepath.Join(filepath.Dir(mp), "work") {
		t.Errorf("upper %q work %q for mountpoint %q", m.Upper, m.Work, mp)
	}
	if len(m.Lowers) == 0 {
		t.Fatal("no lowers")
	}
	home := filepath.Dir(filepath.Dir(mp))
	for _, l := range m.Lowers {
		// Real layer directories <home>/<layer>/diff, not <home>/l/ links.
		if filepath.Dir(filepath.Dir(l)) != home || filepath.Base(l) != "diff" {
			t.Errorf("lower %q is not a layer diff directory under %q", l, home)
		}
	}
}

// writeImageTar writes a root file system of one file, for `podman import`.
func writeImageTar(t *testing.T, path string) {
	t.Helper()
	b := testutil.Tar(t, testutil.Dir("./"), testutil.Dir("./etc/"), testutil.File("./etc/hostname", "test\n"))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
