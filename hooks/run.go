package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocisnap/ocisnap/hooks/hookcli"
	"github.com/ocisnap/ocisnap/pkg/failurelog"
	"github.com/ocisnap/ocisnap/pkg/ocistate"
	"github.com/ocisnap/ocisnap/pkg/policy"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// Stages. prestart (deprecated) and createRuntime run in the runtime's
// namespaces after the container's namespaces exist and before pivot_root;
// createContainer runs inside the container's mount namespace; poststop runs
// in the runtime's namespaces after the container is deleted (Podman runs it
// itself, before unmounting storage; CRI-O after unmounting it).
const (
	StagePrestart        = hookcli.StagePrestart
	StageCreateRuntime   = hookcli.StageCreateRuntime
	StageCreateContainer = hookcli.StageCreateContainer
	StagePoststop        = hookcli.StagePoststop
)

// Run handles one hook invocation: the OCI state is read from stdin.
func Run(ctx context.Context, cfg Config, stdin io.Reader) error {
	st, err := ocistate.ReadState(stdin)
	if err != nil {
		return err
	}
	stage, err := stageOf(cfg.Stage, st)
	if err != nil {
		return fmt.Errorf("container %s: %w", st.ID, err)
	}
	sd := statefile.Dir{Path: cfg.StateDir}
	if !relevant(st.Annotations, &cfg) {
		if stage != StagePoststop {
			return nil
		}
		// A container created with annotations whose poststop state
		// carries none (some engines pass none): the state file tells.
		if _, err := sd.Read(st.ID); err != nil {
			return nil
		}
	}
	log := cfg.Logger.With("container", st.ID, "stage", stage)
	h := &hook{cfg: &cfg, base: cfg.Policy, log: log, state: sd}
	// Whatever this run does, it then reclaims a few containers that are
	// gone without a poststop: only from the runtime's namespaces, where
	// their views are mounted (a createContainer hook runs in the new
	// container's mount namespace, where an unmount would not reach them).
	if stage != StageCreateContainer {
		defer h.reclaimGone(ctx, st.ID)
	}
	switch stage {
	case StagePoststop:
		err = h.poststop(ctx, st)
	default:
		err = h.create(ctx, st, stage)
	}
	if err != nil {
		return fmt.Errorf("container %s: %w", st.ID, err)
	}
	return nil
}

// relevant reports whether any annotation asks something of ocisnap. The
// hook's gate decides by the same rule (hookcli.Noop), so that it execs
// this engine whenever there is something to do.
func relevant(ann map[string]string, cfg *Config) bool {
	return hookcli.Relevant(ann, cfg.Policy.GVisorCompat)
}

// stageOf returns the forced stage, or the stage implied by the status.
func stageOf(forced string, st *specs.State) (string, error) {
	return hookcli.Stage(forced, st)
}

type hook struct {
	cfg *Config
	// base is the administrator's policy before scoping: cfg.Policy is
	// scoped to the container's namespace (scope) once it is known.
	base  policy.Policy
	ns    string
	log   *slog.Logger
	state statefile.Dir
}

// scope fills {namespace} in the allowed directories with ns, the
// container's Kubernetes namespace ("" for none: templates then allow
// nothing).
func (h *hook) scope(ns string) {
	h.ns = ns
	h.cfg.Policy = h.base.Scoped(ns)
}

// namespaceOf reads the container's namespace from the keys --identity-from
// trusts; keys that disagree (a forged one) give no namespace, and a
// warning when the policy has {namespace} templates.
func (h *hook) namespaceOf(ann map[string]string) string {
	ns, err := ocistate.Namespace(ann, h.cfg.IdentityFrom)
	if err != nil && slices.ContainsFunc(h.base.AllowDirs, policy.HasNamespace) {
		h.log.Warn("no namespace for {namespace} directories", "err", err)
	}
	return ns
}

// create runs at prestart/createRuntime/createContainer: restore first (the
// restored files become part of the container's upper), then record what
// poststop needs, then the views.
func (h *hook) create(ctx context.Context, st *specs.State, stage string) error {
	c, err := ocistate.Load(st)
	if err != nil {
		return err
	}
	if c.Spec == nil {
		return fmt.Errorf("no config.json in bundle %q", st.Bundle)
	}
	h.scope(h.namespaceOf(c.Annotations()))
	req, err := parseRequest(c, h.cfg)
	if err != nil {
		return err
	}
	if req.empty() {
		return nil
	}
	// Refuse a forbidden export destination before anything is done.
	if req.export != nil {
		if err := h.checkExportDest(req.export); err != nil {
			return fmt.Errorf("%s=%s: %w", req.export.key, req.export.dest, err)
		}
	}
	upper, pre := h.preRecord(c, req)
	if pre != "" {
		defer os.Remove(pre)
	}
	var res restored
	if req.restore != "" {
		persist := req.export != nil && req.export.persist
		if res, err = h.restoreSnapshot(ctx, c, req.restore, stage, persist); err != nil {
			return fmt.Errorf("%s=%s: %w", req.restoreKey, req.restore, err)
		}
	}
	if upper != "" {
		h.recordUpper(c.State.ID, upper, pre, req.restore == "", res)
	}
	rec, err := h.newRecord(c, req)
	if err != nil {
		if upper != "" {
			os.Remove(h.state.UpperFile(c.State.ID)) // no record to go with it
		}
		return err
	}
	if req.view != nil {
		return h.prepareView(ctx, c, req.view, rec, stage)
	}
	if rec.Export != nil {
		if err := h.state.Write(rec); err != nil {
			return fmt.Errorf("%s: record state: %w", KeyExport, err)
		}
	}
	return nil
}

// poststop releases views and writes the export recorded at create time,
// then forgets the container. It fails only with --strict-export: runc
// aborts the remaining poststop hooks and fails `delete` on a hook's error,
// and by then the container is gone anyway, so a failure is logged (stderr
// and --log-file) and whatever could not be released stays recorded for
// `ocisnap gc`.
func (h *hook) poststop(ctx context.Context, st *specs.State) error {
	// Shared: poststops run side by side, but no gc or reclaim releases
	// this record under this one. A gc stuck holding it delays the export
	// by at most poststopLockWait.
	lctx, cancel := context.WithTimeout(ctx, poststopLockWait)
	unlock, err := h.state.Lock(lctx, false, true)
	cancel()
	if err != nil {
		h.log.Warn("poststop without the state lock", "err", err)
	} else {
		defer unlock()
	}
	rec, err := h.state.Read(st.ID)
	if errors.Is(err, fs.ErrNotExist) {
		rec, err = h.recoverRecord(st)
		if rec == nil {
			return err
		}
	} else if err != nil {
		h.log.Error("unreadable state; nothing released or exported (see ocisnap gc)", "err", err)
		h.recordFailure(failurelog.Record{Kind: failurelog.KindState, Container: st.ID}, err)
		return h.strict(err)
	}
	h.scope(rec.Namespace)
	keep := false
	if len(rec.Views) > 0 {
		if err := h.releaseViews(ctx, rec); err != nil {
			// The stubs may still be in the upper; the export below
			// excludes them by path anyway.
			h.log.Error("view release failed; kept for ocisnap gc", "annotation", KeyView, "err", err)
			h.recordFailure(failurelog.Record{Kind: failurelog.KindReleaseView, Container: rec.ID, Name: rec.Name,
				Annotation: KeyView, Dest: viewSource(rec)}, err)
			keep = true
		}
	}
	if rec.Export != nil {
		if err := h.export(ctx, rec); err != nil {
			h.log.Error("export failed; the previous snapshot is untouched", "annotation", KeyExport, "dest", rec.Export.Dest, "err", err)
			h.recordFailure(failurelog.Record{Kind: failurelog.KindExport, Container: rec.ID, Name: rec.Name,
				Annotation: KeyExport, Dest: rec.Export.Dest}, err)
			err = fmt.Errorf("%s=%s: %w", KeyExport, rec.Export.Dest, err)
			if h.cfg.StrictExport {
				return err
			}
		}
	}
	if keep {
		rec.Export = nil // done (or failed and logged): gc must not wait for it
		if err := h.state.Write(rec); err != nil {
			h.log.Warn("update state", "err", err)
		}
		return nil
	}
	if err := h.state.Remove(st.ID); err != nil {
		h.log.Warn("remove state", "err", err)
	}
	return nil
}

// poststopLockWait bounds a poststop's wait for the state lock.
const poststopLockWait = 30 * time.Second

// strict returns err when --strict-export is set, else nil (err was logged).
func (h *hook) strict(err error) error {
	if h.cfg.StrictExport {
		return err
	}
	return nil
}
