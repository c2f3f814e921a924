package main

import (
	"bufio"
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
		return &stdoutSink{f: a.stdout}, nil
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

// stdoutSink writes a snapshot to stdout. Abort cannot take back what was
// written: a reader sees a truncated snapshot, which every snapshot reader
// (ocisnap's, tar's) reports.
type stdoutSink struct{ f *os.File }

func (s *stdoutSink) String() string { return "stdout" }

func (s *stdoutSink) Create(ctx context.Context) (location.Pending, error) {
	return &stdoutPending{w: bufio.NewWriterSize(s.f, 1<<20)}, nil
}

type stdoutPending struct {
	w    *bufio.Writer
	done bool
}

func (p *stdoutPending) Write(b []byte) (int, error) {
	if p.done {
		return 0, location.ErrAborted
	}
	return p.w.Write(b)
}

func (p *stdoutPending) Commit() error {
	if p.done {
		return location.ErrAborted
	}
	p.done = true
	if err := p.w.Flush(); err != nil {
		return fmt.Errorf("write stdout: %w", err)
	}
	return nil
}

func (p *stdoutPending) Abort() error {
	p.done = true
	return nil
}

// created is a Sink whose Pending was created already (so that a bad
// output fails before anything else is done, a container frozen say).
// beforeCommit runs first in Commit: the export thaws the container there,
// once the layer is read and before the file is synced.
type created struct {
	location.Pending
	name         string
	beforeCommit func()
}

func (c *created) String() string { return c.name }

func (c *created) Create(context.Context) (location.Pending, error) { return c, nil }

// SetLayerStats forwards the layer's stats to an oci:/docker:// pending.
func (c *created) SetLayerStats(entries, bytes int64) {
	location.SetLayerStats(c.Pending, entries, bytes)
}

func (c *created) Commit() error {
	if c.beforeCommit != nil {
		c.beforeCommit()
	}
	return c.Pending.Commit()
}
