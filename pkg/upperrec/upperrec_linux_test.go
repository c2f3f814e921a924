package upperrec_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/upperrec"
)

type ovl struct {
	merged, upper string
}

// mount mounts a fresh overlay over lower in a temporary directory.
func mount(t *testing.T, lower string) ovl {
	t.Helper()
	base := t.TempDir()
	o := ovl{merged: filepath.Join(base, "merged"), upper: filepath.Join(base, "upper")}
	work := filepath.Join(base, "work")
	for _, d := range []string{o.merged, o.upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, o.upper, work)
	if err := unix.Mount("overlay", o.merged, "overlay", 0, data); err != nil {
		testutil.SkipOrFail(t, "mount overlay %s: %v", data, err)
	}
	t.Cleanup(func() { unix.Unmount(o.merged, unix.MNT_DETACH) })
	return o
}

func (o ovl) unmount(t *testing.T) {
	t.Helper()
	if err := unix.Unmount(o.merged, 0); err != nil {
		t.Fatalf("unmount %s: %v", o.merged, err)
	}
}

// engineStubs makes what a runtime makes in a fresh upper: /etc/mtab and
// /run.
func engineStubs(t *testing.T, merged string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(merged, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/proc/mounts", filepath.Join(merged, "etc/mtab")); err != nil && !errors.Is(err, fs.ErrExist) {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(merged, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func apply(t *testing.T, merged string, layers ...[]byte) {
	t.Helper()
	root, err := os.Open(merged)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for i, l := range layers {
		if _, err := layer.Apply(context.Background(), root, bytes.NewReader(l)); err != nil {
			t.Fatalf("apply layer %d: %v", i, err)
		}
	}
}

func describe(t *testing.T, dir string) string {
	return testutil.DescribeTree(t, dir, testutil.WithoutCtime(), testutil.WithoutDirTimes(), testutil.WithoutDirSizes(),
		testutil.WithoutNlink(), testutil.WithoutSymlinkTimes(), testutil.SkipPath("etc/mtab"), testutil.SkipPath("run"))
}

func entries(t *testing.T, l []byte) []string {
	t.Helper()
	rd, err := layer.NewReader(bytes.NewReader(l))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		s := "./" + e.Path
		switch {
		case e.Whiteout:
			s += " whiteout"
		case e.Opaque:
			s += " opaque"
		}
		out = append(out, s)
	}
}

// listPaths lists the merged tree's paths (not the root or the stubs).
func listPaths(t *testing.T, merged string) (files, dirs []string) {
	t.Helper()
	filepath.WalkDir(merged, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(merged, p)
		if rel == "." {
			return nil
		}
		if rel == "etc/mtab" || rel == "run" {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			dirs = append(dirs, rel)
		} else {
			files = append(files, rel)
		}
		return nil
	})
	sort.Strings(files)
	sort.Strings(dirs)
	return files, dirs
}

// mutate makes n random changes of every kind to the merged tree.
func mutate(t *testing.T, rng *rand.Rand, merged string, n int, seq *int) []string {
	t.Helper()
	var did []string
	for range n {
		files, dirs := listPaths(t, merged)
		dirs = append(dirs, "")
		pick := func(s []string) string { return s[rng.IntN(len(s))] }
		newName := func() string {
			*seq++
			return filepath.Join(pick(dirs), fmt.Sprintf("n%d", *seq))
		}
		abs := func(rel string) string { return filepath.Join(merged, rel) }
		op := rng.IntN(11)
		if len(files) == 0 && op != 0 && op != 1 {
			op = 0
		}
		var err error
		var what string
		switch op {
		case 0:
			p := newName()
			what = "create " + p
			err = os.WriteFile(abs(p), []byte(fmt.Sprintf("new %d", *seq)), 0o644)
		case 1:
			p := newName()
			what = "mkdir " + p
			if err = os.Mkdir(abs(p), 0o755); err == nil {
				err = os.WriteFile(abs(p+"/f"), []byte("in "+p), 0o600)
			}
		case 2:
			p := pick(files)
			what = "modify " + p
			var f *os.File
			if f, err = os.OpenFile(abs(p), os.O_WRONLY|os.O_APPEND|unix.O_NOFOLLOW, 0); err == nil {
				fmt.Fprintf(f, "more %d", rng.Int())
				f.Close()
			} else if errors.Is(err, unix.ELOOP) {
				err = nil
			}
		case 3:
			p := pick(files)
			what = "delete " + p
			err = os.Remove(abs(p))
		case 4:
			if len(dirs) == 1 {
				continue
			}
			p := pick(dirs[:len(dirs)-1])
			what = "delete dir " + p
			err = os.RemoveAll(abs(p))
		case 5:
			if len(dirs) == 1 {
				continue
			}
			p := pick(dirs[:len(dirs)-1])
			what = "replace dir " + p
			if err = os.RemoveAll(abs(p)); err == nil {
				if err = os.Mkdir(abs(p), 0o750); err == nil {
					err = os.WriteFile(abs(p+"/replaced"), []byte("r"), 0o644)
				}
			}
		case 6:
			p, q := pick(append(files, dirs[:len(dirs)-1]...)), newName()
			if strings.HasPrefix(q, p+"/") {
				continue
			}
			what = "rename " + p + " " + q
			if err = os.Rename(abs(p), abs(q)); errors.Is(err, unix.EXDEV) {
				err = nil // a lower directory without redirect_dir
			}
		case 7:
			p, q := pick(files), newName()
			what = "link " + p + " " + q
			var st unix.Stat_t
			if unix.Lstat(abs(p), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
				err = os.Link(abs(p), abs(q))
			}
		case 8:
			p := pick(files)
			what = "chmod " + p
			err = unix.Fchmodat(unix.AT_FDCWD, abs(p), uint32(0o600+rng.IntN(0o100)), 0)
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) {
				err = nil // a dangling symlink
			}
		case 9:
			p := pick(append(files, dirs[:len(dirs)-1]...))
			what = "chown " + p
			err = os.Lchown(abs(p), 1000+rng.IntN(3), 1000+rng.IntN(3))
		case 10:
			p := pick(append(files, dirs[:len(dirs)-1]...))
			what = "xattr " + p
			err = unix.Lsetxattr(abs(p), "trusted.test", []byte(fmt.Sprint(rng.IntN(100))), 0)
			if errors.Is(err, unix.EPERM) {
				err = nil // on a symlink
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		did = append(did, what)
	}
	return did
}

// TestPersistCycles is the property test of layered snapshots
// (docs/snapshot-format.md, "Layered snapshots"): over many cycles of
// restore (the runtime's stubs first, then the chain), random changes and
// an export of only what changed (a whole layer past the chain's bound),
// the restored tree is the tree at the last stop, and so is the squashed
// chain applied; the runtime's unchanged stubs are never exported.
func TestPersistCycles(t *testing.T) {
	testutil.RequireRoot(t)
	for seed := range uint64(6) {
		// Odd seeds write the oci whiteout format.
		f := layer.FormatOverlay
		if seed%2 == 1 {
			f = layer.FormatOCI
		}
		t.Run(fmt.Sprint("seed", seed, "-", f), func(t *testing.T) { persistCycles(t, seed, f) })
	}
}

func persistCycles(t *testing.T, seed uint64, format layer.Format) {
	ctx := context.Background()
	lower := filepath.Join(t.TempDir(), "lower")
	testutil.BuildTree(t, lower,
		testutil.Dir("etc/"),
		testutil.File("etc/os-release", "image"),
		testutil.File("etc/app.conf", "conf"),
		testutil.File("usr/bin/tool", "tool"),
		testutil.File("usr/lib/a/one", "1"),
		testutil.File("usr/lib/a/two", "2"),
		testutil.File("usr/lib/b/three", "3"),
		testutil.Symlink("usr/lib/link", "a/one"),
		testutil.File("var/data/x", "x"),
		testutil.File("var/data/y", "y"),
	)
	const cycles, maxLayers = 24, 6
	rng := rand.New(rand.NewPCG(13, seed))
	state := t.TempDir()
	var chain [][]byte
	want := ""
	seq := 0
	for cycle := range cycles {
		o := mount(t, lower)
		engineStubs(t, o.merged)
		pre, rec := filepath.Join(state, "pre"), filepath.Join(state, "rec")
		if err := upperrec.Take(pre, o.upper, upperrec.Header{}, "", true); err != nil {
			t.Fatal(err)
		}
		apply(t, o.merged, chain...)
		if err := upperrec.Take(rec, o.upper, upperrec.Header{Layers: len(chain)}, pre, false); err != nil {
			t.Fatal(err)
		}
		if got := describe(t, o.merged); want != "" && got != want {
			t.Fatalf("cycle %d: restored tree differs from the tree at the last stop:\n%s", cycle, testutil.TreeDiff(want, got))
		}
		did := mutate(t, rng, o.merged, 1+rng.IntN(6), &seq)
		want = describe(t, o.merged)

		r, hdr, err := upperrec.Open(rec)
		if err != nil {
			t.Fatal(err)
		}
		if !hdr.Matches(o.upper) {
			t.Fatalf("record does not match its upper")
		}
		incremental := len(chain) > 0 && len(chain) < maxLayers
		d := upperrec.NewDelta(r, incremental)
		var buf bytes.Buffer
		if _, err := layer.Write(ctx, &buf, o.upper, layer.WithDelta(d), layer.WithLowers(lower), layer.WithFormat(format)); err != nil {
			t.Fatalf("cycle %d: export: %v", cycle, err)
		}
		r.Close()
		for _, e := range entries(t, buf.Bytes()) {
			if e == "./etc/mtab" || e == "./run" {
				t.Errorf("cycle %d: the runtime's stub %s exported", cycle, e)
			}
		}
		if incremental {
			chain = append(chain, buf.Bytes())
		} else {
			chain = [][]byte{buf.Bytes()}
		}
		t.Logf("cycle %d: %d layers, last %d bytes: %v %v", cycle, len(chain), buf.Len(), did, entries(t, buf.Bytes()))
		o.unmount(t)

		// The squashed chain gives the same tree.
		readers := make([]io.Reader, len(chain))
		for i, l := range chain {
			readers[i] = bytes.NewReader(l)
		}
		var sq bytes.Buffer
		if _, err := layer.Squash(ctx, &sq, readers, format, layer.CompressionZstd); err != nil {
			t.Fatalf("cycle %d: squash: %v", cycle, err)
		}
		s := mount(t, lower)
		engineStubs(t, s.merged)
		apply(t, s.merged, sq.Bytes())
		if got := describe(t, s.merged); got != want {
			t.Fatalf("cycle %d: squashed chain differs from the tree at the stop:\n%s", cycle, testutil.TreeDiff(want, got))
		}
		s.unmount(t)
	}
	if len(chain) > maxLayers {
		t.Fatalf("chain of %d layers, bound %d", len(chain), maxLayers)
	}
}

// TestDeltaKeepsWhiteouts: overlayfs links every whiteout of an upper to
// one inode, so a new whiteout moves the change time of all the earlier
// ones; the delta still leaves the restored whiteouts out and writes only
// the new one.
func TestDeltaKeepsWhiteouts(t *testing.T) {
	lower := t.TempDir()
	for _, n := range []string{"a", "b", "c", "d"} {
		if err := os.WriteFile(filepath.Join(lower, n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o := mount(t, lower)
	for _, n := range []string{"a", "b", "c"} { // the restore's deletions
		if err := os.Remove(filepath.Join(o.merged, n)); err != nil {
			t.Fatal(err)
		}
	}
	rec := filepath.Join(t.TempDir(), "rec")
	if err := upperrec.Take(rec, o.upper, upperrec.Header{Base: "sha256:x", Layers: 1}, "", false); err != nil {
		t.Fatal(err)
	}
	var before unix.Stat_t
	if err := unix.Lstat(filepath.Join(o.upper, "a"), &before); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(o.merged, "d")); err != nil { // the container's
		t.Fatal(err)
	}
	o.unmount(t)
	var after unix.Stat_t
	if err := unix.Lstat(filepath.Join(o.upper, "a"), &after); err != nil {
		t.Fatal(err)
	}
	if after.Ino != before.Ino || after.Ctim == before.Ctim {
		t.Logf("whiteouts not shared here (inode %d→%d, ctime %v→%v): the test still checks the delta", before.Ino, after.Ino, before.Ctim, after.Ctim)
	}
	r, _, err := upperrec.Open(rec)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var buf bytes.Buffer
	if _, err := layer.Write(context.Background(), &buf, o.upper, layer.WithDelta(upperrec.NewDelta(r, true))); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(entries(t, buf.Bytes()), ", ")
	if want := "./, ./d whiteout"; got != want {
		t.Errorf("delta layer: %s, want %s", got, want)
	}
}
