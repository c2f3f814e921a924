package diff

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

type ent struct {
	name     string
	typ      byte
	mode     int64
	mtime    time.Time
	opaque   bool
	linkname string
}

func mkTar(t *testing.T, ents ...ent) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, ModTime: e.mtime, Linkname: e.linkname, Format: tar.FormatPAX}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if e.opaque {
			h.PAXRecords = map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y"}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

var t0 = time.Unix(1700000000, 123456789)

func dir(name string) ent  { return ent{name: name, typ: tar.TypeDir, mode: 0o755, mtime: t0} }
func file(name string) ent { return ent{name: name, typ: tar.TypeReg, mtime: t0} }
func wh(name string) ent   { return ent{name: name, typ: tar.TypeChar} }

func TestWithoutBase(t *testing.T) {
	snap := mkTar(t,
		dir("./"), dir("./etc/"), file("./etc/app.conf"),
		ent{name: "./opq/", typ: tar.TypeDir, mode: 0o755, opaque: true},
		wh("./README"),
		dir("./oci/"), file("./oci/.wh..wh..opq"), file("./oci/.wh.gone"),
		dir("./a-b/"), dir("./a/"), file("./a/b"),
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
		dir("./"),
		dir("./etc/"), dir("./etc/app/"), file("./etc/app/app.conf"), // unchanged dirs, changed file
		dir("./same/"), // unchanged, no child: left out
		ent{name: "./modedir/", typ: tar.TypeDir, mode: 0o700, mtime: t0}, // mode changed
		dir("./data/"), wh("./data/old"), // deletion: data is C as its parent
		ent{name: "./opq/", typ: tar.TypeDir, mode: 0o755, mtime: t0, opaque: true}, file("./opq/new"),
		dir("./new/"), dir("./new/sub/"), file("./new/sub/f"),
		dir("./abs/"), file("./abs/x"), // the base's abs is a symlink out of it
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
		_, err := Changes(context.Background(), mkTar(t, file(name)), nil)
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
		file("./abs/passwd"), file("./out/secret"), file("./deep/secret"),
		file("./in/app.conf"), file("./dotdot/app.conf"), file("./chain/app.conf"), file("./chain2/app.conf"),
		file("./in/new"), file("./reg/x"),
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

	_, err = Changes(context.Background(), mkTar(t, file("./loop/x")), root)
	if !errors.Is(err, syscall.ELOOP) || !strings.Contains(err.Error(), "/loop/x") {
		t.Errorf("a symlink loop in the base: %v, want ELOOP naming /loop/x", err)
	}
}
