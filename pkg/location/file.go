package location

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisnap/ocisnap/internal/atomicfile"
	"github.com/ocisnap/ocisnap/pkg/policy"
)

// fileSource is a snapshot in a local file.
type fileSource struct {
	path string
	p    *policy.Policy
}

func (s *fileSource) String() string { return s.path }

// Open opens the file through the policy (see policy.OpenRead): a
// snapshot of one layer, the file's bytes as they are.
func (s *fileSource) Open(ctx context.Context) (*Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := s.p.OpenRead(s.path)
	if err != nil {
		return nil, err
	}
	size := int64(-1)
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	used := false
	return &Snapshot{
		Ref: s.path,
		Layers: []Layer{{Desc: ocispec.Descriptor{Size: size}, open: func(context.Context) (io.ReadCloser, error) {
			if used {
				return nil, fmt.Errorf("%q: layer opened twice", s.path)
			}
			used = true
			return f, nil // an *os.File, as before: readers may use its fast paths
		}}},
		closer: func() error { f.Close(); return nil }, // Each closed it already, or nobody read it
	}, nil
}

// fileSink is a snapshot written to a local file, atomically.
type fileSink struct {
	path string
	p    *policy.Policy
}

func (s *fileSink) String() string { return s.path }

// bufSize is the write buffer: large enough that a tar stream of small
// files reaches the disk in few big writes.
const bufSize = 1 << 20

// Create opens (through the policy) the destination's parent, creating it
// if missing, removes stale temporary files of earlier writers that died
// (see CleanStaleTemps), and starts an atomic replacement of the
// destination there (package atomicfile: a temporary file, flocked for as
// long as it is written).
func (s *fileSink) Create(ctx context.Context) (Pending, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir, base, err := s.p.OpenParent(s.path)
	if err != nil {
		return nil, err
	}
	// Best effort: a temporary file we cannot clean is only wasted space.
	// Every dead writer's temporary file in this directory goes, whatever
	// its destination: live writers hold their flock and are kept.
	atomicfile.CleanStale(dir)
	f, err := atomicfile.Create(dir, base, 0o600)
	if err != nil {
		dir.Close()
		return nil, fmt.Errorf("%q: %w", s.path, err)
	}
	return &filePending{pendingState: pendingState{name: fmt.Sprintf("%q", s.path)},
		dest: s.path, dir: dir, f: f, w: bufio.NewWriterSize(f, bufSize)}, nil
}

type filePending struct {
	pendingState
	dest string   // as given, for messages
	dir  *os.Root // the destination's parent, open until the end
	f    *atomicfile.File
	w    *bufio.Writer
}

func (p *filePending) Write(b []byte) (int, error) {
	if err := p.lockWriting(); err != nil {
		return 0, err
	}
	defer p.mu.Unlock()
	n, err := p.w.Write(b)
	if err != nil {
		err = fmt.Errorf("%q: %w", p.dest, err)
	}
	return n, err
}

// ReadFrom appends what r yields after what is buffered; a file's content
// (an *os.File, also under an io.LimitReader) goes file to file in the
// kernel (atomicfile.File.ReadFrom: copy_file_range), no copy through user
// memory.
func (p *filePending) ReadFrom(r io.Reader) (int64, error) {
	if err := p.lockWriting(); err != nil {
		return 0, err
	}
	defer p.mu.Unlock()
	if err := p.w.Flush(); err != nil {
		return 0, fmt.Errorf("%q: %w", p.dest, err)
	}
	n, err := p.f.ReadFrom(r)
	if err != nil {
		err = fmt.Errorf("%q: %w", p.dest, err)
	}
	return n, err
}

// Commit flushes the buffer and commits the replacement (atomicfile's
// Commit: fsync, rename over the destination under a flock of the
// directory, fsync of the directory). If Commit fails before the rename,
// the temporary file is removed and the destination untouched; if only
// the final directory sync fails, the new snapshot is in place but its
// durability is not known, and the error says so.
func (p *filePending) Commit() error {
	return p.finish(func() error {
		err := p.w.Flush()
		if err != nil {
			err = errors.Join(err, p.f.Abort())
		} else {
			err = p.f.Commit()
		}
		p.dir.Close()
		if err != nil {
			return fmt.Errorf("%q: %w", p.dest, err)
		}
		return nil
	})
}

// Abort discards the snapshot: the temporary file is removed, the
// destination is untouched. After Commit it does nothing.
func (p *filePending) Abort() error {
	return p.cancel(func() error {
		err := p.f.Abort()
		p.dir.Close()
		if err != nil {
			return fmt.Errorf("%q: %w", p.dest, err)
		}
		return nil
	})
}

// CleanStaleTemps removes, in the directory dir (not below it), the
// temporary files of sinks whose writer died without committing or
// aborting (killed at a hook timeout, say): those whose flock can be taken.
// A temporary file still locked by a live writer is kept. It returns the
// paths removed. dir is trusted (the administrator's, for `ocisnap gc`);
// nothing is followed out of it.
func CleanStaleTemps(dir string) (removed []string, err error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	names, err := CleanStaleTempsInRoot(root)
	for _, n := range names {
		removed = append(removed, filepath.Join(dir, n))
	}
	return removed, err
}

// CleanStaleTempsInRoot is CleanStaleTemps for a directory already open as
// root, for a caller that walks a tree by handles (so that no path is
// resolved again); it returns the names removed, relative to root.
func CleanStaleTempsInRoot(root *os.Root) (removed []string, err error) {
	return atomicfile.CleanStale(root)
}
