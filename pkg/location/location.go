// Package location says where snapshots live and moves their bytes: a
// Source to restore from, a Sink to export to. Today a location is an
// absolute local path, checked against the administrator's policy; OCI
// registry references (a snapshot pushed as an artifact and pulled on
// another node) will be another implementation of the same interfaces.
//
// A Sink never leaves a partial snapshot where a reader may find it: bytes
// go to a temporary file next to the destination, and only Commit puts
// them in place, atomically.
package location

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/ocisnap/ocisnap/pkg/policy"
)

// Source is a snapshot to read.
type Source interface {
	// Open opens the snapshot for reading; the caller closes it.
	Open(ctx context.Context) (io.ReadCloser, error)
	String() string
}

// Sink is a place to write a snapshot to.
type Sink interface {
	// Create starts a new snapshot. Nothing is visible at the location
	// until the returned Pending is committed.
	Create(ctx context.Context) (Pending, error)
	String() string
}

// Pending is a snapshot being written. Commit makes it visible at its
// location in one step, replacing any previous snapshot there; Abort (or a
// failed Commit) discards it and leaves the previous snapshot untouched
// (a stream, NewStreamSink, cannot take back what it wrote: see there).
//
// Commit and Abort may be called in any order and any number of times, from
// any goroutine; the first of them decides, and every implementation
// follows it:
//   - after a successful Commit, Commit returns nil and Abort does nothing
//     (returns nil): the snapshot stays;
//   - after a failed Commit, Commit returns the same error again and Abort
//     does nothing (the snapshot was discarded already);
//   - after Abort, Abort returns nil and Commit returns ErrAborted;
//   - Write after any of them fails (with ErrAborted after Abort).
type Pending interface {
	io.Writer
	Commit() error
	Abort() error
}

var (
	// ErrUnsupported is wrapped by the error for a location of a kind this
	// build cannot handle.
	ErrUnsupported = errors.New("location: unsupported location")
	// ErrAborted is returned by Commit (and Write) after Abort.
	ErrAborted = errors.New("location: snapshot write was aborted")
)

// ParseSource parses a snapshot location to read from. Only absolute local
// paths are supported; the path is checked against p's snapshot
// directories (inside an allowed directory, not inside a view directory)
// before anything is opened: lexically here, and again, resolving
// symlinks, by Open.
func ParseSource(ref string, p *policy.Policy) (Source, error) {
	if err := parse(ref, p); err != nil {
		return nil, err
	}
	return &fileSource{path: ref, p: p}, nil
}

// ParseSink parses a snapshot location to write to, with the same rules as
// ParseSource.
func ParseSink(ref string, p *policy.Policy) (Sink, error) {
	if err := parse(ref, p); err != nil {
		return nil, err
	}
	return &fileSink{path: ref, p: p}, nil
}

func parse(ref string, p *policy.Policy) error {
	if p == nil {
		return errors.New("location: no policy")
	}
	if ref == "" {
		return fmt.Errorf("empty location: %w", ErrUnsupported)
	}
	if !filepath.IsAbs(ref) {
		return fmt.Errorf("location %q: only absolute local paths are supported (OCI registry references are not supported yet): %w",
			ref, ErrUnsupported)
	}
	return p.Check(ref)
}
