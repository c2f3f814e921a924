package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// readFlags never block in open(2): a FIFO swapped in after the type check
// opens at once (and is then refused by the second check); O_NOCTTY keeps a
// terminal from becoming the hook's controlling terminal.
const (
	readFlags = os.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY
	dirFlag   = unix.O_DIRECTORY
)

// resolveFlags confine a lookup to its directory: RESOLVE_BENEATH fails
// with EXDEV on a ".." or a symlink leading out (and on any absolute
// symlink), RESOLVE_NO_MAGICLINKS refuses /proc's magic links.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS

// maxRetries bounds the EAGAIN retries of openat2, which the kernel returns
// for RESOLVE_BENEATH when a rename raced with the lookup.
const maxRetries = 64

// openat2 opens path beneath dirfd (see resolveFlags), close-on-exec.
func openat2(dirfd int, path string, flags int) (int, error) {
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: resolveFlags}
	for i := 0; ; i++ {
		fd, err := unix.Openat2(dirfd, path, how)
		if err == unix.EINTR || (err == unix.EAGAIN && i < maxRetries) {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "openat2", Path: path, Err: err}
		}
		return fd, nil
	}
}

// isEscape reports whether err is a resolution that left its directory.
func isEscape(err error) bool { return errors.Is(err, unix.EXDEV) }

// resolveError turns a lookup error into a PathError: an escape is a
// policy refusal, anything else an I/O error.
func resolveError(unsafePath, what, dir string, err error) error {
	if isEscape(err) {
		return escapeError(unsafePath, what, dir)
	}
	return &PathError{Path: unsafePath, Err: err}
}

// openDir opens a configured directory (a trusted path: symlinks in it are
// followed) as the starting point of lookups.
func openDir(unsafePath, what, dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &PathError{Path: unsafePath, Reason: "open " + what, Err: &os.PathError{Op: "open", Path: dir, Err: err}}
	}
	return fd, nil
}

// openIn opens rel beneath the directory dir. The type is checked on an
// O_PATH descriptor first (which opens nothing: no FIFO blocks, no device
// driver runs) and again on the opened file (so that a swap in between is
// caught). A directory must not be dir itself (reached through a symlink to
// "." or ".."), which the lexical check refuses.
func openIn(unsafePath, dir, rel string, wantDir bool, what string) (*os.File, error) {
	root, err := openDir(unsafePath, what, dir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(root)
	pfd, err := openat2(root, rel, unix.O_PATH)
	if err != nil {
		return nil, resolveError(unsafePath, what, dir, err)
	}
	var st unix.Stat_t
	err = unix.Fstat(pfd, &st)
	unix.Close(pfd)
	if err != nil {
		return nil, &PathError{Path: unsafePath, Err: &os.PathError{Op: "fstat", Path: rel, Err: err}}
	}
	if err := checkType(unsafePath, fileMode(st.Mode), wantDir); err != nil {
		return nil, err
	}
	flags := readFlags
	if wantDir {
		flags |= dirFlag
	}
	fd, err := openat2(root, rel, flags)
	if err != nil {
		return nil, resolveError(unsafePath, what, dir, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir, rel))
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, &PathError{Path: unsafePath, Err: err}
	}
	if err := checkType(unsafePath, fi.Mode(), wantDir); err != nil {
		f.Close()
		return nil, err
	}
	if wantDir {
		var top unix.Stat_t
		st := fi.Sys().(*syscall.Stat_t)
		if err := unix.Fstat(root, &top); err != nil || (uint64(top.Dev) == uint64(st.Dev) && top.Ino == st.Ino) {
			f.Close()
			return nil, notAllowed(unsafePath, "resolves to the "+what+" itself")
		}
	}
	return f, nil
}

// fileMode converts the type bits of st_mode (and the permission bits).
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	}
	return mode
}

// checkOwner refuses a view source not owned by root or by the hook's own
// uid, or writable by group or others (see OpenViewFile).
func checkOwner(unsafePath string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return notAllowed(unsafePath, "owner unknown")
	}
	if euid := os.Geteuid(); st.Uid != 0 && int(st.Uid) != euid {
		return notAllowed(unsafePath, fmt.Sprintf("owned by uid %d: a view source must be owned by root (uid 0) or by the hook's uid (%d)", st.Uid, euid))
	}
	return checkMode(unsafePath, fi)
}

// openParentIn resolves rel's parent beneath the allowed directory dir,
// creating what is missing (0700) one component at a time, each lookup
// confined by openat2. The os.Root handed out is then opened by path and
// must be the very directory resolved (a swap in between is refused).
func openParentIn(unsafePath, dir, rel string) (*os.Root, string, error) {
	const what = "allowed directory"
	root, err := openDir(unsafePath, what, dir)
	if err != nil {
		return nil, "", err
	}
	defer unix.Close(root)
	parentRel, base := filepath.Dir(rel), filepath.Base(rel)
	pfd, err := mkdirAllBeneath(root, parentRel, 0o700)
	if err != nil {
		return nil, "", resolveError(unsafePath, what, dir, err)
	}
	var want unix.Stat_t
	err = unix.Fstat(pfd, &want)
	unix.Close(pfd)
	if err != nil {
		return nil, "", &PathError{Path: unsafePath, Err: &os.PathError{Op: "fstat", Path: parentRel, Err: err}}
	}
	top, err := os.OpenRoot(dir)
	if err != nil {
		return nil, "", &PathError{Path: unsafePath, Reason: "open " + what, Err: err}
	}
	defer top.Close()
	// The lookup just succeeded beneath dir: this one can only fail if a
	// component is swapped meanwhile, and os.Root refuses an escape too.
	pdir, err := top.OpenRoot(parentRel)
	if err != nil {
		return nil, "", &PathError{Path: unsafePath, Err: err}
	}
	fi, err := pdir.Stat(".")
	if err != nil {
		pdir.Close()
		return nil, "", &PathError{Path: unsafePath, Err: err}
	}
	if st := fi.Sys().(*syscall.Stat_t); uint64(st.Dev) != uint64(want.Dev) || st.Ino != want.Ino {
		pdir.Close()
		return nil, "", notAllowed(unsafePath, "parent directory changed while it was opened")
	}
	fi, err = pdir.Lstat(base)
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

// mkdirAllBeneath returns an O_PATH descriptor of the directory rel beneath
// root, creating missing components with perm. Each prefix is looked up
// from root with openat2, so no symlink made or swapped in can lead out;
// a component is created in its parent's descriptor, never by path.
func mkdirAllBeneath(root int, rel string, perm uint32) (int, error) {
	const flags = unix.O_PATH | unix.O_DIRECTORY
	cur, err := openat2(root, ".", flags)
	if err != nil || rel == "." {
		return cur, err
	}
	comps := strings.Split(rel, "/")
	for i, c := range comps {
		prefix := strings.Join(comps[:i+1], "/")
		fd, err := openat2(root, prefix, flags)
		if errors.Is(err, unix.ENOENT) {
			if merr := unix.Mkdirat(cur, c, perm); merr != nil && merr != unix.EEXIST {
				unix.Close(cur)
				return -1, &os.PathError{Op: "mkdirat", Path: prefix, Err: merr}
			}
			// Made (or made by someone else, or a dangling symlink that
			// stays a lookup error): look it up again, confined.
			fd, err = openat2(root, prefix, flags)
		}
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

// clearNonblock puts a regular file back into blocking mode. (Reads of a
// regular file never block; this only keeps the descriptor ordinary for
// whoever it is handed to.)
func clearNonblock(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetNonblock(int(fd), false) }); err != nil {
		return err
	}
	return serr
}

// openDirIn resolves the directory rel beneath the allowed directory dir
// (creating what is missing, 0700, with create), each lookup confined by
// openat2, and hands it out as an os.Root that must be the very directory
// resolved.
func openDirIn(unsafePath, dir, rel string, create bool) (*os.Root, error) {
	const what = "allowed directory"
	root, err := openDir(unsafePath, what, dir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(root)
	var fd int
	if create {
		fd, err = mkdirAllBeneath(root, rel, 0o700)
	} else {
		fd, err = openat2(root, rel, unix.O_PATH|unix.O_DIRECTORY)
	}
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) {
			return nil, notAllowed(unsafePath, "not a directory")
		}
		if errors.Is(err, unix.ENOENT) {
			err = fs.ErrNotExist
		}
		return nil, resolveError(unsafePath, what, dir, err)
	}
	var want unix.Stat_t
	err = unix.Fstat(fd, &want)
	unix.Close(fd)
	if err != nil {
		return nil, &PathError{Path: unsafePath, Err: &os.PathError{Op: "fstat", Path: rel, Err: err}}
	}
	top, err := os.OpenRoot(dir)
	if err != nil {
		return nil, &PathError{Path: unsafePath, Reason: "open " + what, Err: err}
	}
	defer top.Close()
	r, err := top.OpenRoot(rel)
	if err != nil {
		return nil, &PathError{Path: unsafePath, Err: err}
	}
	fi, err := r.Stat(".")
	if err != nil {
		r.Close()
		return nil, &PathError{Path: unsafePath, Err: err}
	}
	if st := fi.Sys().(*syscall.Stat_t); uint64(st.Dev) != uint64(want.Dev) || st.Ino != want.Ino {
		r.Close()
		return nil, notAllowed(unsafePath, "directory changed while it was opened")
	}
	return r, nil
}
