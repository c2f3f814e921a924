package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/ocistate"
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

// TestRestoreMissingSource: a restore source that does not exist is
// "snapshot "<abs path>" does not exist", never "no such file or
// directory" (which Podman reports as a command not found, exit 127) and
// never the relative path the lookup used; errors.Is(fs.ErrNotExist) still
// holds. A missing parent directory reads the same.
func TestRestoreMissingSource(t *testing.T) {
	allow := t.TempDir()
	cfg := Config{Policy: policy.Policy{AllowDirs: []string{allow}}}
	h := &hook{cfg: &cfg, log: slog.New(slog.DiscardHandler)}
	for _, ref := range []string{allow + "/x.tar", allow + "/sub/dir/x.tar", allow + "/./y.tar"} {
		c := &ocistate.Container{State: &specs.State{ID: "c1"}, Rootfs: t.TempDir()}
		err := h.restore(context.Background(), c, ref, StageCreateRuntime)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("restore %s: %v, want fs.ErrNotExist", ref, err)
		}
		var me *MissingError
		if !errors.As(err, &me) {
			t.Fatalf("restore %s: %v is no MissingError", ref, err)
		}
		want := fmt.Sprintf("snapshot %q does not exist", filepath.Clean(ref))
		if err.Error() != want {
			t.Errorf("restore %s: %q, want %q", ref, err, want)
		}
		if strings.Contains(err.Error(), "no such file") {
			t.Errorf("restore %s: %q says no such file", ref, err)
		}
	}
	// Any other error is left as it is.
	err := h.restore(context.Background(), &ocistate.Container{State: &specs.State{ID: "c1"}}, "/elsewhere/x.tar", StageCreateRuntime)
	var me *MissingError
	if err == nil || errors.As(err, &me) {
		t.Errorf("restore outside the allowed directories: %v", err)
	}
}

// TestMissingViewSource: a file: view source that does not exist reads
// "view source "<abs path>" does not exist"; an error about another path
// (a bind source inside the view, say) is left as it is.
func TestMissingViewSource(t *testing.T) {
	views := t.TempDir()
	p := policy.Policy{AllowDirs: []string{t.TempDir()}, ViewDirs: []string{views}}
	src := views + "/boot.erofs"
	_, err := p.OpenViewFile(src)
	err = missing("view source", src, err)
	if want := fmt.Sprintf("view source %q does not exist", src); err == nil || err.Error() != want || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v, want %q", err, want)
	}
	_, err = p.OpenViewFile(src)
	if got := missing("view source", views+"/other.erofs", err); got != err {
		t.Errorf("an error about another path was reworded: %v", got)
	}
}
