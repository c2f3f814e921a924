package e2e

// Issue 10, finding 4: a valid tar that reaches a directory through a
// symlink, removes it under its own name and makes it again applies as GNU
// tar extracts it.

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

func TestRestoreAliasPodman(t *testing.T) {
	testutil.RequireRoot(t)
	p := newPodman(t, hooksDir)
	img := p.testImage()
	snap := filepath.Join(snapshotDir(t), "alias.tar")
	writeTar(t, snap, []testutil.Node{
		testutil.Dir("./b/"),
		testutil.Symlink("./a", "b"),
		testutil.File("./a/f1", "one"),
		testutil.Whiteout("./b"), // an overlay whiteout
		testutil.Dir("./b/"),
		testutil.File("./a/f2", "two"),
	}, false)
	out := p.run("run", "--rm", "--network=none", "--annotation", "io.ocisnap.restore="+snap, img,
		"sh", "-c", "readlink /a; ls -A /b; cat /a/f2; echo; test -e /b/f1 && echo F1-PRESENT; true")
	if want := "b\nf2\ntwo"; strings.TrimSpace(out) != want {
		t.Errorf("restored tree:\n%s\nwant:\n%s", out, want)
	}
}
