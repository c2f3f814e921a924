//go:build registrybench

package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// TestRegistryBench measures restore from and export to the registry
// fixture on loopback against the local-file equivalents and the two-step
// way users script today (skopeo copy to a layout, then tar -x of the
// layer). Built only with -tags registrybench (`make bench-registry`), so
// `make test` neither runs nor skips it; OCISNAP_REGISTRY_BENCH=1 as well;
// OCISNAP_REGISTRY_BENCH_OUT=FILE appends the Markdown rows there;
// OCISNAP_REGISTRY_BENCH_LARGE=1 adds the 2 GiB peak-RSS rows.
func TestRegistryBench(t *testing.T) {
	if os.Getenv("OCISNAP_REGISTRY_BENCH") != "1" {
		t.Skip("set OCISNAP_REGISTRY_BENCH=1 (make bench-registry)")
	}
	testutil.RequireTools(t, "skopeo", "bsdtar", "/usr/bin/time")
	r := startRegistry(t)
	work, err := os.MkdirTemp("/var/tmp", "ocisnap-regbench-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(work) })
	runs := 5
	if n, err := strconv.Atoi(os.Getenv("OCISNAP_REGISTRY_BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	var rows []string
	row := func(name string, a, b time.Duration, what string) {
		rows = append(rows, fmt.Sprintf("| %s | %.3f s | %.3f s | %.2f× | %s |", name, a.Seconds(), b.Seconds(), a.Seconds()/b.Seconds(), what))
		t.Log(rows[len(rows)-1])
	}

	// The "small" workload of the main bench: 20,000 files of 1–16 KiB in
	// 1,000 directories.
	upper := filepath.Join(work, "upper")
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 16384)
	for d := range 1000 {
		dir := filepath.Join(upper, fmt.Sprintf("d%03d", d))
		must(t, os.MkdirAll(dir, 0o755))
		for f := range 20 {
			n := 1024 + rng.IntN(16384-1024)
			for i := range buf[:n] {
				buf[i] = byte(rng.IntN(64)) // compressible, like text
			}
			must(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d", f)), buf[:n], 0o644))
		}
	}
	cli := func(args ...string) {
		t.Helper()
		if out, err := r.cli(t, args...); err != nil {
			t.Fatalf("ocisnap %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ref := "docker://" + r.Host + "/snaps/bench:small"
	local := filepath.Join(work, "small.tar.zst")
	cli("export", "--upper", upper, "--compression", "zstd", "-o", local)
	cli("export", "--upper", upper, "-o", ref)

	target := func() string {
		d, err := os.MkdirTemp(work, "t")
		must(t, err)
		return d
	}
	clean := func() {
		ents, _ := os.ReadDir(work)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "t") || strings.HasPrefix(e.Name(), "lay") {
				os.RemoveAll(filepath.Join(work, e.Name()))
			}
		}
	}
	creds := []string{"--src-authfile", r.AuthFile, "--src-cert-dir", filepath.Join(r.CertsDir, r.Host)}
	var fromReg, fromFile, twoStep, pushExp, fileExp []time.Duration
	for i := range runs {
		fromReg = append(fromReg, timed(t, func() { cli("apply", ref, target()) }))
		fromFile = append(fromFile, timed(t, func() { cli("apply", local, target()) }))
		twoStep = append(twoStep, timed(t, func() {
			lay := filepath.Join(work, fmt.Sprintf("lay%d", i))
			r.skopeo(t, append(append([]string{"copy", "-q"}, creds...), ref, "oci:"+lay+":x")...)
			blobs, _ := filepath.Glob(filepath.Join(lay, "blobs/sha256/*"))
			var biggest string
			var size int64
			for _, b := range blobs {
				if fi, err := os.Stat(b); err == nil && fi.Size() > size {
					biggest, size = b, fi.Size()
				}
			}
			if out, err := exec.Command("bsdtar", "-xpf", biggest, "-C", target()).CombinedOutput(); err != nil {
				t.Fatalf("bsdtar: %v\n%s", err, out)
			}
		}))
		pushExp = append(pushExp, timed(t, func() { cli("export", "--upper", upper, "-o", ref) }))
		fileExp = append(fileExp, timed(t, func() {
			cli("export", "--upper", upper, "--compression", "zstd", "-o", filepath.Join(work, "t-exp.tar.zst"))
		}))
		clean()
	}
	row("restore small (zstd): registry vs local file", median(fromReg), median(fromFile), "target ≤ 1.3×")
	row("restore small (zstd): registry vs skopeo copy + bsdtar -x", median(fromReg), median(twoStep), "target ≤ 0.67× (1.5× faster)")
	row("export small (zstd): export + push vs local export", median(pushExp), median(fileExp), "target ≤ 1.5×")

	if os.Getenv("OCISNAP_REGISTRY_BENCH_LARGE") == "1" {
		big := filepath.Join(work, "bigupper")
		must(t, os.MkdirAll(big, 0o755))
		out, err := exec.Command("dd", "if=/dev/urandom", "of="+filepath.Join(big, "blob"), "bs=1M", "count=2048").CombinedOutput()
		if err != nil {
			t.Fatalf("dd: %v\n%s", err, out)
		}
		bref := "docker://" + r.Host + "/snaps/bench:large"
		pushRSS := peakRSS(t, r, "export", "--upper", big, "-o", bref)
		pullRSS := peakRSS(t, r, "apply", bref, target())
		rows = append(rows, fmt.Sprintf("| peak RSS, 2 GiB snapshot: export + push / restore from registry | %d MiB | %d MiB | | target ≤ 64 MiB |", pushRSS>>10, pullRSS>>10))
		t.Log(rows[len(rows)-1])
	}
	if out := os.Getenv("OCISNAP_REGISTRY_BENCH_OUT"); out != "" {
		f, err := os.OpenFile(out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		must(t, err)
		fmt.Fprintf(f, "\n%s, %d runs, median (ocisnap CLI, registry on 127.0.0.1 with TLS + htpasswd)\n\n", time.Now().UTC().Format("2006-01-02"), runs)
		fmt.Fprintln(f, "| case | A | B | A/B | |\n|---|---|---|---|---|")
		fmt.Fprintln(f, strings.Join(rows, "\n"))
		f.Close()
	}
}

func timed(t *testing.T, f func()) time.Duration {
	t.Helper()
	start := time.Now()
	f()
	return time.Since(start)
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// peakRSS runs the CLI under GNU time and returns its peak RSS in KiB.
func peakRSS(t *testing.T, r *testRegistry, args ...string) int64 {
	t.Helper()
	full := append([]string{"-f", "%M", cliBin, "--registry-auth-file", r.AuthFile, "--registry-certs-dir", r.CertsDir}, args...)
	out, err := exec.Command("/usr/bin/time", full...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	kib, err := strconv.ParseInt(lines[len(lines)-1], 10, 64)
	must(t, err)
	return kib
}
