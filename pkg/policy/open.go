package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// OpenRead opens unsafePath, a regular file inside an allowed directory,
// for reading (a restore source, a file: view). It refuses, wrapping
// ErrNotAllowed, a path that is relative or outside every allowed directory,
// the allowed directory itself, a path that leads out of its allowed
// directory through a symlink, and anything that is not a regular file; it
// never blocks on a FIFO. Other errors are the os error, named with the path.
func (p *Policy) OpenRead(unsafePath string) (*os.File, error) {
	f, err := p.openExisting(unsafePath, false)
	if err != nil {
		return nil, err
	}
	if err := clearNonblock(f); err != nil {
		f.Close()
		return nil, &PathError{Path: unsafePath, Err: err}
	}
	return f, nil
}

// OpenDir opens unsafePath, an existing directory inside an allowed
// directory (a dir: view source), with the same checks as OpenRead.
func (p *Policy) OpenDir(unsafePath string) (*os.File, error) {
	return p.openExisting(unsafePath, true)
}

// openExisting opens an existing file (or directory, if wantDir) inside an
// allowed directory, following symlinks only while they stay inside it.
// The type is checked before opening (so that no FIFO or device is ever
// opened) and again on the open file (so that a swap in between is caught).
func (p *Policy) openExisting(unsafePath string, wantDir bool) (*os.File, error) {
	dir, rel, err := p.resolve(unsafePath)
	if err != nil {
		return nil, err
	}
	root, err := openRoot(unsafePath, dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	fi, err := root.Stat(rel)
	if err != nil {
		return nil, rootError(unsafePath, dir, err)
	}
	if err := checkType(unsafePath, fi.Mode(), wantDir); err != nil {
		return nil, err
	}
	flag := readFlags
	if wantDir {
		flag |= dirFlag
	}
	f, err := root.OpenFile(rel, flag, 0)
	if err != nil {
		return nil, rootError(unsafePath, dir, err)
	}
	if fi, err = f.Stat(); err != nil {
		f.Close()
		return nil, &PathError{Path: unsafePath, Err: err}
	}
	if err := checkType(unsafePath, fi.Mode(), wantDir); err != nil {
		f.Close()
		return nil, err
	}
	if wantDir {
		// A symlink to "." (or ".." from a subdirectory) would hand out the
		// allowed directory itself, which the lexical check refuses.
		if top, err := root.Stat("."); err != nil || os.SameFile(fi, top) {
			f.Close()
			return nil, notAllowed(unsafePath, "resolves to the allowed directory itself")
		}
	}
	return f, nil
}

// OpenParent prepares a write to unsafePath (an export destination): after
// the same checks as OpenRead, it creates the missing parent directories
// inside the allowed directory (mode 0700), and returns the parent directory
// as an os.Root together with the final component, for the caller to create
// a temporary file in and rename over base. An existing destination must be
// a regular file: a directory, a symlink or any other type is refused.
// The caller closes dir.
func (p *Policy) OpenParent(unsafePath string) (dir *os.Root, base string, err error) {
	allowDir, rel, err := p.resolve(unsafePath)
	if err != nil {
		return nil, "", err
	}
	root, err := openRoot(unsafePath, allowDir)
	if err != nil {
		return nil, "", err
	}
	defer root.Close()
	parentRel, base := filepath.Dir(rel), filepath.Base(rel)
	if parentRel != "." {
		if err := root.MkdirAll(parentRel, 0o700); err != nil {
			return nil, "", rootError(unsafePath, allowDir, err)
		}
	}
	dir, err = root.OpenRoot(parentRel)
	if err != nil {
		return nil, "", rootError(unsafePath, allowDir, err)
	}
	fi, err := dir.Lstat(base)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return dir, base, nil
	case err != nil:
		err = rootError(unsafePath, allowDir, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		err = notAllowed(unsafePath, "destination is a symbolic link")
	default:
		err = checkType(unsafePath, fi.Mode(), false)
	}
	if err != nil {
		dir.Close()
		return nil, "", err
	}
	return dir, base, nil
}

func openRoot(unsafePath, dir string) (*os.Root, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, &PathError{Path: unsafePath, Reason: "open allowed directory", Err: err}
	}
	return root, nil
}

// rootError turns an os.Root error into a PathError. os.Root reports a path
// leading out of the root with an unexported error whose text is fixed
// (os.errPathEscapes); that case is a policy refusal, not an I/O error.
func rootError(unsafePath, dir string, err error) error {
	if isEscape(err) {
		return notAllowed(unsafePath, fmt.Sprintf("leads out of the allowed directory %s through a symbolic link", dir))
	}
	return &PathError{Path: unsafePath, Err: err}
}

// isEscape reports whether the innermost error of err's chain is
// os.errPathEscapes (Root.MkdirAll nests one PathError in another).
func isEscape(err error) bool {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err != nil && err.Error() == "path escapes from parent"
		}
		err = u
	}
}

func checkType(unsafePath string, m fs.FileMode, wantDir bool) error {
	switch {
	case wantDir && m.IsDir(), !wantDir && m.IsRegular():
		return nil
	case wantDir:
		return notAllowed(unsafePath, "not a directory ("+kind(m)+")")
	default:
		return notAllowed(unsafePath, "not a regular file ("+kind(m)+")")
	}
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "of type " + m.Type().String()
}
