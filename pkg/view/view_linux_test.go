package view

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/pkg/mountns"
	"github.com/ocisnap/ocisnap/pkg/policy"
	"github.com/ocisnap/ocisnap/pkg/procstat"
)

// fixture is a container as a createRuntime hook sees it: an overlay
// rootfs (two image layers, an upper that changed /boot/vmlinuz) and a
// process in its own mount namespace (a copy of ours, made after the rootfs
// was mounted, as runc's is).
type fixture struct {
	t                     *testing.T
	dir, upper, rootfs    string
	lowers                []string
	views, allow, outside string
	pid                   int
	pidStart              uint64
	cmd                   *exec.Cmd
	saved                 []string // JSON of the view at each save
	st                    State
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	f := &fixture{t: t, dir: dir, upper: filepath.Join(dir, "upper"), rootfs: filepath.Join(dir, "rootfs"),
		lowers: []string{filepath.Join(dir, "l1"), filepath.Join(dir, "l2")},
		views:  filepath.Join(dir, "state", "views"), allow: filepath.Join(dir, "allow"), outside: filepath.Join(dir, "outside")}
	for _, d := range []string{f.upper, filepath.Join(dir, "work"), f.rootfs, f.allow, f.outside} {
		mkdir(t, d)
	}
	l1, l2 := f.lowers[0], f.lowers[1]
	writeFile(t, filepath.Join(l1, "boot/vmlinuz"), "KERNEL")
	writeFile(t, filepath.Join(l1, "urunc.json"), `{"cmdline":"x"}`)
	writeFile(t, filepath.Join(l2, "boot/initrd.img"), "INITRD")
	writeFile(t, filepath.Join(l2, "etc/hostname"), "image")
	mkdir(t, filepath.Join(l2, "run"))
	mkdir(t, filepath.Join(l2, "var"))
	symlink(t, "../run", filepath.Join(l2, "var/run"))
	symlink(t, "/etc/shadow", filepath.Join(l1, "boot/shadow"))
	symlink(t, "../../../../../../../../etc/passwd", filepath.Join(l1, "boot/passwd"))
	symlink(t, "vmlinuz", filepath.Join(l1, "boot/vmlinuz.link"))
	symlink(t, f.outside, filepath.Join(l2, "abs-escape"))
	symlink(t, "../../../../../../../.."+f.outside, filepath.Join(l2, "rel-escape"))
	opts := fmt.Sprintf("lowerdir=%s:%s,upperdir=%s,workdir=%s", l1, l2, f.upper, filepath.Join(dir, "work"))
	if err := unix.Mount("overlay", f.rootfs, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	t.Cleanup(func() {
		unix.Unmount(f.rootfs, unix.MNT_DETACH)
		unix.Unmount(f.views, unix.MNT_DETACH) // made a private bind by Prepare
	})
	// The container's own layer has a different kernel.
	writeFile(t, filepath.Join(f.rootfs, "boot/vmlinuz"), "CHANGED-BY-CONTAINER")

	f.cmd = exec.Command("sleep", "1000")
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.pid = f.cmd.Process.Pid
	start, err := procstat.StartTime(f.pid)
	if err != nil {
		t.Fatal(err)
	}
	f.pidStart = start
	t.Cleanup(f.stop)
	return f
}

func (f *fixture) stop() {
	if f.cmd != nil {
		f.cmd.Process.Kill()
		f.cmd.Wait()
		f.cmd = nil
	}
}

func (f *fixture) save() error {
	b, err := json.Marshal(f.st)
	if err != nil {
		return err
	}
	f.saved = append(f.saved, string(b))
	return nil
}

func (f *fixture) request(kind Kind, source string, binds ...Bind) *Request {
	return &Request{
		ID: "c1", Dir: f.views, Kind: kind, Source: source,
		Policy:  &policy.Policy{ViewDirs: []string{f.allow}},
		Overlay: &Overlay{Lowers: f.lowers},
		Binds:   binds, Rootfs: f.rootfs, Pid: f.pid, PidStart: f.pidStart,
	}
}

func (f *fixture) prepare(req *Request) error {
	f.st = State{Kind: req.Kind, Source: req.Source}
	f.saved = nil
	return Prepare(context.Background(), req, &f.st, f.save)
}

// inContainer runs fn in the container's mount namespace.
func (f *fixture) inContainer(fn func() error) {
	f.t.Helper()
	if err := mountns.Do(mountns.Process{Pid: f.pid, Start: f.pidStart}, fn); err != nil {
		f.t.Fatal(err)
	}
}

// checkClean fails unless nothing of the view is left: no mount under the
// test directory, no view mountpoint, no loop device on image, no stub in
// the upper, and a state that records nothing left to undo.
func (f *fixture) checkClean(image string, stubs ...string) {
	f.t.Helper()
	if m := mountsUnder(f.t, filepath.Join(f.views, "c1")); len(m) > 0 {
		f.t.Errorf("mounts left: %v", m)
	}
	if _, err := os.Lstat(filepath.Join(f.views, "c1")); !errors.Is(err, os.ErrNotExist) {
		f.t.Errorf("view mountpoint left: %v", err)
	}
	if image != "" {
		if devs := waitNoLoop(image); len(devs) > 0 {
			f.t.Errorf("loop devices left on %s: %v", image, devs)
		}
	}
	for _, s := range stubs {
		if _, err := os.Lstat(filepath.Join(f.upper, s)); !errors.Is(err, os.ErrNotExist) {
			f.t.Errorf("stub %s left in the upper: %v", s, err)
		}
	}
	if f.st.Mounted || f.st.Mountpoint != "" || f.st.LoopDevice != "" {
		f.t.Errorf("state records a view left: %+v", f.st)
	}
	for _, b := range f.st.Binds {
		if b.Mounted || b.LegacyStub != "" || len(b.Stubs) > 0 {
			f.t.Errorf("state records a bind left: %+v", b)
		}
	}
}

func TestImageView(t *testing.T) {
	f := newFixture(t)
	req := f.request(KindImage, "",
		Bind{Src: "boot/vmlinuz", Dst: "/run/boot/vmlinuz"},
		Bind{Src: "/boot/initrd.img", Dst: "/var/run/boot/initrd.img"}, // through an in-root relative symlink
		Bind{Src: "boot/vmlinuz.link", Dst: "/etc/hostname"},           // onto an existing file
		Bind{Src: "/", Dst: "/mnt/view"},
	)
	if err := f.prepare(req); err != nil {
		t.Fatal(err)
	}
	mp := filepath.Join(f.views, "c1")
	if !f.st.Mounted || f.st.Mountpoint != mp || len(f.st.Binds) != 4 {
		t.Fatalf("state after prepare: %+v", f.st)
	}
	for i, want := range [][]Stub{
		{{Path: "/run/boot", Dir: true}, {Path: "/run/boot/vmlinuz"}},
		{{Path: "/run/boot/initrd.img"}}, // symlinks resolved
		nil,
		{{Path: "/mnt", Dir: true}, {Path: "/mnt/view", Dir: true}},
	} {
		if b := f.st.Binds[i]; !b.Mounted || b.LegacyStub != "" || fmt.Sprint(b.Stubs) != fmt.Sprint(want) {
			t.Errorf("bind %d: %+v, want mounted with stubs %v", i, b, want)
		}
	}
	if len(f.saved) < 6 {
		t.Errorf("only %d saves", len(f.saved))
	}
	m := mountsUnder(t, mp)
	if len(m) != 1 || !strings.Contains(m[0], " ro,nosuid,nodev") {
		t.Errorf("view mount: %v", m)
	}
	if strings.Contains(m[0], "shared:") {
		t.Errorf("view mount propagates: %s", m[0])
	}
	// Host side: the view shows the image, not the container's layer.
	if got := readFile(t, filepath.Join(mp, "boot/vmlinuz")); got != "KERNEL" {
		t.Errorf("view boot/vmlinuz = %q", got)
	}
	// The binds are in the container's namespace only.
	if got := readFile(t, filepath.Join(f.rootfs, "run/boot/vmlinuz")); got != "" {
		t.Errorf("host sees %q at the bind destination, want the empty stub", got)
	}
	f.inContainer(func() error {
		for p, want := range map[string]string{
			"run/boot/vmlinuz":           "KERNEL",
			"run/boot/initrd.img":        "INITRD",
			"etc/hostname":               "KERNEL",
			"mnt/view/boot/initrd.img":   "INITRD",
			"mnt/view/urunc.json":        `{"cmdline":"x"}`,
			"boot/vmlinuz":               "CHANGED-BY-CONTAINER",
			"mnt/view/boot/vmlinuz.link": "KERNEL",
		} {
			if got := readFile(t, filepath.Join(f.rootfs, p)); got != want {
				t.Errorf("container %s = %q, want %q", p, got, want)
			}
		}
		for _, p := range []string{"run/boot/vmlinuz", "mnt/view/urunc.json", "etc/hostname"} {
			if err := os.WriteFile(filepath.Join(f.rootfs, p), []byte("x"), 0o644); !errors.Is(err, unix.EROFS) {
				t.Errorf("write %s: %v, want EROFS", p, err)
			}
		}
		if err := os.WriteFile(filepath.Join(f.rootfs, "mnt/view/new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
			t.Errorf("create in the view: %v, want EROFS", err)
		}
		return nil
	})

	// The container exits; poststop releases with the rootfs still mounted.
	f.stop()
	opts := ReleaseOptions{StubRoot: f.rootfs}
	if err := Release(context.Background(), &f.st, opts, f.save); err != nil {
		t.Fatal(err)
	}
	f.checkClean("", "run/boot", "mnt")
	if got := readFile(t, filepath.Join(f.upper, "boot/vmlinuz")); got != "CHANGED-BY-CONTAINER" {
		t.Errorf("the container's own change is gone: %q", got)
	}
	if got := readFile(t, filepath.Join(f.rootfs, "etc/hostname")); got != "image" {
		t.Errorf("an existing destination was touched: %q", got)
	}
	// Idempotent.
	if err := Release(context.Background(), &f.st, opts, f.save); err != nil {
		t.Fatalf("second release: %v", err)
	}
}

// TestReleaseFromUpper: the rootfs is unmounted before poststop (CRI-O):
// stubs are removed from the upper directory.
func TestReleaseFromUpper(t *testing.T) {
	f := newFixture(t)
	if err := f.prepare(f.request(KindImage, "", Bind{Src: "boot", Dst: "/new/boot"})); err != nil {
		t.Fatal(err)
	}
	f.stop()
	if err := unix.Unmount(f.rootfs, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(f.upper, "new/boot")); err != nil {
		t.Fatalf("no stub in the upper: %v", err)
	}
	if err := Release(context.Background(), &f.st, ReleaseOptions{StubRoot: f.upper}, f.save); err != nil {
		t.Fatal(err)
	}
	f.checkClean("", "new")
}

// TestReleaseAfterCrash: a state saved in the middle of Prepare (the hook
// was killed) is released by Release alone.
func TestReleaseAfterCrash(t *testing.T) {
	f := newFixture(t)
	if err := f.prepare(f.request(KindImage, "",
		Bind{Src: "boot/vmlinuz", Dst: "/a/b/vmlinuz"}, Bind{Src: "urunc.json", Dst: "/c/urunc.json"})); err != nil {
		t.Fatal(err)
	}
	f.stop()
	// Every intermediate state, from the last to the first.
	for i := len(f.saved) - 1; i >= 0; i-- {
		var st State
		if err := json.Unmarshal([]byte(f.saved[i]), &st); err != nil {
			t.Fatal(err)
		}
		if err := Release(context.Background(), &st, ReleaseOptions{StubRoot: f.rootfs}, func() error { return nil }); err != nil {
			t.Fatalf("release of state %d (%s): %v", i, f.saved[i], err)
		}
	}
	f.st = State{}
	f.checkClean("", "a", "c")
}

func TestBindFailures(t *testing.T) {
	f := newFixture(t)
	mkdir(t, filepath.Join(f.upper, "dir"))
	for _, tc := range []struct {
		name string
		bind Bind
		side string
		want error
		text string
	}{
		{"src missing", Bind{"boot/nope", "/run/x"}, "src", ErrNotInView, `src "boot/nope": not found in view`},
		{"src symlink to /etc/shadow", Bind{"boot/shadow", "/run/x"}, "src", ErrNotInView, "not found in view"},
		{"src symlink climbing out", Bind{"boot/passwd", "/run/x"}, "src", ErrNotInView, "not found in view"},
		{"src dotdot", Bind{"../../../../etc/shadow", "/run/x"}, "src", ErrNotInView, ""},
		{"dst through absolute symlink", Bind{"boot/vmlinuz", "/abs-escape/vmlinuz"}, "dst", ErrEscapesRootfs, "leading out"},
		{"dst through relative symlink", Bind{"boot/vmlinuz", "/rel-escape/vmlinuz"}, "dst", ErrEscapesRootfs, ""},
		{"dst is the symlink", Bind{"boot", "/abs-escape"}, "dst", ErrEscapesRootfs, ""},
		{"dir on file", Bind{"boot", "/urunc.json"}, "dst", ErrKindMismatch, ""},
		{"file on dir", Bind{"urunc.json", "/dir"}, "dst", ErrKindMismatch, ""},
		{"dst under a file", Bind{"urunc.json", "/urunc.json/x"}, "dst", nil, "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A good bind first, so that the failure has something to roll back.
			err := f.prepare(f.request(KindImage, "", Bind{"boot/vmlinuz", "/ok/vmlinuz"}, tc.bind))
			var be *BindError
			if !errors.As(err, &be) || be.Index != 1 || be.Side != tc.side {
				t.Fatalf("err = %v, want a %s error of bind 1", err, tc.side)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("err = %q, want it to contain %q", err, tc.text)
			}
			f.checkClean("", "ok", "run")
			f.inContainer(func() error {
				if _, err := os.Stat(filepath.Join(f.rootfs, "ok")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("container still sees the rolled back bind: %v", err)
				}
				return nil
			})
			if ents, _ := os.ReadDir(f.outside); len(ents) > 0 {
				t.Errorf("something was created outside the rootfs: %v", ents)
			}
		})
	}
}

func TestDirView(t *testing.T) {
	f := newFixture(t)
	src := filepath.Join(f.allow, "boot")
	writeFile(t, filepath.Join(src, "vmlinuz"), "DIRKERNEL")
	if err := f.prepare(f.request(KindDir, src, Bind{"vmlinuz", "/run/vmlinuz"})); err != nil {
		t.Fatal(err)
	}
	f.inContainer(func() error {
		if got := readFile(t, filepath.Join(f.rootfs, "run/vmlinuz")); got != "DIRKERNEL" {
			t.Errorf("bound %q", got)
		}
		return nil
	})
	if err := os.WriteFile(filepath.Join(f.views, "c1", "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write in the view: %v, want EROFS", err)
	}
	f.stop()
	if err := Release(context.Background(), &f.st, ReleaseOptions{StubRoot: f.rootfs}, f.save); err != nil {
		t.Fatal(err)
	}
	f.checkClean("", "run/vmlinuz")

	for _, bad := range []string{f.outside, filepath.Join(f.allow, "missing"), filepath.Join(src, "vmlinuz")} {
		err := f.prepare(f.request(KindDir, bad, Bind{"vmlinuz", "/run/vmlinuz"}))
		if err == nil {
			t.Fatalf("dir %s: no error", bad)
		}
		f.checkClean("")
	}
}

func TestFileView(t *testing.T) {
	for _, tc := range []struct {
		fs   string
		tool string
		mk   func(img, root string) *exec.Cmd
	}{
		{FSErofs, "mkfs.erofs", func(img, root string) *exec.Cmd { return exec.Command("mkfs.erofs", "--quiet", img, root) }},
		{FSSquashfs, "mksquashfs", func(img, root string) *exec.Cmd {
			return exec.Command("mksquashfs", root, img, "-noappend", "-quiet", "-no-progress")
		}},
		{FSExt4, "mkfs.ext4", func(img, root string) *exec.Cmd {
			return exec.Command("mkfs.ext4", "-q", "-F", "-d", root, img, "4M")
		}},
	} {
		t.Run(tc.fs, func(t *testing.T) {
			testutil.RequireTools(t, tc.tool)
			f := newFixture(t)
			root := filepath.Join(f.dir, "imgroot")
			writeFile(t, filepath.Join(root, "boot/vmlinuz"), "FILEKERNEL-"+tc.fs)
			img := filepath.Join(f.allow, "boot."+tc.fs)
			if out, err := tc.mk(img, root).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", tc.tool, err, out)
			}
			if err := f.prepare(f.request(KindFile, img, Bind{"boot/vmlinuz", "/run/boot/vmlinuz"})); err != nil {
				t.Fatal(err)
			}
			if !loopRE().MatchString(f.st.LoopDevice) {
				t.Errorf("no loop device recorded: %+v", f.st)
			}
			if devs := loopsOf(img); len(devs) != 1 {
				t.Errorf("loop devices on the image: %v", devs)
			}
			m := mountsUnder(t, filepath.Join(f.views, "c1"))
			if len(m) != 1 || !strings.Contains(m[0], " "+tc.fs+" ") || !strings.Contains(m[0], " ro,nosuid,nodev") {
				t.Errorf("view mount: %v", m)
			}
			f.inContainer(func() error {
				p := filepath.Join(f.rootfs, "run/boot/vmlinuz")
				if got := readFile(t, p); got != "FILEKERNEL-"+tc.fs {
					t.Errorf("bound %q", got)
				}
				if err := os.WriteFile(p, nil, 0o644); !errors.Is(err, unix.EROFS) {
					t.Errorf("write: %v, want EROFS", err)
				}
				return nil
			})
			f.stop()
			if err := Release(context.Background(), &f.st, ReleaseOptions{StubRoot: f.rootfs}, f.save); err != nil {
				t.Fatal(err)
			}
			f.checkClean(img, "run/boot")
		})
	}
}

func TestFileViewFailures(t *testing.T) {
	f := newFixture(t)
	garbage := filepath.Join(f.allow, "garbage.img")
	writeFile(t, garbage, strings.Repeat("not a file system ", 1000))
	// An erofs magic on garbage: detected, attached, and refused by the
	// kernel at mount.
	fake := make([]byte, 64<<10)
	copy(fake[1024:], []byte{0xE2, 0xE1, 0xF5, 0xE0})
	corrupt := filepath.Join(f.allow, "corrupt.erofs")
	if err := os.WriteFile(corrupt, fake, 0o644); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(f.outside, "boot.img")
	writeFile(t, outside, "x")
	symlink(t, outside, filepath.Join(f.allow, "link.img"))
	for _, tc := range []struct {
		name, path string
		want       error
	}{
		{"garbage", garbage, ErrUnknownImage},
		{"corrupt erofs", corrupt, nil},
		{"outside allow-dir", outside, policy.ErrNotAllowed},
		{"symlink out of allow-dir", filepath.Join(f.allow, "link.img"), policy.ErrNotAllowed},
		{"missing", filepath.Join(f.allow, "none.img"), os.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := f.prepare(f.request(KindFile, tc.path, Bind{"boot/vmlinuz", "/run/boot/vmlinuz"}))
			if err == nil {
				t.Fatal("no error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			t.Log(err)
			f.checkClean(tc.path)
		})
	}
}

// TestMountpointInUse: a stale view of an earlier container with the same
// id is refused and left alone.
func TestMountpointInUse(t *testing.T) {
	f := newFixture(t)
	if err := f.prepare(f.request(KindImage, "", Bind{"boot", "/b"})); err != nil {
		t.Fatal(err)
	}
	first := f.st
	err := f.prepare(f.request(KindImage, "", Bind{"boot", "/b2"}))
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("err = %v, want ErrInUse", err)
	}
	if m := mountsUnder(t, filepath.Join(f.views, "c1")); len(m) != 1 {
		t.Fatalf("the earlier view was touched: %v", m)
	}
	f.stop()
	f.st = first
	if err := Release(context.Background(), &f.st, ReleaseOptions{StubRoot: f.rootfs}, f.save); err != nil {
		t.Fatal(err)
	}
	f.checkClean("", "b", "b2")
}

func TestEnsurePrivateDir(t *testing.T) {
	testutil.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "views")
	for range 2 {
		if err := ensurePrivateDir(dir); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	m := mountsUnder(t, dir)
	if len(m) != 1 || strings.Contains(m[0], "shared:") || strings.Contains(m[0], "master:") {
		t.Fatalf("views directory mounts: %v", m)
	}
}

func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, l)
		}
	}
	return out
}

// loopsOf returns the loop devices whose backing file is path.
func loopsOf(path string) []string {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == path {
			out = append(out, f)
		}
	}
	return out
}

// waitNoLoop waits a little for autoclear (the last reference to a view may
// go away asynchronously) and returns the devices left.
func waitNoLoop(path string) []string {
	for i := 0; ; i++ {
		devs := loopsOf(path)
		if len(devs) == 0 || i == 50 {
			return devs
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mkdir(t *testing.T, d string) {
	t.Helper()
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	mkdir(t, filepath.Dir(p))
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, p string) {
	t.Helper()
	mkdir(t, filepath.Dir(p))
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Errorf("read %s: %v", p, err)
	}
	return string(b)
}
