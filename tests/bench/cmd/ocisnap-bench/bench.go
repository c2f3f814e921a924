package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// wenv is a prepared workload on its own loop filesystem.
type wenv struct {
	w                    *workload
	fs                   *loopFS
	image, srcUpper      string
	snapOverlay, snapOCI string
	tree                 string // the snapshot applied to an empty dir, for cp -a
	want                 string // digest of the container's merged view
}

func (b *bench) prepare(w *workload, needTree bool) (*wenv, error) {
	start := time.Now()
	dir, backing := b.workdir, "disk"
	if b.ramdir != "" && (w.fsSize <= b.ramMax<<30 || w.force == "tmpfs") && w.force != "disk" {
		var st unix.Statfs_t
		if err := os.MkdirAll(b.ramdir, 0o755); err == nil && unix.Statfs(b.ramdir, &st) == nil &&
			st.Type == unix.TMPFS_MAGIC && int64(st.Bavail)*st.Bsize > w.fsSize {
			dir, backing = b.ramdir, "tmpfs"
		}
	}
	if w.force != "" && backing != w.force {
		return nil, fmt.Errorf("prepare %s: -backing %s: no room for a %d GiB image in %s", w.name, w.force, w.fsSize>>30, b.ramdir)
	}
	w.backing = backing
	if backing == "disk" {
		w.backing = "disk (loop device with direct I/O, sparse image)"
		if fullImages {
			w.backing = "disk (loop device with direct I/O, fully written image)"
		}
	}
	lfs, err := newLoopFS(dir, "ocisnap-bench-"+w.name, w.fsSize, backing == "disk")
	if err != nil {
		return nil, err
	}
	e := &wenv{w: w, fs: lfs, image: filepath.Join(lfs.dir, "image")}
	fail := func(err error) (*wenv, error) { lfs.Close(); return nil, fmt.Errorf("prepare %s: %w", w.name, err) }
	if err := mkdirs(e.image); err != nil {
		return fail(err)
	}
	g := newGen(b.seed, w.name)
	if err := w.image(g, e.image); err != nil {
		return fail(fmt.Errorf("image: %w", err))
	}
	src, err := mountOverlay(filepath.Join(lfs.dir, "src"), e.image)
	if err != nil {
		return fail(err)
	}
	if err := w.changes(g, src.merged); err != nil {
		src.unmount()
		return fail(fmt.Errorf("changes: %w", err))
	}
	if e.want, err = digestTree(src.merged); err != nil {
		src.unmount()
		return fail(err)
	}
	src.unmount()
	e.srcUpper = src.upper
	e.snapOverlay = filepath.Join(lfs.dir, "snap-overlay.tar")
	e.snapOCI = filepath.Join(lfs.dir, "snap-oci.tar")
	for _, s := range []struct{ format, path string }{{"overlay", e.snapOverlay}, {"oci", e.snapOCI}} {
		if _, err := measure([]string{b.snapdrv, "export", "-format", s.format, "-lower", e.image, e.srcUpper, s.path}, lfs.dir, ""); err != nil {
			return fail(err)
		}
	}
	if w.entries, w.bytes, err = countTar(e.snapOverlay); err != nil {
		return fail(err)
	}
	var special bool
	if w.upper, special, err = duBytes(e.srcUpper); err != nil {
		return fail(err)
	}
	if same, err := sameFile(e.snapOverlay, e.snapOCI); err != nil {
		return fail(err)
	} else if same {
		// No whiteouts: one file serves both (and saves the space).
		os.Remove(e.snapOCI)
		e.snapOCI = e.snapOverlay
	}
	if needTree && !special {
		e.tree = e.srcUpper // no whiteouts, no opaque directories: the same tree
	} else if needTree {
		e.tree = filepath.Join(lfs.dir, "tree")
		if err := mkdirs(e.tree); err != nil {
			return fail(err)
		}
		if _, err := measure([]string{b.snapdrv, "apply", e.tree, e.snapOverlay}, lfs.dir, ""); err != nil {
			return fail(err)
		}
	}
	unix.Sync()
	b.logf("%s: prepared in %s: %d entries, %d MiB content, snapshot %d MiB", w.name,
		time.Since(start).Round(time.Millisecond), w.entries, w.bytes>>20, fileSize(e.snapOverlay)>>20)
	return e, nil
}

func (e *wenv) Close() { e.fs.Close() }

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func countTar(p string) (entries, bytes int64, err error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReaderSize(f, 1<<20))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries, bytes, nil
		}
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", p, err)
		}
		entries++
		if h.Typeflag == tar.TypeReg {
			bytes += h.Size
		}
	}
}

// duBytes sums the sizes of the regular files under dir, and reports
// whether it holds anything an overlay upper has besides plain files:
// devices (whiteouts) or overlay xattrs (opaque directories).
func duBytes(dir string) (n int64, special bool, err error) {
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeDevice != 0 {
			special = true
		}
		if d.IsDir() {
			if sz, _ := unix.Lgetxattr(p, "trusted.overlay.opaque", nil); sz > 0 {
				special = true
			}
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, special, err
}

func sameFile(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	if fileSize(a) != fileSize(b) {
		return false, nil
	}
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, _ := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea != nil {
			return true, nil
		}
	}
}

// digestTree describes a tree (type, mode, owner, size, mtime, content
// CRC, symlink target, user.* xattrs are not compared) to check that a
// restore gives what the container saw.
func digestTree(root string) (string, error) {
	var sb strings.Builder
	buf := make([]byte, 1<<20)
	tab := crc32.MakeTable(crc32.Castagnoli)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fmt.Fprintf(&sb, "%s %o %d:%d", rel, st.Mode, st.Uid, st.Gid)
		if rel != "." {
			fmt.Fprintf(&sb, " %d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := crc32.New(tab)
			_, err = io.CopyBuffer(h, f, buf)
			f.Close()
			if err != nil {
				return err
			}
			fmt.Fprintf(&sb, " %d %08x", st.Size, h.Sum32())
		case unix.S_IFLNK:
			t, _ := os.Readlink(p)
			fmt.Fprintf(&sb, " -> %s", t)
		}
		sb.WriteByte('\n')
		return nil
	})
	return sb.String(), err
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d: got %q, want %q", i, al[i], bl[i])
		}
	}
	return fmt.Sprintf("got %d lines, want %d", len(al), len(bl))
}

// A tool is one way of restoring or exporting; its argv gets the target
// (the merged rootfs for a restore, the output file for an export).
type tool struct {
	key, name string
	floor     bool
	verify    bool // restore: compare the result with the container's view
	// replace: an export that replaces its own previous output (kept
	// between rounds, out-KEY.tar) as the hook does at every stop, durably.
	replace bool
	argv    func(e *wenv, target string) []string
	// peer, if set, is the CPU time so far of the server the tool talks
	// to (the registry rows): its difference over a run is sample.Peer.
	peer func() (time.Duration, error)
}

// run measures one run of t (measure), with its server's CPU if it has
// one.
func (t tool) run(argv []string, dir string) (sample, error) {
	var p0 time.Duration
	if t.peer != nil {
		var err error
		if p0, err = t.peer(); err != nil {
			return sample{}, err
		}
	}
	s, err := measure(argv, dir, "")
	if err == nil && t.peer != nil {
		var p1 time.Duration
		p1, err = t.peer()
		s.Peer = p1 - p0
	}
	return s, err
}

func (b *bench) restoreTools(keys []string) []tool {
	all := []tool{
		{key: "ocisnap", name: "ocisnap", verify: true, argv: func(e *wenv, m string) []string {
			return []string{b.snapdrv, "apply", m, e.snapOverlay}
		}},
		{key: "ocisnap-oci", name: "ocisnap (oci format)", verify: true, argv: func(e *wenv, m string) []string {
			return []string{b.snapdrv, "apply", m, e.snapOCI}
		}},
		{key: "gnutar", name: "GNU tar", argv: func(e *wenv, m string) []string {
			return []string{"tar", "--xattrs", "-xpf", e.snapOCI, "-C", m}
		}},
		{key: "bsdtar", name: "bsdtar", argv: func(e *wenv, m string) []string {
			return []string{"bsdtar", "--xattrs", "-xpf", e.snapOCI, "-C", m}
		}},
		{key: "cstorage", name: "containers/storage", argv: func(e *wenv, m string) []string {
			return []string{b.csdrv, "apply", m, e.snapOCI}
		}},
		{key: "cat", name: "floor: cat >/dev/null", floor: true, argv: func(e *wenv, m string) []string {
			return []string{"cat", e.snapOverlay}
		}},
		{key: "cp", name: "floor: cp -a", floor: true, argv: func(e *wenv, m string) []string {
			return []string{"cp", "-a", e.tree + "/.", m + "/"}
		}},
	}
	return pick(all, keys)
}

func (b *bench) exportTools(keys []string) []tool {
	all := []tool{
		{key: "ocisnap", name: "ocisnap", argv: func(e *wenv, out string) []string {
			return []string{b.snapdrv, "export", "-lower", e.image, e.srcUpper, out}
		}},
		{key: "gnutar", name: "GNU tar", argv: func(e *wenv, out string) []string {
			return []string{"tar", "--xattrs", "-cf", out, "-C", e.srcUpper, "."}
		}},
		{key: "bsdtar", name: "bsdtar", argv: func(e *wenv, out string) []string {
			return []string{"bsdtar", "--xattrs", "-cf", out, "-C", e.srcUpper, "."}
		}},
		{key: "cstorage", name: "containers/storage", argv: func(e *wenv, out string) []string {
			return []string{b.csdrv, "export", "-lower", e.image, e.srcUpper, out}
		}},
		// Durable: the hook's atomic replacement (temporary file, fsync,
		// rename over the previous output, fsync of the directory), and the
		// peers made equally durable with coreutils' sync.
		{key: "ocisnap-durable", name: "ocisnap durable", replace: true, argv: func(e *wenv, out string) []string {
			return []string{b.snapdrv, "export", "-durable", "-lower", e.image, e.srcUpper, out}
		}},
		{key: "ocisnap-cli", name: "ocisnap export -o", replace: true, argv: func(e *wenv, out string) []string {
			return []string{b.cli, "export", "--upper", e.srcUpper, "-o", out}
		}},
		{key: "gnutar-durable", name: "GNU tar durable", replace: true, argv: func(e *wenv, out string) []string {
			return []string{"sh", "-c", `tar --xattrs -cf "$2.tmp" -C "$1" . && sync -d "$2.tmp" && mv "$2.tmp" "$2" && sync "${2%/*}"`, "sh", e.srcUpper, out}
		}},
		{key: "bsdtar-durable", name: "bsdtar durable", replace: true, argv: func(e *wenv, out string) []string {
			return []string{"sh", "-c", `bsdtar --xattrs -cf "$2.tmp" -C "$1" . && sync -d "$2.tmp" && mv "$2.tmp" "$2" && sync "${2%/*}"`, "sh", e.srcUpper, out}
		}},
		{key: "cat", name: "floor: cat >/dev/null", floor: true, argv: func(e *wenv, out string) []string {
			return []string{"sh", "-c", `find "$1" -type f -print0 | xargs -0 cat`, "sh", e.srcUpper}
		}},
		{key: "cp", name: "floor: cp -a", floor: true, argv: func(e *wenv, out string) []string {
			return []string{"cp", "-a", e.srcUpper, out + ".d"}
		}},
	}
	return pick(all, keys)
}

func pick(all []tool, keys []string) []tool {
	for _, v := range variants {
		for _, t := range all {
			if t.key == "ocisnap" {
				path, orig := v.V, t.argv
				all = append(all, tool{key: "ocisnap[" + v.K + "]", name: "ocisnap[" + v.K + "]", verify: t.verify,
					argv: func(e *wenv, target string) []string { a := orig(e, target); a[0] = path; return a }})
			}
			if t.key == "ocisnap-durable" {
				path, orig := v.V, t.argv
				all = append(all, tool{key: "ocisnap-durable[" + v.K + "]", name: "ocisnap durable[" + v.K + "]", replace: true,
					argv: func(e *wenv, target string) []string { a := orig(e, target); a[0] = path; return a }})
			}
		}
	}
	var out []tool
	for _, k := range keys {
		for _, t := range all {
			if t.key == k {
				out = append(out, t)
			}
		}
	}
	return out
}

// restore times each tool applying the snapshot onto a freshly mounted
// overlay over the image, runs+1 rounds with the tools interleaved and
// shuffled anew each round (order); the first round warms the caches and is not counted.
func (b *bench) restore(e *wenv, tools []tool) (map[string]stats, error) {
	if len(tools) == 0 {
		return nil, nil // an export-only pass (-durable-disk)
	}
	return b.restoreRuns(e, tools, e.w.name, nil)
}

// restoreRuns is restore's loop, its progress labelled label; after, when
// not nil, runs after each tool's run, untimed (the registry rows remove
// the two-step's layout there).
func (b *bench) restoreRuns(e *wenv, tools []tool, label string, after func() error) (map[string]stats, error) {
	samples := make(map[string][]sample)
	base := filepath.Join(e.fs.dir, "r")
	for r := 0; r <= b.runs; r++ {
		for _, i := range b.order(r, len(tools)) {
			t := tools[i]
			o, err := mountOverlay(base, e.image)
			if err != nil {
				return nil, err
			}
			unix.Sync()
			s, err := t.run(t.argv(e, o.merged), e.fs.dir)
			if err == nil && r == 0 && t.verify {
				var got string
				if got, err = digestTree(o.merged); err == nil && got != e.want {
					err = fmt.Errorf("%s restore of %s differs from the container's view: %s", t.name, e.w.name, firstDiff(got, e.want))
				}
			}
			if rerr := o.remove(); err == nil {
				err = rerr
			}
			if after != nil {
				if rerr := after(); err == nil {
					err = rerr
				}
			}
			if err != nil {
				return nil, err
			}
			if r > 0 {
				samples[t.key] = append(samples[t.key], s)
			}
		}
		b.progress("restore", label, r, samples)
	}
	return summarizeAll(samples), nil
}

// export times each tool writing the snapshot of the upper to a file on
// the same filesystem, interleaved like restore. A durable tool (replace)
// writes its own out-KEY.tar, kept from round to round so that each run
// replaces the previous one's, as the hook does at every stop; the others
// write out.tar, removed after each run.
func (b *bench) export(e *wenv, tools []tool) (map[string]stats, error) {
	samples := make(map[string][]sample)
	plain := filepath.Join(e.fs.dir, "out.tar")
	defer func() {
		for _, t := range tools {
			os.Remove(filepath.Join(e.fs.dir, "out-"+t.key+".tar"))
		}
	}()
	for r := 0; r <= b.runs; r++ {
		for _, i := range b.order(r, len(tools)) {
			t := tools[i]
			out := plain
			if t.replace {
				out = filepath.Join(e.fs.dir, "out-"+t.key+".tar")
			}
			unix.Sync()
			s, err := t.run(t.argv(e, out), e.fs.dir)
			if err == nil && r == 0 && (t.key == "ocisnap" || t.key == "ocisnap-durable") && fileSize(out) != fileSize(e.snapOverlay) {
				err = fmt.Errorf("%s export of %s: %d bytes, want %d", t.key, e.w.name, fileSize(out), fileSize(e.snapOverlay))
			}
			if !t.replace {
				os.Remove(out)
			}
			if rerr := removeAll(plain + ".d"); err == nil {
				err = rerr
			}
			if err != nil {
				return nil, err
			}
			if r > 0 {
				samples[t.key] = append(samples[t.key], s)
			}
		}
		b.progress("export", e.w.name, r, samples)
	}
	return summarizeAll(samples), nil
}

// order is the order of n tools in round r: a permutation drawn from the
// seed, new each round. A rotation of one fixed order would give every
// tool the same predecessor in every round, and a tool that leaves work
// behind (writeback, freed blocks, reclaim) would slow the same
// successor each time: a bias of one row that no number of runs removes.
func (b *bench) order(r, n int) []int {
	rng := rand.New(rand.NewPCG(b.seed, uint64(r)))
	return rng.Perm(n)
}

func summarizeAll(m map[string][]sample) map[string]stats {
	out := make(map[string]stats, len(m))
	for k, ss := range m {
		out[k] = summarize(ss)
	}
	return out
}

func (b *bench) progress(op, w string, r int, samples map[string][]sample) {
	if r == 0 {
		b.logf("%s %s: warm-up round done", op, w)
		return
	}
	var parts []string
	keys := make([]string, 0, len(samples))
	for k := range samples {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ss := samples[k]
		parts = append(parts, fmt.Sprintf("%s %.3fs", k, ss[len(ss)-1].Wall.Seconds()))
	}
	b.logf("%s %s: round %d/%d: %s", op, w, r, b.runs, strings.Join(parts, ", "))
}

// syscallCount is strace -c's summary of one run.
type syscallCount struct {
	Calls int64
	Top   []string // "openat 20012"
}

// strace counts the system calls of one restore and one export by ocisnap
// and GNU tar (untimed; strace slows them down).
func (b *bench) strace(e *wenv) (map[string]syscallCount, error) {
	out := make(map[string]syscallCount)
	file := filepath.Join(e.fs.dir, "strace.txt")
	defer os.Remove(file)
	run := func(key string, argv []string) error {
		if _, err := measure(append([]string{"strace", "-f", "-c", "-o", file, "--"}, argv...), e.fs.dir, ""); err != nil {
			return err
		}
		sc, err := parseStrace(file)
		if err != nil {
			return err
		}
		out[key] = sc
		return nil
	}
	for _, t := range b.restoreTools([]string{"ocisnap", "gnutar"}) {
		o, err := mountOverlay(filepath.Join(e.fs.dir, "r"), e.image)
		if err != nil {
			return nil, err
		}
		err = run("restore/"+t.key, t.argv(e, o.merged))
		if rerr := o.remove(); err == nil {
			err = rerr
		}
		if err != nil {
			return nil, err
		}
	}
	for _, t := range b.exportTools([]string{"ocisnap", "gnutar"}) {
		outTar := filepath.Join(e.fs.dir, "out.tar")
		err := run("export/"+t.key, t.argv(e, outTar))
		os.Remove(outTar)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func parseStrace(file string) (syscallCount, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return syscallCount{}, err
	}
	var sc syscallCount
	type row struct {
		name  string
		calls int64
	}
	var rows []row
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || strings.HasPrefix(line, "%") || strings.HasPrefix(line, "-") {
			continue
		}
		// % time, seconds, usecs/call, calls, [errors], syscall|total
		calls, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			continue
		}
		name := f[len(f)-1]
		if name == "total" {
			sc.Calls = calls
			continue
		}
		rows = append(rows, row{name, calls})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].calls > rows[j].calls })
	for i := 0; i < len(rows) && i < 8; i++ {
		sc.Top = append(sc.Top, fmt.Sprintf("%s %d", rows[i].name, rows[i].calls))
	}
	if sc.Calls == 0 {
		return sc, fmt.Errorf("%s: no strace summary", file)
	}
	return sc, nil
}
