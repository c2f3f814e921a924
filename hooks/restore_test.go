package hooks

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/policy"
)

// TestApplyOpts: the policy's limits and device rule reach layer.Apply
// through the one option builder the hook and `ocisnap apply` share.
func TestApplyOpts(t *testing.T) {
	snap := testutil.Tar(t, testutil.File("./a", "abc"), testutil.File("./b", "abc"))
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
			_, err = layer.Apply(context.Background(), root, bytes.NewReader(snap), ApplyOpts(&tc.p, nil)...)
			if got := errors.Is(err, layer.ErrLimitExceeded); got != tc.limit {
				t.Fatalf("Apply: %v, want limit exceeded %v", err, tc.limit)
			}
		})
	}
}
