package hooks

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/policy"
)

// TestWriteSnapshot: WriteSnapshot takes the Pending its caller created,
// commits a complete snapshot (the same bytes into a file and a stream),
// and aborts on failure: the previous snapshot stays whole, no temporary
// file remains, and the Pending is aborted.
func TestWriteSnapshot(t *testing.T) {
	upper := t.TempDir()
	if err := os.MkdirAll(filepath.Join(upper, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(upper, "etc/app.conf"), []byte("conf\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	allow := t.TempDir()
	dest := filepath.Join(allow, "snap.tar")
	if err := os.WriteFile(dest, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	sink, err := location.ParseSink(dest, &policy.Policy{AllowDirs: []string{allow}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	t.Run("failure aborts", func(t *testing.T) {
		p, err := sink.Create(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteSnapshot(ctx, p, filepath.Join(upper, "missing")); err == nil {
			t.Fatal("a missing upper was exported")
		}
		if err := p.Commit(); !errors.Is(err, location.ErrAborted) {
			t.Errorf("Commit after a failed WriteSnapshot = %v, want ErrAborted", err)
		}
		if b, _ := os.ReadFile(dest); string(b) != "old" {
			t.Errorf("previous snapshot changed: %q", b)
		}
		if ents, _ := os.ReadDir(allow); len(ents) != 1 {
			t.Errorf("directory holds %v, want the old snapshot only", ents)
		}
	})

	var file []byte
	t.Run("file", func(t *testing.T) {
		p, err := sink.Create(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteSnapshot(ctx, p, upper); err != nil {
			t.Fatal(err)
		}
		if err := p.Commit(); err != nil {
			t.Errorf("Commit after WriteSnapshot committed: %v", err)
		}
		file, _ = os.ReadFile(dest)
		if got, want := tarNames(t, bytes.NewReader(file)), []string{"./", "./etc/", "./etc/app.conf"}; !slices.Equal(got, want) {
			t.Errorf("snapshot holds %v, want %v", got, want)
		}
	})
	t.Run("stream", func(t *testing.T) {
		var out bytes.Buffer
		p, err := location.NewStreamSink(&out, "stdout").Create(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteSnapshot(ctx, p, upper); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), file) {
			t.Errorf("stream holds %d bytes, the file %d: not the same snapshot", out.Len(), len(file))
		}
	})
}
