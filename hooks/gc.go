package hooks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/policy"
	"github.com/ocisnap/ocisnap/pkg/procstat"
	"github.com/ocisnap/ocisnap/pkg/runtimestate"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// GCReport is what GC did.
type GCReport struct {
	// Removed are the containers that no longer exist whose views were
	// released and whose state files were removed.
	Removed []string `json:"removed"`
	// Live are the containers whose process still runs: left alone.
	Live []string `json:"live"`
	// Kept are stopped containers the runtime has not deleted yet whose
	// views were released and whose state is kept for their export.
	Kept []string `json:"kept,omitempty"`
	// Temps are the stale temporary snapshot files removed from the
	// allowed directories.
	Temps []string `json:"temps"`
}

// GC cleans up after containers whose poststop never ran (the runtime
// crashed or was killed, the host lost the hook): for every state file in
// cfg.StateDir whose container process is gone, it releases the views
// (unmount, loop device, mountpoint stubs) and removes the state file. It
// does not export: an export needs the container's poststop. It also
// removes stale temporary files of interrupted exports from the allowed
// directories (cfg.Policy.AllowDirs).
//
// A container is alive when its recorded pid runs and started at the
// recorded time (procstat.Alive), so that a reused pid does not keep a
// dead container's view, nor a live container's view get released. A
// record without a start time is kept while its pid exists. A container
// whose process exited but that its runtime still knows (runc or crun
// state under runtimestate.Roots: stopped, not yet deleted) has its views
// released, but when it asked for an export its state file is kept (without
// the views) for the poststop still to come: nothing is lost.
//
// Errors do not stop GC: a container whose release fails keeps its state
// file for the next run, and all errors are returned joined.
func GC(ctx context.Context, cfg Config) (GCReport, error) {
	var rep GCReport
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	errs := gcRecords(ctx, &cfg, &rep)
	if err := ctx.Err(); err != nil {
		return rep, errors.Join(errs...)
	}
	for _, d := range cfg.Policy.AllowDirs {
		// A {namespace} template: every tenant's directory is below its prefix.
		temps, err := cleanTemps(ctx, policy.TemplatePrefix(d))
		rep.Temps = append(rep.Temps, temps...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
}

// gcRecords is GC's part on the state records.
func gcRecords(ctx context.Context, cfg *Config, rep *GCReport) []error {
	sd := statefile.Dir{Path: cfg.StateDir}
	// Wait for running poststops (they hold the lock shared), so that no
	// record is released under one.
	unlock, err := sd.Lock(ctx, true, true)
	if err != nil {
		return []error{fmt.Errorf("lock state directory: %w", err)}
	}
	defer unlock()
	recs, errs := sd.List()
	for _, rec := range recs {
		if err := ctx.Err(); err != nil {
			return append(errs, err)
		}
		out, err := reclaim(ctx, cfg, sd, rec, "gc")
		switch {
		case err != nil:
			errs = append(errs, err)
		case out == reclaimLive:
			rep.Live = append(rep.Live, rec.ID)
		case out == reclaimKept:
			rep.Kept = append(rep.Kept, rec.ID)
		default:
			rep.Removed = append(rep.Removed, rec.ID)
		}
	}
	return errs
}

// Outcomes of reclaim.
const (
	reclaimLive    = iota // the container runs: left alone
	reclaimRemoved        // gone: views released, state removed
	reclaimKept           // stopped, not yet deleted by its runtime, export to come: views released, state kept
)

// reclaim applies GC's rules to one record: a live container is left
// alone; a dead one has its views released and its state removed, unless
// its runtime still knows it and it asked for an export (its poststop is
// still to come: the state is kept, without the views). stage names the
// caller in the log. It is the one implementation of these rules, for
// `ocisnap gc` and for the hook's own bounded reclaim (reclaimGone).
func reclaim(ctx context.Context, cfg *Config, sd statefile.Dir, rec *statefile.Record, stage string) (int, error) {
	if alive(rec) {
		return reclaimLive, nil
	}
	log := cfg.Logger.With("container", rec.ID, "stage", stage)
	h := &hook{cfg: cfg, log: log, state: sd}
	if len(rec.Views) > 0 {
		if err := h.releaseViews(ctx, rec); err != nil {
			return 0, fmt.Errorf("container %s: %s: release: %w", rec.ID, KeyView, err)
		}
	}
	if rec.Export != nil && knownToRuntime(rec.ID) {
		rec.Views = nil
		if err := sd.Write(rec); err != nil {
			return 0, err
		}
		log.Info("released the views of a stopped container; its state is kept for the export at its poststop")
		return reclaimKept, nil
	}
	if err := sd.Remove(rec.ID); err != nil {
		return 0, err
	}
	log.Info("released a container that no longer exists", "views", len(rec.Views))
	return reclaimRemoved, nil
}

// alive reports whether rec's container process may still run.
func alive(rec *statefile.Record) bool {
	if rec.Pid <= 0 {
		return false
	}
	if rec.PidStart != 0 {
		return procstat.Alive(rec.Pid, rec.PidStart)
	}
	err := unix.Kill(rec.Pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// knownToRuntime reports whether runc or crun still has a container id.
func knownToRuntime(id string) bool {
	for _, root := range runtimestate.Roots() {
		if _, err := os.Lstat(filepath.Join(root, id)); err == nil {
			return true
		}
	}
	return false
}

// maxTempDepth bounds how deep below an allowed directory GC looks for
// temporary files (export destinations may be in subdirectories).
const maxTempDepth = 8

// cleanTemps runs location.CleanStaleTempsInRoot in dir and in its
// subdirectories on the same file system, down to maxTempDepth, following no
// symlink. A missing dir is fine.
//
// dir is the administrator's (--allow-dir, see docs/ocisnap-gc.1.md), but
// what is below it is written by whoever exports there, and a subdirectory
// may be swapped for a symlink while GC walks. So no path is resolved
// twice: every directory is opened by its one name from its parent's
// already-open os.Root, which cannot leave the parent, and is walked only
// if it is the directory that was listed (same inode, same file system).
func cleanTemps(ctx context.Context, dir string) ([]string, error) {
	if !filepath.IsAbs(dir) {
		return nil, nil
	}
	dir = filepath.Clean(dir)
	root, err := os.OpenRoot(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("allowed directory %s: %w", dir, err)
	}
	defer root.Close()
	fi, err := root.Stat(".")
	if err != nil {
		return nil, fmt.Errorf("allowed directory %s: %w", dir, err)
	}
	w := tempWalk{ctx: ctx, dev: devOf(fi)}
	if err := w.walk(root, dir, 0); err != nil {
		w.errs = append(w.errs, err)
	}
	return w.removed, errors.Join(w.errs...)
}

// tempWalk is one cleanTemps walk of an allowed directory.
type tempWalk struct {
	ctx     context.Context
	dev     uint64 // the allowed directory's file system
	removed []string
	errs    []error
}

// walk cleans the directory open as root (shown as path) and then its
// subdirectories; it returns only the context's error, collecting the
// others.
func (w *tempWalk) walk(root *os.Root, path string, depth int) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	names, err := location.CleanStaleTempsInRoot(root)
	for _, n := range names {
		w.removed = append(w.removed, filepath.Join(path, n))
	}
	if err != nil {
		w.errs = append(w.errs, fmt.Errorf("clean temporary files in %s: %w", path, err))
	}
	if depth >= maxTempDepth {
		return nil
	}
	d, err := root.Open(".")
	if err != nil {
		w.errs = append(w.errs, fmt.Errorf("list %s: %w", path, err))
		return nil
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		w.errs = append(w.errs, fmt.Errorf("list %s: %w", path, err))
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		child := w.openSubdir(root, e.Name())
		if child == nil {
			continue
		}
		err := w.walk(child, filepath.Join(path, e.Name()), depth+1)
		child.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// openSubdir opens root's entry name as a root if it is a directory on the
// walked file system, or returns nil. The entry is checked (lstat) before
// it is opened and the opened directory compared with it after: one
// replaced meanwhile (by a symlink, or another directory) is not walked.
// An entry that cannot be opened is skipped without error: it was a
// directory when listed, so it was changed since.
func (w *tempWalk) openSubdir(root *os.Root, name string) *os.Root {
	fi, err := root.Lstat(name)
	if err != nil || !fi.IsDir() || devOf(fi) != w.dev {
		return nil
	}
	child, err := root.OpenRoot(name)
	if err != nil {
		return nil
	}
	if cfi, err := child.Stat("."); err != nil || !os.SameFile(fi, cfi) {
		child.Close()
		return nil
	}
	return child
}

// devOf is the device of the file system holding fi's file.
func devOf(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev)
	}
	return 0
}
