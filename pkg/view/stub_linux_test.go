package view

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/pkg/mountns"
)

// TestReleaseKeepsFilesBesideStubs: a bind at /artifacts/vmlinuz creates
// /artifacts; the files the container writes beside the bound kernel
// (/artifacts/notes.txt, /artifacts/sub/f) survive the release, from the
// mounted rootfs (Podman) and from the upper directory (CRI-O); only the
// stubs are removed: the kernel's empty mountpoint and, where nothing was
// written, the directories made for it.
func TestReleaseKeepsFilesBesideStubs(t *testing.T) {
	for _, fromUpper := range []bool{false, true} {
		name := "rootfs"
		if fromUpper {
			name = "upper"
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			err := f.prepare(f.request(KindImage, "",
				Bind{Src: "boot/vmlinuz", Dst: "/artifacts/vmlinuz"},
				Bind{Src: "boot/initrd.img", Dst: "/deep/a/b/initrd.img"},
				Bind{Src: "boot", Dst: "/tree/boot"}))
			if err != nil {
				t.Fatal(err)
			}
			if got := f.st.Binds[1].Stubs; len(got) != 4 || got[0] != (Stub{Path: "/deep", Dir: true}) ||
				got[3] != (Stub{Path: "/deep/a/b/initrd.img"}) {
				t.Fatalf("stubs of /deep/a/b/initrd.img: %+v", got)
			}
			f.inContainer(func() error {
				for p, content := range map[string]string{
					"artifacts/notes.txt": "NOTES", "artifacts/sub/f": "F", "deep/a/x": "X", "tree/y": "Y",
				} {
					writeFile(t, filepath.Join(f.rootfs, p), content)
				}
				return nil
			})
			f.stop()
			root := f.rootfs
			if fromUpper {
				if err := unix.Unmount(f.rootfs, 0); err != nil {
					t.Fatal(err)
				}
				root = f.upper
			}
			if err := Release(context.Background(), &f.st, ReleaseOptions{StubRoot: root}, f.save); err != nil {
				t.Fatal(err)
			}
			f.checkClean("", "artifacts/vmlinuz", "deep/a/b", "tree/boot")
			for p, want := range map[string]string{
				"artifacts/notes.txt": "NOTES", "artifacts/sub/f": "F", "deep/a/x": "X", "tree/y": "Y",
			} {
				if got := readFile(t, filepath.Join(f.upper, p)); got != want {
					t.Errorf("the container's %s = %q, want %q", p, got, want)
				}
			}
		})
	}
}

// TestReleaseRemovesEmptyStubs: nothing written beside the binds: every
// component created for them is removed, the existing directories above
// are not.
func TestReleaseRemovesEmptyStubs(t *testing.T) {
	f := newFixture(t)
	err := f.prepare(f.request(KindImage, "",
		Bind{Src: "boot/vmlinuz", Dst: "/artifacts/vmlinuz"},
		Bind{Src: "boot/initrd.img", Dst: "/artifacts/initrd.img"},
		Bind{Src: "boot/initrd.img", Dst: "/run/a/b/initrd.img"},
		Bind{Src: "boot", Dst: "/var/run/c/boot"}))
	if err != nil {
		t.Fatal(err)
	}
	f.stop()
	if err := Release(context.Background(), &f.st, ReleaseOptions{StubRoot: f.rootfs}, f.save); err != nil {
		t.Fatal(err)
	}
	f.checkClean("", "artifacts", "run/a", "run/c")
	if fi, err := os.Stat(filepath.Join(f.rootfs, "run")); err != nil || !fi.IsDir() {
		t.Errorf("the image's /run: %v", err)
	}
}

// TestReleaseLeavesWhatIsNotAStub: a stub the container replaced (a
// kernel mountpoint written to after it unmounted the bind, a directory
// swapped for a symlink to an empty directory elsewhere, a file for a
// directory) is left alone, not followed, and not an error.
func TestReleaseLeavesWhatIsNotAStub(t *testing.T) {
	f := newFixture(t)
	err := f.prepare(f.request(KindImage, "",
		Bind{Src: "boot/vmlinuz", Dst: "/k/vmlinuz"},
		Bind{Src: "boot/vmlinuz", Dst: "/s/d/vmlinuz"},
		Bind{Src: "boot", Dst: "/t/boot"}))
	if err != nil {
		t.Fatal(err)
	}
	mkdir(t, filepath.Join(f.rootfs, "elsewhere/d"))
	f.inContainer(func() error {
		for _, d := range []string{"k/vmlinuz", "s/d/vmlinuz", "t/boot"} {
			if err := unix.Unmount(filepath.Join(f.rootfs, d), 0); err != nil {
				return err
			}
		}
		writeFile(t, filepath.Join(f.rootfs, "k/vmlinuz"), "WRITTEN")
		if err := os.RemoveAll(filepath.Join(f.rootfs, "s/d")); err != nil {
			return err
		}
		symlink(t, "../elsewhere/d", filepath.Join(f.rootfs, "s/d"))
		if err := os.Remove(filepath.Join(f.rootfs, "t/boot")); err != nil {
			return err
		}
		writeFile(t, filepath.Join(f.rootfs, "t/boot"), "")
		return nil
	})
	f.stop()
	if err := Release(context.Background(), &f.st, ReleaseOptions{StubRoot: f.rootfs}, f.save); err != nil {
		t.Fatal(err)
	}
	f.checkClean("")
	if got := readFile(t, filepath.Join(f.upper, "k/vmlinuz")); got != "WRITTEN" {
		t.Errorf("k/vmlinuz = %q", got)
	}
	if target, err := os.Readlink(filepath.Join(f.upper, "s/d")); err != nil || target != "../elsewhere/d" {
		t.Errorf("the symlink s/d: %q, %v", target, err)
	}
	if _, err := os.Stat(filepath.Join(f.upper, "elsewhere/d")); err != nil {
		t.Errorf("the symlink's target was removed: %v", err)
	}
	if fi, err := os.Lstat(filepath.Join(f.upper, "t/boot")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("t/boot (a file where a directory stub was): %v", err)
	}
}

// TestReleaseStubStillMounted: a stub under a mount that could not be
// unmounted is an error, and it stays recorded for `ocisnap gc`.
func TestReleaseStubStillMounted(t *testing.T) {
	f := newFixture(t)
	if err := f.prepare(f.request(KindImage, "", Bind{Src: "boot/vmlinuz", Dst: "/m/d/vmlinuz"})); err != nil {
		t.Fatal(err)
	}
	f.stop()
	// Something mounted over the stub directory in the namespace the
	// stubs are removed from.
	d := filepath.Join(f.rootfs, "m/d")
	if err := unix.Mount("tmpfs", d, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(d, unix.MNT_DETACH)
	err := Release(context.Background(), &f.st, ReleaseOptions{StubRoot: f.rootfs}, f.save)
	if err == nil {
		t.Fatal("no error for a stub under a mount")
	}
	t.Log(err)
	if b := f.st.Binds[0]; len(b.Stubs) != 3 {
		t.Fatalf("the stubs were forgotten: %+v", b)
	}
	if err := unix.Unmount(d, 0); err != nil {
		t.Fatal(err)
	}
	if err := Release(context.Background(), &f.st, ReleaseOptions{StubRoot: f.rootfs}, f.save); err != nil {
		t.Fatal(err)
	}
	f.checkClean("", "m")
}

// TestReleaseStubOfLaterBindStuck: the directory made for a first bind
// also holds a later bind's mountpoint, which cannot be removed yet: the
// directory stays recorded (it is not the container's), and goes at the
// next release.
func TestReleaseStubOfLaterBindStuck(t *testing.T) {
	f := newFixture(t)
	err := f.prepare(f.request(KindImage, "",
		Bind{Src: "boot/vmlinuz", Dst: "/m/vmlinuz"}, Bind{Src: "boot/initrd.img", Dst: "/m/initrd.img"}))
	if err != nil {
		t.Fatal(err)
	}
	f.stop()
	p := filepath.Join(f.rootfs, "m/initrd.img")
	if err := unix.Mount(filepath.Join(f.lowers[0], "urunc.json"), p, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(p, unix.MNT_DETACH)
	if err := Release(context.Background(), &f.st, ReleaseOptions{StubRoot: f.rootfs}, f.save); err == nil {
		t.Fatal("no error for a stub a mount covers")
	}
	if got := f.st.Binds[0].Stubs; len(got) != 2 {
		t.Fatalf("the first bind's stubs were forgotten: %+v", got)
	}
	if err := unix.Unmount(p, 0); err != nil {
		t.Fatal(err)
	}
	if err := Release(context.Background(), &f.st, ReleaseOptions{StubRoot: f.rootfs}, f.save); err != nil {
		t.Fatal(err)
	}
	f.checkClean("", "m")
}

// TestReleaseOldRecord: a record of an older version names only the
// outermost stub. What lies beside the destination stays; the chain down
// to the destination is removed while empty.
func TestReleaseOldRecord(t *testing.T) {
	f := newFixture(t)
	f.stop()
	writeFile(t, filepath.Join(f.rootfs, "a/b/vmlinuz"), "")
	writeFile(t, filepath.Join(f.rootfs, "a/notes.txt"), "NOTES")
	writeFile(t, filepath.Join(f.rootfs, "c/d/vmlinuz"), "")
	writeFile(t, filepath.Join(f.rootfs, "e/kept"), "KEPT")
	mkdir(t, filepath.Join(f.rootfs, "g/h"))
	st := State{Kind: "image", Binds: []BindState{
		{Src: "boot/vmlinuz", Dst: "/a/b/vmlinuz", LegacyStub: "/a"},
		{Src: "boot/vmlinuz", Dst: "/c/d/vmlinuz", LegacyStub: "/c"},
		{Src: "boot/vmlinuz", Dst: "/x/vmlinuz", LegacyStub: "/e"}, // through a symlink /x -> e
		{Src: "boot", Dst: "/g/h", LegacyStub: "/g/h"},
	}}
	if err := Release(context.Background(), &st, ReleaseOptions{StubRoot: f.rootfs}, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	f.st = st
	f.checkClean("", "a/b", "c", "g/h")
	if got := readFile(t, filepath.Join(f.upper, "a/notes.txt")); got != "NOTES" {
		t.Errorf("a/notes.txt = %q", got)
	}
	if got := readFile(t, filepath.Join(f.upper, "e/kept")); got != "KEPT" {
		t.Errorf("e/kept = %q", got)
	}
	if _, err := os.Stat(filepath.Join(f.upper, "g")); err != nil {
		t.Errorf("g (not a stub) was removed: %v", err)
	}
}

// TestPrepareGoneProcess: a pid whose start time does not match (reused
// by another process) is never entered: the bind fails with
// mountns.ErrGone and nothing is left.
func TestPrepareGoneProcess(t *testing.T) {
	f := newFixture(t)
	req := f.request(KindImage, "", Bind{Src: "boot/vmlinuz", Dst: "/run/boot/vmlinuz"})
	req.PidStart++
	err := f.prepare(req)
	var be *BindError
	if !errors.As(err, &be) || !errors.Is(err, mountns.ErrGone) {
		t.Fatalf("err = %v, want a bind error wrapping mountns.ErrGone", err)
	}
	f.checkClean("", "run/boot")
}
