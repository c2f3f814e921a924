//go:build linux

package layer

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// mountOverlay mounts an overlay of lower with a fresh upper and returns
// the merged and upper directories; unmount undoes it (also at cleanup).
func mountOverlay(t testing.TB, lower string) (merged, upper string, unmount func()) {
	t.Helper()
	base := t.TempDir()
	merged, upper, work := filepath.Join(base, "merged"), filepath.Join(base, "upper"), filepath.Join(base, "work")
	for _, d := range []string{merged, upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		testutil.SkipOrFail(t, "mount overlay: %v", err)
	}
	mounted := true
	unmount = func() {
		if mounted {
			mounted = false
			if err := unix.Unmount(merged, 0); err != nil {
				t.Errorf("unmount %s: %v", merged, err)
			}
		}
	}
	t.Cleanup(unmount)
	return merged, upper, unmount
}

// A container's changes, exported from its upper with Write and applied
// with Apply onto a new container of the same image, give the same merged
// view: the restore half of the product, end to end on real overlay
// mounts.
func TestApplyRoundTripThroughWrite(t *testing.T) {
	testutil.RequireRoot(t)
	lower := t.TempDir()
	testutil.BuildTree(t, lower,
		testutil.File("etc/app.conf", "image\n"),
		testutil.File("etc/gone.d/a", "a"),
		testutil.File("etc/hostname", "image\n"),
		testutil.Dir("tmp/"),
		testutil.File("usr/bin/tool", "tool"),
		testutil.File("var/cache/old", "o"),
		testutil.File("var/cache/sub/old2", "o"),
	)

	merged, upper, unmount := mountOverlay(t, lower)
	m := func(p string) string { return filepath.Join(merged, p) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(m("etc/app.conf"), []byte("changed\n"), 0o600))
	must(os.Remove(m("etc/hostname")))
	must(os.RemoveAll(m("etc/gone.d")))
	must(os.RemoveAll(m("var/cache")))
	must(os.MkdirAll(m("var/cache/sub"), 0o750))
	must(os.WriteFile(m("var/cache/sub/new"), []byte("new"), 0o644))
	must(os.Chmod(m("usr/bin/tool"), 0o4755))
	must(os.Lchown(m("usr/bin/tool"), 1234, 5678))
	must(os.Symlink("/etc/app.conf", m("tmp/link")))
	must(os.Link(m("etc/app.conf"), m("tmp/hard")))
	must(unix.Mkfifo(m("tmp/fifo"), 0o620))
	must(unix.Setxattr(m("etc/app.conf"), "user.origin", []byte("container"), 0))
	want := testutil.DescribeTree(t, merged, testutil.WithoutCtime(), testutil.WithoutTimesOf("."))
	unmount()

	for _, tc := range []struct {
		f Format
		c Compression
	}{{FormatOverlay, CompressionNone}, {FormatOCI, CompressionZstd}, {FormatOverlay, CompressionGzip}} {
		t.Run(fmt.Sprintf("%s-%s", tc.f, tc.c), func(t *testing.T) {
			var snap bytes.Buffer
			if _, err := Write(context.Background(), &snap, upper, WithFormat(tc.f), WithCompression(tc.c)); err != nil {
				t.Fatalf("Write: %v", err)
			}
			merged2, _, _ := mountOverlay(t, lower)
			if _, err := applyTo(t, merged2, snap.Bytes()); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if got := testutil.DescribeTree(t, merged2, testutil.WithoutCtime(), testutil.WithoutTimesOf(".")); got != want {
				t.Errorf("restored view differs:\n got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}
