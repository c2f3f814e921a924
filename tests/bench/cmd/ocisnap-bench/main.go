// Command ocisnap-bench measures ocisnap's restore (layer.Apply) and export
// (layer.Write) against GNU tar, bsdtar and containers/storage's
// pkg/archive, with cat and cp -a as the floor, on fresh loop-mounted ext4
// filesystems and fresh overlay mounts, and writes a Markdown report and a
// JSON file for the scaling plot (benchplot).
//
// It needs root (loop devices, overlay mounts, chown). Run it through
// `make bench` or `make bench-quick`; see tests/bench/README.md.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

var verbose bool

type bench struct {
	workdir              string
	seed                 uint64
	runs                 int
	snapdrv, csdrv, hook string
	cli                  string // bin/ocisnap, for its export row (skipped if empty)
	log                  *os.File
	tools                string // -tools
	ramdir               string
	ramMax               int64
}

// variants are other snapdrv builds measured alongside (-variant).
var variants variantFlag

type variantFlag []kv

func (v *variantFlag) String() string { return fmt.Sprint(*v) }
func (v *variantFlag) Set(s string) error {
	name, path, ok := strings.Cut(s, "=")
	if !ok || name == "" || path == "" {
		return fmt.Errorf("want NAME=PATH")
	}
	*v = append(*v, kv{name, path})
	return nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func main() {
	code := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				cleanupAll()
				fmt.Fprintf(os.Stderr, "ocisnap-bench: panic: %v\n%s", r, debug.Stack())
				code = 2
			}
		}()
		code = run()
	}()
	cleanupAll()
	os.Exit(code)
}

func run() int {
	self, _ := os.Executable()
	binDir := filepath.Dir(self)
	var (
		b          = &bench{log: os.Stderr}
		quick      = flag.Bool("quick", false, "CI mode: scaled-down workloads, ocisnap vs GNU tar only, assert the ratios")
		only       = flag.String("workloads", "", "comma-separated workloads to run (default: all of the mode)")
		outMD      = flag.String("out", "", "write the Markdown report here")
		outJSON    = flag.String("json", "", "write the results as JSON here (for benchplot)")
		notes      = flag.String("notes", "", "Markdown file appended to the report (analysis, profiles)")
		plotName   = flag.String("plot", "scaling.png", "plot file name the report links to")
		maxRatio   = flag.Float64("max-ratio", 1.3, "quick: fail if ocisnap's best time exceeds GNU tar's best times this")
		maxRSS     = flag.Int64("max-rss-mib", 64, "quick: fail if ocisnap's peak RSS exceeds this many MiB")
		noStrace   = flag.Bool("no-strace", false, "skip the strace -c system call counts")
		prepOnly   = flag.Bool("prepare", false, "only prepare the workloads and leave them mounted under -workdir (for profiling)")
		fromJSON   = flag.String("from-json", "", "render the report of an earlier run from its -json file (with the current -notes) instead of measuring")
		workdirDef = "/var/tmp/ocisnap-bench"
	)
	flag.StringVar(&b.workdir, "workdir", workdirDef, "scratch directory for the loop filesystem images")
	flag.StringVar(&b.ramdir, "ramdir", "/dev/shm/ocisnap-bench", "tmpfs directory for the images of workloads up to -ram-max (empty: always -workdir)")
	flag.Int64Var(&b.ramMax, "ram-max-gib", 4, "largest loop filesystem (GiB) put in -ramdir")
	flag.Uint64Var(&b.seed, "seed", 1, "seed of the generated workloads")
	flag.IntVar(&b.runs, "runs", 5, "timed runs per tool (after one warm-up round); the median is reported")
	flag.StringVar(&b.snapdrv, "snapdrv", filepath.Join(binDir, "snapdrv"), "the ocisnap engine driver")
	flag.StringVar(&b.csdrv, "csdrv", filepath.Join(binDir, "csdrv"), "the containers/storage driver")
	flag.StringVar(&b.hook, "hook", "", "bin/ocisnap-hook, for the hook overhead (skipped if empty)")
	flag.StringVar(&b.cli, "cli", "", "bin/ocisnap, for the `ocisnap export -o` row (skipped if empty)")
	flag.StringVar(&backingFlag, "backing", "auto", "where the loop images go: auto (tmpfs up to -ram-max-gib, else disk), tmpfs, disk, or both (each workload measured on each)")
	flag.BoolVar(&fullImages, "full-images", true, "write a disk-backed image in full before mkfs (no sparse holes for the host file system to fill while tools are timed)")
	flag.BoolVar(&verbose, "v", false, "show the tools' stderr")
	flag.IntVar(&niceness, "nice", 0, "run the timed tools at this nice value (0: as is); all tools alike")
	flag.BoolVar(&durableDisk, "durable-disk", true, "full mode, -backing auto: measure the durable export rows of each main workload put on tmpfs once more on a fully written disk image (export only)")
	commit := flag.String("commit", "", "the ocisnap commit measured, for the report")
	flag.Var(&variants, "variant", "NAME=PATH: also measure this snapdrv build as ocisnap[NAME] (repeatable; A/B of engine levers)")
	toolsFlag := flag.String("tools", "", "comma-separated tool keys to run instead of the mode's (ocisnap,ocisnap-oci,gnutar,bsdtar,cstorage,cat,cp)")
	flag.Parse()

	if *fromJSON != "" {
		return renderFromJSON(*fromJSON, *notes, *outMD)
	}
	// The tools run in scratch directories.
	for _, p := range []*string{&b.hook, &b.cli} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ocisnap-bench:", err)
			return 1
		}
		*p = abs
	}
	switch backingFlag {
	case "auto", "tmpfs", "disk", "both":
	default:
		fmt.Fprintf(os.Stderr, "ocisnap-bench: -backing %q: want auto, tmpfs, disk or both\n", backingFlag)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "ocisnap-bench: needs root (loop devices, overlay mounts, chown)")
		if os.Getenv("CI") == "true" {
			return 1
		}
		fmt.Fprintln(os.Stderr, "ocisnap-bench: skipped")
		return 0
	}
	need := []string{timeBin, "tar", "mkfs.ext4", "losetup", "mount", "cp", "cat", "rm", b.snapdrv}
	if !*quick {
		need = append(need, "bsdtar", b.csdrv)
		if !*noStrace {
			need = append(need, "strace")
		}
	}
	if err := requireTools(need...); err != nil {
		fmt.Fprintln(os.Stderr, "ocisnap-bench:", err)
		return 1
	}
	if err := os.MkdirAll(b.workdir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "ocisnap-bench:", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, unix.SIGINT, unix.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "ocisnap-bench: %v: cleaning up\n", s)
		stopAll()
		os.Exit(130)
	}()

	rep := &report{Quick: *quick, Seed: b.seed, Runs: b.runs, Date: time.Now().UTC().Format(time.RFC3339), Plot: *plotName, Nice: niceness}
	rep.Machine = describeMachine(b.workdir)
	if *commit != "" {
		rep.Versions = append(rep.Versions, kv{"ocisnap", *commit})
	}
	if !*quick {
		rep.Versions = append(rep.Versions, kv{"containers/storage", cmdOut(b.csdrv, "version")})
	}
	rep.LoadStart = loadavg()
	runStart := time.Now()
	selected := func(name string) bool {
		return *only == "" || slices.Contains(strings.Split(*only, ","), name)
	}

	b.tools = *toolsFlag
	var err error
	if *prepOnly {
		return b.prepareOnly(*quick, selected)
	}
	if *quick {
		err = b.runQuick(rep, selected)
	} else {
		err = b.runFull(rep, selected, !*noStrace)
	}
	rep.LoadEnd = loadavg()
	rep.Elapsed = time.Since(runStart).Round(time.Second).String()
	if err != nil {
		// Keep what was measured, beside the results (FILE.partial, marked
		// incomplete), not over them: a late failure must not cost the
		// run, nor pass for a complete one. The exit status fails make.
		fmt.Fprintln(os.Stderr, "ocisnap-bench: FAILED:", err)
		rep.Failed = err.Error()
		for _, p := range []*string{outMD, outJSON} {
			if *p != "" {
				*p += ".partial"
			}
		}
		if *outMD != "" {
			fmt.Fprintf(os.Stderr, "ocisnap-bench: the rows measured before it are in %s (marked incomplete); the previous results are left as they were\n", *outMD)
		}
	}
	md := rep.markdown(*notes)
	if *outMD != "" {
		if err := os.WriteFile(*outMD, []byte(md), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "ocisnap-bench:", err)
			return 1
		}
		b.logf("wrote %s", *outMD)
	} else {
		fmt.Print(md)
	}
	if *outJSON != "" {
		data, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*outJSON, data, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "ocisnap-bench:", err)
			return 1
		}
	}
	if err != nil {
		return 1
	}
	if *quick {
		if fails := rep.checkQuick(*maxRatio, *maxRSS<<20); len(fails) > 0 {
			for _, f := range fails {
				fmt.Fprintln(os.Stderr, "ocisnap-bench: FAIL:", f)
			}
			return 1
		}
		b.logf("bench-quick: ok (ocisnap's best run within %.2f× of GNU tar's, peak RSS ≤ %d MiB)", *maxRatio, *maxRSS)
	}
	return 0
}

// renderFromJSON writes the Markdown report of an earlier run: the analysis
// in notes is written after the measurements it discusses.
func renderFromJSON(in, notes, out string) int {
	data, err := os.ReadFile(in)
	if err == nil {
		var rep report
		if err = json.Unmarshal(data, &rep); err == nil {
			md := rep.markdown(notes)
			if out == "" {
				fmt.Print(md)
				return 0
			}
			err = os.WriteFile(out, []byte(md), 0o644)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ocisnap-bench:", err)
		return 1
	}
	return 0
}

func requireTools(names ...string) error {
	var missing []string
	for _, n := range names {
		if _, err := lookPath(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing: %s (hack/deps.sh bench installs the system tools; make bench builds the drivers)", strings.Join(missing, " "))
	}
	return nil
}

// runFull: the main workloads with every tool, the scaling points with
// the peers, the hook overhead and export's independence of the image.
func (b *bench) runFull(rep *report, selected func(string) bool, withStrace bool) error {
	all := []string{"ocisnap", "ocisnap-oci", "gnutar", "bsdtar", "cstorage", "cat", "cp",
		"ocisnap-durable", "gnutar-durable", "bsdtar-durable"}
	if b.cli != "" {
		all = append(all, "ocisnap-cli")
	}
	peers := []string{"ocisnap", "gnutar", "bsdtar", "cstorage"}
	ws := fullWorkloads()
	main, scaling := ws[:3], ws[3:]
	for _, w := range main {
		if !selected(w.name) {
			continue
		}
		for _, bk := range backings() {
			w.force = bk
			start := time.Now()
			wr, err := b.workload(w, all, true, withStrace)
			if err != nil {
				return fmt.Errorf("row %s: %w", w.name, err)
			}
			rep.Workloads = append(rep.Workloads, wr)
			b.timeRow(rep, w.name+" ("+shortBacking(wr.Backing)+")", start)
			// The durable rows once more on the disk (export only):
			// there the syncs also cost the device's work.
			if bk == "" && durableDisk && shortBacking(wr.Backing) == "tmpfs" {
				start := time.Now()
				d := *w
				d.force, d.durableOnly = "disk", true
				wr, err := b.workload(&d, all, false, false)
				if err != nil {
					return fmt.Errorf("row %s (disk, durable export): %w", w.name, err)
				}
				rep.Workloads = append(rep.Workloads, wr)
				b.timeRow(rep, w.name+" (disk, durable export)", start)
			}
		}
	}
	for _, w := range scaling {
		if !selected(w.name) {
			continue
		}
		start := time.Now()
		wr, err := b.workload(w, peers, false, false)
		if err != nil {
			return fmt.Errorf("row %s: %w", w.name, err)
		}
		rep.Workloads = append(rep.Workloads, wr)
		b.timeRow(rep, w.name, start)
	}
	if selected("hook") && b.hook != "" {
		start := time.Now()
		h, err := b.hookOverhead()
		if err != nil {
			return fmt.Errorf("row hook: %w", err)
		}
		rep.Hook = h
		b.timeRow(rep, "hook", start)
	}
	if selected("startup") && b.hook != "" && b.cli != "" {
		start := time.Now()
		s, err := b.startup()
		if err != nil {
			return fmt.Errorf("row startup: %w", err)
		}
		rep.Startup = s
		b.timeRow(rep, "startup", start)
	}
	if err := b.persistRows(rep, selected); err != nil {
		return err
	}
	if err := b.runRegistry(rep, selected); err != nil {
		return err
	}
	if selected("export-lower") {
		start := time.Now()
		l, err := b.lowerIndependence()
		if err != nil {
			return fmt.Errorf("row export-lower: %w", err)
		}
		rep.Lower = l
		b.timeRow(rep, "export-lower", start)
	}
	return nil
}

// prepareOnly prepares the workloads and leaves their filesystems mounted
// (unmount them with umount; mount -o loop set autoclear).
func (b *bench) prepareOnly(quick bool, selected func(string) bool) int {
	ws := append(fullWorkloads(), quickWorkloads()...)
	for _, w := range ws {
		if !selected(w.name) {
			continue
		}
		e, err := b.prepare(w, true)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ocisnap-bench:", err)
			return 1
		}
		fmt.Printf("%s: fs %s image %s upper %s snapshots %s %s tree %s\n", w.name, e.fs.dir, e.image, e.srcUpper, e.snapOverlay, e.snapOCI, e.tree)
	}
	cleanups.mu.Lock()
	cleanups.fns = nil // keep them
	cleanups.mu.Unlock()
	return 0
}

// runQuick: scaled-down workloads, ocisnap against GNU tar, for CI.
func (b *bench) runQuick(rep *report, selected func(string) bool) error {
	for _, w := range quickWorkloads() {
		if !selected(w.name) {
			continue
		}
		for _, bk := range backings() {
			w.force = bk
			wr, err := b.workload(w, []string{"ocisnap", "gnutar", "ocisnap-durable", "gnutar-durable"}, false, false)
			if err != nil {
				return err
			}
			rep.Workloads = append(rep.Workloads, wr)
		}
	}
	return nil
}

func (b *bench) workload(w *workload, keys []string, floors, withStrace bool) (wresult, error) {
	if b.tools != "" {
		keys = strings.Split(b.tools, ",")
	}
	if w.durableOnly {
		keys = durableOnly(keys)
	}
	durable := slices.Contains(keys, "ocisnap-durable")
	for _, v := range variants {
		keys = append(keys, "ocisnap["+v.K+"]")
		if durable {
			keys = append(keys, "ocisnap-durable["+v.K+"]")
		}
	}
	e, err := b.prepare(w, slices.Contains(keys, "cp"))
	if err != nil {
		return wresult{}, err
	}
	defer e.Close()
	wr := wresult{Name: w.name, Desc: w.desc, Axis: w.axis, Entries: w.entries, Bytes: w.bytes, Upper: w.upper, Backing: w.backing}
	exportKeys := slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return k == "ocisnap-oci" })
	if e.snapOCI == e.snapOverlay {
		// No whiteouts: both formats are the same file, and its second
		// restore would only cost the run its time (a minute on tiny).
		keys = exportKeys
	}
	if wr.Restore, err = b.restore(e, b.restoreTools(keys)); err != nil {
		return wr, err
	}
	if wr.Export, err = b.export(e, b.exportTools(exportKeys)); err != nil {
		return wr, err
	}
	if withStrace {
		if wr.Strace, err = b.strace(e); err != nil {
			return wr, err
		}
	}
	return wr, nil
}

// -backing, -full-images and -durable-disk.
var (
	backingFlag string
	fullImages  bool
	durableDisk bool
)

// backings are the backings each main workload is measured on: "" for
// prepare's choice (-backing auto).
func backings() []string {
	switch backingFlag {
	case "both":
		return []string{"tmpfs", "disk"}
	case "tmpfs", "disk":
		return []string{backingFlag}
	}
	return []string{""}
}

// fullWorkloads: the small, tiny and large, then the scaling
// points (tiny is the 100k-entry point, large the 2 GiB one).
func fullWorkloads() []*workload {
	ws := []*workload{
		smallWorkload("small", 1000, 20, 100, 500, 20),
		tinyWorkload("tiny", 100_000),
		largeWorkload("large", 4, 2<<30),
		tinyWorkload("entries-1k", 1_000),
		tinyWorkload("entries-10k", 10_000),
		largeWorkload("bytes-128M", 4, 128<<20),
		largeWorkload("bytes-512M", 4, 512<<20),
	}
	for i, axis := range []string{"", "entries", "bytes", "entries", "entries", "bytes", "bytes"} {
		ws[i].axis = axis
	}
	// The smaller points of the bytes axis stay on the disk with large, in
	// images sized to them: written in full (-full-images), the 16 GiB
	// large needs would cost the run 2 × 50 s of zeros.
	for i, total := range map[int]int64{5: 128 << 20, 6: 512 << 20} {
		ws[i].force, ws[i].fsSize = "disk", 6*total+(2<<30)
	}
	return ws
}

// quickWorkloads are scaled down for CI.
func quickWorkloads() []*workload {
	ws := []*workload{
		smallWorkload("small-q", 100, 20, 20, 50, 2),
		tinyWorkload("tiny-q", 10_000),
		largeWorkload("large-q", 2, 128<<20),
	}
	ws[0].fsSize, ws[1].fsSize, ws[2].fsSize = 1<<30, 1<<30, 2<<30
	return ws
}
