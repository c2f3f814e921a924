package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil/registryfixture"
)

// The registry rows (issue #11, docs/locations.md): restore from and export
// to a real registry on loopback — the e2e tests' fixture, docker-registry
// with TLS from a test CA and htpasswd authentication — against the same
// snapshot in a local file and against the two-step way users script today
// (skopeo copy to an OCI layout, then tar -x of the layer). Everything,
// the registry's storage included, is on the workload's fresh loop ext4;
// the tools run interleaved, as in the other rows, through the ocisnap CLI.

var registryLargeFlag = flag.Bool("registry-large", false,
	"with the registry workload: also measure the peak RSS of export+push and of restore of a 2 GiB snapshot (several minutes; also by naming registry-large in -workloads)")

type registryResult struct {
	Desc            string
	Entries         int64
	SnapshotBytes   int64 // the zstd layer
	CPUs            int   // the machine's, which the registry shares
	Restore, Export map[string]stats
	Large           *regLarge `json:",omitempty"`
}

type regLarge struct {
	Desc       string
	Push, Pull stats
	LayerBytes int64
}

var registryToolNames = map[string]string{
	"ocisnap-registry": "**ocisnap apply docker://…** (registry)",
	"ocisnap-file":     "ocisnap apply FILE.tar.zst (local file)",
	"skopeo-gnutar":    "`skopeo copy docker://… oci:DIR` + GNU `tar -xpf` of the layer",
	"skopeo-bsdtar":    "`skopeo copy docker://… oci:DIR` + `bsdtar -xpf` of the layer",
	"ocisnap-push":     "**ocisnap export -o docker://…** (export + push)",
	"ocisnap-export":   "ocisnap export -o FILE.tar.zst (local, durable)",
}

var registryOrder = []string{"ocisnap-registry", "ocisnap-file", "skopeo-gnutar", "skopeo-bsdtar", "ocisnap-push", "ocisnap-export"}

// runRegistry runs the registry workload if selected (and the 2 GiB rows
// if asked for by -registry-large or -workloads registry-large).
func (b *bench) runRegistry(rep *report, selected func(string) bool) error {
	only := flag.Lookup("workloads").Value.String()
	large := *registryLargeFlag || slices.Contains(strings.Split(only, ","), "registry-large")
	if !selected("registry") && !large {
		return nil
	}
	if b.cli == "" {
		b.logf("registry: skipped (no -cli)")
		return nil
	}
	if err := requireTools(append([]string{"skopeo", "tar", "bsdtar", "zstd"}, registryfixture.Tools...)...); err != nil {
		if os.Getenv("CI") == "true" {
			return fmt.Errorf("registry: %w", err)
		}
		b.logf("registry: skipped: %v", err)
		return nil
	}
	res := &registryResult{}
	rep.Registry = res
	if selected("registry") {
		if err := b.registrySmall(res); err != nil {
			return err
		}
	}
	if large {
		l, err := b.registryLargeRun()
		if err != nil {
			return err
		}
		res.Large = l
	}
	return nil
}

// regEnv is a workload with a registry on its loop filesystem.
type regEnv struct {
	*wenv
	reg *registryfixture.Registry
	tmp string // TMPDIR of the CLI (its push staging) on the same filesystem
}

func (b *bench) prepareRegistry(w *workload) (*regEnv, error) {
	e, err := b.prepare(w, false)
	if err != nil {
		return nil, err
	}
	reg, err := registryfixture.New(filepath.Join(e.fs.dir, "registry"))
	if err == nil {
		err = reg.Start()
	}
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("registry: %w", err)
	}
	re := &regEnv{wenv: e, reg: reg, tmp: filepath.Join(e.fs.dir, "tmp")}
	if err := mkdirs(re.tmp); err != nil {
		re.Close()
		return nil, err
	}
	return re, nil
}

func (e *regEnv) Close() {
	e.reg.Kill()
	e.wenv.Close()
}

// cli is the argv of an ocisnap CLI run reaching the registry, its
// temporary files on the workload's filesystem.
func (e *regEnv) cli(b *bench, args ...string) []string {
	return append(append([]string{"env", "TMPDIR=" + e.tmp, b.cli}, e.reg.ClientArgs()...), args...)
}

func (e *regEnv) ref(repo string) string {
	return "docker://" + e.reg.Host + "/snaps/" + repo + ":latest"
}

func (b *bench) registrySmall(res *registryResult) error {
	w := fullWorkloads()[0] // small: the same content as its main rows
	w.fsSize = 4 << 30
	e, err := b.prepareRegistry(w)
	if err != nil {
		return err
	}
	defer e.Close()
	res.Desc, res.Entries, res.CPUs = w.desc, w.entries, runtime.NumCPU()
	local := filepath.Join(e.fs.dir, "snap.tar.zst")
	ref := e.ref("small")
	for _, argv := range [][]string{
		e.cli(b, "export", "--upper", e.srcUpper, "--format", "oci", "--compression", "zstd", "-o", local),
		e.cli(b, "export", "--upper", e.srcUpper, "--format", "oci", "-o", ref),
	} {
		if _, err := measure(argv, e.fs.dir, ""); err != nil {
			return fmt.Errorf("registry: %w", err)
		}
	}
	res.SnapshotBytes = fileSize(local)
	layout := filepath.Join(e.fs.dir, "layout")
	// skopeo copy to a layout, then tar -x of its largest blob (the layer).
	twoStep := func(tar string) func(*wenv, string) []string {
		return func(_ *wenv, m string) []string {
			return append([]string{"sh", "-c", `set -e; L=$1; M=$2; shift 2; skopeo copy -q "$@" "oci:$L:x"; ` +
				`b=$(ls -S "$L/blobs/sha256" | head -n 1); ` + tar + ` -xpf "$L/blobs/sha256/$b" -C "$M"`, "sh", layout, m},
				append(e.reg.SkopeoSrcArgs(), ref)...)
		}
	}
	regCPU := e.reg.CPU
	restores := []tool{
		{key: "ocisnap-registry", verify: true, peer: regCPU, argv: func(_ *wenv, m string) []string { return e.cli(b, "apply", ref, m) }},
		{key: "ocisnap-file", verify: true, argv: func(_ *wenv, m string) []string { return e.cli(b, "apply", local, m) }},
		{key: "skopeo-gnutar", peer: regCPU, argv: twoStep("tar")},
		{key: "skopeo-bsdtar", peer: regCPU, argv: twoStep("bsdtar")},
	}
	for i := range restores {
		restores[i].name = restores[i].key
	}
	if res.Restore, err = b.restoreRuns(e.wenv, restores, "registry", func() error { return removeAll(layout) }); err != nil {
		return err
	}
	// Each push goes to a repository of its own: the registry has none of
	// its blobs, so every run uploads the whole layer (a HEAD would skip
	// a blob the repository has).
	n := 0
	exports := []tool{
		{key: "ocisnap-push", peer: regCPU, argv: func(_ *wenv, _ string) []string {
			n++
			return e.cli(b, "export", "--upper", e.srcUpper, "--format", "oci", "-o", e.ref(fmt.Sprintf("push%d", n)))
		}},
		{key: "ocisnap-export", replace: true, argv: func(_ *wenv, out string) []string {
			return e.cli(b, "export", "--upper", e.srcUpper, "--format", "oci", "--compression", "zstd", "-o", out)
		}},
	}
	res.Export, err = b.export(e.wenv, exports)
	return err
}

// registryLargeRun: peak RSS (and time) of one export+push and one restore
// of a 2 GiB snapshot: 4 files of 512 MiB, 2 of incompressible data and 2
// of text (which zstd compresses about 3×: its match finding, entropy
// tables and window all in use, as with the text and code of real layers).
func (b *bench) registryLargeRun() (*regLarge, error) {
	w := largeWorkload("registry-large", 4, 2<<30)
	w.desc = "4 files of 512 MiB: 2 of random bytes, 2 of text"
	w.changes = largeChanges(4, 512<<20, func(i int) bool { return i%2 == 1 })
	w.fsSize = 14 << 30 // upper, snapshot, registry, staging, target: 2 GiB each
	e, err := b.prepareRegistry(w)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	os.Remove(e.snapOCI) // not used here: room
	ref := e.ref("large")
	l := &regLarge{Desc: w.desc}
	push, err := measure(e.cli(b, "export", "--upper", e.srcUpper, "-o", ref), e.fs.dir, "")
	if err != nil {
		return nil, fmt.Errorf("registry-large: %w", err)
	}
	o, err := mountOverlay(filepath.Join(e.fs.dir, "r"), e.image)
	if err != nil {
		return nil, err
	}
	unix.Sync()
	pull, err := measure(e.cli(b, "apply", ref, o.merged), e.fs.dir, "")
	if rerr := o.remove(); err == nil {
		err = rerr
	}
	if err != nil {
		return nil, fmt.Errorf("registry-large: %w", err)
	}
	l.Push, l.Pull = summarize([]sample{push}), summarize([]sample{pull})
	blobs, _ := filepath.Glob(filepath.Join(e.reg.Storage, "docker/registry/v2/blobs/sha256/*/*/data"))
	for _, p := range blobs {
		l.LayerBytes = max(l.LayerBytes, fileSize(p))
	}
	b.logf("registry-large: push %s (%s), restore %s (%s)", secs(l.Push.Median), mib(l.Push.MaxRSS), secs(l.Pull.Median), mib(l.Pull.MaxRSS))
	return l, nil
}

// registryTargets are issue #11's targets.
func (r *report) registryTargets() []target {
	g := r.Registry
	if g == nil {
		return nil
	}
	var ts []target
	if reg := g.Restore["ocisnap-registry"]; reg.Runs > 0 {
		ts = append(ts, target{what: "restore small (zstd) from the registry ÷ from a local file", got: ratio(reg, g.Restore["ocisnap-file"]), want: 1.3, unit: "×", lessIsOK: true})
		if s := g.Restore["skopeo-gnutar"]; s.Runs > 0 {
			ts = append(ts, target{what: "restore small from the registry: faster than skopeo copy + GNU tar -x", got: speedup(reg, s), want: 1.5, unit: "×"})
		}
	}
	if p := g.Export["ocisnap-push"]; p.Runs > 0 {
		ts = append(ts, target{what: "export + push small (zstd) ÷ local export (zstd, durable)", got: ratio(p, g.Export["ocisnap-export"]), want: 1.5, unit: "×", lessIsOK: true})
	}
	if l := g.Large; l != nil {
		ts = append(ts, target{what: "peak RSS, export + push of a 2 GiB snapshot", got: float64(l.Push.MaxRSS) / (1 << 20), want: 64, unit: " MiB", lessIsOK: true})
		ts = append(ts, target{what: "peak RSS, restore of a 2 GiB snapshot from the registry", got: float64(l.Pull.MaxRSS) / (1 << 20), want: 64, unit: " MiB", lessIsOK: true})
	}
	return ts
}

// ratio is a's median over b's (0 without b).
func ratio(a, b stats) float64 {
	if b.Median == 0 {
		return 0
	}
	return a.Median.Seconds() / b.Median.Seconds()
}

func (r *report) registrySection(p func(string, ...any)) {
	g := r.Registry
	if g == nil || (len(g.Restore) == 0 && g.Large == nil) {
		return
	}
	p("## Registry (docker://, issue #11)\n\n")
	p("Every snapshot here is in the OCI whiteout format (`--format oci`): overlayfs refuses GNU tar's and bsdtar's `mknod` of an overlay-format whiteout, so the two-step way needs it; tar then creates the `.wh.` files instead of deleting, as in the rows above. A real registry on 127.0.0.1 (Debian's docker-registry, distribution 2.8, TLS from a test CA, htpasswd authentication: the e2e fixture, internal/testutil/registryfixture), its storage on the workload's fresh loop ext4 with everything else. All ocisnap runs are the CLI (`ocisnap apply`, `ocisnap export --upper`), its temporary files on the same filesystem. A restore applies onto a fresh overlay over the image, as in the rows above. Each export+push goes to a new repository, so that the whole layer is uploaded every time.\n\n")
	if len(g.Restore) > 0 {
		p("Workload: small (%s), %d entries; the zstd layer is %s.\n\n", g.Desc, g.Entries, mib(g.SnapshotBytes))
		for _, op := range []struct {
			name, ours, ref string
			m               map[string]stats
		}{{"restore", "ocisnap-registry", "ocisnap-file", g.Restore}, {"export", "ocisnap-push", "ocisnap-export", g.Export}} {
			p("**%s**\n\n| tool | median | min – max | ÷ local | CPU | registry CPU | peak RSS |\n|---|---|---|---|---|---|---|\n", op.name)
			for _, k := range registryOrder {
				s, ok := op.m[k]
				if !ok {
					continue
				}
				peer := "—"
				if s.PeerCPU > 0 {
					peer = secs(s.PeerCPU)
				}
				p("| %s | %s | %s – %s | %.2f | %s | %s | %s |\n", registryToolNames[k], secs(s.Median), secs(s.Min), secs(s.Max),
					ratio(s, op.m[op.ref]), secs(s.CPU), peer, mib(s.MaxRSS))
			}
			p("\n")
			if s, l := op.m[op.ours], op.m[op.ref]; g.CPUs > 0 && s.PeerCPU > 0 && l.Median > 0 && l.CPU > 0 {
				floor := (s.CPU + s.PeerCPU) / time.Duration(g.CPUs)
				p("The registry runs on the same %d cores: ocisnap's CPU and the registry's (%s + %s) need at least %s of wall time on them, "+
					"%.2f× the local row's median, before any wait; ocisnap's CPU alone is %.2f× the local row's.\n\n",
					g.CPUs, secs(s.CPU), secs(s.PeerCPU), secs(floor), floor.Seconds()/l.Median.Seconds(), s.CPU.Seconds()/l.CPU.Seconds())
			}
		}
	}
	if l := g.Large; l != nil {
		p("**2 GiB snapshot** (%s; layer %s), one run each:\n\n| | time | CPU | peak RSS |\n|---|---|---|---|\n", l.Desc, mib(l.LayerBytes))
		p("| export + push | %s | %s | %s |\n| restore from the registry | %s | %s | %s |\n\n",
			secs(l.Push.Median), secs(l.Push.CPU), mib(l.Push.MaxRSS), secs(l.Pull.Median), secs(l.Pull.CPU), mib(l.Pull.MaxRSS))
	}
}
