package hooks

import (
	"github.com/ocisnap/ocisnap/pkg/failurelog"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// recordFailure adds r, with err as its cause, to the failure log that
// `ocisnap status` lists (--status-dir): a poststop's stderr is thrown away
// by Podman, and its exit status is ignored unless --strict-export, so this
// and the log are all an operator gets (docs/failure-behaviour.md). A
// record that cannot be written is logged. With no StatusDir (a Config not
// from DefaultConfig) nothing is recorded.
func (h *hook) recordFailure(r failurelog.Record, err error) {
	if h.cfg.StatusDir == "" {
		return
	}
	r.Cause = err.Error()
	d := failurelog.Dir{Path: h.cfg.StatusDir}
	if werr := d.Add(r); werr != nil {
		h.log.Error("the failure could not be recorded for ocisnap status", "err", werr)
	}
}

// viewSource names the view of rec for a failure record.
func viewSource(rec *statefile.Record) string {
	if len(rec.Views) == 0 {
		return ""
	}
	v := rec.Views[0]
	if v.Source == "" {
		return v.Kind
	}
	return v.Kind + ":" + v.Source
}
