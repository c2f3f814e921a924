// Package diff lists the changes a snapshot makes, the way `podman diff`
// lists a container's: A (added), C (changed), D (deleted), one path each,
// plus which directories are opaque (hide everything the image had in them).
//
// A snapshot alone cannot tell a changed file from an added one: both are
// just entries. Given the base the snapshot applies to (the image's root
// file system, or the lower directory of the container's overlay), Changes
// decides as containers/storage does for `podman diff`
// (pkg/archive/changes.go): a path the base has is C, one it lacks is A; a
// directory whose mode and mtime equal the base's is left out unless it is
// the parent of an added or deleted path; an opaque directory the base has
// is D (its old contents are gone; what the snapshot puts in it is listed
// as added); every parent of an A or D path is at least C.
//
// The snapshot is hostile: its names are checked by layer.Reader. The base
// is trusted (the operator names it) but holds an image's symlinks, so it
// is read through an os.Root: a lookup never leaves it.
package diff

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/pkg/layer"
)

// Kind is the kind of a change, as `podman diff` prints it.
type Kind string

const (
	Added   Kind = "A"
	Changed Kind = "C"
	Deleted Kind = "D"
)

// Change is one changed path.
type Change struct {
	// Path is the absolute path inside the container ("/etc/app.conf").
	Path string `json:"path"`
	Kind Kind   `json:"kind"`
	// Opaque marks a directory that hides all the base's contents of it.
	Opaque bool `json:"opaque,omitempty"`
}

// entry is what Changes remembers of a snapshot entry.
type entry struct {
	whiteout bool
	opaque   bool
	dir      bool
	mode     fs.FileMode
	mtime    time.Time
	hasHdr   bool // false for a marker-only opaque entry
}

// Changes reads the snapshot r (plain or compressed, any whiteout format)
// to its end and returns its changes sorted by path, parents first. base
// may be nil: then every entry that is not a deletion is Added.
func Changes(ctx context.Context, r io.Reader, base *os.Root) ([]Change, error) {
	rd, err := layer.NewReader(r)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	entries := make(map[string]*entry)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if e.Path == "" {
			continue // the root: never listed
		}
		p := "/" + e.Path
		cur := entries[p]
		if cur == nil {
			cur = &entry{}
			entries[p] = cur
		}
		switch {
		case e.Whiteout:
			*cur = entry{whiteout: true}
		case e.Header == nil: // OCI opaque marker for a directory
			cur.opaque = true
		default:
			fi := e.Header.FileInfo()
			opaque := cur.opaque || e.Opaque
			*cur = entry{
				opaque: opaque && e.Header.Typeflag == tar.TypeDir,
				dir:    e.Header.Typeflag == tar.TypeDir,
				mode:   fi.Mode(),
				mtime:  e.Header.ModTime,
				hasHdr: true,
			}
		}
	}
	if base == nil {
		return sorted(withoutBase(entries)), nil
	}
	out, err := withBase(entries, base)
	if err != nil {
		return nil, err
	}
	return sorted(out), nil
}

func withoutBase(entries map[string]*entry) map[string]*Change {
	out := make(map[string]*Change, len(entries))
	for p, e := range entries {
		switch {
		case e.whiteout:
			out[p] = &Change{Path: p, Kind: Deleted}
		default:
			out[p] = &Change{Path: p, Kind: Added, Opaque: e.opaque}
		}
	}
	return out
}

func withBase(entries map[string]*entry, base *os.Root) (map[string]*Change, error) {
	out := make(map[string]*Change, len(entries))
	for p, e := range entries {
		if e.whiteout {
			out[p] = &Change{Path: p, Kind: Deleted}
			continue
		}
		bfi, err := lstat(base, p)
		if err != nil {
			return nil, err
		}
		switch {
		case e.opaque && bfi != nil:
			out[p] = &Change{Path: p, Kind: Deleted, Opaque: true}
		case bfi == nil:
			out[p] = &Change{Path: p, Kind: Added, Opaque: e.opaque}
		case e.hasHdr && e.dir && bfi.IsDir() && e.mode == bfi.Mode() && sameFsTime(e.mtime, bfi.ModTime()):
			// An unchanged directory: in the layer only as a parent.
		default:
			out[p] = &Change{Path: p, Kind: Changed}
		}
	}
	// Every parent of an addition or deletion is part of the change.
	for p, c := range out {
		if c.Kind == Changed {
			continue
		}
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := out[d]; !ok {
				out[d] = &Change{Path: d, Kind: Changed}
			}
		}
	}
	return out, nil
}

// errNotInBase is what resolveDir returns for a path the base does not
// have as a directory: a parent is not a directory, or a symlink leads out
// of the base (absolute, or more ".." than there are parents).
var errNotInBase = errors.New("not in the base")

// maxSymlinks bounds the symlinks one lookup follows (the kernel's
// MAXSYMLINKS, 40).
const maxSymlinks = 40

// lstat looks p up in base without following a final symlink; nil when
// the base does not have it (also when a parent is not a directory or a
// symlink leads out of base).
func lstat(base *os.Root, p string) (fs.FileInfo, error) {
	dir, err := resolveDir(base, path.Dir(p))
	if err == nil {
		var fi fs.FileInfo
		fi, err = base.Lstat(path.Join(dir, path.Base(p)))
		if err == nil {
			return fi, nil
		}
	}
	if errors.Is(err, errNotInBase) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return nil, nil
	}
	return nil, fmt.Errorf("base %s: %w", p, err)
}

// resolveDir resolves the directory p of the base to a path without
// symlinks, one element at a time: each element is looked up (Lstat
// through base) below parents already resolved to real directories, and a
// symlink's target is spliced in front of what remains. So whether a path
// leads out of the base is decided here (errNotInBase), not read from the
// text of the error os.Root returns for an escape, which has no exported
// sentinel. base still confines every lookup.
func resolveDir(base *os.Root, p string) (string, error) {
	var cur []string // resolved: every element a directory
	todo := strings.Split(p, "/")
	links := 0
	for len(todo) > 0 {
		elem := todo[0]
		todo = todo[1:]
		switch elem {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return "", errNotInBase
			}
			cur = cur[:len(cur)-1]
			continue
		}
		next := path.Join(path.Join(cur...), elem)
		fi, err := base.Lstat(next)
		if err != nil {
			return "", err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if links++; links > maxSymlinks {
				return "", fmt.Errorf("%s: %w", next, unix.ELOOP)
			}
			target, err := base.Readlink(next)
			if err != nil {
				return "", err
			}
			if path.IsAbs(target) {
				return "", errNotInBase
			}
			todo = append(strings.Split(target, "/"), todo...)
		case fi.IsDir():
			cur = append(cur, elem)
		default:
			return "", errNotInBase
		}
	}
	if len(cur) == 0 {
		return ".", nil
	}
	return path.Join(cur...), nil
}

// sameFsTime is containers/storage's: equal, or equal seconds when one side
// has no nanoseconds (a file system or archive that keeps only seconds).
func sameFsTime(a, b time.Time) bool {
	return a.Equal(b) || (a.Unix() == b.Unix() && (a.Nanosecond() == 0 || b.Nanosecond() == 0))
}

// sorted orders changes by path, element by element, so that a directory
// comes right before its contents.
func sorted(m map[string]*Change) []Change {
	out := make([]Change, 0, len(m))
	for _, c := range m {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b Change) int { return comparePaths(a.Path, b.Path) })
	return out
}

func comparePaths(a, b string) int {
	ae, be := strings.Split(a, "/"), strings.Split(b, "/")
	return slices.Compare(ae, be)
}
