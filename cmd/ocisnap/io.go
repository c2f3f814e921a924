package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/policy"
	"github.com/ocisnap/ocisnap/pkg/progress"
)

// The operator is trusted: unlike the hook, whose paths come from
// annotations, the CLI reads and writes any path it is given. What it
// reads is still hostile (a snapshot's entries are confined by the
// engine).

// openInput opens a snapshot to read: a file, or stdin for "-". size is
// the file's size when it is a regular file, -1 otherwise.
func (a *app) openInput(name string) (r io.ReadCloser, size int64, err error) {
	if name == "-" {
		return io.NopCloser(a.stdin), -1, nil
	}
	if location.HoldsManifest(name) {
		return a.openManifestInput(context.Background(), name)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if fi.IsDir() {
		f.Close()
		return nil, 0, fmt.Errorf("%s: is a directory, not a snapshot", name)
	}
	size = -1
	if fi.Mode().IsRegular() {
		size = fi.Size()
	}
	return f, size, nil
}

// outputSink returns where a snapshot is written: stdout for "-" (never a
// terminal), otherwise the file name, written atomically through a
// temporary file in its directory (location's file sink, allowed to write
// exactly in that directory). The directory must exist.
func (a *app) outputSink(name string) (location.Sink, error) {
	if name == "" {
		return nil, usagef("no output: give -o FILE, or -o - for stdout")
	}
	if location.HoldsManifest(name) {
		p, err := trustedPolicy(name)
		if err != nil {
			return nil, err
		}
		return location.ParseSink(name, p, location.WithRegistry(a.reg))
	}
	if name == "-" {
		if progress.IsTerminal(a.stdout) {
			return nil, usagef("refusing to write a snapshot to a terminal: redirect stdout or give -o FILE")
		}
		return location.NewStreamSink(a.stdout, "stdout"), nil
	}
	abs, err := filepath.Abs(name)
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", name, err)
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("output %s: is a directory", name)
	}
	dir, base := filepath.Split(abs)
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("output %s: directory: %w", name, unwrapPath(err))
	}
	if fi, err := os.Stat(realDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("output %s: %s is not a directory", name, dir)
	}
	return location.ParseSink(filepath.Join(realDir, base), &policy.Policy{AllowDirs: []string{realDir}})
}

// unwrapPath drops the *fs.PathError wrapper, whose path the caller names
// already.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// thawingPending is a Pending whose beforeCommit runs first in Commit: the
// export thaws the container there, once the layer is read and before the
// file is synced. ReadFrom goes to the wrapped Pending's, so that file
// content is still copied in the kernel (copy_file_range).
type thawingPending struct {
	location.Pending
	beforeCommit func()
}

// SetLayerStats forwards the layer's stats to an oci:/docker:// pending.
func (p *thawingPending) SetLayerStats(entries, bytes int64) {
	location.SetLayerStats(p.Pending, entries, bytes)
}

func (p *thawingPending) Commit() error {
	if p.beforeCommit != nil {
		p.beforeCommit()
	}
	return p.Pending.Commit()
}

func (p *thawingPending) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := p.Pending.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(p.Pending, r)
}
