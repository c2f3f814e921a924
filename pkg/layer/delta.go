package layer

import (
	"errors"
	"strings"
)

// FileID identifies one version of an entry of an upper directory: it
// changes whenever the entry does (a write, chmod, chown, xattr, link or
// rename changes the ctime; a new file has a new inode), so an entry whose
// FileID is the one recorded earlier is unchanged since
// (docs/snapshot-format.md, "Layered snapshots"). A whiteout's is its type
// alone (StatFileID).
type FileID struct {
	Ino     uint64
	CtimeNs int64
	Size    int64
	// Mode is the file type and permission bits (st_mode).
	Mode uint32
}

// Delta tells Write which entries of the upper are unchanged since a
// record was taken, and which recorded entries are gone. Write calls Entry
// for every entry below the root in its walk order (ComparePaths), and
// Finish once at the end.
//
// An unchanged entry is left out; an unchanged directory is written only
// when something below it is. A directory recorded as opaque is not
// written as opaque again (Unchanged, ChangedOpaque): an earlier layer
// said so, and saying it again would hide that layer's children; if the
// container replaced it, the old children are gone and reported so. Each path
// Entry or Finish returns as gone is written as a whiteout, before the
// entry; paths under an excluded one are dropped.
type Delta interface {
	Entry(rel string, id FileID) (c Change, gone []string, err error)
	Finish() (gone []string, err error)
}

// Change is what a Delta says of an entry.
type Change int

const (
	// New: not recorded, or recorded as another type, or changed.
	New Change = iota
	// ChangedOpaque: recorded as an opaque directory, changed since.
	ChangedOpaque
	// Unchanged: as recorded.
	Unchanged
)

// WithDelta makes Write leave out what d says is unchanged and write
// whiteouts for what d says is gone (a layer to add on top of earlier
// ones), or, with a d that reports nothing gone, leave out entries the
// runtime put into the upper (its stubs).
func WithDelta(d Delta) WriteOpt {
	return writeOptFunc(func(o *writeOptions) error {
		if d == nil {
			return errors.New("layer: nil delta")
		}
		o.delta = d
		return nil
	})
}

// ComparePaths orders relative paths as Write walks them: depth first, each
// directory's names sorted bytewise (a path before everything beneath it,
// "a/b" before "a-c"). It is -1, 0 or +1.
func ComparePaths(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '/' {
			return -1
		}
		if cb == '/' {
			return 1
		}
		if ca < cb {
			return -1
		}
		return 1
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

// excludedPath reports whether rel or one of its parents is excluded.
func (o *writeOptions) excludedPath(rel string) bool {
	for p := rel; p != ""; {
		if o.exclude[p] {
			return true
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return false
}
