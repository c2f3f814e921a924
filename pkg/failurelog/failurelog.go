// Package failurelog keeps the recent failures of hook runs that nobody
// sees: an export at poststop, whose stderr Podman throws away and whose
// exit status runc ignores unless the hook is strict. `ocisnap status`
// lists them (docs/failure-behaviour.md).
//
// A log is a root-only directory (DefaultDir, mode 0700) of one small JSON
// file per failure, named by its time so that names sort oldest first. Each
// file is written atomically (package atomicfile), so concurrent hooks
// need no lock: each adds its own file, then removes the oldest beyond the
// bound (Dir.Max). A reader sees whole records only.
//
// The directory is persistent (/var/lib, not /run): a failed export at
// shutdown, when every container stops, must still be there when the
// operator looks after the reboot. It is bounded: at most Max records of at
// most maxCause bytes of cause each.
//
// Records hold what the hook was told (a container id, an annotation
// value) and an error text; they are shown, never acted on. Do not put the
// directory inside a directory an annotation may write to (an --allow-dir):
// the hook refuses such a configuration.
package failurelog

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ocisnap/ocisnap/internal/atomicfile"
)

// DefaultDir is the default failure log of a root hook (ocisnap-hook(8),
// FILES; --status-dir).
const DefaultDir = "/var/lib/ocisnap-status"

// DefaultMax is how many records a log keeps by default.
const DefaultMax = 100

// maxCause bounds a record's cause, in bytes: an error naming a few paths
// fits many times over.
const maxCause = 4096

// Kinds of failures.
const (
	KindExport      = "export"       // an export at poststop
	KindReleaseView = "release-view" // a view left mounted for `ocisnap gc`
	KindState       = "state"        // a state record that could not be read or written
)

// Record is one failure.
type Record struct {
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	// Container is the container's id; Name its name when the engine gave
	// one (a Kubernetes container name), else empty.
	Container string `json:"container"`
	Name      string `json:"name,omitempty"`
	// Annotation is the key that asked for what failed; Dest the
	// destination or source it named.
	Annotation string `json:"annotation,omitempty"`
	Dest       string `json:"dest,omitempty"`
	Cause      string `json:"cause"`
	// File is the record's file name in the log (set by List).
	File string `json:"-"`
}

// Dir is a failure log.
type Dir struct {
	// Path is the directory; "" is DefaultDir.
	Path string
	// Max is how many records it keeps; 0 is DefaultMax.
	Max int
}

const (
	suffix   = ".json"
	dirPerm  = 0o700
	filePerm = 0o600
	// nameDigits is the width of the time (Unix nanoseconds) in a name,
	// so that names sort by time; randLen the hex digits that follow it.
	nameDigits = 20
	randLen    = 8
)

func (d Dir) dir() string {
	if d.Path == "" {
		return DefaultDir
	}
	return d.Path
}

func (d Dir) max() int {
	if d.Max <= 0 {
		return DefaultMax
	}
	return d.Max
}

// Add stores r (its Time set to now if zero, its cause cut to maxCause
// bytes) and removes the oldest records beyond Max. The directory is
// created (mode 0700) if missing.
func (d Dir) Add(r Record) error {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC()
	r.Cause = truncate(r.Cause, maxCause)
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode failure record: %w", err)
	}
	data = append(data, '\n')
	if err := os.MkdirAll(d.dir(), dirPerm); err != nil {
		return fmt.Errorf("create failure log %s: %w", d.dir(), err)
	}
	root, err := os.OpenRoot(d.dir())
	if err != nil {
		return fmt.Errorf("open failure log: %w", err)
	}
	defer root.Close()
	if err := atomicfile.WriteFile(root, recordName(r.Time), data, filePerm); err != nil {
		return fmt.Errorf("write failure record in %s: %w", d.dir(), err)
	}
	if err := d.prune(root); err != nil {
		return fmt.Errorf("failure log %s: %w", d.dir(), err)
	}
	return nil
}

// recordName is "<unix nanoseconds, 20 digits>-<8 hex digits>.json".
func recordName(t time.Time) string {
	var b [randLen / 2]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return fmt.Sprintf("%0*d-%s%s", nameDigits, t.UnixNano(), hex.EncodeToString(b[:]), suffix)
}

// isRecordName reports whether name has recordName's form.
func isRecordName(name string) bool {
	base, ok := strings.CutSuffix(name, suffix)
	if !ok || len(base) != nameDigits+1+randLen || base[nameDigits] != '-' {
		return false
	}
	if _, err := strconv.ParseUint(base[:nameDigits], 10, 64); err != nil {
		return false
	}
	h := base[nameDigits+1:]
	_, err := hex.DecodeString(h)
	return err == nil && strings.ToLower(h) == h
}

// names returns the record names in root, oldest first.
func names(root *os.Root) ([]string, error) {
	f, err := root.Open(".")
	if err != nil {
		return nil, err
	}
	all, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, n := range all {
		if isRecordName(n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// prune removes the oldest records beyond Max, and the temporary files of
// writers that died. Concurrent pruners may each remove some of the same
// files: a record already gone is fine. Each keeps the newest Max it
// listed, and a record being added is newer than all it could remove.
func (d Dir) prune(root *os.Root) error {
	atomicfile.CleanStale(root) // best effort: a dead writer's temporary file is only wasted space
	ns, err := names(root)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range ns[:max(0, len(ns)-d.max())] {
		if err := root.Remove(n); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("rotate: %w", err))
		}
	}
	return errors.Join(errs...)
}

// List returns the records, newest first, and one error per file that
// could not be read. A missing directory holds none.
func (d Dir) List() ([]Record, []error) {
	root, err := os.OpenRoot(d.dir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, []error{fmt.Errorf("open failure log: %w", err)}
	}
	defer root.Close()
	ns, err := names(root)
	if err != nil {
		return nil, []error{fmt.Errorf("list failure log %s: %w", d.dir(), err)}
	}
	var recs []Record
	var errs []error
	for _, n := range slices.Backward(ns) {
		data, err := root.ReadFile(n)
		if errors.Is(err, fs.ErrNotExist) {
			continue // rotated away meanwhile
		}
		var r Record
		if err == nil {
			err = json.Unmarshal(data, &r)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("failure record %s: %w", filepath.Join(d.dir(), n), err))
			continue
		}
		r.File = n
		recs = append(recs, r)
	}
	return recs, errs
}

// truncate cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = " [...]"
	s = s[:n-len(mark)]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + mark
}
