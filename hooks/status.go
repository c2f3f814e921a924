package hooks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ocisnap/ocisnap/pkg/failurelog"
	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// Status is what `ocisnap status` shows (docs/ocisnap-status.1.md): the
// recent failures nobody saw, the containers the hook keeps state for
// (their live views, their exports still to come), and the exports waiting
// to be delivered.
type Status struct {
	// StatusDir and StateDir are where Failures and Containers come from.
	StatusDir string `json:"statusDir"`
	StateDir  string `json:"stateDir"`
	// Failures are the recorded failures, newest first.
	Failures []failurelog.Record `json:"failures"`
	// Containers are the containers with a state record, in id order.
	Containers []ContainerStatus `json:"containers"`
	// Pending are the exports kept for later delivery, from every
	// PendingSource.
	Pending []PendingPush `json:"pending"`
}

// ContainerStatus is one container the hook keeps state for.
type ContainerStatus struct {
	ID      string    `json:"id"`
	Name    string    `json:"name,omitempty"`
	Pid     int       `json:"pid"`
	Created time.Time `json:"created"`
	// Alive says the container's process still runs (the rule `ocisnap
	// gc` uses); a record of a dead one is what gc reclaims.
	Alive bool `json:"alive"`
	// Export is the destination written at the container's stop, if any.
	Export string       `json:"export,omitempty"`
	Views  []ViewStatus `json:"views,omitempty"`
}

// ViewStatus is one view of a container.
type ViewStatus struct {
	Kind       string   `json:"kind"`
	Source     string   `json:"source,omitempty"`
	Mountpoint string   `json:"mountpoint,omitempty"`
	LoopDevice string   `json:"loopDevice,omitempty"`
	Mounted    bool     `json:"mounted"`
	Binds      []string `json:"binds,omitempty"` // "src:dst" of the binds made
}

// PendingPush is an export kept for later delivery (`ocisnap push
// --pending`).
type PendingPush struct {
	Container string    `json:"container,omitempty"`
	Name      string    `json:"name,omitempty"`
	Dest      string    `json:"dest"`
	Since     time.Time `json:"since"`
	// Cause is why it was not delivered at the container's stop.
	Cause string `json:"cause,omitempty"`
	// Where is where it is kept (a spool entry), for the operator.
	Where string `json:"where,omitempty"`
}

// A PendingSource lists the exports some store keeps for later delivery.
type PendingSource interface {
	Pending(ctx context.Context, cfg *Config) ([]PendingPush, error)
}

// PendingFunc is a function that is a PendingSource.
type PendingFunc func(ctx context.Context, cfg *Config) ([]PendingPush, error)

// Pending calls f.
func (f PendingFunc) Pending(ctx context.Context, cfg *Config) ([]PendingPush, error) {
	return f(ctx, cfg)
}

// pendingSources are the stores of exports waiting for delivery that
// CollectStatus lists: the spool of registry exports that could not be
// pushed at the container's stop.
var pendingSources = []PendingSource{PendingFunc(spoolPending)}

// spoolPending lists the spool's undelivered registry exports.
func spoolPending(_ context.Context, cfg *Config) ([]PendingPush, error) {
	ps, err := location.ListPending(cfg.Registry.SpoolDir)
	out := make([]PendingPush, 0, len(ps))
	for _, p := range ps {
		cause := "the registry could not be reached at the container's stop (`ocisnap push --pending` delivers it)"
		switch {
		case p.BaseMoved:
			cause = "not delivered, the tag moved off the snapshot this layer was built on (" + p.LastFailure +
				"); `ocisnap push --pending --force` moves it anyway, dropping the newer snapshot from the tag"
		case p.LastFailure != "":
			cause = "the last delivery failed at " + p.FailedAt.Format(time.RFC3339) + ": " + p.LastFailure +
				" (`ocisnap push --pending` tries again)"
		}
		out = append(out, PendingPush{Dest: p.Ref, Since: p.Created, Where: p.Dir, Cause: cause})
	}
	return out, err
}

// CollectStatus gathers the Status under cfg. What cannot be read is
// returned as errors (joined) beside all that could.
func CollectStatus(ctx context.Context, cfg Config) (*Status, error) {
	st := &Status{StatusDir: cfg.StatusDir, StateDir: cfg.StateDir,
		Failures: []failurelog.Record{}, Containers: []ContainerStatus{}, Pending: []PendingPush{}}
	var errs []error
	recs, ferrs := failurelog.Dir{Path: cfg.StatusDir}.List()
	st.Failures = append(st.Failures, recs...)
	errs = append(errs, ferrs...)

	srecs, serrs := statefile.Dir{Path: cfg.StateDir}.List()
	errs = append(errs, serrs...)
	for _, r := range srecs {
		st.Containers = append(st.Containers, containerStatus(r))
	}
	for _, src := range pendingSources {
		ps, err := src.Pending(ctx, &cfg)
		st.Pending = append(st.Pending, ps...)
		if err != nil {
			errs = append(errs, fmt.Errorf("pending pushes: %w", err))
		}
	}
	return st, errors.Join(errs...)
}

func containerStatus(r *statefile.Record) ContainerStatus {
	c := ContainerStatus{ID: r.ID, Name: r.Name, Pid: r.Pid, Created: r.Created, Alive: alive(r)}
	if r.Export != nil {
		c.Export = r.Export.Dest
	}
	for _, v := range r.Views {
		vs := ViewStatus{Kind: v.Kind, Source: v.Source, Mountpoint: v.Mountpoint, LoopDevice: v.LoopDevice, Mounted: v.Mounted}
		for _, b := range v.Binds {
			if b.Mounted {
				vs.Binds = append(vs.Binds, b.Src+":"+b.Dst)
			}
		}
		c.Views = append(c.Views, vs)
	}
	return c
}
