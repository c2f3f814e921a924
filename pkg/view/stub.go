package view

import (
	"errors"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// stubKind is what a stub was created as.
type stubKind int

const (
	stubAny  stubKind = iota // unknown (a record of an older version)
	stubDir                  // a directory
	stubFile                 // an empty regular file
)

// stubRef is one recorded mountpoint stub.
type stubRef struct {
	path string // container path
	kind stubKind
}

// stubsOf returns the stubs recorded for b, outermost first. A record of
// an older version names only the outermost component created
// (LegacyStub); every component from it down to the destination was
// created then too, so when the destination lies beneath it as recorded
// (no symlink on the way) they are all returned, of unknown kind;
// otherwise only LegacyStub is.
func stubsOf(b *BindState) []stubRef {
	var out []stubRef
	for _, s := range b.Stubs {
		k := stubFile
		if s.Dir {
			k = stubDir
		}
		out = append(out, stubRef{path: s.Path, kind: k})
	}
	if b.LegacyStub == "" {
		return out
	}
	top := path.Clean("/" + b.LegacyStub)
	out = append(out, stubRef{path: top})
	if dst := path.Clean("/" + b.Dst); strings.HasPrefix(dst, top+"/") && top != "/" {
		p := top
		for _, c := range strings.Split(strings.TrimPrefix(dst, top+"/"), "/") {
			p += "/" + c
			out = append(out, stubRef{path: p})
		}
	}
	return out
}

// stubRel returns the recorded container path p relative to the root, and
// false if it is not a clean path strictly below it.
func stubRel(p string) (string, bool) {
	rel := strings.TrimLeft(p, "/")
	if rel == "" || path.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	return rel, true
}

// Excludes returns the container paths an export of the writable layer
// root (the container's overlay upper directory) leaves out for views:
// excluded (paths left out already, such as the runtime's mount
// destinations) plus each bind destination, plus each mountpoint stub still
// recorded (release did not run or failed) that holds nothing of the
// container's: an empty regular file, or a directory holding only excluded
// paths. A stub the container wrote into (a file beside a bound kernel) is
// exported with what it holds (README.md, "Boot views"): an export leaves
// out the bind destinations themselves, never the files beside them.
func Excludes(root string, views []State, excluded []string) []string {
	out := append([]string{}, excluded...)
	skip := make(map[string]bool)
	for _, p := range excluded {
		skip[strings.TrimLeft(path.Clean("/"+p), "/")] = true
	}
	var stubs []stubRef
	for _, v := range views {
		for i := range v.Binds {
			b := &v.Binds[i]
			dst := path.Clean("/" + b.Dst)
			out = append(out, dst)
			skip[strings.TrimLeft(dst, "/")] = true
			stubs = append(stubs, stubsOf(b)...)
		}
	}
	if len(stubs) == 0 {
		return out
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return out // nothing to look at: only what is known to be excluded
	}
	defer r.Close()
	// Deepest first, so that a directory is judged after what is in it.
	sort.SliceStable(stubs, func(i, j int) bool {
		return strings.Count(stubs[i].path, "/") > strings.Count(stubs[j].path, "/")
	})
	for _, s := range stubs {
		rel, ok := stubRel(s.path)
		if !ok || skip[rel] {
			continue
		}
		if emptyStub(r, rel, s.kind, skip) {
			skip[rel] = true
			out = append(out, "/"+rel)
		}
	}
	return out
}

// emptyStub reports whether rel in r is still an empty stub of kind k: an
// empty regular file, or a directory whose entries are all in skip. Any
// doubt (a symlink, an unreadable directory) answers false: the path is
// exported.
func emptyStub(r *os.Root, rel string, k stubKind, skip map[string]bool) bool {
	fi, err := r.Lstat(rel)
	if err != nil {
		return false
	}
	switch {
	case fi.Mode().IsRegular():
		return k != stubDir && fi.Size() == 0
	case !fi.IsDir() || k == stubFile:
		return false
	}
	d, err := r.Open(rel)
	if err != nil {
		return false
	}
	defer d.Close()
	if fi2, err := d.Stat(); err != nil || !os.SameFile(fi, fi2) {
		return false
	}
	for {
		names, err := d.Readdirnames(256)
		for _, n := range names {
			if !skip[rel+"/"+n] {
				return false
			}
		}
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
	}
}
