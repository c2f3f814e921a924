package hooks

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/policy"
)

// TestApplyOpts: the policy's limits and device rule reach layer.Apply
// through the one option builder the hook and `ocisnap apply` share.
func TestApplyOpts(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range []string{"./a", "./b"} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 3}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte("abc")); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		p     policy.Policy
		limit bool
	}{
		{"no limits", policy.Policy{}, false},
		{"entries", policy.Policy{MaxEntries: 1}, true},
		{"bytes", policy.Policy{MaxBytes: 5}, true},
		{"within both", policy.Policy{MaxEntries: 2, MaxBytes: 6}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, err := os.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			_, err = layer.Apply(context.Background(), root, bytes.NewReader(buf.Bytes()), ApplyOpts(&tc.p, nil)...)
			if got := errors.Is(err, layer.ErrLimitExceeded); got != tc.limit {
				t.Fatalf("Apply: %v, want limit exceeded %v", err, tc.limit)
			}
		})
	}
}
