package upperrec_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/upperrec"
)

// countWriter counts what an export writes.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)

// BenchmarkPersistDelta: an upper of 100,000 tiny files (the bench's tiny
// workload) of which 10 changed since the record: the layered export
// against a whole export of the same upper (docs/snapshot-format.md,
// "Layered snapshots"), and both against the floor, a bare stat walk
// (tests/bench/notes.md, "Persist"). Run with -bench PersistDelta
// -benchtime 3x.
func BenchmarkPersistDelta(b *testing.B) {
	upper := filepath.Join(b.TempDir(), "upper")
	for d := range 100 {
		dir := filepath.Join(upper, fmt.Sprintf("d%03d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range 1000 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d", f)), []byte("tiny"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	rec := filepath.Join(b.TempDir(), "rec")
	start := time.Now()
	if err := upperrec.Take(rec, upper, upperrec.Header{Base: "sha256:x", Layers: 1}, "", false); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "record-ms")
	for i := range 10 {
		if err := os.WriteFile(filepath.Join(upper, fmt.Sprintf("d%03d/f%04d", i*10, i)), []byte("changed"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	var fullT, deltaT, floorT time.Duration
	var fullN, deltaN int64
	for b.Loop() {
		t0 := time.Now()
		var full countWriter
		if _, err := layer.Write(ctx, &full, upper, layer.WithCompression(layer.CompressionZstd)); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		r, _, err := upperrec.Open(rec)
		if err != nil {
			b.Fatal(err)
		}
		var delta countWriter
		if _, err := layer.Write(ctx, &delta, upper, layer.WithDelta(upperrec.NewDelta(r, true)), layer.WithCompression(layer.CompressionZstd)); err != nil {
			b.Fatal(err)
		}
		r.Close()
		t2 := time.Now()
		if err := statWalk(upper); err != nil {
			b.Fatal(err)
		}
		fullT, deltaT, floorT = fullT+t1.Sub(t0), deltaT+t2.Sub(t1), floorT+time.Since(t2)
		fullN, deltaN = full.n, delta.n
	}
	b.ReportMetric(float64(fullT)/float64(deltaT), "full/delta-time")
	b.ReportMetric(float64(fullT)/float64(floorT), "full/floor-time")
	b.ReportMetric(float64(deltaT)/float64(floorT), "delta/floor-time")
	b.ReportMetric(100*float64(deltaN)/float64(fullN), "delta-%bytes")
	b.ReportMetric(float64(deltaN), "delta-bytes")
}

// statWalk is the floor of a delta export: every directory read once and
// every entry stat'ed once, nothing else.
func statWalk(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	names, err := readNames(fd)
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := statWalk(dir + "/" + n); err != nil {
				return err
			}
		}
	}
	return nil
}

func readNames(fd int) ([]string, error) {
	buf := make([]byte, 64<<10)
	var names []string
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil || n <= 0 {
			return names, err
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}
