package hooks

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/ocisnap/ocisnap/pkg/ocistate"
	"github.com/ocisnap/ocisnap/pkg/overlay"
	"github.com/ocisnap/ocisnap/pkg/procstat"
	"github.com/ocisnap/ocisnap/pkg/statefile"
	"github.com/ocisnap/ocisnap/pkg/view"
)

type viewKind string

const (
	viewImage viewKind = "image"
	viewDir   viewKind = "dir"
	viewFile  viewKind = "file"
)

type viewBind struct{ src, dst string }

type viewRequest struct {
	kind   viewKind
	source string // host path for dir: and file:
	binds  []viewBind
	mount  string // container path where the whole view appears
}

// viewsDir is where views are mounted on the host: <state dir>/views.
func viewsDir(stateDir string) string {
	if stateDir == "" {
		stateDir = statefile.DefaultDir
	}
	return filepath.Join(stateDir, "views")
}

// annotationValue is the io.ocisnap.view value v was parsed from.
func (v *viewRequest) annotationValue() string {
	if v.kind == viewImage {
		return string(v.kind)
	}
	return string(v.kind) + ":" + v.source
}

// prepareView mounts the view and makes its binds in the container's mount
// namespace, recording every step in the container's state file first (so
// that poststop or `ocisnap gc` can undo it). On failure the view package
// has already rolled back; the state file goes too, unless the rollback
// left something behind for `ocisnap gc`.
func (h *hook) prepareView(ctx context.Context, c *ocistate.Container, v *viewRequest, rec *statefile.Record, stage string) error {
	pid := rec.Pid
	if stage == StageCreateContainer {
		// The hook runs inside the container's namespaces: the binds are
		// made right here, and the state's pid is the container's init as
		// its own pid namespace numbers it (1). Record the host's pid of
		// it (our parent) so that gc's liveness check sees the container.
		pid = 0
		if err := recordParent(rec); err != nil {
			return fmt.Errorf("%s: %w", KeyView, err)
		}
	} else if pid <= 0 {
		return fmt.Errorf("%s=%s: the runtime gave no container pid, whose mount namespace the binds go into", KeyView, v.annotationValue())
	}
	if v.kind != viewImage {
		// Refuse a source outside the view directories (--allow-view-dir;
		// never a snapshot directory) before anything is recorded or
		// mounted. view.Prepare checks again as it opens it, and then also
		// the owner and mode of what it opened.
		if err := h.cfg.Policy.CheckView(v.source); err != nil {
			return fmt.Errorf("%s=%s: %s: %w", KeyView, v.annotationValue(), v.kind, err)
		}
	}
	binds := make([]view.Bind, 0, len(v.binds)+1)
	for _, b := range v.binds {
		binds = append(binds, view.Bind{Src: b.src, Dst: b.dst})
	}
	if v.mount != "" {
		binds = append(binds, view.Bind{Src: "/", Dst: v.mount})
	}
	st := &view.State{Kind: view.Kind(v.kind), Source: v.source}
	rec.Views = []statefile.View{viewRecord(st)}
	save := func() error {
		rec.Views[0] = viewRecord(st)
		return h.state.Write(rec)
	}
	if err := save(); err != nil {
		return fmt.Errorf("%s: record state: %w", KeyView, err)
	}
	req := &view.Request{
		ID:      rec.ID,
		Dir:     viewsDir(h.cfg.StateDir),
		Kind:    view.Kind(v.kind),
		Source:  v.source,
		Policy:  &h.cfg.Policy,
		Overlay: viewOverlay(rec.Overlay),
		Binds:   binds,
		Rootfs:  c.Rootfs,
		Pid:     pid,
	}
	req.PidStart = rec.PidStart // checked as the namespace is entered
	err := view.Prepare(ctx, req, st, save)
	rec.Views[0] = viewRecord(st)
	if err == nil {
		h.log.Info("view prepared", "view", v.annotationValue(), "mountpoint", st.Mountpoint,
			"loop", st.LoopDevice, "binds", len(binds))
		return nil
	}
	if st.Pending() {
		h.log.Warn("view rollback incomplete; state kept for `ocisnap gc`", "err", err)
	} else if rerr := h.state.Remove(rec.ID); rerr != nil {
		h.log.Warn("remove state", "err", rerr)
	}
	var be *view.BindError
	if errors.As(err, &be) {
		if be.Index < len(v.binds) {
			return fmt.Errorf("%s: %w", KeyViewBinds, err)
		}
		return fmt.Errorf("%s: %w", KeyViewMount, err)
	}
	return fmt.Errorf("%s=%s: %w", KeyView, v.annotationValue(), missing("view source", v.source, err))
}

// recordParent sets rec's pid to this process's parent as /proc shows it.
// Before pivot_root (createContainer hooks) /proc is still the host's, so
// that is the host's pid of the container's init, which runs the hook.
func recordParent(rec *statefile.Record) error {
	self, err := procstat.ReadSelf()
	if err != nil {
		return fmt.Errorf("find the container's process: %w", err)
	}
	if self.PPid <= 0 {
		return fmt.Errorf("find the container's process: parent pid %d", self.PPid)
	}
	rec.Pid, rec.PidStart = self.PPid, 0
	if start, err := procstat.StartTime(self.PPid); err == nil {
		rec.PidStart = start
	}
	return nil
}

// releaseViews undoes the container's views: unmount, loop detach, empty
// stubs removed from the writable layer (before an export in the same
// poststop run, so that it holds no stubs; the files the container wrote
// beside a bind destination stay, and are exported). Binds are only
// unmounted by hand while the container's process still lives; otherwise
// they went with its mount namespace. Whether it lives is checked as its
// namespace is entered (the pid and its start time, through one
// descriptor: see package mountns), so a reused pid is never entered;
// the check here only spares the attempt.
func (h *hook) releaseViews(ctx context.Context, rec *statefile.Record) error {
	opts := view.ReleaseOptions{StubRoot: stubRoot(rec)}
	if rec.Pid > 0 && rec.PidStart != 0 && procstat.Alive(rec.Pid, rec.PidStart) {
		opts.Live, opts.Pid, opts.PidStart, opts.Rootfs = true, rec.Pid, rec.PidStart, rec.Rootfs
	}
	var errs []error
	for i := range rec.Views {
		st := viewState(&rec.Views[i])
		save := func() error {
			rec.Views[i] = viewRecord(st)
			return h.state.Write(rec)
		}
		err := view.Release(ctx, st, opts, save)
		rec.Views[i] = viewRecord(st)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stubRoot is where the mountpoint stubs are removed from: the rootfs
// while the same overlay is still mounted there (Podman runs poststop
// first), else the recorded upper directory (CRI-O unmounts storage
// first), else the rootfs if it was a plain directory; "" when none of
// these is there. (A rootfs that was an overlay at create time has its
// overlay recorded, see newRecord.)
func stubRoot(rec *statefile.Record) string {
	if rec.Rootfs == "" {
		return ""
	}
	m, err := overlay.Find(rec.Rootfs)
	switch {
	case err == nil && (rec.Overlay == nil || rec.Overlay.Upper == "" || m.Upper == rec.Overlay.Upper):
		return rec.Rootfs
	case rec.Overlay != nil && rec.Overlay.Upper != "":
		return rec.Overlay.Upper
	case rec.Overlay == nil:
		return rec.Rootfs
	}
	return ""
}
