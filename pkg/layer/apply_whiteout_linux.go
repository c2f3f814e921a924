//go:build linux

package layer

// Removal: whiteouts, opaque directories, replaced paths.

import (
	"errors"
	"fmt"
	"path"

	"golang.org/x/sys/unix"
)

// whiteout removes p, a directory recursively. An absent path, or one whose
// parent is absent or not a directory, is already what the snapshot wants.
func (a *applier) whiteout(p string) error {
	if p == "" {
		return fmt.Errorf("%w: whiteout of the root", ErrInsecurePath)
	}
	dir, name := splitEntryPath(p)
	pfd, err := a.parent(dir, false)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return err
	}
	return a.removeAt(pfd, name, p)
}

// opaqueMarker applies an OCI .wh..wh..opq entry: the existing directory p
// keeps only the children applied in this run. Nothing to hide if p does
// not exist or is not a directory (an entry replacing it comes or came).
func (a *applier) opaqueMarker(p string) error {
	dir, name := splitEntryPath(p)
	pfd, err := a.parent(dir, false)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return err
	}
	st, err := a.statAt(pfd, name, p)
	if errors.Is(err, unix.ENOENT) {
		return nil
	} else if errors.Is(err, ErrCrossesMount) {
		return err
	} else if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	return a.makeOpaque(pfd, name, p, true)
}

// makeOpaque drops every child the existing directory pfd/name (path p) had
// before this run. With no child applied yet, it removes the directory and
// makes it again: on a merged overlay mount, overlayfs then marks the new
// upper directory opaque itself, hiding the lower one. Otherwise (or for
// the root) it removes the children not applied in this run, recursively.
// A mount point, there or beneath, fails it with ErrCrossesMount.
func (a *applier) makeOpaque(pfd int, name, p string, keepMeta bool) error {
	if a.pool != nil {
		if err := a.pool.settle(); err != nil {
			return err
		}
	}
	if _, ok := a.hasApplied[p]; !ok && p != "" {
		return a.recreateDir(pfd, name, p, keepMeta)
	}
	fd, err := openDirAt(pfd, name, p)
	if errors.Is(err, ErrCrossesMount) {
		return err
	} else if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer unix.Close(fd)
	return a.prune(fd, p)
}

// prune removes the children of directory fd (path p) that were not applied
// in this run, and recurses into those that were.
func (a *applier) prune(fd int, p string) error {
	names, err := getdentsNames(fd)
	if err != nil {
		return fmt.Errorf("read directory %q: %w", p, err)
	}
	for _, n := range names {
		cp := path.Join(p, n)
		if _, ok := a.applied[cp]; !ok {
			if err := a.removeAt(fd, n, cp); err != nil {
				return err
			}
			continue
		}
		cfd, err := openDirAt(fd, n, cp)
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			continue // an applied non-directory
		}
		if errors.Is(err, ErrCrossesMount) {
			return err
		}
		if err != nil {
			return fmt.Errorf("open directory %q: %w", cp, err)
		}
		err = a.prune(cfd, cp)
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}

// recreateDir replaces directory pfd/name with a new empty one. keepMeta
// copies the old one's ownership, mode, xattrs and times (for an opaque
// marker; a directory entry sets its own).
func (a *applier) recreateDir(pfd int, name, p string, keepMeta bool) error {
	var old *savedDirMeta
	if keepMeta {
		var err error
		if old, err = saveDirMeta(pfd, name, p); errors.Is(err, ErrCrossesMount) {
			return err
		} else if err != nil {
			return fmt.Errorf("read metadata: %w", err)
		}
	}
	if err := a.removeAt(pfd, name, p); err != nil {
		return err
	}
	if err := unix.Mkdirat(pfd, name, 0o700); err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	if old == nil {
		return nil
	}
	return old.restore(pfd, name, p)
}

// removeAt removes pfd/name (path p), a directory recursively, without
// following symlinks. An absent name is fine.
func (a *applier) removeAt(pfd int, name, p string) error {
	// Whatever is removed, no worker may still be creating in it, and no
	// directory made before is known to be empty any more.
	if a.pool != nil {
		if err := a.pool.settle(); err != nil {
			return err
		}
	}
	clear(a.fresh)
	if a.pool != nil {
		a.pool.forgetDir()
	}
	// The cached parent goes too, whatever its name: through a symlink
	// inside the root (a -> b), the directory removed as "b" may be the
	// one cached as "a", and a name no longer tells what it opens.
	a.retireCache()
	if err := a.removeAllAt(pfd, name, p); err != nil {
		return fmt.Errorf("remove %q: %w", p, err)
	}
	return nil
}

// removeAllAt removes pfd/name (path p), a directory recursively, and
// fails with ErrCrossesMount at a mount point, there or beneath, before
// removing it or anything in it: a removal never leaves the root's mount.
// Each name is checked before it is unlinked, not after a failure: from
// outside the mount namespace a mount belongs to, unlinking its mount
// point succeeds and silently detaches the mount.
func (a *applier) removeAllAt(pfd int, name, p string) error {
	st, err := a.statAt(pfd, name, p)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		err := unix.Unlinkat(pfd, name, 0)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	fd, err := openDirAt(pfd, name, p)
	if err != nil {
		return err
	}
	names, err := getdentsNames(fd)
	for _, n := range names {
		if err == nil {
			err = a.removeAllAt(fd, n, path.Join(p, n))
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

func getdentsNames(fd int) ([]string, error) {
	var names []string
	buf := make([]byte, 8<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return names, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}
