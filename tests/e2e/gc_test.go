package e2e

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/hooks"
	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/pkg/policy"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// TestGCKeepsPendingExport: gc of a container whose process died but that
// runc has not deleted releases its view, yet keeps its state so that the
// poststop run by the later `runc delete` still exports (nothing lost).
func TestGCKeepsPendingExport(t *testing.T) {
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	stateDir := t.TempDir()
	t.Cleanup(func() { unix.Unmount(filepath.Join(stateDir, "views"), unix.MNT_DETACH) })
	allow := snapshotDir(t)
	snap := filepath.Join(allow, "pending.tar")

	b := newBundle(t, img)
	b.spec.Annotations["io.ocisnap.view"] = "image"
	b.spec.Annotations["io.ocisnap.view-binds"] = "boot/vmlinuz:/run/vm/vmlinuz"
	b.spec.Annotations["io.ocisnap.export"] = snap
	b.spec.Hooks = viewHooks(stateDir, allow)
	b.spec.Process.Args = []string{"sh", "-c", "echo kept > /kept; exec sleep 1000"}
	b.writeSpec()
	runcCreateStart(t, b)
	sd := statefile.Dir{Path: stateDir}
	rec, err := sd.Read(b.id)
	must(t, err)
	if len(rec.Views) == 0 {
		t.Fatal("no view recorded")
	}
	for i := 0; i < 100; i++ { // let the container write its change first
		if _, err := os.Stat(filepath.Join(b.rootfs, "kept")); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	must(t, unix.Kill(rec.Pid, unix.SIGKILL))
	waitStopped(t, b)

	cfg := hooks.DefaultConfig()
	cfg.StateDir = stateDir
	cfg.Policy = policy.Policy{AllowDirs: []string{allow}}
	cfg.Logger = slog.New(slog.DiscardHandler)
	rep, err := hooks.GC(context.Background(), cfg)
	if err != nil {
		t.Fatalf("gc: %v", err)
	}
	if !sameSet(rep.Kept, []string{b.id}) || len(rep.Removed) != 0 {
		t.Fatalf("gc report %+v, want %s kept", rep, b.id)
	}
	rec, err = sd.Read(b.id)
	if err != nil || len(rec.Views) != 0 || rec.Export == nil {
		t.Fatalf("state after gc: %+v, %v; want the export kept and no views", rec, err)
	}
	if left := viewTraces(t, stateDir, b.id); len(left) != 1 || left[0] != "file: "+sd.File(b.id) {
		t.Errorf("view not released by gc: %v", left)
	}
	if out, err := b.runc("delete", b.id); err != nil {
		t.Fatalf("runc delete: %v\n%s", err, out)
	}
	names := readTarHeaders(t, snap)
	if names["./kept"] == nil {
		t.Errorf("the export after gc lacks the container's change")
	}
	if names["./run/vm/vmlinuz"] != nil || names["./run/vm/"] != nil {
		t.Errorf("the export holds the view's bind stub")
	}
	if _, err := os.Stat(sd.File(b.id)); err == nil {
		t.Errorf("state file left after poststop")
	}
}
