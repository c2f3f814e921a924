package policy

import (
	"fmt"
	"io/fs"
	"os"
)

// OpenRead opens unsafePath, a regular file inside an allowed directory,
// for reading (a restore source). It refuses, wrapping ErrNotAllowed, a
// path that is relative, outside every allowed directory or inside a view
// directory, the allowed directory itself, a path that leads out of its
// allowed directory through a symlink or "..", and anything that is not a
// regular file; it never blocks on a FIFO. Other errors are the os error,
// named with the path.
func (p *Policy) OpenRead(unsafePath string) (*os.File, error) {
	return p.openFile(unsafePath, roleSnapshot)
}

// OpenViewFile opens unsafePath, a file: view image, for reading: a regular
// file inside a view directory (and not inside an allowed directory), with
// OpenRead's checks. The opened file must also be owned by root, or by the
// hook's own uid (a rootless hook, whose user namespace maps the user who
// runs podman to uid 0, sees that user's files as owned by uid 0), and not
// be writable by group or others: the kernel will parse it as a file
// system. Every refusal wraps ErrNotAllowed and names the path.
func (p *Policy) OpenViewFile(unsafePath string) (*os.File, error) {
	return p.openFile(unsafePath, roleView)
}

// OpenViewDir opens unsafePath, a dir: view source: an existing directory
// inside a view directory (not the view directory itself), owned and
// protected as OpenViewFile requires of an image. (Only the directory is
// checked, not what it holds: it is bound read-only, never parsed.)
func (p *Policy) OpenViewDir(unsafePath string) (*os.File, error) {
	return p.openExisting(unsafePath, roleView, true)
}

func (p *Policy) openFile(unsafePath string, r role) (*os.File, error) {
	f, err := p.openExisting(unsafePath, r, false)
	if err != nil {
		return nil, err
	}
	if err := clearNonblock(f); err != nil {
		f.Close()
		return nil, &PathError{Path: unsafePath, Err: err}
	}
	return f, nil
}

// openExisting opens an existing file (or directory, if wantDir) of role r,
// following symlinks only while they stay inside the role's directory, and,
// for a view source, checks its owner and mode on the opened descriptor.
func (p *Policy) openExisting(unsafePath string, r role, wantDir bool) (*os.File, error) {
	dir, rel, err := p.resolve(unsafePath, r)
	if err != nil {
		return nil, err
	}
	f, err := openIn(unsafePath, dir, rel, wantDir, r.dirName())
	if err != nil {
		return nil, err
	}
	if r == roleView {
		fi, err := f.Stat()
		if err == nil {
			err = checkOwner(unsafePath, fi)
		} else {
			err = &PathError{Path: unsafePath, Err: err}
		}
		if err != nil {
			f.Close()
			return nil, err
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
	allowDir, rel, err := p.resolve(unsafePath, roleSnapshot)
	if err != nil {
		return nil, "", err
	}
	return openParentIn(unsafePath, allowDir, rel)
}

// dirName names the directories of a role in errors.
func (r role) dirName() string {
	if r == roleView {
		return "view directory"
	}
	return "allowed directory"
}

// escapeError is the refusal of a path whose resolution left its directory.
func escapeError(unsafePath, what, dir string) error {
	return notAllowed(unsafePath, fmt.Sprintf("leads out of the %s %s through a symbolic link or \"..\"", what, dir))
}

// checkMode refuses a view source that others than its owner may write.
func checkMode(unsafePath string, fi fs.FileInfo) error {
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return notAllowed(unsafePath, fmt.Sprintf("writable by group or others (mode %#o): a view source must be writable by its owner only", perm))
	}
	return nil
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

// OpenDir opens unsafePath, a directory inside an allowed directory (an
// oci: image layout), as an os.Root, with OpenParent's checks: it must
// resolve strictly inside an allowed directory, never through a symlink
// leading out, and not inside a view directory. With create, missing
// directories (the layout's own included) are made, mode 0700; an
// existing path that is not a directory is refused. Everything done through
// the returned root stays inside it (os.Root). The caller closes it.
func (p *Policy) OpenDir(unsafePath string, create bool) (*os.Root, error) {
	allowDir, rel, err := p.resolve(unsafePath, roleSnapshot)
	if err != nil {
		return nil, err
	}
	return openDirIn(unsafePath, allowDir, rel, create)
}
