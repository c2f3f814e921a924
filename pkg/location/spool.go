package location

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// The spool (docs/locations.md, "When the registry cannot be reached"):
// every export to a registry is first staged as a complete OCI layout in an
// entry of the spool directory — root's, mode 0700, outside every allowed
// and view directory — together with the reference it goes to (never any
// credential). A pushed entry is removed; one whose push failed stays, whole,
// until PushPending delivers it. An entry is flocked while it is written or
// pushed.

// DefaultSpoolDir is root's spool of undelivered registry exports.
const DefaultSpoolDir = "/var/lib/ocisnap-spool"

// spoolTag is the tag of the staged snapshot in an entry's layout.
const spoolTag = "pending"

const spoolTarget = "target.json"

type spoolEntry struct {
	dir  string
	root *os.Root // the entry's layout, until handed to createLayout
	lock *os.File // the entry directory, flocked
	keep bool     // a spool entry (kept on failure), not a temporary one
}

type spoolTargetFile struct {
	Ref     string    `json:"ref"`
	Created time.Time `json:"created"`
	// Base is the manifest digest a layer was added to (io.ocisnap.persist
	// on docker://): the tag is moved only while it still points there.
	Base digest.Digest `json:"base,omitempty"`
}

// spoolFailure is the last failed delivery of an entry, for `ocisnap
// status` (never a credential: the registry client's errors hold none).
const spoolFailure = "failure.json"

type spoolFailureFile struct {
	Time  time.Time `json:"time"`
	Error string    `json:"error"`
	// BaseMoved: the tag points at another snapshot than the one the
	// layer was built on; only --force delivers it.
	BaseMoved bool `json:"base_moved,omitempty"`
}

func (e *spoolEntry) layoutDir() string { return filepath.Join(e.dir, "layout") }

func newSpoolEntry(spoolDir, ref string, base digest.Digest) (*spoolEntry, error) {
	e := &spoolEntry{}
	var err error
	if spoolDir == "" {
		e.dir, err = os.MkdirTemp("", "ocisnap-push-")
	} else {
		if err = os.MkdirAll(spoolDir, 0o700); err == nil {
			err = os.Chmod(spoolDir, 0o700)
		}
		if err == nil {
			e.dir, err = os.MkdirTemp(spoolDir, time.Now().UTC().Format("20060102T150405Z")+"-")
			e.keep = true
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: staging directory: %w", ref, err)
	}
	fail := func(err error) (*spoolEntry, error) {
		e.remove()
		return nil, fmt.Errorf("%s: staging directory %s: %w", ref, e.dir, err)
	}
	if e.lock, err = os.Open(e.dir); err != nil {
		return fail(err)
	}
	if err := flock(e.lock, lockEx); err != nil {
		return fail(err)
	}
	tj, _ := json.Marshal(spoolTargetFile{Ref: ref, Created: time.Now().UTC(), Base: base})
	if err := os.WriteFile(filepath.Join(e.dir, spoolTarget), tj, 0o600); err != nil {
		return fail(err)
	}
	if err := os.Mkdir(e.layoutDir(), 0o700); err != nil {
		return fail(err)
	}
	if e.root, err = os.OpenRoot(e.layoutDir()); err != nil {
		return fail(err)
	}
	return e, nil
}

// recordFailure records why the entry's delivery failed (best effort: the
// entry is delivered whether or not this is written).
func (e *spoolEntry) recordFailure(err error) {
	if !e.keep || err == nil {
		return
	}
	data, _ := json.Marshal(spoolFailureFile{Time: time.Now().UTC(), Error: err.Error(), BaseMoved: errors.Is(err, ErrBaseMoved)})
	// Not atomicfile: it flocks the directory, which e.lock holds.
	tmp := filepath.Join(e.dir, "."+spoolFailure+".tmp")
	if os.WriteFile(tmp, data, 0o600) == nil {
		os.Rename(tmp, filepath.Join(e.dir, spoolFailure))
	}
}

func readFailure(dir string) (time.Time, string, bool) {
	data, err := os.ReadFile(filepath.Join(dir, spoolFailure))
	if err != nil {
		return time.Time{}, "", false
	}
	var f spoolFailureFile
	if json.Unmarshal(data, &f) != nil {
		return time.Time{}, "", false
	}
	return f.Time, f.Error, f.BaseMoved
}

func (e *spoolEntry) unlock() {
	if e.lock != nil {
		e.lock.Close()
		e.lock = nil
	}
}

func (e *spoolEntry) remove() error {
	if e.root != nil {
		e.root.Close()
		e.root = nil
	}
	err := os.RemoveAll(e.dir)
	e.unlock()
	if err != nil {
		return fmt.Errorf("remove staging directory %s: %w", e.dir, err)
	}
	return nil
}

// Pending is one undelivered export in the spool.
type PendingPush struct {
	Dir     string // the entry
	Ref     string // where it goes
	Created time.Time
	Err     error // of its delivery, by PushPending
	// Base is the manifest the entry's layer was built on ("": a whole
	// snapshot).
	Base digest.Digest
	// LastFailure is the error of the last failed delivery (ListPending),
	// at FailedAt; BaseMoved when the tag had moved off Base.
	LastFailure string
	FailedAt    time.Time
	BaseMoved   bool
}

// PushPending delivers every complete entry of spoolDir that no live writer
// holds, oldest first, removing each one once pushed; entries a dead
// writer left incomplete are removed. It returns the entries it tried,
// each with its delivery error (nil: delivered), and an error only for a
// spool it could not read. A missing spool is empty.
//
// An entry whose layer was built on a manifest the tag no longer points
// at (another export moved it meanwhile) is not delivered: that would drop
// the newer snapshot from the tag. It stays, its error wrapping
// ErrBaseMoved, unless force, which moves the tag anyway.
func PushPending(ctx context.Context, spoolDir string, reg Registry, force bool) ([]PendingPush, error) {
	ents, err := os.ReadDir(spoolDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names) // the names start with their creation time
	var out []PendingPush
	for _, n := range names {
		pp, tried := pushEntry(ctx, filepath.Join(spoolDir, n), reg, force)
		if tried {
			out = append(out, pp)
		}
	}
	return out, nil
}

func pushEntry(ctx context.Context, dir string, reg Registry, force bool) (PendingPush, bool) {
	pp := PendingPush{Dir: dir}
	lock, err := os.Open(dir)
	if err != nil {
		return pp, false
	}
	defer lock.Close()
	if err := flock(lock, lockExNB); err != nil {
		return pp, false // a live writer or pusher
	}
	e := &spoolEntry{dir: dir, keep: true}
	data, err := os.ReadFile(filepath.Join(dir, spoolTarget))
	var t spoolTargetFile
	if err == nil {
		err = json.Unmarshal(data, &t)
	}
	if _, ierr := os.Stat(filepath.Join(e.layoutDir(), "index.json")); err != nil || ierr != nil {
		// A writer died before its commit: nothing to deliver.
		e.remove()
		return pp, false
	}
	pp.Ref, pp.Created, pp.Base = t.Ref, t.Created, t.Base
	host, repo, tag, _, err := ParseDockerRef(t.Ref)
	if err != nil || tag == "" {
		pp.Err = fmt.Errorf("spool entry %s: bad target %q", dir, t.Ref)
		return pp, true
	}
	base := t.Base
	if force {
		base = ""
	}
	if pp.Err = pushLayout(ctx, e.layoutDir(), host, repo, tag, base, reg); pp.Err == nil {
		pp.Err = e.remove()
	} else {
		e.recordFailure(pp.Err)
	}
	return pp, true
}

// ListPending lists the complete entries of spoolDir, oldest first, without
// delivering or locking any (for `ocisnap status`). An entry still being
// written or one a dead writer left incomplete has no index yet and is not
// listed. A missing spool is empty.
func ListPending(spoolDir string) ([]PendingPush, error) {
	ents, err := os.ReadDir(spoolDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []PendingPush
	for _, ent := range ents {
		if !ent.IsDir() || strings.HasPrefix(ent.Name(), ".") {
			continue
		}
		e := &spoolEntry{dir: filepath.Join(spoolDir, ent.Name())}
		data, err := os.ReadFile(filepath.Join(e.dir, spoolTarget))
		var t spoolTargetFile
		if err == nil {
			err = json.Unmarshal(data, &t)
		}
		if _, ierr := os.Stat(filepath.Join(e.layoutDir(), "index.json")); err != nil || ierr != nil {
			continue
		}
		pp := PendingPush{Dir: e.dir, Ref: t.Ref, Created: t.Created, Base: t.Base}
		pp.FailedAt, pp.LastFailure, pp.BaseMoved = readFailure(e.dir)
		out = append(out, pp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out, nil
}
