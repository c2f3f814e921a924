//go:build linux

package layer

// Path resolution confined to the root, and the parent directory cache.

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// resolveBeneath confines a path lookup to root: openat2(2) fails with
// EXDEV if an absolute symlink or ".." would leave it, and refuses
// /proc-style magic links outright.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS

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
			return -1, fmt.Errorf("%w: %q passes through a symlink leading out of the root", ErrInsecurePath, p)
		case errors.Is(err, unix.ELOOP):
			return -1, fmt.Errorf("%w: %q: too many symlinks or a magic link: %w", ErrInsecurePath, p, err)
		case errors.Is(err, unix.ENOSYS):
			return -1, fmt.Errorf("openat2 (Linux 5.6 or later) is needed to confine writes to the root: %w", err)
		}
		return -1, fmt.Errorf("open directory %q: %w", p, err)
	}
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
