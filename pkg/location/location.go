// Package location says where snapshots live and moves their bytes: a
// Source to restore from, a Sink to export to (docs/locations.md). A
// location is an absolute local path (one tar file), an OCI image layout
// ("oci:/abs/dir[:tag]") or an OCI registry reference
// ("docker://host[:port]/repo[:tag|@sha256:…]"), always checked against the
// administrator's policy before anything is touched. The last two hold a
// snapshot manifest (manifest.go) whose blobs are verified while they
// stream.
//
// A Sink never leaves a partial snapshot where a reader may find it: bytes
// go to a temporary file next to the destination (or to unreferenced blobs),
// and only Commit puts them in place, atomically (a rename, or moving the
// tag after every blob is stored).
package location

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/ocisnap/ocisnap/pkg/policy"
)

// Source is a snapshot to read.
type Source interface {
	// Open opens the snapshot: its manifest (for oci: and docker://) and a
	// stream per layer, oldest first, each verified as it is read
	// (Snapshot.Each). The caller closes it. A location that holds no
	// snapshot is an error wrapping ErrNotFound where that can be told.
	Open(ctx context.Context) (*Snapshot, error)
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

// Kinds of location.
const (
	KindFile   = "file"
	KindLayout = "oci"
	KindDocker = "docker"
)

// Kind returns the kind of location ref names (KindFile for anything that
// is neither "oci:" nor "docker://").
func Kind(ref string) string {
	switch {
	case strings.HasPrefix(ref, "oci:"):
		return KindLayout
	case strings.HasPrefix(ref, "docker://"):
		return KindDocker
	}
	return KindFile
}

// HoldsManifest reports whether ref is a location holding a snapshot
// manifest (oci: or docker://), where zstd is the default compression.
func HoldsManifest(ref string) bool { return Kind(ref) != KindFile }

// Option changes how a location is reached.
type Option func(*options)

type options struct {
	reg Registry
}

// WithRegistry sets how registries are reached (credentials, CAs, spool).
func WithRegistry(r Registry) Option { return func(o *options) { o.reg = r } }

func newOptions(opts []Option) options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	return o
}

// ParseSource parses a snapshot location to read from. It is checked
// against p before anything is opened or any request made: a path (the
// file, or the oci: layout directory) must lie inside an allowed directory
// and not inside a view directory, lexically here and again, resolving
// symlinks, by Open; a docker:// repository must be under an
// --allow-registry prefix.
func ParseSource(ref string, p *policy.Policy, opts ...Option) (Source, error) {
	if p == nil {
		return nil, errors.New("location: no policy")
	}
	o := newOptions(opts)
	switch Kind(ref) {
	case KindLayout:
		l, err := parseLayout(ref, p, false)
		if err != nil {
			return nil, err
		}
		return l, nil
	case KindDocker:
		r, err := parseDocker(ref, p, o.reg, false)
		if err != nil {
			return nil, err
		}
		return r, nil
	}
	if err := parse(ref, p); err != nil {
		return nil, err
	}
	return &fileSource{path: ref, p: p}, nil
}

// ParseSink parses a snapshot location to write to, with the same rules as
// ParseSource. An oci: or docker:// sink takes a digest-pinned reference
// as an error: a snapshot is written under a tag.
func ParseSink(ref string, p *policy.Policy, opts ...Option) (Sink, error) {
	if p == nil {
		return nil, errors.New("location: no policy")
	}
	o := newOptions(opts)
	switch Kind(ref) {
	case KindLayout:
		l, err := parseLayout(ref, p, true)
		if err != nil {
			return nil, err
		}
		return l, nil
	case KindDocker:
		r, err := parseDocker(ref, p, o.reg, true)
		if err != nil {
			return nil, err
		}
		return r, nil
	}
	if err := parse(ref, p); err != nil {
		return nil, err
	}
	return &fileSink{path: ref, p: p}, nil
}

func parse(ref string, p *policy.Policy) error {
	if ref == "" {
		return fmt.Errorf("empty location: %w", ErrUnsupported)
	}
	if !filepath.IsAbs(ref) {
		return fmt.Errorf("location %q: want an absolute path, oci:/abs/dir[:tag] or docker://host/repo[:tag]: %w",
			ref, ErrUnsupported)
	}
	return p.Check(ref)
}
