//go:build linux

package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// treeFixture makes a small tree beside a root: a file, a directory with a
// file, a symlink, a hard link, and root/ with a file (left out).
func treeFixture(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	for _, d := range []string{"dir", "root"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, c := range map[string]string{"file": "precious", "dir/inner": "inner", "root/scratch": "x"} {
		if err := os.WriteFile(filepath.Join(base, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("file", filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(base, "file"), filepath.Join(base, "dir/hard")); err != nil {
		t.Fatal(err)
	}
	return base
}

// DescribeTree sees every kind of change outside the skipped root, and
// none inside it.
func TestDescribeTreeDetects(t *testing.T) {
	root := os.Geteuid() == 0
	changes := []struct {
		name      string
		root      bool // needs root
		timesOnly bool // seen only in the times
		change    func(base string) error
	}{
		{"chown", true, false, func(b string) error { return os.Lchown(filepath.Join(b, "file"), 1234, 5678) }},
		{"chown of a symlink", true, false, func(b string) error { return os.Lchown(filepath.Join(b, "link"), 1234, 5678) }},
		{"chown to the same owner", false, true, func(b string) error {
			time.Sleep(10 * time.Millisecond) // a ctime tick
			return os.Lchown(filepath.Join(b, "dir"), os.Geteuid(), os.Getegid())
		}},
		{"chmod", false, false, func(b string) error { return os.Chmod(filepath.Join(b, "dir"), 0o700) }},
		{"chmod setuid", false, false, func(b string) error { return unix.Chmod(filepath.Join(b, "file"), 0o4644) }},
		{"symlink retarget", false, false, func(b string) error {
			if err := os.Remove(filepath.Join(b, "link")); err != nil {
				return err
			}
			return os.Symlink("dir/inner", filepath.Join(b, "link"))
		}},
		{"user xattr", false, false, func(b string) error {
			return unix.Lsetxattr(filepath.Join(b, "dir/inner"), "user.test", []byte("v"), 0)
		}},
		{"trusted xattr on a symlink", true, false, func(b string) error {
			return unix.Lsetxattr(filepath.Join(b, "link"), "trusted.test", []byte("v"), 0)
		}},
		{"content, same size", false, false, func(b string) error {
			return os.WriteFile(filepath.Join(b, "dir/inner"), []byte("INNER"), 0o644)
		}},
		{"times", false, true, func(b string) error {
			return os.Chtimes(filepath.Join(b, "file"), time.Unix(1, 0), time.Unix(1, 0))
		}},
		{"new hard link", false, false, func(b string) error {
			return os.Link(filepath.Join(b, "dir/inner"), filepath.Join(b, "root/stolen"))
		}},
		{"removal", false, false, func(b string) error { return os.Remove(filepath.Join(b, "dir/hard")) }},
	}
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			if c.root && !root {
				SkipOrFail(t, "test needs root")
			}
			base := treeFixture(t)
			before := DescribeTree(t, base, SkipPath("root"))
			if err := c.change(base); err != nil {
				t.Fatal(err)
			}
			after := DescribeTree(t, base, SkipPath("root"))
			if after == before {
				t.Fatalf("change not seen:\n%s", before)
			}
			t.Logf("diff:\n%s", TreeDiff(before, after))
			if c.timesOnly {
				return
			}
			// Seen by the attribute itself, not only by the times the
			// change moved.
			base = treeFixture(t)
			before = DescribeTree(t, base, SkipPath("root"), WithoutTimes())
			if err := c.change(base); err != nil {
				t.Fatal(err)
			}
			if after := DescribeTree(t, base, SkipPath("root"), WithoutTimes()); after == before {
				t.Errorf("change seen only in the times:\n%s", before)
			}
		})
	}
	t.Run("inside the skipped root", func(t *testing.T) {
		base := treeFixture(t)
		before := DescribeTree(t, base, SkipPath("root"))
		if err := os.WriteFile(filepath.Join(base, "root/scratch"), []byte("changed"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(base, "root/new"), 0o755); err != nil {
			t.Fatal(err)
		}
		if after := DescribeTree(t, base, SkipPath("root")); after != before {
			t.Errorf("a change inside the skipped root was seen:\n%s", TreeDiff(before, after))
		}
	})
}

// The description names what it holds, and the options leave out what
// they say.
func TestDescribeTreeContent(t *testing.T) {
	base := treeFixture(t)
	d := DescribeTree(t, base)
	for _, want := range []string{`"." mode=40`, `"root/scratch"`, `"link" mode=120777`, `-> "file"`,
		"sha256=", `hard links ["dir/hard" "file"]`, " ctime="} {
		if !strings.Contains(d, want) {
			t.Errorf("description lacks %q:\n%s", want, d)
		}
	}
	if d := DescribeTree(t, base, WithoutTimes()); strings.Contains(d, "mtime=") || strings.Contains(d, "ctime=") {
		t.Errorf("WithoutTimes kept times:\n%s", d)
	}
	if d := DescribeTree(t, base, WithoutCtime()); strings.Contains(d, "ctime=") || !strings.Contains(d, "mtime=") {
		t.Errorf("WithoutCtime:\n%s", d)
	}
	for _, l := range strings.Split(DescribeTree(t, base, WithoutDirTimes(), WithoutDirSizes()), "\n") {
		if strings.Contains(l, "mode=40") && (strings.Contains(l, "time=") || strings.Contains(l, "size=")) {
			t.Errorf("directory line with times or size: %s", l)
		}
	}
	if d := TreeDiff("a\nb\n", "b\nc\n"); d != "- a\n+ c" {
		t.Errorf("TreeDiff = %q", d)
	}
}

// The options added for the helpers DescribeTree replaced leave out
// exactly what they name.
func TestDescribeTreeNarrowing(t *testing.T) {
	base := treeFixture(t)
	if err := unix.Lsetxattr(filepath.Join(base, "file"), "user.keep", []byte("k"), 0); err != nil {
		t.Fatal(err)
	}
	lines := func(opts ...TreeOpt) map[string]string {
		m := map[string]string{}
		for _, l := range strings.Split(DescribeTree(t, base, opts...), "\n") {
			if name, _, ok := strings.Cut(l, " "); ok {
				m[name] = l
			}
		}
		return m
	}
	if l := lines(WithoutTimesOf("dir"))[`"dir"`]; strings.Contains(l, "time=") {
		t.Errorf("WithoutTimesOf(dir) kept its times: %s", l)
	}
	if l := lines(WithoutTimesOf("dir"))[`"file"`]; !strings.Contains(l, "mtime=") {
		t.Errorf("WithoutTimesOf(dir) dropped another path's times: %s", l)
	}
	if l := lines(WithoutSymlinkTimes())[`"link"`]; strings.Contains(l, "time=") {
		t.Errorf("WithoutSymlinkTimes kept a symlink's times: %s", l)
	}
	if l := lines(WithoutNlink())[`"file"`]; strings.Contains(l, "nlink=") {
		t.Errorf("WithoutNlink kept a link count: %s", l)
	}
	if d := DescribeTree(t, base, WithoutNlink()); !strings.Contains(d, `hard links ["dir/hard" "file"]`) {
		t.Errorf("WithoutNlink dropped the hard-link group:\n%s", d)
	}
	if l := lines(OnlyXattrs("user.k"))[`"file"`]; !strings.Contains(l, `xattr:user.keep="k"`) {
		t.Errorf("OnlyXattrs(user.k) dropped user.keep: %s", l)
	}
	if l := lines(OnlyXattrs("trusted."))[`"file"`]; strings.Contains(l, "xattr:") {
		t.Errorf("OnlyXattrs(trusted.) kept a user xattr: %s", l)
	}
	// A skipped file leaves out that file only, not its siblings after it.
	d := DescribeTree(t, base, SkipPath("dir/hard"))
	if strings.Contains(d, `"dir/hard"`) || !strings.Contains(d, `"dir/inner"`) || !strings.Contains(d, `"file"`) {
		t.Errorf("SkipPath(dir/hard):\n%s", d)
	}
}
