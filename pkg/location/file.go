package location

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

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

// tmpInfix and tmpRandLen shape temporary names: ".<base>.ocisnap-tmp-<hex>".
const (
	tmpInfix   = ".ocisnap-tmp-"
	tmpRandLen = 16 // hex digits
)

// maxAttempts bounds the retries of Create when a temporary name is taken
// or its file is removed by a concurrent stale-file cleaner.
const maxAttempts = 10

// Create opens (through the policy) the destination's parent, creating it
// if missing, removes stale temporary files of earlier writers of the same
// destination that died (see CleanStaleTemps), and creates a new temporary
// file there, locked with an exclusive flock for as long as it is written.
func (s *fileSink) Create(ctx context.Context) (Pending, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir, base, err := s.p.OpenParent(s.path)
	if err != nil {
		return nil, err
	}
	pend, err := create(dir, base, s.path)
	if err != nil {
		dir.Close()
		return nil, err
	}
	return pend, nil
}

func create(dir *os.Root, base, dest string) (*filePending, error) {
	dirf, err := dir.Open(".")
	if err != nil {
		return nil, fmt.Errorf("%q: open parent directory: %w", dest, err)
	}
	// Best effort: a temporary file we cannot clean is only wasted space.
	// Every dead writer's temporary file in this directory goes, whatever
	// its destination: live writers hold their flock and are kept.
	cleanStale(dir, func(name string) bool { return isTempOf(name, "") })
	for range maxAttempts {
		name := tempName(base)
		f, err := dir.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			dirf.Close()
			return nil, fmt.Errorf("%q: create temporary file: %w", dest, err)
		}
		if err := flock(f, lockEx); err != nil {
			f.Close()
			dir.Remove(name)
			dirf.Close()
			return nil, fmt.Errorf("%q: lock temporary file: %w", dest, err)
		}
		// A cleaner may have locked and removed the file between our open
		// and our flock (it took it for a dead writer's): start over.
		if fi, err := f.Stat(); err != nil || linkCount(fi) == 0 {
			f.Close()
			continue
		}
		return &filePending{
			dest: dest, dir: dir, dirf: dirf, base: base, tmp: name,
			f: f, w: bufio.NewWriterSize(f, bufSize),
		}, nil
	}
	dirf.Close()
	return nil, fmt.Errorf("%q: could not create a temporary file in %d attempts", dest, maxAttempts)
}

func tempName(base string) string {
	var b [tmpRandLen / 2]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return "." + base + tmpInfix + hex.EncodeToString(b[:])
}

// isTempOf reports whether name is a temporary file of a sink writing base
// ("" means of any base).
func isTempOf(name, base string) bool {
	if !strings.HasPrefix(name, ".") || len(name) < 1+len(tmpInfix)+tmpRandLen {
		return false
	}
	suffix := name[len(name)-tmpRandLen:]
	if _, err := hex.DecodeString(suffix); err != nil || strings.ToLower(suffix) != suffix {
		return false
	}
	rest, ok := strings.CutSuffix(name[:len(name)-tmpRandLen], tmpInfix)
	if !ok {
		return false
	}
	if base == "" {
		return len(rest) > 1
	}
	return rest == "."+base
}

// state of a filePending.
const (
	writing = iota
	committed
	aborted
	failed
)

type filePending struct {
	mu    sync.Mutex
	dest  string // as given, for messages
	dir   *os.Root
	dirf  *os.File // the same directory, for flock and fsync
	base  string
	tmp   string
	f     *os.File // the temporary file, flocked while open
	w     *bufio.Writer
	state int
	err   error // of a failed Commit
}

func (p *filePending) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != writing {
		return 0, p.closedErr()
	}
	n, err := p.w.Write(b)
	if err != nil {
		err = fmt.Errorf("%q: write temporary file %s: %w", p.dest, p.tmp, err)
	}
	return n, err
}

// ReadFrom appends what r yields after what is buffered; a file's content
// (an *os.File, also under an io.LimitReader) goes file to file in the
// kernel (os.File.ReadFrom: copy_file_range), no copy through user memory.
func (p *filePending) ReadFrom(r io.Reader) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != writing {
		return 0, p.closedErr()
	}
	if err := p.w.Flush(); err != nil {
		return 0, fmt.Errorf("%q: write temporary file %s: %w", p.dest, p.tmp, err)
	}
	n, err := p.f.ReadFrom(r)
	if err != nil {
		err = fmt.Errorf("%q: write temporary file %s: %w", p.dest, p.tmp, err)
	}
	return n, err
}

func (p *filePending) closedErr() error {
	switch p.state {
	case aborted:
		return ErrAborted
	case failed:
		return p.err
	}
	return fmt.Errorf("%q: %w", p.dest, os.ErrClosed)
}

// Commit flushes and fsyncs the temporary file, renames it over the
// destination and fsyncs the directory. The rename and the directory sync
// run under an exclusive flock of the directory, so that concurrent commits
// to it are serialised; the last one wins, whole. If Commit fails before
// the rename, the temporary file is removed and the destination untouched;
// if only the final directory sync fails, the new snapshot is in place but
// its durability is not known, and the error says so.
func (p *filePending) Commit() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.state {
	case committed:
		return nil
	case aborted, failed:
		return p.closedErr()
	}
	if err := p.commit(); err != nil {
		p.state, p.err = failed, err
		p.discard()
		return err
	}
	p.state = committed
	return p.release()
}

func (p *filePending) commit() error {
	if err := p.w.Flush(); err != nil {
		return fmt.Errorf("%q: write temporary file %s: %w", p.dest, p.tmp, err)
	}
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("%q: sync temporary file %s: %w", p.dest, p.tmp, err)
	}
	if err := flock(p.dirf, lockEx); err != nil {
		return fmt.Errorf("%q: lock directory: %w", p.dest, err)
	}
	defer flock(p.dirf, lockUn)
	if err := p.dir.Rename(p.tmp, p.base); err != nil {
		return fmt.Errorf("%q: rename temporary file into place: %w", p.dest, err)
	}
	p.tmp = "" // nothing left to discard
	if err := p.dirf.Sync(); err != nil {
		return fmt.Errorf("%q: renamed into place, but syncing the directory failed: %w", p.dest, err)
	}
	return nil
}

// Abort discards the snapshot: the temporary file is removed, the
// destination is untouched. After Commit it does nothing.
func (p *filePending) Abort() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != writing {
		return nil
	}
	p.state = aborted
	return p.discard()
}

// discard removes the temporary file (still holding its lock, so no
// cleaner mistakes it for a dead writer's meanwhile) and releases all.
func (p *filePending) discard() error {
	var err error
	if p.tmp != "" {
		if rerr := p.dir.Remove(p.tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = fmt.Errorf("%q: remove temporary file: %w", p.dest, rerr)
		}
		p.tmp = ""
	}
	return errors.Join(err, p.release())
}

func (p *filePending) release() error {
	if p.f == nil {
		return nil
	}
	err := p.f.Close()
	p.dirf.Close()
	p.dir.Close()
	p.f, p.w = nil, nil
	if err != nil {
		return fmt.Errorf("%q: close temporary file: %w", p.dest, err)
	}
	return nil
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
	return cleanStale(root, func(name string) bool { return isTempOf(name, "") })
}

// cleanStale removes the regular files in root whose names match and whose
// flock is free.
func cleanStale(root *os.Root, match func(string) bool) (removed []string, err error) {
	d, err := root.Open(".")
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, name := range names {
		if !match(name) {
			continue
		}
		ok, err := removeIfUnlocked(root, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		if ok {
			removed = append(removed, name)
		}
	}
	return removed, errors.Join(errs...)
}

func removeIfUnlocked(root *os.Root, name string) (bool, error) {
	fi, err := root.Lstat(name)
	if err != nil || !fi.Mode().IsRegular() {
		return false, ignoreNotExist(err)
	}
	f, err := root.OpenFile(name, os.O_RDONLY|openNonblock, 0)
	if err != nil {
		return false, ignoreNotExist(err)
	}
	defer f.Close()
	if ffi, err := f.Stat(); err != nil || !os.SameFile(fi, ffi) {
		return false, err
	}
	if err := flock(f, lockExNB); err != nil {
		if isWouldBlock(err) {
			return false, nil // a live writer
		}
		return false, err
	}
	// Locked: its writer is gone. Remove it if the name still is this file.
	if now, err := root.Lstat(name); err != nil || !os.SameFile(fi, now) {
		return false, ignoreNotExist(err)
	}
	if err := root.Remove(name); err != nil {
		return false, ignoreNotExist(err)
	}
	return true, nil
}

func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
