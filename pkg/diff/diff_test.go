package diff

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// mkTar is a snapshot of nodes.
func mkTar(t *testing.T, nodes ...testutil.Node) *bytes.Buffer {
	t.Helper()
	return bytes.NewBuffer(testutil.Tar(t, nodes...))
}

var t0 = testutil.BuildTime

func TestWithoutBase(t *testing.T) {
	snap := mkTar(t,
		testutil.Dir("./"), testutil.Dir("./etc/"), testutil.File("./etc/app.conf", ""),
		testutil.Dir("./opq/").WithOpaque().WithMTime(time.Time{}),
		testutil.Whiteout("./README"),
		testutil.Dir("./oci/"), testutil.File("./oci/.wh..wh..opq", ""), testutil.File("./oci/.wh.gone", ""),
		testutil.Dir("./a-b/"), testutil.Dir("./a/"), testutil.File("./a/b", ""),
	)
	got, err := Changes(context.Background(), snap, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{
		{"/README", Deleted, false},
		{"/a", Added, false},
		{"/a/b", Added, false},
		{"/a-b", Added, false},
		{"/etc", Added, false},
		{"/etc/app.conf", Added, false},
		{"/oci", Added, true},
		{"/oci/gone", Deleted, false},
		{"/opq", Added, true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
}

func TestWithBase(t *testing.T) {
	b := t.TempDir()
	for _, d := range []string{"etc/app", "same", "data/old", "modedir", "opq"} {
		if err := os.MkdirAll(filepath.Join(b, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"etc/app/app.conf", "README", "data/old/f", "opq/lower"} {
		if err := os.WriteFile(filepath.Join(b, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc", filepath.Join(b, "abs")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"etc", "etc/app", "same", "data", "modedir", "opq"} {
		if err := os.Chtimes(filepath.Join(b, d), t0, t0); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.OpenRoot(b)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()

	snap := mkTar(t,
		testutil.Dir("./"),
		testutil.Dir("./etc/"), testutil.Dir("./etc/app/"), testutil.File("./etc/app/app.conf", ""), // unchanged dirs, changed file
		testutil.Dir("./same/"),                                  // unchanged, no child: left out
		testutil.Dir("./modedir/").WithMode(0o700),               // mode changed
		testutil.Dir("./data/"), testutil.Whiteout("./data/old"), // deletion: data is C as its parent
		testutil.Dir("./opq/").WithOpaque(), testutil.File("./opq/new", ""),
		testutil.Dir("./new/"), testutil.Dir("./new/sub/"), testutil.File("./new/sub/f", ""),
		testutil.Dir("./abs/"), testutil.File("./abs/x", ""), // the base's abs is a symlink out of it
	)
	got, err := Changes(context.Background(), snap, root)
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{
		{"/abs", Changed, false}, // the base has abs (a symlink), so it changed
		{"/abs/x", Added, false},
		{"/data", Changed, false},
		{"/data/old", Deleted, false},
		{"/etc/app/app.conf", Changed, false},
		{"/modedir", Changed, false},
		{"/new", Added, false},
		{"/new/sub", Added, false},
		{"/new/sub/f", Added, false},
		{"/opq", Deleted, true},
		{"/opq/new", Added, false},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
}

func TestHostileSnapshot(t *testing.T) {
	for _, name := range []string{"../etc/passwd", "/etc/passwd", "a/../../b"} {
		_, err := Changes(context.Background(), mkTar(t, testutil.File(name, "")), nil)
		if err == nil {
			t.Errorf("%q accepted", name)
		}
	}
}

// TestBaseSymlinks: the base's symlinks in a snapshot path's parents are
// followed while they stay in the base; one that leads out of it (absolute,
// or by "..") means the base does not have the path, even where the host
// has it; a loop is an error.
func TestBaseSymlinks(t *testing.T) {
	top := t.TempDir()
	b, outside := filepath.Join(top, "base"), filepath.Join(top, "outside")
	for _, d := range []string{"etc", "sub"} {
		if err := os.MkdirAll(filepath.Join(b, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(b, "etc", "app.conf"), filepath.Join(b, "reg"), filepath.Join(outside, "secret")} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"abs":    "/etc",       // absolute: out of the base (the host's /etc has passwd)
		"out":    "../outside", // relative, out of the base
		"deep":   "sub/../../outside",
		"in":     "etc",        // inside
		"dotdot": "sub/../etc", // inside, through ".."
		"chain":  "in",         // a symlink to a symlink
		"chain2": "./chain/../in",
		"loop":   "loop",
	} {
		if err := os.Symlink(target, filepath.Join(b, link)); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.OpenRoot(b)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()

	snap := mkTar(t,
		testutil.File("./abs/passwd", ""), testutil.File("./out/secret", ""), testutil.File("./deep/secret", ""),
		testutil.File("./in/app.conf", ""), testutil.File("./dotdot/app.conf", ""), testutil.File("./chain/app.conf", ""), testutil.File("./chain2/app.conf", ""),
		testutil.File("./in/new", ""), testutil.File("./reg/x", ""),
	)
	got, err := Changes(context.Background(), snap, root)
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{
		{"/abs", Changed, false},
		{"/abs/passwd", Added, false},
		{"/chain/app.conf", Changed, false},
		{"/chain2/app.conf", Changed, false},
		{"/deep", Changed, false},
		{"/deep/secret", Added, false},
		{"/dotdot/app.conf", Changed, false},
		{"/in", Changed, false},
		{"/in/app.conf", Changed, false},
		{"/in/new", Added, false},
		{"/out", Changed, false},
		{"/out/secret", Added, false},
		{"/reg", Changed, false},
		{"/reg/x", Added, false},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}

	_, err = Changes(context.Background(), mkTar(t, testutil.File("./loop/x", "")), root)
	if !errors.Is(err, unix.ELOOP) || !strings.Contains(err.Error(), "/loop/x") {
		t.Errorf("a symlink loop in the base: %v, want ELOOP naming /loop/x", err)
	}
}
