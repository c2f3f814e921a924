//go:build linux

package layer

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// aliasRecreate is issue 10's valid tar that failed: a directory reached
// through a symlink, removed under its own name and made again; the next
// file through the symlink lands in the new one.
func aliasRecreate() []testutil.Node {
	return []testutil.Node{testutil.Dir("./b/"), testutil.Symlink("./a", "b"), testutil.File("./a/f1", "1"), testutil.Whiteout("./b"), testutil.Dir("./b/"), testutil.File("./a/f2", "2")}
}

// The parent directory cache is not fooled by a second name: a directory
// removed under one name is not reused under another.
func TestApplyAliasRecreate(t *testing.T) {
	testutil.RequireRoot(t)
	b := testutil.Tar(t, aliasRecreate()...)
	for _, n := range []int{1, 2, 4} {
		withParallelism(t, n)
		root := t.TempDir()
		if _, err := applyTo(t, root, b); err != nil {
			t.Fatalf("%d workers: %v", n, err)
		}
		if target, err := os.Readlink(filepath.Join(root, "a")); err != nil || target != "b" {
			t.Errorf("%d workers: a -> %q, %v", n, target, err)
		}
		wantNames(t, filepath.Join(root, "b"), "f2")
		if c := readFile(t, filepath.Join(root, "b/f2")); c != "2" {
			t.Errorf("%d workers: b/f2 = %q", n, c)
		}
	}
}

// aliasGen turns a byte program into a valid snapshot of directories,
// files, symlinks (relative, inside the root), hard links and whiteouts
// that reach directories through symlinks, remove them under another name
// and make them again: the sequences a name-keyed cache gets wrong. It
// keeps a model of the tree to emit only entries GNU tar (with
// --recursive-unlink, which removes what an entry replaces as a whiteout
// or a replacing entry does) extracts as Apply applies them:
//
//   - every entry's parent exists as a directory (neither creates missing
//     parents the same way);
//   - a directory entry never lands on a directory with children (GNU tar
//     empties it, Apply keeps them);
//   - no entry removes or replaces a symlink its own path goes through
//     (GNU tar resolves the path again after removing, Apply does not);
//   - symlink targets hold no ".." and are not absolute (GNU tar defers
//     those to the end);
//   - a hard link's target is a regular file that the link does not
//     replace, and not a name whose last entry was a whiteout (a link to
//     one is gVisor's way of writing another whiteout).
//
// A whiteout GNU tar leaves as a char 0/0 device is absent in Apply's
// tree: gnuExtract removes those.
type aliasGen struct {
	prog    []byte
	pos     int
	nodes   map[string]mnode // real path (no symlinks) -> node; "" is the root
	written []string         // every path written so far, as written
	wh      map[string]bool  // names (as written) whose last entry is a whiteout
	out     []testutil.Node
}

type mnode struct {
	kind   byte // 'd', 'f' or 'l'
	target string
}

var (
	aliasNames   = []string{"a", "b", "c", "d", "f1", "f2"}
	aliasTargets = []string{"b", "c", "a", "d", ".", "b/d", "c/b", "d/f1", "f1"}
)

func (g *aliasGen) next() byte {
	if g.pos >= len(g.prog) {
		return 0
	}
	b := g.prog[g.pos]
	g.pos++
	return b
}

// resolve returns the real path of p with every symlink followed
// (follow false: all but the last component), whether it exists, and the
// real paths of the symlinks it went through.
func (g *aliasGen) resolve(p string, follow bool) (real string, ok bool, via []string) {
	var walk func(dir string, comps []string, follow bool, depth int) (string, bool)
	walk = func(dir string, comps []string, follow bool, depth int) (string, bool) {
		if depth > 8 {
			return "", false
		}
		for i, c := range comps {
			if c == "." || c == "" {
				continue
			}
			next := path.Join(dir, c)
			n, exists := g.nodes[next]
			last := i == len(comps)-1
			if exists && n.kind == 'l' && (!last || follow) {
				via = append(via, next)
				r, ok := walk(dir, strings.Split(n.target, "/"), true, depth+1)
				if !ok {
					return "", false
				}
				next = r
				n, exists = g.nodes[next]
			}
			if !last && (!exists || n.kind != 'd') {
				return "", false
			}
			if last && !exists {
				return next, false
			}
			dir = next
		}
		return dir, true
	}
	real, ok = walk("", strings.Split(p, "/"), follow, 0)
	return real, ok, via
}

// under reports whether any of paths is real or beneath it.
func under(paths []string, real string) bool {
	for _, p := range paths {
		if p == real || strings.HasPrefix(p, real+"/") {
			return true
		}
	}
	return false
}

func (g *aliasGen) isDir(real string) bool {
	n, ok := g.nodes[real]
	return ok && n.kind == 'd'
}

// removeTree drops real and everything beneath it from the model.
func (g *aliasGen) removeTree(real string) {
	for p := range g.nodes {
		if p == real || strings.HasPrefix(p, real+"/") {
			delete(g.nodes, p)
		}
	}
}

func (g *aliasGen) hasChildren(real string) bool {
	for p := range g.nodes {
		if strings.HasPrefix(p, real+"/") {
			return true
		}
	}
	return false
}

// entries runs the program: at most 40 operations of 5 bytes each (see
// aliasSeeds).
func (g *aliasGen) entries() []testutil.Node {
	g.nodes = map[string]mnode{"": {kind: 'd'}}
	g.wh = map[string]bool{}
	for ops := 0; g.pos < len(g.prog) && ops < 40; ops++ {
		op, par, name, x, y := g.next()%6, int(g.next()), int(g.next()), g.next(), g.next()
		parent := ""
		if par > 0 && len(g.written) > 0 {
			parent = g.written[(par-1)%len(g.written)]
		}
		n := aliasNames[name%len(aliasNames)]
		if op < 5 {
			g.op(op, parent, n, x, y)
			continue
		}
		// Re-create what parent leads to under its own name, between two
		// files written through parent: ./l/f1, whiteout ./d, ./d/,
		// ./l/f2 when l leads to d.
		real, ok, via := g.resolve(parent, true)
		if !ok || real == "" || real == parent || !g.isDir(real) || under(via, real) {
			continue
		}
		dir, base := path.Split(real)
		dir = strings.TrimSuffix(dir, "/")
		g.op(1, parent, n, x, y)
		g.op(3, dir, base, 0, 0)
		g.op(0, dir, base, 0, 0)
		g.op(1, parent, aliasNames[(name+1)%len(aliasNames)], x+1, y+1)
	}
	return g.out
}

// op emits one entry (see aliasSeeds) named name in parent if GNU tar
// and Apply agree on it, and updates the model.
func (g *aliasGen) op(op byte, parent, name string, x, y byte) {
	p := path.Join(parent, name)
	rparent, ok, via := g.resolve(parent, true)
	if !ok || !g.isDir(rparent) {
		return
	}
	real := path.Join(rparent, name)
	if under(via, real) {
		return // it would replace a symlink its own path goes through
	}
	var e testutil.Node
	switch op {
	case 0: // directory
		if g.isDir(real) && g.hasChildren(real) {
			return
		}
		if !g.isDir(real) {
			g.removeTree(real)
		}
		g.nodes[real] = mnode{kind: 'd'}
		e = testutil.Dir("./" + p + "/")
	case 1: // file
		g.removeTree(real)
		g.nodes[real] = mnode{kind: 'f'}
		e = testutil.File("./"+p, strings.Repeat(string(rune('A'+x%26)), int(y%5)))
	case 2: // symlink
		target := aliasTargets[int(x)%len(aliasTargets)]
		g.removeTree(real)
		g.nodes[real] = mnode{kind: 'l', target: target}
		e = testutil.Symlink("./"+p, target)
	case 3: // whiteout
		g.removeTree(real)
		e = testutil.Whiteout("./" + p)
	case 4: // hard link to a file written before
		if len(g.written) == 0 {
			return
		}
		q := g.written[int(x)%len(g.written)]
		rq, ok, qvia := g.resolve(q, false)
		if !ok || g.nodes[rq].kind != 'f' || under([]string{rq}, real) || under(qvia, real) || g.wh[path.Clean(q)] {
			return
		}
		g.removeTree(real)
		g.nodes[real] = mnode{kind: 'f'}
		e = testutil.Hardlink("./"+p, "./"+q)
	}
	g.out = append(g.out, e)
	g.wh[p] = op == 3
	if !slices.Contains(g.written, p) {
		g.written = append(g.written, p)
	}
}

// gnuExtract extracts b with GNU tar into a new directory (removing what
// an entry replaces, as Apply does), takes out the char 0/0 devices its
// whiteouts leave, and describes the result.
func gnuExtract(t testing.TB, b []byte) string {
	t.Helper()
	dir := fuzzTempDir(t)
	cmd := exec.Command("tar", "-x", "-p", "--numeric-owner", "--recursive-unlink", "-f", "-", "-C", dir)
	cmd.Stdin = bytes.NewReader(b)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GNU tar: %v\n%s", err, out)
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
			return os.Remove(p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return describeAliasTree(t, dir)
}

// describeAliasTree leaves out times (GNU tar sets a directory's when it
// leaves it, Apply at the end) and directory sizes.
func describeAliasTree(t testing.TB, dir string) string {
	return testutil.DescribeTree(t, dir, testutil.WithoutTimes(), testutil.WithoutDirSizes())
}

// checkAgainstGNUTar applies b serially and in parallel and compares each
// tree with GNU tar's.
func checkAgainstGNUTar(t testing.TB, b []byte, entries []testutil.Node) {
	t.Helper()
	want := gnuExtract(t, b)
	for _, n := range []int{1, 2} {
		withParallelism(t, n)
		root := fuzzTempDir(t)
		if _, err := applyTo(t, root, b); err != nil {
			t.Fatalf("%d workers: %v\nentries:\n%s", n, err, entryList(entries))
		}
		if got := describeAliasTree(t, root); got != want {
			t.Fatalf("%d workers: tree differs from GNU tar's:\n%s\nentries:\n%s", n, testutil.TreeDiff(want, got), entryList(entries))
		}
	}
}

func entryList(es []testutil.Node) string {
	var sb strings.Builder
	for _, e := range es {
		fmt.Fprintf(&sb, "  %c %s", e.Header.Typeflag, e.Header.Name)
		if e.Header.Linkname != "" {
			fmt.Fprintf(&sb, " -> %s", e.Header.Linkname)
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

// aliasSeeds are programs for aliasGen. Each operation is 5 bytes: the
// op (0 directory, 1 file, 2 symlink, 3 whiteout, 4 hard link, 5 the
// issue's sequence through the parent, see entries), the
// parent (0: the root, n: the n-th path written so far, from 1), the name
// (aliasNames), then a file's letter and length, a symlink's target
// (aliasTargets) or a hard link's target (a path written so far, from 0).
func aliasSeeds() map[string][]byte {
	return map[string][]byte{
		// ./b/  ./a -> b  ./a/f1  whiteout ./b  ./b/  ./a/f2
		"issue-10": {0, 0, 1, 0, 0, 2, 0, 0, 0, 0, 1, 2, 4, 'x', 1, 3, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 2, 5, 'y', 1},
		// ./b/  ./c -> b  ./a -> c  ./a/f1  whiteout ./b  ./b/  ./a/f2
		// ./c/f1 linked to ./a/f2  whiteout ./a/f2
		"chain": {0, 0, 1, 0, 0, 2, 0, 2, 0, 0, 2, 0, 0, 1, 0, 1, 3, 4, 'q', 2, 3, 0, 1, 0, 0, 0, 0, 1, 0, 0,
			1, 3, 5, 'r', 1, 4, 2, 4, 4, 0, 3, 3, 5, 0, 0},
		// ./a -> .  ./a/d/  ./a/d/f1  whiteout ./d  ./d/  ./a/d/f2
		// (./a/a left out)  ./a/c -> d  ./a/c/f1
		"dot": {2, 0, 0, 4, 0, 0, 1, 3, 0, 0, 1, 2, 4, 'z', 2, 3, 0, 3, 0, 0, 0, 0, 3, 0, 0, 1, 2, 5, 'w', 3,
			1, 1, 0, 'v', 1, 2, 1, 2, 3, 0, 1, 6, 4, 'u', 1},
		// ./b/  ./b/f1  ./a linked to ./b/f1  ./c -> b  ./c/f2 linked to
		// ./a  whiteout ./c/f1  whiteout ./b  ./b/  ./c/f1
		"links": {0, 0, 1, 0, 0, 1, 1, 4, 'l', 2, 4, 0, 0, 1, 0, 2, 0, 2, 0, 0, 4, 4, 5, 2, 0, 3, 4, 4, 0, 0,
			3, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 4, 4, 'n', 1},
	}
}

// Apply gives GNU tar's tree for the sequence, and for generated
// alias/whiteout/re-create sequences, serially and in parallel.
func TestApplyAliasesMatchGNUTar(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "tar")
	t.Run("issue-10 as written", func(t *testing.T) {
		checkAgainstGNUTar(t, testutil.Tar(t, aliasRecreate()...), aliasRecreate())
	})
	for name, prog := range aliasSeeds() {
		t.Run(name, func(t *testing.T) {
			es := (&aliasGen{prog: prog}).entries()
			if len(es) < 4 {
				t.Fatalf("seed makes only %d entries:\n%s", len(es), entryList(es))
			}
			checkAgainstGNUTar(t, testutil.Tar(t, es...), es)
		})
	}
	rng := rand.New(rand.NewPCG(10, 4))
	for i := 0; i < 300; i++ {
		// Small bytes: few names, parents among the first paths written.
		prog := make([]byte, 5*(8+rng.IntN(30)))
		for j := range prog {
			prog[j] = byte(rng.UintN(7))
		}
		t.Run(fmt.Sprintf("generated-%03d", i), func(t *testing.T) {
			es := (&aliasGen{prog: prog}).entries()
			checkAgainstGNUTar(t, testutil.Tar(t, es...), es)
		})
	}
}

// FuzzApplyAliases: for any program, Apply (serial and parallel) gives
// the tree GNU tar extracts from aliasGen's snapshot.
func FuzzApplyAliases(f *testing.F) {
	testutil.RequireRoot(f)
	testutil.RequireTools(f, "tar")
	seeds := aliasSeeds()
	for _, name := range sortedKeys(seeds) {
		testutil.AddSeed(f, name, seeds[name])
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		es := (&aliasGen{prog: prog}).entries()
		checkAgainstGNUTar(t, testutil.Tar(t, es...), es)
	})
}
