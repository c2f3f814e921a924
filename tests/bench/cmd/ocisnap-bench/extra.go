package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// hookResult is the hook's own cost for a container that asks nothing of
// ocisnap: it runs for every container on a node.
type hookResult struct {
	Args      []string
	Baseline  stats // /bin/true with the same stdin: fork+exec
	Create    stats // createRuntime
	Poststop  stats // poststop
	StateJSON string
	Size      int64 // the hook binary's size (the gate every container runs)
	// EngineSize is the size of ocisnap-hook-engine beside it, which the
	// gate execs when a container asks something (0: none there).
	EngineSize int64
	Init       string // its package initialisation (GODEBUG=inittrace=1), summed
}

func (b *bench) hookOverhead() (*hookResult, error) {
	dir, err := os.MkdirTemp(b.workdir, "hook")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	state := func(status string) string {
		return `{"ociVersion":"1.2.0","id":"ocisnap-bench-hook","status":"` + status + `","pid":1,` +
			`"bundle":"/nonexistent","annotations":{"io.kubernetes.cri.container-name":"app",` +
			`"io.kubernetes.pod.namespace":"default","org.example.unrelated":"x"}}`
	}
	create, stop := filepath.Join(dir, "create.json"), filepath.Join(dir, "stop.json")
	if err := os.WriteFile(create, []byte(state("creating")), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(stop, []byte(state("stopped")), 0o644); err != nil {
		return nil, err
	}
	args := []string{b.hook, "--allow-dir", "/var/lib/ocisnap"}
	type run struct {
		argv  []string
		stdin string
	}
	runs := []run{
		{[]string{"/bin/true"}, create},
		{append(slicesClone(args), "createRuntime"), create},
		{append(slicesClone(args), "poststop"), stop},
	}
	samples := make([][]sample, len(runs))
	n := max(30, 6*b.runs)
	for r := 0; r <= n; r++ {
		for _, j := range b.order(r, len(runs)) {
			s, err := measure(runs[j].argv, dir, runs[j].stdin)
			if err != nil {
				return nil, err
			}
			if r > 0 {
				samples[j] = append(samples[j], s)
			}
		}
	}
	b.logf("hook overhead: %d runs", n)
	h := &hookResult{Args: args[1:], Baseline: summarize(samples[0]), Create: summarize(samples[1]),
		Poststop: summarize(samples[2]), StateJSON: state("creating")}
	if fi, err := os.Stat(b.hook); err == nil {
		h.Size = fi.Size()
	}
	if fi, err := os.Stat(filepath.Join(filepath.Dir(b.hook), "ocisnap-hook-engine")); err == nil {
		h.EngineSize = fi.Size()
	}
	h.Init = initTrace(append(slicesClone(args), "createRuntime"), create)
	return h, nil
}

// initTrace runs argv once with GODEBUG=inittrace=1 and sums what the Go
// runtime reports of its package initialisers: how many, their clock
// time, bytes and allocations, and the costliest three.
func initTrace(argv []string, stdin string) string {
	in, err := os.Open(stdin)
	if err != nil {
		return "?"
	}
	defer in.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = in
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Run() // its exit status is the hook's business; the trace is what counts
	type pkg struct {
		name  string
		clock float64
	}
	var pkgs []pkg
	var clock, bytes, allocs float64
	for _, l := range strings.Split(stderr.String(), "\n") {
		// init internal/bytealg @0.008 ms, 0 ms clock, 0 bytes, 0 allocs
		var name string
		var at, c, by, al float64
		if n, _ := fmt.Sscanf(l, "init %s @%f ms, %f ms clock, %f bytes, %f allocs", &name, &at, &c, &by, &al); n == 5 {
			pkgs = append(pkgs, pkg{name, c})
			clock += c
			bytes += by
			allocs += al
		}
	}
	if len(pkgs) == 0 {
		return "?"
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].clock > pkgs[j].clock })
	var top []string
	for i := 0; i < len(pkgs) && i < 3; i++ {
		top = append(top, fmt.Sprintf("%s %.2f ms", pkgs[i].name, pkgs[i].clock))
	}
	return fmt.Sprintf("%d package initialisers, %.2f ms clock, %.0f KiB in %.0f allocations; costliest: %s",
		len(pkgs), clock, bytes/1024, allocs, strings.Join(top, ", "))
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// lowerResult: the export of a small upper over a large image and over an
// empty one must take the same time (export reads only the upper).
type lowerResult struct {
	Desc       string
	UpperBytes int64
	ImageBytes int64
	WithImage  stats
	EmptyLower stats
}

func (b *bench) lowerIndependence() (*lowerResult, error) {
	w := lowerWorkload("export-lower", 2<<30)
	e, err := b.prepare(w, false)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	empty := filepath.Join(e.fs.dir, "empty")
	if err := mkdirs(empty); err != nil {
		return nil, err
	}
	img, _, err := duBytes(e.image)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(e.fs.dir, "out.tar")
	lowers := []string{e.image, empty}
	samples := make([][]sample, 2)
	n := 2*b.runs + 1
	for r := 0; r <= n; r++ {
		for i := range lowers {
			j := (i + r) % 2
			unix.Sync()
			s, err := measure([]string{b.snapdrv, "export", "-lower", lowers[j], e.srcUpper, out}, e.fs.dir, "")
			os.Remove(out)
			if err != nil {
				return nil, err
			}
			if r > 0 {
				samples[j] = append(samples[j], s)
			}
		}
	}
	b.logf("export-lower: %d runs", n)
	return &lowerResult{Desc: w.desc, UpperBytes: w.upper, ImageBytes: img,
		WithImage: summarize(samples[0]), EmptyLower: summarize(samples[1])}, nil
}

func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		if fi, err := os.Stat(name); err != nil || fi.IsDir() {
			return "", fmt.Errorf("%s: not found", name)
		}
		return name, nil
	}
	return exec.LookPath(name)
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func cmdOut(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

type kv struct{ K, V string }

func describeMachine(workdir string) []kv {
	cpu := "?"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	mem := "?"
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.SplitN(string(data), "\n", 2)[0], "MemTotal: %d kB", &kb)
		mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	src := cmdOut("findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", workdir)
	disk := src
	if f := strings.Fields(src); len(f) > 0 {
		dev := filepath.Base(f[0])
		rot := "?"
		if data, err := os.ReadFile("/sys/block/" + dev + "/queue/rotational"); err == nil {
			rot = map[string]string{"0": "non-rotational", "1": "rotational"}[strings.TrimSpace(string(data))]
		}
		model := ""
		if data, err := os.ReadFile("/sys/block/" + dev + "/device/model"); err == nil {
			model = " " + strings.TrimSpace(string(data))
		}
		disk = fmt.Sprintf("%s (%s%s), holding %s", src, rot, model, workdir)
	}
	return []kv{
		{"nproc", cmdOut("nproc")},
		{"CPU", cpu},
		{"memory", mem},
		{"kernel (uname -r)", cmdOut("uname", "-r")},
		{"disk", disk},
		{"benchmark filesystem", "fresh ext4 (mkfs.ext4 -i 8192 -E lazy_itable_init=0,lazy_journal_init=0), one per workload: in a sparse image on tmpfs (mount -o loop), or on the disk in an image written in full (-full-images) through a direct-I/O loop device; each workload says which"},
		{"Go", runtime.Version()},
		{"GNU tar", cmdOut("tar", "--version")},
		{"bsdtar", cmdOut("bsdtar", "--version")},
		{"cp", cmdOut("cp", "--version")},
	}
}
