package main

// The persist and chain rows (issue 13, docs/snapshot-format.md "Layered
// snapshots"): the stop's delta export of io.ocisnap.persist=oci:DIR
// against a whole export of the same upper, and the restore of a 10-layer
// chain against its squashed equivalent. They drive ocisnap's own code:
// snapdrv record/persist (pkg/upperrec and the hook's export, see
// cmd/snapdrv/persist.go) and the CLI (`ocisnap apply oci:…`, `ocisnap
// squash`).

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// persistResult: a container restored from the tiny workload's snapshot
// (oci: layout) that changed a few files, stopped.
type persistResult struct {
	Desc                  string
	Entries               int64
	Changed               int
	Delta, Full           stats // the stop's export: a delta layer, a whole layer
	Floor, Find           stats // getdents+fstatat of every entry; find -printf as a peer
	DeltaBytes, FullBytes int64 // the layer written (zstd)
}

// chainResult: the restore of a chain of layers against its squash.
type chainResult struct {
	Desc                      string
	Layers                    int
	ChainBytes, SquashedBytes int64
	LayerBytes                []int64 // the chain's, oldest first
	Chain, Squashed           stats
}

// persistRows runs the persist and chain rows (both need the CLI).
func (b *bench) persistRows(rep *report, selected func(string) bool) error {
	if b.cli == "" {
		return nil
	}
	if selected("persist") {
		p, err := b.persistRow()
		if err != nil {
			return fmt.Errorf("persist: %w", err)
		}
		rep.Persist = p
	}
	if selected("chain") {
		c, err := b.chainRow()
		if err != nil {
			return fmt.Errorf("chain: %w", err)
		}
		rep.Chain = c
	}
	return nil
}

// persistStats runs a persist with -stats and returns the location's layer
// sizes after it.
func (b *bench) persistStats(argv []string, dir string) (sample, []int64, error) {
	statsFile := filepath.Join(dir, "persist-stats.json")
	n := len(argv)
	argv = append(append(append([]string(nil), argv[:n-2]...), "-stats", statsFile), argv[n-2:]...)
	s, err := measure(argv, dir, "")
	if err != nil {
		return s, nil, err
	}
	data, err := os.ReadFile(statsFile)
	if err != nil {
		return s, nil, err
	}
	var st struct{ Layers []int64 }
	if err := json.Unmarshal(data, &st); err != nil {
		return s, nil, err
	}
	return s, st.Layers, nil
}

// restoreAsHook restores loc onto a fresh overlay over image at base and
// records the upper as the hook does at createRuntime: a record before the
// restore (the runtime's stubs), the restore, the record after it.
func (b *bench) restoreAsHook(base, image, loc, rec string) (*overlay, error) {
	o, err := mountOverlay(base, image)
	if err != nil {
		return nil, err
	}
	pre := rec + ".pre"
	for _, argv := range [][]string{
		{b.snapdrv, "record", "-engine", o.upper, pre},
		{b.cli, "apply", loc, o.merged},
		{b.snapdrv, "record", "-pre", pre, "-location", loc, o.upper, rec},
	} {
		if _, err := measure(argv, filepath.Dir(base), ""); err != nil {
			o.remove()
			return nil, err
		}
	}
	return o, nil
}

func (b *bench) persistRow() (*persistResult, error) {
	w := tinyWorkload("persist", 100_000)
	e, err := b.prepare(w, false)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	dir := e.fs.dir
	base := filepath.Join(dir, "base")
	if _, err := measure([]string{b.snapdrv, "persist", "-lower", e.image, e.srcUpper, "oci:" + base}, dir, ""); err != nil {
		return nil, err
	}
	rec := filepath.Join(dir, "upper.rec")
	o, err := b.restoreAsHook(filepath.Join(dir, "ctr"), e.image, "oci:"+base, rec)
	if err != nil {
		return nil, err
	}
	defer o.remove()
	// The container changes 10 of its files, then stops.
	const changed = 10
	g := newGen(b.seed, "persist-changes")
	for i := 0; i < changed; i++ {
		p := filepath.Join(o.merged, "node_modules", fmt.Sprintf("pkg%05d", i*97%1000), "lib", fmt.Sprintf("m%02d.js", i))
		if err := g.file(p, g.size(1, 1023)); err != nil {
			return nil, err
		}
	}
	o.unmount()
	run := filepath.Join(dir, "run")
	argvs := [][]string{
		{b.snapdrv, "persist", "-record", rec, "-lower", e.image, o.upper, "oci:" + run},
		{b.snapdrv, "persist", "-lower", e.image, o.upper, "oci:" + run},
		{b.snapdrv, "statwalk", o.upper},
		{"find", o.upper, "-printf", `%i %C@ %s\n`},
	}
	res := &persistResult{Changed: changed}
	samples := make([][]sample, len(argvs))
	for r := 0; r <= b.runs; r++ {
		for _, j := range b.order(r, len(argvs)) {
			if j < 2 {
				// The location as the restore found it.
				if err := removeAll(run); err != nil {
					return nil, err
				}
				if err := sh("cp", "-a", base, run); err != nil {
					return nil, err
				}
			}
			unix.Sync()
			var s sample
			var sizes []int64
			if r == 0 && j < 2 {
				s, sizes, err = b.persistStats(argvs[j], dir)
			} else {
				s, err = measure(argvs[j], dir, "")
			}
			if err != nil {
				return nil, err
			}
			switch {
			case r > 0:
				samples[j] = append(samples[j], s)
			case j == 0:
				if len(sizes) != 2 {
					return nil, fmt.Errorf("delta export: %d layers at the location, want 2", len(sizes))
				}
				res.DeltaBytes = sizes[1]
			case j == 1:
				if len(sizes) != 1 {
					return nil, fmt.Errorf("whole export: %d layers at the location, want 1", len(sizes))
				}
				res.FullBytes = sizes[0]
			}
		}
		b.logf("persist: round %d/%d", r, b.runs)
	}
	res.Delta, res.Full, res.Floor, res.Find = summarize(samples[0]), summarize(samples[1]), summarize(samples[2]), summarize(samples[3])
	res.Entries = w.entries
	res.Desc = fmt.Sprintf("the tiny workload (%d entries) restored from an oci: layout (zstd) onto a fresh overlay and recorded as the hook does at createRuntime; %d files rewritten; the overlay unmounted (the container stopped)", w.entries, changed)
	return res, nil
}

// chainChanges is one layer's change set, made through the merged view:
// files rewritten, created (in existing and in new directories), deleted,
// chmod'ed and renamed, and a directory replaced.
func chainChanges(g *gen, merged string, layer int) error {
	var files, dirs []string
	err := filepath.WalkDir(merged, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.Type().IsRegular():
			files = append(files, p)
		case d.IsDir() && p != merged:
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	sort.Strings(dirs)
	pick := func(s []string) string { return s[g.rng.IntN(len(s))] }
	for i := 0; i < 30; i++ { // rewritten
		if err := g.file(pick(files), g.size(1024, 16384)); err != nil {
			return err
		}
	}
	nd := filepath.Join(merged, "srv", fmt.Sprintf("layer%02d", layer))
	if err := mkdirs(nd); err != nil {
		return err
	}
	for i := 0; i < 20; i++ { // new
		d := nd
		if i%2 == 1 {
			d = pick(dirs)
		}
		if err := g.file(filepath.Join(d, fmt.Sprintf("new-%02d-%02d", layer, i)), g.size(1024, 16384)); err != nil {
			return err
		}
	}
	gone := map[string]bool{}
	for i := 0; i < 10; i++ { // deleted
		p := pick(files)
		if gone[p] {
			continue
		}
		gone[p] = true
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	for i := 0; i < 5; i++ { // chmod'ed, renamed
		p := pick(files)
		if gone[p] {
			continue
		}
		if err := os.Chmod(p, 0o600); err != nil {
			return err
		}
		if i < 2 {
			gone[p] = true
			if err := os.Rename(p, p+".moved"); err != nil {
				return err
			}
		}
	}
	// A directory replaced: gone with its files, made again with others.
	d := pick(dirs)
	if err := os.RemoveAll(d); err != nil {
		return err
	}
	if err := mkdirs(d); err != nil {
		return err
	}
	for i := 0; i < 3; i++ {
		if err := g.file(filepath.Join(d, fmt.Sprintf("again-%02d", i)), g.size(1024, 4096)); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) chainRow() (*chainResult, error) {
	const layers = 10
	w := smallWorkload("chain", 1000, 20, 100, 500, 20)
	e, err := b.prepare(w, false)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	dir := e.fs.dir
	chain, squashed := "oci:"+filepath.Join(dir, "chain"), "oci:"+filepath.Join(dir, "squashed")
	// Layer 1: the workload's changes; then 9 cycles of restore, changes,
	// persist of the delta.
	if _, err := measure([]string{b.snapdrv, "persist", "-lower", e.image, e.srcUpper, chain}, dir, ""); err != nil {
		return nil, err
	}
	g := newGen(b.seed, "chain-changes")
	var want string
	var sizes []int64
	for i := 2; i <= layers; i++ {
		rec := filepath.Join(dir, "upper.rec")
		o, err := b.restoreAsHook(filepath.Join(dir, fmt.Sprintf("ctr%02d", i)), e.image, chain, rec)
		if err != nil {
			return nil, err
		}
		err = chainChanges(g, o.merged, i)
		if err == nil && i == layers {
			want, err = digestTree(o.merged)
		}
		if err == nil {
			_, sizes, err = b.persistStats([]string{b.snapdrv, "persist", "-record", rec, "-lower", e.image, o.upper, chain}, dir)
		}
		if rerr := o.remove(); err == nil {
			err = rerr
		}
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		if len(sizes) != i {
			return nil, fmt.Errorf("layer %d: the chain has %d layers", i, len(sizes))
		}
	}
	if _, err := measure([]string{b.cli, "squash", chain, "-o", squashed}, dir, ""); err != nil {
		return nil, err
	}
	res := &chainResult{Layers: layers, LayerBytes: sizes}
	for _, s := range sizes {
		res.ChainBytes += s
	}
	res.SquashedBytes = dirBlobBytes(filepath.Join(dir, "squashed"))
	locs := []string{chain, squashed}
	samples := make([][]sample, len(locs))
	for r := 0; r <= b.runs; r++ {
		for _, j := range b.order(r, len(locs)) {
			o, err := mountOverlay(filepath.Join(dir, "restore"), e.image)
			if err != nil {
				return nil, err
			}
			unix.Sync()
			s, err := measure([]string{b.cli, "apply", locs[j], o.merged}, dir, "")
			if err == nil && r == 0 {
				// The chain and its squash give the tree the last
				// container stopped with.
				var got string
				if got, err = digestTree(o.merged); err == nil && got != want {
					err = fmt.Errorf("restore of %s: %s", locs[j], firstDiff(got, want))
				}
			}
			if rerr := o.remove(); err == nil {
				err = rerr
			}
			if err != nil {
				return nil, err
			}
			if r > 0 {
				samples[j] = append(samples[j], s)
			}
		}
		b.logf("chain: round %d/%d", r, b.runs)
	}
	res.Chain, res.Squashed = summarize(samples[0]), summarize(samples[1])
	res.Desc = fmt.Sprintf("the small workload (%d entries) as layer 1, then %d layers each made by a restore of the chain, a change set (30 files rewritten, 20 created, 10 deleted, 5 chmod'ed of which 2 renamed, a directory replaced) and a persist of the delta; `ocisnap squash` of it; each restore onto a fresh overlay over the image with `ocisnap apply`", w.entries, layers-1)
	return res, nil
}

// dirBlobBytes is the size of the largest blob of an oci: layout: its
// one layer, for a squashed snapshot.
func dirBlobBytes(layout string) int64 {
	var n int64
	filepath.WalkDir(filepath.Join(layout, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n = max(n, fi.Size())
			}
		}
		return nil
	})
	return n
}

// persistTargets are the issue's: the stop's export of a persist at least
// 20× faster than a whole export, its layer under 1% of the whole one's
// bytes; a 10-layer chain restored within 1.3× of its squash.
func (r *report) persistTargets() []target {
	var ts []target
	if p := r.Persist; p != nil && p.Delta.Runs > 0 {
		ts = append(ts,
			target{what: "persist (100k entries, 10 changed): delta export faster than a whole export", got: speedup(p.Delta, p.Full), want: 20, unit: "×"},
			target{what: "persist: delta layer bytes ÷ whole layer bytes", got: 100 * float64(p.DeltaBytes) / float64(max(p.FullBytes, 1)), want: 1, unit: " %", lessIsOK: true})
	}
	if c := r.Chain; c != nil && c.Chain.Runs > 0 {
		ts = append(ts, target{what: fmt.Sprintf("restore of a %d-layer chain ÷ of its squash", c.Layers), got: 1 / speedup(c.Chain, c.Squashed), want: 1.3, unit: "×", lessIsOK: true})
	}
	return ts
}

func (r *report) persistSection(p func(string, ...any)) {
	if x := r.Persist; x != nil {
		p("## Persist: the stop's export of a delta layer\n\n%s. %d runs each, interleaved; the layout copied back to the restored one before each export (untimed).\n\n", x.Desc, x.Delta.Runs)
		p("| | median | min – max | CPU | × floor | layer |\n|---|---|---|---|---|---|\n")
		for _, row := range []struct {
			n     string
			s     stats
			bytes int64
		}{
			{"**delta export** (`snapdrv persist -record`: the hook's persist to oci:)", x.Delta, x.DeltaBytes},
			{"whole export of the same upper (same zstd, same location)", x.Full, x.FullBytes},
			{"floor: getdents + fstatat of every entry (`snapdrv statwalk`)", x.Floor, 0},
			{"peer floor: `find UPPER -printf '%i %C@ %s\\n'`", x.Find, 0},
		} {
			layer := ""
			if row.bytes > 0 {
				layer = fmt.Sprintf("%d bytes", row.bytes)
			}
			p("| %s | %s | %s – %s | %s | %.2f | %s |\n", row.n, secs(row.s.Median), secs(row.s.Min), secs(row.s.Max), secs(row.s.CPU),
				row.s.Median.Seconds()/max(x.Floor.Median.Seconds(), 1e-9), layer)
		}
		p("\nWhole ÷ delta: %.1f× (wall), %.1f× (CPU); whole ÷ stat floor: %.1f× (wall) — no export that stats every entry can be faster than that (notes: \"Persist\").\n\n",
			speedup(x.Delta, x.Full), x.Full.CPU.Seconds()/max(x.Delta.CPU.Seconds(), 1e-9), speedup(x.Floor, x.Full))
	}
	if c := r.Chain; c != nil {
		p("## Restore of a layer chain\n\n%s. %d runs each, interleaved.\n\n", c.Desc, c.Chain.Runs)
		p("| snapshot | compressed | median | min – max | CPU |\n|---|---|---|---|---|\n")
		p("| %d-layer chain | %s | %s | %s – %s | %s |\n", c.Layers, mib(c.ChainBytes), secs(c.Chain.Median), secs(c.Chain.Min), secs(c.Chain.Max), secs(c.Chain.CPU))
		p("| squashed (one layer) | %s | %s | %s – %s | %s |\n\n", mib(c.SquashedBytes), secs(c.Squashed.Median), secs(c.Squashed.Min), secs(c.Squashed.Max), secs(c.Squashed.CPU))
		p("Chain ÷ squash: %.2f× (wall), %.2f× (CPU).", 1/speedup(c.Chain, c.Squashed), c.Chain.CPU.Seconds()/max(c.Squashed.CPU.Seconds(), 1e-9))
		if len(c.LayerBytes) > 1 {
			var ls []string
			for _, n := range c.LayerBytes[1:] {
				ls = append(ls, fmt.Sprintf("%d", n))
			}
			p(" Layer 1: %s; the delta layers (bytes): %s.", mib(c.LayerBytes[0]), strings.Join(ls, ", "))
		}
		p("\n\n")
	}
}
