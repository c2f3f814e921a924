//go:build linux

package layer

// Path resolution confined to the root and to its mount, and the parent
// directory cache.

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// resolveBeneath confines a path lookup to root and to root's mount:
// openat2(2) fails with EXDEV if an absolute symlink or ".." would leave
// the root or if the path crosses a mount point (into a volume mounted
// inside the rootfs, or onto its root), and refuses /proc-style magic
// links outright.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_MAGICLINKS

// parent returns an O_PATH descriptor of directory dir, resolved beneath
// root; the applier owns it. With create, missing directories are made
// (mode 0755, like containerd's mkparent), for snapshots that omit a parent.
func (a *applier) parent(dir string, create bool) (int, error) {
	if dir == "" {
		return a.rootFd, nil
	}
	if a.cacheFd >= 0 && a.cacheDir == dir {
		return a.cacheFd, nil
	}
	if a.pool != nil && a.pool.creates(dir) {
		if err := a.pool.wait(); err != nil {
			return -1, err
		}
	}
	fd, err := a.openBeneath(dir)
	if errors.Is(err, unix.ENOENT) && create {
		fd, err = a.mkdirAll(dir)
	}
	if err != nil {
		return -1, err
	}
	a.dropCache()
	a.cacheDir, a.cacheFd = dir, fd
	return fd, nil
}

// mkdirAll makes the missing directories of dir one at a time, each parent
// resolved beneath root as usual.
func (a *applier) mkdirAll(dir string) (int, error) {
	pfd := a.rootFd
	closeParent := func() {
		if pfd != a.rootFd {
			unix.Close(pfd)
		}
	}
	for i := 0; i <= len(dir); i++ {
		if i < len(dir) && dir[i] != '/' {
			continue
		}
		cur := dir[:i]
		fd, err := a.openBeneath(cur)
		if errors.Is(err, unix.ENOENT) {
			_, name := splitEntryPath(cur)
			err = unix.Mkdirat(pfd, name, 0o755)
			if err == nil {
				a.markApplied(cur)
				a.fresh[cur] = struct{}{}
			} else if !errors.Is(err, unix.EEXIST) {
				closeParent()
				return -1, fmt.Errorf("mkdir %q: %w", cur, err)
			}
			fd, err = a.openBeneath(cur)
		}
		closeParent()
		if err != nil {
			return -1, err
		}
		pfd = fd
	}
	return pfd, nil
}

// openBeneath opens directory p (O_PATH) inside root, refusing any symlink
// or ".." that leads out of it.
func (a *applier) openBeneath(p string) (int, error) {
	if p == "" {
		p = "."
	}
	how := &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: resolveBeneath,
	}
	if a.pool != nil && !a.aliased {
		// The pool's bookkeeping goes by path: first see whether p
		// passes through a symlink (one that stays inside the root),
		// which would give a directory a second name.
		how.Resolve |= unix.RESOLVE_NO_SYMLINKS
	}
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(a.rootFd, p, how)
		switch {
		case err == nil:
			return fd, nil
		case errors.Is(err, unix.ELOOP) && how.Resolve&unix.RESOLVE_NO_SYMLINKS != 0:
			if err := a.sawAlias(); err != nil {
				return -1, err
			}
			how.Resolve &^= unix.RESOLVE_NO_SYMLINKS
			continue
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.EAGAIN) && tries < 16:
			// EAGAIN: a concurrent rename or mount made the kernel
			// unsure the lookup stayed beneath root; retry.
			continue
		case errors.Is(err, unix.EXDEV):
			return -1, a.exdev(p, how)
		case errors.Is(err, unix.ELOOP):
			return -1, fmt.Errorf("%w: %q: too many symlinks or a magic link: %w", ErrInsecurePath, p, err)
		case errors.Is(err, unix.ENOSYS):
			return -1, fmt.Errorf("openat2 (Linux 5.6 or later) is needed to confine writes to the root: %w", err)
		}
		return -1, fmt.Errorf("open directory %q: %w", p, err)
	}
}

// exdev tells why resolving p failed with EXDEV: a symlink leading out of
// the root (ErrInsecurePath), or a mount point on the way (ErrCrossesMount),
// seen by resolving p again without RESOLVE_NO_XDEV.
func (a *applier) exdev(p string, how *unix.OpenHow) error {
	again := *how
	again.Resolve &^= unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_SYMLINKS
	fd, err := unix.Openat2(a.rootFd, p, &again)
	if err == nil {
		unix.Close(fd)
		return fmt.Errorf("%w: %q passes through a mount point", ErrCrossesMount, p)
	}
	return fmt.Errorf("%w: %q passes through a symlink leading out of the root", ErrInsecurePath, p)
}

// openDirAt opens the directory pfd/name (not following a symlink) to read
// or change it, refusing one that is another mount's root: pfd is on the
// root's mount, and so is what it returns. p names it in errors.
func openDirAt(pfd int, name, p string) (int, error) {
	how := &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(pfd, name, how)
		switch {
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.EAGAIN):
			continue
		case errors.Is(err, unix.EXDEV):
			return -1, fmt.Errorf("%w: %q is a mount point", ErrCrossesMount, p)
		}
		return fd, err
	}
}

// statAt stats pfd/name without following a symlink, and refuses a mount
// point (a name on which another mount sits: the lookup gives that
// mount's root) with ErrCrossesMount. A change to that name would remove,
// chmod, chown or touch another mount's root, or (from outside the mount
// namespace it belongs to) detach the mount. Errors wrap the statx errno
// (ENOENT for an absent name).
func (a *applier) statAt(pfd int, name, p string) (*unix.Statx_t, error) {
	var sx unix.Statx_t
	for {
		err := unix.Statx(pfd, name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, unix.STATX_TYPE|unix.STATX_MODE|unix.STATX_MNT_ID, &sx)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	if sx.Mnt_id != a.rootMnt {
		return nil, fmt.Errorf("%w: %q is a mount point", ErrCrossesMount, p)
	}
	return &sx, nil
}

// rootMountID returns the id of the mount fd is on (Linux 5.8).
func rootMountID(fd int) (uint64, error) {
	var sx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &sx); err != nil {
		return 0, fmt.Errorf("statx: %w", err)
	}
	if sx.Mask&unix.STATX_MNT_ID == 0 {
		return 0, errors.New("statx gives no mount id (Linux 5.8 or later is needed to keep writes on the root's mount)")
	}
	return sx.Mnt_id, nil
}

// sawAlias notes that a path passed through a symlink inside the root: a
// directory may now have several names, so the pool's name-keyed shortcuts
// (a worker creating a "certainly free" name) stop for the rest of this
// Apply, once every file queued so far is finished.
func (a *applier) sawAlias() error {
	a.aliased = true
	clear(a.fresh)
	a.forgetDirInfo("")
	if a.pool == nil {
		return nil
	}
	a.pool.forgetDir()
	return a.pool.wait()
}

func (a *applier) dropCache() {
	if a.cacheFd >= 0 {
		unix.Close(a.cacheFd)
	}
	a.cacheDir, a.cacheFd = "", -1
	a.cacheInfo = dirInfo{}
}

// retireCache forgets the cached parent but keeps its descriptor open
// until the entry being applied is done (closeRetired): the entry may be
// using it as its own parent.
func (a *applier) retireCache() {
	if a.cacheFd >= 0 {
		a.retired = append(a.retired, a.cacheFd)
	}
	a.cacheDir, a.cacheFd = "", -1
	a.cacheInfo = dirInfo{}
}

func (a *applier) closeRetired() {
	for _, fd := range a.retired {
		unix.Close(fd)
	}
	a.retired = a.retired[:0]
}
