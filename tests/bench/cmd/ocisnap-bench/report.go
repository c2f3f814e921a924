package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

type wresult struct {
	Name, Desc, Axis      string
	Backing               string
	Entries, Bytes, Upper int64
	Restore, Export       map[string]stats
	Strace                map[string]syscallCount `json:",omitempty"`
}

type report struct {
	Quick              bool
	Seed               uint64
	Runs               int
	Date               string
	Commit             string
	Versions           []kv
	Machine            []kv
	LoadStart, LoadEnd string
	Plot               string
	Nice               int
	Workloads          []wresult
	Hook               *hookResult     `json:",omitempty"`
	Lower              *lowerResult    `json:",omitempty"`
	Startup            *startupResult  `json:",omitempty"`
	Persist            *persistResult  `json:",omitempty"`
	Chain              *chainResult    `json:",omitempty"`
	Registry           *registryResult `json:",omitempty"`
	// Rows: how long each row took; Elapsed: the whole run; Failed: the
	// error that stopped an incomplete run (rows.go).
	Rows    []kv   `json:",omitempty"`
	Elapsed string `json:",omitempty"`
	Failed  string `json:",omitempty"`
}

var toolNames = map[string]string{
	"ocisnap":     "**ocisnap**",
	"ocisnap-oci": "ocisnap (oci-format snapshot)",
	"gnutar":      "GNU tar",
	"bsdtar":      "bsdtar",
	"cstorage":    "containers/storage",
	"cat":         "floor: `cat` >/dev/null",
	"cp":          "floor: `cp -a`",
	// Durable: each replaces its previous output, synced like the hook's.
	"ocisnap-durable": "**ocisnap, durable** (the hook's file sink)",
	"ocisnap-cli":     "ocisnap export -o FILE (CLI, durable)",
	"gnutar-durable":  "GNU tar, durable (`tar -cf T && sync -d T && mv T OUT && sync DIR`)",
	"bsdtar-durable":  "bsdtar, durable (likewise)",
}
var toolOrder = []string{"ocisnap", "ocisnap-oci", "gnutar", "bsdtar", "cstorage", "cat", "cp",
	"ocisnap-durable", "ocisnap-cli", "gnutar-durable", "bsdtar-durable"}

func secs(d time.Duration) string {
	switch s := d.Seconds(); {
	case s >= 10:
		return fmt.Sprintf("%.1f s", s)
	case s >= 1:
		return fmt.Sprintf("%.2f s", s)
	default:
		return fmt.Sprintf("%.0f ms", s*1000)
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// speedup is how many times faster a is than b.
func speedup(a, b stats) float64 {
	if a.Median == 0 {
		return 0
	}
	return b.Median.Seconds() / a.Median.Seconds()
}

type target struct {
	what     string
	got      float64
	want     float64
	unit     string
	lessIsOK bool
}

func (t target) ok() bool {
	if t.lessIsOK {
		return t.got <= t.want
	}
	return t.got >= t.want
}

func (r *report) targets() []target {
	var ts []target
	want := map[string][2]float64{"small": {1.5, 1.5}, "tiny": {1.5, 1.5}, "large": {1.2, 1.3}}
	for _, w := range r.Workloads {
		wt, ok := want[w.Name]
		if !ok {
			continue
		}
		o, t, c := w.Restore["ocisnap"], w.Restore["gnutar"], w.Restore["cstorage"]
		if o.Runs == 0 {
			continue
		}
		ts = append(ts, target{what: "restore " + w.Name + ": faster than GNU tar", got: speedup(o, t), want: wt[0], unit: "×"})
		if c.Runs > 0 {
			ts = append(ts, target{what: "restore " + w.Name + ": ahead of containers/storage", got: speedup(o, c), want: 1.0, unit: "×"})
		}
		ts = append(ts, target{what: "export " + w.Name + ": faster than GNU tar", got: speedup(w.Export["ocisnap"], w.Export["gnutar"]), want: wt[1], unit: "×"})
		if d, t := w.Export["ocisnap-durable"], w.Export["gnutar-durable"]; d.Runs > 0 && t.Runs > 0 {
			dw := map[string]float64{"small": 1.3, "tiny": 1.3, "large": 1.2}[w.Name]
			ts = append(ts, target{what: "durable export " + w.Name + " (" + shortBacking(w.Backing) + "): faster than GNU tar, durable", got: speedup(d, t), want: dw, unit: "×"})
		}
		rss := max(o.MaxRSS, w.Export["ocisnap"].MaxRSS)
		ts = append(ts, target{what: "peak RSS " + w.Name, got: float64(rss) / (1 << 20), want: 64, unit: " MiB", lessIsOK: true})
	}
	// Linear scaling: time per entry at 100k over time per entry at 1k.
	var per1k, per100k [2]float64
	for _, w := range r.Workloads {
		for i, m := range []map[string]stats{w.Restore, w.Export} {
			per := m["ocisnap"].Median.Seconds() / float64(w.Entries)
			switch w.Name {
			case "entries-1k":
				per1k[i] = per
			case "tiny":
				per100k[i] = per
			}
		}
	}
	for i, op := range []string{"restore", "export"} {
		if per1k[i] > 0 && per100k[i] > 0 {
			ts = append(ts, target{what: op + ": time/entry at 100k ÷ at 1k (flat: ≤ 1.2)", got: per100k[i] / per1k[i], want: 1.2, unit: "", lessIsOK: true})
		}
	}
	ts = append(ts, r.persistTargets()...)
	return append(ts, r.registryTargets()...)
}

// shortBacking is "tmpfs" or "disk" of a workload's backing description.
func shortBacking(s string) string {
	if i := strings.IndexByte(s, ' '); i > 0 {
		return s[:i]
	}
	return s
}

func (r *report) markdown(notesFile string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	if r.Quick {
		p("# ocisnap bench-quick\n\n")
	} else {
		p("# ocisnap benchmark results\n\n")
		p("Generated by `make bench` (tests/bench/cmd/ocisnap-bench); do not edit by hand — the analysis at the end comes from tests/bench/notes.md.\n\n")
	}
	p("%s", r.failedBanner())
	p("| machine | |\n|---|---|\n")
	for _, m := range r.Machine {
		p("| %s | %s |\n", m.K, strings.ReplaceAll(m.V, "|", "\\|"))
	}
	for _, v := range r.Versions {
		p("| %s | %s |\n", v.K, v.V)
	}
	p("| run | %s, seed %d, median of %d runs per tool after a warm-up round, tools interleaved in a new seeded random order each round, each at nice %d; load average %s at the start, %s at the end |\n\n",
		r.Date, r.Seed, r.Runs, r.Nice, r.LoadStart, r.LoadEnd)
	p("%s", r.runSummary())

	if !r.Quick {
		p("## Method\n\n")
		p("- Each workload gets a fresh ext4 filesystem (sparse image, `mount -o loop`). The image (overlay lower) is generated from the seed; the container's changes are made through a real overlay mount, so the upper holds real whiteouts (char 0/0) and opaque directories.\n")
		p("- **Restore**: each run mounts a fresh overlay (new upper) over the image and applies the snapshot to the merged rootfs. ocisnap applies its own overlay-format snapshot (`layer.Write` of the upper, the default format); GNU tar, bsdtar and containers/storage (`archive.ApplyLayer`) get the same layer in OCI format, since overlayfs refuses `mknod` of a char 0/0 whiteout: GNU tar and bsdtar then create the `.wh.` marker files instead of deleting (less work than a restore), containers/storage deletes like ocisnap.\n")
		p("- **Export**: each tool writes the upper to a tar file on the same filesystem (no fsync: the hook's atomic export adds one fsync of the file and one of the directory). ocisnap: `layer.Write` (overlay format, with the lower dirs as the hook passes them); GNU tar `tar --xattrs -cf` (POSIX format); bsdtar `--xattrs -cf`; containers/storage `archive.TarWithOptions` with `OverlayWhiteoutFormat` (what `podman commit` runs before compressing).\n")
		p("- **Durable export** (rows marked durable): each tool replaces its own previous output at every run, as the hook does at every stop, and makes it durable: ocisnap through the hook's file sink (`snapdrv export -durable`: pkg/location, a temporary file beside the output, fsync, rename over it, fsync of the directory) and `ocisnap export --upper U -o FILE`; GNU tar and bsdtar as `tar -cf T && sync -d T && mv T OUT && sync DIR` (fdatasync of the file, fsync of the directory). The backing of the loop image (tmpfs, or the disk through a fully written image) is named under each workload: on tmpfs the syncs cost the CPU work of writeback, on the disk also the device's.\n")
		p("- **Floors**: `cat` of the snapshot (restore) or of the upper's files (export) to /dev/null, and `cp -a` of the same tree into the same kind of target.\n")
		p("- Every tool runs as a child process: wall time from fork to exit (including each tool's own start-up), CPU = user+sys, peak RSS = `ru_maxrss` from wait4. `sync` (untimed) before each run. Page cache warm (the warm-up round reads everything once), so these are CPU and filesystem costs, not disk reads.\n")
		p("- ocisnap is `tests/bench/cmd/snapdrv`: `layer.Apply` / `layer.Write` with the hook's defaults; its restore is checked against the container's merged view after the warm-up round.\n\n")
	}

	if ts := r.targets(); len(ts) > 0 {
		p("## Targets\n\n| target | measured | want | |\n|---|---|---|---|\n")
		for _, t := range ts {
			cmp := "≥"
			if t.lessIsOK {
				cmp = "≤"
			}
			mark := "✅"
			if !t.ok() {
				mark = "❌"
			}
			p("| %s | %.2f%s | %s %.1f%s | %s |\n", t.what, t.got, t.unit, cmp, t.want, t.unit, mark)
		}
		p("\n")
	}

	for _, w := range r.Workloads {
		p("## %s — %s\n\n", w.Name, w.Desc)
		p("Snapshot: %d entries, %s of file content; upper: %s; loop image on %s.\n\n", w.Entries, mib(w.Bytes), mib(w.Upper), w.Backing)
		for _, op := range []struct {
			name string
			m    map[string]stats
		}{{"restore", w.Restore}, {"export", w.Export}} {
			if len(op.m) == 0 {
				continue
			}
			p("**%s**\n\n", op.name)
			if _, ok := op.m["gnutar-durable"]; ok {
				p("Durable rows (each replacing its previous output, synced) are compared with GNU tar made durable; the others with plain GNU tar (no sync: the CPU view).\n\n")
			}
			p("| tool | median | min – max | vs GNU tar | × cat floor | × cp floor | µs/entry | CPU | peak RSS |\n|---|---|---|---|---|---|---|---|---|\n")
			tar, cat, cp := op.m["gnutar"], op.m["cat"], op.m["cp"]
			order := toolOrder
			for _, v := range variants {
				order = append(order, "ocisnap["+v.K+"]", "ocisnap-durable["+v.K+"]")
			}
			for _, k := range order {
				s, ok := op.m[k]
				if !ok {
					continue
				}
				ratio := func(floor stats) string {
					if floor.Runs == 0 {
						return ""
					}
					return fmt.Sprintf("%.2f", s.Median.Seconds()/floor.Median.Seconds())
				}
				// A durable row is compared with GNU tar made durable.
				ref, refKey := tar, "gnutar"
				if d, ok := op.m["gnutar-durable"]; ok && (strings.Contains(k, "durable") || k == "ocisnap-cli") {
					ref, refKey = d, "gnutar-durable"
				}
				vsTar := ""
				if ref.Runs > 0 && k != refKey {
					vsTar = fmt.Sprintf("%.2f× faster", speedup(s, ref))
					if speedup(s, ref) < 1 {
						vsTar = fmt.Sprintf("%.2f× slower", 1/speedup(s, ref))
					}
				}
				name := toolNames[k]
				if name == "" {
					name = k
				}
				p("| %s | %s | %s – %s | %s | %s | %s | %.1f | %s | %s |\n", name, secs(s.Median), secs(s.Min), secs(s.Max),
					vsTar, ratio(cat), ratio(cp), s.Median.Seconds()*1e6/float64(max(w.Entries, 1)), secs(s.CPU), mib(s.MaxRSS))
			}
			p("\n")
		}
	}

	if !r.Quick {
		r.scalingSection(p)
	}
	if h := r.Hook; h != nil {
		p("## Hook overhead (no ocisnap annotation)\n\n")
		p("`ocisnap-hook %s STAGE` with an OCI state on stdin whose annotations ask nothing of ocisnap (what runs for every other container on a node), %d runs each, interleaved with `/bin/true` (the cost of fork+exec alone).\n\n", strings.Join(h.Args, " "), h.Create.Runs)
		p("| | median | min – max | peak RSS |\n|---|---|---|---|\n")
		for _, x := range []struct {
			n string
			s stats
		}{{"`/bin/true`", h.Baseline}, {"hook createRuntime", h.Create}, {"hook poststop", h.Poststop}} {
			p("| %s | %.2f ms | %.2f – %.2f ms | %s |\n", x.n, x.s.Median.Seconds()*1e3, x.s.Min.Seconds()*1e3, x.s.Max.Seconds()*1e3, mib(x.s.MaxRSS))
		}
		p("\n")
		if h.Size > 0 {
			p("Hook binary: %s; its Go package initialisation (GODEBUG=inittrace=1, one run): %s.", mib(h.Size), h.Init)
			if h.EngineSize > 0 {
				p(" The engine it execs when a container asks something: %s.", mib(h.EngineSize))
			}
			p("\n\n")
		}
	}
	if s := r.Startup; s != nil {
		p("## Start-up cost of a restore\n\n%s; %d runs each, interleaved; `podman run` to the container's exit, its removal (`podman rm`) after each run, untimed.\n\n", s.Desc, s.Apply.Runs)
		p("| | median | min – max |\n|---|---|---|\n")
		for _, x := range []struct {
			n string
			s stats
		}{{"`podman run` restoring the snapshot (the hook at createRuntime)", s.WithRestore}, {"`podman run` without a restore", s.NoRestore}, {"`ocisnap apply` of the snapshot alone", s.Apply}} {
			p("| %s | %s | %s – %s |\n", x.n, secs(x.s.Median), secs(x.s.Min), secs(x.s.Max))
		}
		p("\nA restore adds %s to the start (difference of the medians), %.0f ms more than `ocisnap apply` alone. That difference is not only the hook's (exec, state, config, policy, record): it also holds what podman and the kernel do with the restored files around the container (e.g. the overlay's unmount syncing their dirty pages at the exit of `true`), which `ocisnap apply`'s run does not time; the notes give the hook's own time, measured inside podman.\n\n",
			secs(s.RestoreAdds), s.HookOverhead.Seconds()*1e3)
	}
	r.persistSection(p)
	if l := r.Lower; l != nil {
		p("## Export reads only the upper\n\n%s. The same upper exported with the image as its lower and with an empty lower, %d runs each, interleaved.\n\n", l.Desc, l.WithImage.Runs)
		p("| lower | median | min – max |\n|---|---|---|\n")
		p("| %s image | %s | %s – %s |\n", mib(l.ImageBytes), secs(l.WithImage.Median), secs(l.WithImage.Min), secs(l.WithImage.Max))
		p("| empty | %s | %s – %s |\n\n", secs(l.EmptyLower.Median), secs(l.EmptyLower.Min), secs(l.EmptyLower.Max))
	}
	r.registrySection(p)
	var withStrace []wresult
	for _, w := range r.Workloads {
		if len(w.Strace) > 0 {
			withStrace = append(withStrace, w)
		}
	}
	if len(withStrace) > 0 {
		p("## System calls per entry (`strace -f -c`, one untimed run)\n\n| workload | run | calls | per entry | most frequent |\n|---|---|---|---|---|\n")
		for _, w := range withStrace {
			for _, k := range []string{"restore/ocisnap", "restore/gnutar", "export/ocisnap", "export/gnutar"} {
				sc, ok := w.Strace[k]
				if !ok {
					continue
				}
				p("| %s | %s | %d | %.2f | %s |\n", w.Name, strings.Replace(k, "/gnutar", "/GNU tar", 1), sc.Calls, float64(sc.Calls)/float64(max(w.Entries, 1)), strings.Join(sc.Top, ", "))
			}
		}
		p("\n")
	}
	if notesFile != "" {
		if data, err := os.ReadFile(notesFile); err == nil {
			b.Write(data)
		}
	}
	return b.String()
}

func (r *report) scalingSection(p func(string, ...any)) {
	var pts []wresult
	for _, w := range r.Workloads {
		if w.Axis != "" {
			pts = append(pts, w)
		}
	}
	if len(pts) == 0 {
		return
	}
	p("## Scaling\n\n![time vs entries and bytes](%s)\n\n", r.Plot)
	p("| point | entries | content | restore µs/entry: ocisnap | GNU tar | bsdtar | c/storage | export µs/entry: ocisnap | GNU tar | bsdtar | c/storage |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, axis := range []string{"entries", "bytes"} {
		for _, w := range pts {
			if w.Axis != axis {
				continue
			}
			p("| %s | %d | %s |", w.Name, w.Entries, mib(w.Bytes))
			for _, m := range []map[string]stats{w.Restore, w.Export} {
				for _, k := range []string{"ocisnap", "gnutar", "bsdtar", "cstorage"} {
					p(" %.1f |", m[k].Median.Seconds()*1e6/float64(max(w.Entries, 1)))
				}
			}
			p("\n")
		}
	}
	p("\n")
}

// checkQuick returns the bench-quick failures: ocisnap's best run slower
// than maxRatio times GNU tar's best run (restore, export, and the durable
// export against GNU tar made equally durable), or over the RSS bound.
func (r *report) checkQuick(maxRatio float64, maxRSS int64) []string {
	var fails []string
	for _, w := range r.Workloads {
		for _, op := range []struct {
			name string
			m    map[string]stats
		}{{"restore", w.Restore}, {"export", w.Export}} {
			for _, pair := range [][2]string{{"ocisnap", "gnutar"}, {"ocisnap-durable", "gnutar-durable"}} {
				if op.name == "restore" && pair[0] != "ocisnap" {
					continue
				}
				fails = append(fails, checkPair(op.name, w, op.m[pair[0]], op.m[pair[1]], pair[0] != "ocisnap", maxRatio, maxRSS)...)
			}
		}
	}
	return fails
}

// checkPair is checkQuick's test of one pair: ocisnap's run (o) against
// GNU tar's (t), plain or durable.
func checkPair(opName string, w wresult, o, t stats, durable bool, maxRatio float64, maxRSS int64) []string {
	name := opName
	if durable {
		name = "durable " + opName
	}
	where := w.Name + " (" + shortBacking(w.Backing) + ")"
	if o.Runs == 0 || t.Runs == 0 {
		return []string{fmt.Sprintf("%s %s: no measurement", name, where)}
	}
	var fails []string
	// The best run of each: the one a loaded machine disturbed least (a
	// 2-core CI runner is rarely quiet for long).
	if ratio := o.Min.Seconds() / t.Min.Seconds(); ratio > maxRatio {
		fails = append(fails, fmt.Sprintf("%s %s: ocisnap's best %s vs GNU tar's best %s: %.2f× GNU tar's time, limit %.2f×",
			name, where, secs(o.Min), secs(t.Min), ratio, maxRatio))
	}
	if o.MaxRSS > maxRSS {
		fails = append(fails, fmt.Sprintf("%s %s: ocisnap peak RSS %s over %s", name, where, mib(o.MaxRSS), mib(maxRSS)))
	}
	return fails
}
