package upperrec_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

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
// "Layered snapshots"). Run with -bench PersistDelta -benchtime 3x.
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
	var fullT, deltaT time.Duration
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
		fullT, deltaT = fullT+t1.Sub(t0), deltaT+time.Since(t1)
		fullN, deltaN = full.n, delta.n
	}
	b.ReportMetric(float64(fullT)/float64(deltaT), "full/delta-time")
	b.ReportMetric(100*float64(deltaN)/float64(fullN), "delta-%bytes")
	b.ReportMetric(float64(deltaN), "delta-bytes")
}
