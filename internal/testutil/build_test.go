//go:build linux

package testutil

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// Tar writes each node's header as given (PAX, sizes from the bodies),
// its content, and the end of the archive; TarUnterminated leaves the
// end out.
func TestTar(t *testing.T) {
	mt := time.Unix(1, 5)
	nodes := []Node{
		Dir("./d/").WithMode(0o2750).WithOwner(12, 34),
		File("./d/f", "body").WithXattr("user.a", "1").WithMTime(mt),
		Symlink("./l", "../x"), Hardlink("./h", "./d/f"), Whiteout("./gone"),
		Fifo("./p"), Char("./c", 1, 3), Block("./b", 8, 1), Dir("./o/").WithOpaque(),
	}
	tr := tar.NewReader(bytes.NewReader(Tar(t, nodes...)))
	for _, n := range nodes {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: %v", n.Header.Name, err)
		}
		body, _ := io.ReadAll(tr)
		want := n.Header
		if h.Name != want.Name || h.Typeflag != want.Typeflag || h.Mode != want.Mode || h.Uid != want.Uid ||
			h.Gid != want.Gid || !h.ModTime.Equal(want.ModTime) || h.Linkname != want.Linkname ||
			h.Devmajor != want.Devmajor || h.Devminor != want.Devminor || string(body) != n.Body {
			t.Errorf("read %+v %q, built %+v %q", h, body, want, n.Body)
		}
		for k, v := range want.PAXRecords {
			if h.PAXRecords[k] != v {
				t.Errorf("%s: PAX %s = %q, want %q", h.Name, k, h.PAXRecords[k], v)
			}
		}
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("after the nodes: %v, want io.EOF", err)
	}
	b := TarUnterminated(t, File("./f", "x").WithMTime(time.Unix(1, 0)))
	tr = tar.NewReader(bytes.NewReader(b))
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	if len(b)%512 != 0 || len(b) != 1024 {
		t.Errorf("unterminated tar of one small file is %d bytes, want 1024 (header and one block)", len(b))
	}
}

// BuildTree makes what each node says, as DescribeTree sees it.
func TestBuildTree(t *testing.T) {
	dir := t.TempDir()
	mt := time.Unix(1700000000, 5)
	nodes := []Node{
		File("./a/deep/f", "content").WithMode(0o600).WithXattr("user.x", "v").WithMTime(mt),
		Dir("./d/").WithMode(0o1777),
		Symlink("./l", "a/deep/f"),
		Hardlink("./h", "./a/deep/f"),
		Fifo("./p"),
	}
	if os.Geteuid() == 0 {
		nodes = append(nodes, Whiteout("./w"), File("./owned", "o").WithOwner(1234, 5678).WithMode(0o2755))
	}
	BuildTree(t, dir, nodes...)
	d := DescribeTree(t, dir, WithoutCtime())
	want := []string{
		`"a" mode=40755`, `"a/deep/f" mode=100600`, `mtime=1700000000.000000005`, `xattr:user.x="v"`,
		`"d" mode=41777`, `"l" mode=120777`, `-> "a/deep/f"`, `hard links ["a/deep/f" "h"]`, `"p" mode=10640`,
	}
	if os.Geteuid() == 0 {
		want = append(want, `"w" mode=20000`, `rdev=0:0`, `"owned" mode=102755 ids=1234:5678`)
	}
	for _, w := range want {
		if !strings.Contains(d, w) {
			t.Errorf("tree lacks %q:\n%s", w, d)
		}
	}
	err := buildNode(dir, Hardlink("./y", "./missing"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("hard link to a missing target: %v, want ErrNotExist", err)
	}
}
