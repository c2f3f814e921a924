//go:build !linux

package policy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// Outside Linux ocisnap does not run as a hook; these keep the package
// building for tools and tests. Lookups go through os.Root, which refuses
// an escape too; such a refusal is reported as an I/O error there, not as
// ErrNotAllowed (os does not export its escape error).
const (
	readFlags = os.O_RDONLY
	dirFlag   = 0
)

func clearNonblock(*os.File) error { return nil }

func openIn(unsafePath, dir, rel string, wantDir bool, what string) (*os.File, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, &PathError{Path: unsafePath, Reason: "open " + what, Err: err}
	}
	defer root.Close()
	fi, err := root.Stat(rel)
	if err != nil {
		return nil, &PathError{Path: unsafePath, Err: err}
	}
	if err := checkType(unsafePath, fi.Mode(), wantDir); err != nil {
		return nil, err
	}
	f, err := root.OpenFile(rel, readFlags, 0)
	if err != nil {
		return nil, &PathError{Path: unsafePath, Err: err}
	}
	if fi, err = f.Stat(); err == nil {
		err = checkType(unsafePath, fi.Mode(), wantDir)
	}
	if err == nil && wantDir {
		if top, serr := root.Stat("."); serr != nil || os.SameFile(fi, top) {
			err = notAllowed(unsafePath, "resolves to the "+what+" itself")
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkOwner cannot read an owner portably: view sources are refused.
func checkOwner(unsafePath string, fi fs.FileInfo) error {
	return notAllowed(unsafePath, "file owners cannot be checked on this system")
}

func openParentIn(unsafePath, dir, rel string) (*os.Root, string, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, "", &PathError{Path: unsafePath, Reason: "open allowed directory", Err: err}
	}
	defer root.Close()
	parentRel, base := filepath.Dir(rel), filepath.Base(rel)
	if parentRel != "." {
		if err := root.MkdirAll(parentRel, 0o700); err != nil {
			return nil, "", &PathError{Path: unsafePath, Err: err}
		}
	}
	pdir, err := root.OpenRoot(parentRel)
	if err != nil {
		return nil, "", &PathError{Path: unsafePath, Err: err}
	}
	fi, err := pdir.Lstat(base)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return pdir, base, nil
	case err != nil:
		err = &PathError{Path: unsafePath, Err: err}
	case fi.Mode()&fs.ModeSymlink != 0:
		err = notAllowed(unsafePath, "destination is a symbolic link")
	default:
		err = checkType(unsafePath, fi.Mode(), false)
	}
	if err != nil {
		pdir.Close()
		return nil, "", err
	}
	return pdir, base, nil
}

func openDirIn(unsafePath, dir, rel string, create bool) (*os.Root, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, &PathError{Path: unsafePath, Reason: "open allowed directory", Err: err}
	}
	defer root.Close()
	if create {
		if err := root.MkdirAll(rel, 0o700); err != nil {
			return nil, &PathError{Path: unsafePath, Err: err}
		}
	}
	r, err := root.OpenRoot(rel)
	if err != nil {
		return nil, &PathError{Path: unsafePath, Err: err}
	}
	return r, nil
}
