//go:build linux

package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/tarheader"
	"github.com/ocisnap/ocisnap/internal/testutil"
)

// Fuzz limits: a fuzzed header may claim any size; the content limit keeps
// one iteration small (sparse entries expand holes to zeros).
const (
	fuzzMaxBytes   = 1 << 20
	fuzzMaxEntries = 512
)

// applySeeds are hostile snapshots: every bad input of the core issue
// (truncated, "../x", "/abs", "a/../../x", a symlink to / and a file
// through it, a hard link to a host file, a device node) and the shapes of
// containerd's and moby's breakout tests (pkg/archive TestBreakouts),
// rewritten for this sandbox: "victim" is a directory beside the root and
// the root holds symlinks leading out of it (see fuzzSandbox).
func applySeeds(t testing.TB) map[string][]byte {
	dev := testutil.Whiteout("sda")
	dev.Header.Devmajor = 8
	opaque := func(name string) testutil.Node { return testutil.Dir(name).WithOpaque() }
	seeds := map[string][][]testutil.Node{
		"dotdot":               {{testutil.File("../x", "pwned")}},
		"absolute":             {{testutil.File("/ocisnap-fuzz-abs", "pwned")}},
		"dotdot-middle":        {{testutil.File("a/../../x", "pwned")}},
		"dot-slash-dotdot":     {{testutil.File("./../victim/passwd", "pwned")}},
		"symlink-root-through": {{testutil.Symlink("evil", "/"), testutil.File("evil/tmp/ocisnap-fuzz", "pwned")}},
		"hardlink-host":        {{testutil.Hardlink("shadow", "/etc/shadow")}},
		"hardlink-dotdot":      {{testutil.Hardlink("v", "../victim/passwd")}},
		"device":               {{dev}},
		// containerd TestBreakouts, one by one.
		"symlink-absolute":          {{testutil.Dir("etc"), testutil.Symlink("localetc", "/etc"), testutil.File("localetc/unbroken", "broken")}},
		"symlink-up-and-out":        {{testutil.Dir("etc"), testutil.Dir("dummy"), testutil.Symlink("localetc", "dummy/../../victim"), testutil.File("localetc/unbroken", "broken")}},
		"symlink-multiple-absolute": {{testutil.Dir("dummy"), testutil.Symlink("dummy/etc", "../../victim"), testutil.Symlink("localetc", "/dummy/etc"), testutil.File("localetc/unbroken", "broken")}},
		"symlink-multiple-relative": {{testutil.Dir("dummy"), testutil.Symlink("dummy/etc", "../../victim"), testutil.Symlink("localetc", "./dummy/etc"), testutil.File("localetc/unbroken", "broken")}},
		"symlink-empty-file":        {{testutil.Symlink("localetc", "../victim"), testutil.File("localetc/passwd", "")}},
		"hardlink-relative":         {{testutil.Dir("breakouts"), testutil.Symlink("breakouts/d1", "../../victim"), testutil.Hardlink("breakouts/mypasswd", "breakouts/d1/passwd")}},
		"hardlink-down-and-out":     {{testutil.Dir("breakouts"), testutil.Dir("downandout"), testutil.Symlink("breakouts/d1", "../downandout/../../victim"), testutil.Hardlink("breakouts/mypasswd", "breakouts/d1/passwd")}},
		"hardlink-absolute":         {{testutil.Symlink("localetc", "/victim"), testutil.Hardlink("localpasswd", "localetc/passwd")}},
		"hardlink-relative-long":    {{testutil.Symlink("localetc", "../../../../../../../victim"), testutil.Hardlink("localpasswd", "localetc/passwd")}},
		"hardlink-up-and-out":       {{testutil.Symlink("localetc", "upandout/../../victim"), testutil.Hardlink("localpasswd", "localetc/passwd")}},
		"hardlink-direct-relative":  {{testutil.Hardlink("localpasswd", "../../../../../victim/passwd")}},
		"hardlink-direct-absolute":  {{testutil.Hardlink("localpasswd", "/victim/passwd")}},
		"symlink-named-dotdot":      {{testutil.Symlink("..", "/victim"), testutil.Hardlink("localpasswd", "../passwd")}},
		"symlink-empty-name":        {{testutil.Symlink("", "/victim"), testutil.Hardlink("localpasswd", "passwd")}},
		"symlink-parent-relative":   {{testutil.Symlink("localetc/sub/..", "../victim"), testutil.Hardlink("localetc/localpasswd", "etc/passwd")}},
		"symlink-override-dir":      {{testutil.Dir("localetc"), testutil.Symlink("localetc", "../victim"), testutil.Hardlink("localetc/localpasswd", "etc/passwd")}},
		"dir-override-symlink":      {{testutil.Symlink("localetc", "../victim"), testutil.Dir("localetc"), testutil.File("localetc/passwd", "different")}},
		"hardlink-to-symlink-out":   {{testutil.Symlink("passwdlink", "../victim/passwd"), testutil.Hardlink("localpasswd", "passwdlink"), testutil.File("localpasswd", "written through?")}},
		"hardlink-symlink-before":   {{testutil.Symlink("localpasswd", "../victim/passwd"), testutil.Hardlink("localpasswd-dup", "localpasswd"), testutil.File("victim/passwd", "after")}},
		"whiteout-root-parent":      {{testutil.File(".wh...", "")}},
		"whiteout-parent":           {{testutil.File("etc/.wh...", "")}},
		"whiteout-root":             {{testutil.File(".wh..", "")}},
		"whiteout-current-dir":      {{testutil.File("etc/.wh..", "")}},
		"whiteout-symlink":          {{testutil.File(".wh.link_rel", "")}},
		"whiteout-symlink-path":     {{testutil.File("link_rel/.wh.passwd", "")}},
		"whiteout-abs-symlink-path": {{testutil.File("link_abs/.wh.passwd", "")}},
		"whiteout-dir-name":         {{testutil.File(".wh.etc/somefile", "non-empty")}},
		"whiteout-dead-symlink":     {{testutil.File("dne/.wh.etc", "")}},
		"whiteout-relative-path":    {{testutil.File("dne/../.wh.etc", "")}},
		"char-whiteout-symlink":     {{testutil.Whiteout("link_rel/passwd")}},
		"char-whiteout-dotdot":      {{testutil.Whiteout("../victim")}},
		"gvisor-linked-whiteout":    {{testutil.Whiteout("a"), testutil.Hardlink("link_rel/passwd", "a")}},
		"opaque-through-symlink":    {{opaque("link_rel/dir/")}},
		"opaque-marker-symlink":     {{testutil.File("link_rel/.wh..wh..opq", "")}},
		"opaque-symlink-itself":     {{opaque("link_rel/"), testutil.File("link_rel/x", "x")}},
		"opaque-root":               {{opaque("./"), testutil.File("keep", "k")}},
		"dir-replaced-by-symlink":   {{testutil.Dir("a/"), testutil.File("a/x", "x"), testutil.Symlink("a", ".."), testutil.File("a/victim/passwd", "pwned")}},
		"preexisting-link-rel":      {{testutil.File("link_rel/passwd", "pwned")}},
		"preexisting-link-abs":      {{testutil.Dir("link_abs/sub/")}},
		"preexisting-link-root":     {{testutil.File("link_root/tmp/ocisnap-fuzz", "pwned")}},
		"inside-symlink-ok":         {{testutil.File("bin/sh2", "ok"), testutil.Hardlink("bin/sh3", "usr/bin/sh")}},
		"xattr-overlay-redirect":    {{testutil.Dir("d/").WithPAX("SCHILY.xattr.trusted.overlay.redirect", "/victim", "SCHILY.xattr.user.x", "v")}},
		"setuid-file":               {{testutil.File("suid", "x"), testutil.File("suid", "y")}},
		"fifo-then-file":            {{testutil.Fifo("f"), testutil.File("f", "x"), testutil.Dir("f/")}},
		"long-name":                 {{testutil.File(strings.Repeat("d/", 60)+"f", "deep")}},
		"alias-whiteout-recreate":   {aliasRecreate()},
	}
	out := make(map[string][]byte, len(seeds)+4)
	for name, ents := range seeds {
		out[name] = testutil.Tar(t, ents[0]...)
	}
	// PAX records overriding a harmless ustar name or link target.
	out["pax-path-dotdot"] = rawPAX("ok", tar.TypeReg, "", "pwned", "path", "../victim/passwd")
	out["pax-linkpath-abs"] = rawPAX("l", tar.TypeLink, "ok", "", "linkpath", "/etc/passwd")
	// Sparse entries of an exabyte of holes whose content the Reader
	// discards itself (found by FuzzApply: Apply spun forever).
	out["aufs-sparse-bomb"] = sparseBomb("./.wh..wh.plnk/x")
	out["whiteout-sparse-bomb"] = sparseBomb("./.wh.x")
	out["opaque-sparse-bomb"] = sparseBomb("./d/.wh..wh..opq")
	// A stream cut at an entry boundary (no end-of-archive blocks), trailing
	// garbage, and compressed streams with a bad checksum.
	good := testutil.Tar(t, testutil.Dir("./"), testutil.File("a", "a"), testutil.File("b", "b"))
	out["truncated"] = good[:len(good)-2*tarheader.BlockSize]
	out["trailing-garbage"] = append(append([]byte{}, good...), "garbage"...)
	gz := compress(t, good, CompressionGzip)
	gz[len(gz)-6] ^= 0xff
	out["gzip-bad-crc"] = gz
	zs := compress(t, good, CompressionZstd)
	zs[len(zs)-1] ^= 0xff
	out["zstd-bad-checksum"] = zs
	return out
}

// rawPAX writes, by hand (archive/tar's Writer derives these records from
// the header), a PAX extended header with the records kv (key, value, ...)
// followed by a ustar entry with the given name, type, link target and
// content, and the end-of-archive blocks.
func rawPAX(name string, typ byte, link, body string, kv ...string) []byte {
	var rec string
	for i := 0; i+1 < len(kv); i += 2 {
		r := fmt.Sprintf(" %s=%s\n", kv[i], kv[i+1])
		for n := len(r); ; n++ { // the length prefix counts itself
			if l := fmt.Sprintf("%d%s", n, r); len(l) == n {
				rec += l
				break
			}
		}
	}
	var out []byte
	block := func(name string, typ byte, link string, size int) {
		h := make([]byte, tarheader.BlockSize)
		copy(h[0:100], name)
		copy(h[100:108], "0000644\x00")
		copy(h[108:116], "0000000\x00")
		copy(h[116:124], "0000000\x00")
		copy(h[124:136], fmt.Sprintf("%011o\x00", size))
		copy(h[136:148], fmt.Sprintf("%011o\x00", 1700000000))
		h[156] = typ
		copy(h[157:257], link)
		copy(h[257:265], "ustar\x0000")
		copy(h[148:156], "        ")
		sum := 0
		for _, c := range h {
			sum += int(c)
		}
		copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
		out = append(out, h...)
	}
	pad := func(data string) {
		out = append(out, data...)
		if r := len(data) % tarheader.BlockSize; r != 0 {
			out = append(out, make([]byte, tarheader.BlockSize-r)...)
		}
	}
	block("PaxHeaders/"+name, tar.TypeXHeader, "", len(rec))
	pad(rec)
	block(name, typ, link, len(body))
	pad(body)
	return append(out, make([]byte, 2*tarheader.BlockSize)...)
}

// sparseBomb is a PAX (GNU sparse 1.0) file named name of 1 EiB, all holes.
func sparseBomb(name string) []byte {
	mapBlock := "0\n" + strings.Repeat("\x00", tarheader.BlockSize-2) // no data segments
	return rawPAX("GNUSparseFile.0/x", tar.TypeReg, "", mapBlock,
		"GNU.sparse.major", "1", "GNU.sparse.minor", "0", "GNU.sparse.name", name,
		"GNU.sparse.realsize", "1152921504606846976")
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// fuzzTempDir is a temporary directory on /dev/shm when there is one: a
// tmpfs makes each fuzz input's sandbox several times cheaper.
func fuzzTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "ocisnap-fuzz-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// fuzzSandbox makes base/root (a small tree with symlinks leading out of
// it) and base/victim, base/victimfile beside it.
func fuzzSandbox(t testing.TB) (base, root string) {
	t.Helper()
	base = fuzzTempDir(t)
	root = filepath.Join(base, "root")
	victim := filepath.Join(base, "victim")
	for _, d := range []string{root + "/etc/dir", root + "/usr/bin", victim + "/dir"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		root + "/etc/passwd": "inside", root + "/usr/bin/sh": "sh",
		victim + "/passwd": "victim", victim + "/unbroken": "unbroken", victim + "/dir/keep": "keep",
		base + "/victimfile": "precious",
	}
	for p, c := range files {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"link_rel": "../victim", "link_abs": victim, "link_root": "/", "dne": "/nonexistent-ocisnap-fuzz",
		"bin": "usr/bin", "etc/up": "../../victimfile",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	return base, root
}

// outside describes everything in base but root/ (see
// testutil.DescribeTree): a chown, chmod, retarget, write, link, xattr or
// times change there is an escape.
func outside(t testing.TB, base string) string {
	t.Helper()
	return testutil.DescribeTree(t, base, testutil.SkipPath("root"))
}

// fuzzIDMap lets a non-root fuzzer chown to container root: it maps
// container id 0 to the caller's own ids (other ids fail the entry).
func fuzzIDMap() *IDMap {
	if os.Geteuid() == 0 {
		return nil
	}
	return &IDMap{
		UIDs: []IDMapping{{ContainerID: 0, HostID: uint32(os.Geteuid()), Size: 1}},
		GIDs: []IDMapping{{ContainerID: 0, HostID: uint32(os.Getegid()), Size: 1}},
	}
}

// FuzzApply: whatever the snapshot, Apply writes nothing outside the root
// (the victim directory and file beside it, reachable through the root's
// own symlinks, are unchanged) and never panics.
func FuzzApply(f *testing.F) {
	seeds := applySeeds(f)
	seeds["gvisor-upper"] = testutil.Tar(f, gvisorUpper()...)
	for _, name := range sortedKeys(seeds) {
		testutil.AddSeed(f, name, seeds[name])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		base, root := fuzzSandbox(t)
		before := outside(t, base)
		rf, err := os.OpenFile(root, os.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer rf.Close()
		err = withDeadline(t, func() error {
			_, err := Apply(context.Background(), rf, bytes.NewReader(b),
				WithMaxBytes(fuzzMaxBytes), WithMaxEntries(fuzzMaxEntries), WithIDMap(fuzzIDMap()))
			return err
		})
		if after := outside(t, base); after != before {
			t.Fatalf("Apply (err %v) changed what is outside the root:\n%s", err, testutil.TreeDiff(before, after))
		}
		// Also nothing in the two host places the seeds aim at.
		for _, p := range []string{"/ocisnap-fuzz-abs", "/tmp/ocisnap-fuzz"} {
			if _, err := os.Lstat(p); err == nil {
				os.Remove(p)
				t.Fatalf("%s was written", p)
			}
		}
	})
}

// fuzzExecDeadline bounds one fuzz input: a hostile snapshot that keeps
// Apply busy is a bug like a write outside the root (the hook would hang
// the container's creation). The fuzzer itself has no per-input timeout.
const fuzzExecDeadline = 10 * time.Second

// withDeadline runs fn and fails t, with every goroutine's stack, if it
// has not returned within fuzzExecDeadline.
func withDeadline(t testing.TB, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(fuzzExecDeadline):
		buf := make([]byte, 1<<20)
		t.Fatalf("still running after %v:\n%s", fuzzExecDeadline, buf[:runtime.Stack(buf, true)])
		return nil
	}
}

// TestApplySeedsRefused pins the expected outcome of the hostile seeds
// that must fail (the fuzzer only checks that nothing escapes).
func TestApplySeedsRefused(t *testing.T) {
	testutil.RequireRoot(t) // entries owned by root
	seeds := applySeeds(t)
	for _, name := range []string{"dotdot", "absolute", "dotdot-middle", "dot-slash-dotdot", "symlink-root-through",
		"hardlink-host", "hardlink-dotdot", "device", "symlink-up-and-out", "hardlink-relative", "hardlink-absolute",
		"hardlink-direct-relative", "hardlink-direct-absolute", "symlink-named-dotdot", "whiteout-root-parent",
		"whiteout-parent", "whiteout-current-dir", "whiteout-symlink-path", "whiteout-abs-symlink-path",
		"char-whiteout-symlink", "char-whiteout-dotdot", "gvisor-linked-whiteout", "opaque-through-symlink",
		"dir-replaced-by-symlink", "preexisting-link-rel", "preexisting-link-abs", "preexisting-link-root",
		"pax-path-dotdot", "pax-linkpath-abs", "aufs-sparse-bomb", "whiteout-sparse-bomb", "opaque-sparse-bomb", "truncated", "trailing-garbage", "gzip-bad-crc", "zstd-bad-checksum"} {
		t.Run(name, func(t *testing.T) {
			base, root := fuzzSandbox(t)
			before := outside(t, base)
			err := withDeadline(t, func() error {
				_, err := applyTo(t, root, seeds[name])
				return err
			})
			if err == nil {
				t.Fatalf("hostile snapshot %s applied without error", name)
			}
			if !errors.Is(err, ErrInsecurePath) && !errors.Is(err, ErrDeviceNotAllowed) &&
				!errors.Is(err, ErrTruncated) && !errors.Is(err, ErrUnsupportedEntry) && !errors.Is(err, ErrTrailingData) && !strings.Contains(err.Error(), "checksum") &&
				!strings.Contains(err.Error(), "CRC") {
				t.Errorf("unexpected error kind: %v", err)
			}
			t.Log(err)
			if after := outside(t, base); after != before {
				t.Fatalf("outside the root changed:\n%s", testutil.TreeDiff(before, after))
			}
		})
	}
}

// FuzzRoundTrip: a tree generated from the input, written with Write (in
// either format, with any compression) and applied with Apply onto an
// empty directory, comes back byte for byte: types, contents, modes,
// owners, times, user xattrs, link targets and hard-link groups.
//
// Not generated: names starting with ".wh." (an overlay-format snapshot
// cannot tell them from OCI whiteouts, and the oci format refuses them),
// user.overlay.* xattrs (overlay metadata, never applied), char 0/0 devices
// (whiteouts) and sockets (skipped by design).
func FuzzRoundTrip(f *testing.F) {
	seeds := roundTripSeeds()
	for _, name := range sortedKeys(seeds) {
		testutil.AddSeed(f, name, seeds[name])
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		base := fuzzTempDir(t)
		upper, restored := filepath.Join(base, "upper"), filepath.Join(base, "restored")
		for _, d := range []string{upper, restored} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		g := &treeGen{root: upper, prog: prog, dirs: []string{""}, isRoot: os.Geteuid() == 0}
		format, comp := g.run()
		want := describeRoundTrip(t, upper)

		var buf bytes.Buffer
		if _, err := Write(context.Background(), &buf, upper, WithFormat(format), WithCompression(comp)); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if _, err := applyTo(t, restored, buf.Bytes()); err != nil {
			t.Fatalf("Apply of Write's snapshot (%s, %s): %v", format, comp, err)
		}
		if got := describeRoundTrip(t, restored); got != want {
			t.Fatalf("round trip (%s, %s) differs:\nwant:\n%s\ngot:\n%s", format, comp, want, got)
		}
	})
}

// roundTripSeeds are programs for treeGen (see its ops).
func roundTripSeeds() map[string][]byte {
	return map[string][]byte{
		"empty":         {0},
		"files":         {0, 1, 0, 1, 40, 1, 0, 2, 200, 0, 0, 3, 1, 1, 3, 0, 1, 5},
		"dirs-links":    {2, 0, 0, 4, 1, 0, 1, 1, 9, 2, 1, 2, 0, 5, 3, 3, 0, 0, 6, 4, 1, 7},
		"modes-owners":  {4, 1, 0, 1, 9, 5, 1, 0x0f, 0xed, 6, 1, 0x04, 0xd2, 0x16, 0x2e, 5, 0, 0x03, 0xff, 7, 0, 3, 'v'},
		"times-xattrs":  {1, 0, 0, 4, 2, 1, 3, 8, 80, 1, 2, 3, 4, 5, 6, 7, 8, 9, 7, 1, 2, 'x', 'y', 8, 0, 9, 9, 9, 9, 9, 9, 9, 9, 9},
		"long-names":    {5, 0, 0, 7, 0, 7, 7, 1, 7, 6, 30, 2, 7, 5, 4, 3, 7, 8, 9},
		"sticky-setgid": {0, 0, 0, 2, 5, 1, 0x0b, 0xff, 5, 0, 0x06, 0xd0, 1, 1, 1, 3, 5, 2, 0x0c, 0x00},
	}
}

// treeGen builds a tree under root from a byte program: each op is a
// byte, its arguments the bytes after it; a missing byte reads as 0. The
// first byte picks the format and compression.
type treeGen struct {
	root   string
	prog   []byte
	pos    int
	dirs   []string // relative paths, "" the root
	files  []string // regular files
	all    []string // every path but the root
	isRoot bool
}

var rtNames = []string{"a", "b", "c d", "dir", "ünï", "x.y", ".hidden", "-dash", "new\nline",
	strings.Repeat("l", 120), "%2e%2e", "..."}

var rtTargets = []string{"a", "../x", "/etc/passwd", "dir/sub", "..", "/", strings.Repeat("t/", 80) + "end", "ünï"}

func (g *treeGen) next() byte {
	if g.pos >= len(g.prog) {
		return 0
	}
	b := g.prog[g.pos]
	g.pos++
	return b
}

func (g *treeGen) pick(list []string) string { return list[int(g.next())%len(list)] }

func (g *treeGen) abs(rel string) string { return filepath.Join(g.root, rel) }

// newPath returns a new, unused path in an existing directory, or "".
func (g *treeGen) newPath() string {
	p := filepath.Join(g.pick(g.dirs), g.pick(rtNames))
	if _, err := os.Lstat(g.abs(p)); err == nil || len(p) > 900 {
		return ""
	}
	return p
}

func (g *treeGen) run() (Format, Compression) {
	first := g.next()
	format := []Format{FormatOverlay, FormatOCI}[first&1]
	comp := []Compression{CompressionNone, CompressionGzip, CompressionZstd}[int(first>>1)%3]
	for ops := 0; g.pos < len(g.prog) && ops < 64; ops++ {
		switch g.next() % 9 {
		case 0: // mkdir
			if p := g.newPath(); p != "" && os.Mkdir(g.abs(p), 0o755) == nil {
				g.dirs, g.all = append(g.dirs, p), append(g.all, p)
			}
		case 1: // regular file, size up to 64 KiB, content from the program
			p := g.newPath()
			n := int(g.next()) * int(g.next()) // 0..65025
			seed := g.next()
			data := make([]byte, n)
			for i := range data {
				data[i] = seed + byte(i*7) + byte(i>>8)
			}
			if p != "" && os.WriteFile(g.abs(p), data, 0o644) == nil {
				g.files, g.all = append(g.files, p), append(g.all, p)
			}
		case 2: // symlink
			if p, target := g.newPath(), g.pick(rtTargets); p != "" && os.Symlink(target, g.abs(p)) == nil {
				g.all = append(g.all, p)
			}
		case 3: // hard link to an existing file
			if len(g.files) == 0 {
				continue
			}
			if src, p := g.pick(g.files), g.newPath(); p != "" && os.Link(g.abs(src), g.abs(p)) == nil {
				g.files, g.all = append(g.files, p), append(g.all, p)
			}
		case 4: // fifo
			if p := g.newPath(); p != "" && unix.Mkfifo(g.abs(p), 0o640) == nil {
				g.all = append(g.all, p)
			}
		case 5: // chmod, setuid/setgid/sticky included
			p := g.pick(append([]string{""}, g.all...))
			mode := (uint32(g.next())<<8 | uint32(g.next())) & 0o7777
			var st unix.Stat_t
			if unix.Lstat(g.abs(p), &st) != nil || st.Mode&unix.S_IFMT == unix.S_IFLNK {
				continue
			}
			if !g.isRoot {
				mode |= 0o600
				if st.Mode&unix.S_IFMT == unix.S_IFDIR {
					mode |= 0o700
				}
			}
			unix.Chmod(g.abs(p), mode)
		case 6: // chown (needs root)
			p := g.pick(append([]string{""}, g.all...))
			uid, gid := int(g.next())<<8|int(g.next()), int(g.next())
			if g.isRoot {
				var st unix.Stat_t
				if unix.Lstat(g.abs(p), &st) == nil {
					mode := st.Mode & 0o7777
					unix.Lchown(g.abs(p), uid, gid)
					if st.Mode&unix.S_IFMT != unix.S_IFLNK {
						unix.Chmod(g.abs(p), mode) // chown cleared setuid/setgid
					}
				}
			}
		case 7: // user xattr on a file or directory
			p := g.pick(append([]string{""}, g.all...))
			name := "user." + string(rune('a'+g.next()%4))
			val := make([]byte, int(g.next())%40)
			for i := range val {
				val[i] = g.next()
			}
			var st unix.Stat_t
			if unix.Lstat(g.abs(p), &st) == nil && (st.Mode&unix.S_IFMT == unix.S_IFREG || st.Mode&unix.S_IFMT == unix.S_IFDIR) {
				unix.Lsetxattr(g.abs(p), name, val, 0)
			}
		case 8: // times with nanoseconds
			p := g.pick(append([]string{""}, g.all...))
			sec := int64(g.next())<<24 | int64(g.next())<<16 | int64(g.next())<<8 | int64(g.next())
			nsec := (int64(g.next())<<16 | int64(g.next())<<8 | int64(g.next())) % 1e9
			ts := []unix.Timespec{{Sec: sec, Nsec: nsec}, {Sec: sec + 1, Nsec: nsec}}
			unix.UtimesNanoAt(unix.AT_FDCWD, g.abs(p), ts, unix.AT_SYMLINK_NOFOLLOW)
		}
	}
	// Directory times last: the ops above changed them.
	for _, d := range g.dirs {
		ts := []unix.Timespec{{Sec: 1600000000, Nsec: 1}, {Sec: 1600000000 + int64(len(d)), Nsec: 123456789}}
		unix.UtimesNanoAt(unix.AT_FDCWD, g.abs(d), ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	return format, comp
}

// describeRoundTrip describes the tree under root as a round trip must
// keep it: all but change times, directory sizes (filesystem history) and
// xattrs outside user.* (the generator sets only those).
func describeRoundTrip(t testing.TB, root string) string {
	t.Helper()
	return testutil.DescribeTree(t, root, testutil.WithoutCtime(), testutil.WithoutDirSizes(), testutil.OnlyXattrs("user."))
}
