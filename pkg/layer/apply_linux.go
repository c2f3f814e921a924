//go:build linux

package layer

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// applyCopyBufferSize is the buffer for file content: large enough that a
// decompressed stream is copied in few write(2)s.
const applyCopyBufferSize = 1 << 20

// applier applies entries under root with *at syscalls. See Apply for the
// threat model.
type applier struct {
	o      *applyOptions
	rootFd int // O_PATH, owned
	// rootMnt is the id of the root's mount: no change is made to a name
	// that is on another (see statAt).
	rootMnt uint64

	// The parent directory of the last entry, kept open because sorted
	// snapshots put siblings next to each other. cacheFd is -1 when
	// nothing is cached; any removal drops it (removeAt): cacheDir is the
	// name it was opened by, and after a removal that name may lead to
	// another directory, or the directory to none.
	cacheDir string
	cacheFd  int
	// retired are cached parents forgotten while an entry was being
	// applied, closed before the next one.
	retired []int

	// applied holds every path created or replaced in this run (and the
	// parents created for them); hasApplied every directory with an
	// applied descendant. An opaque directory keeps exactly those.
	applied    map[string]struct{}
	hasApplied map[string]struct{}
	// dirTimes are set at the end, once no child changes them any more.
	dirTimes map[string][2]unix.Timespec

	buf []byte

	// pool finishes regular files in parallel; nil: the applier does.
	pool *filePool
	// fresh holds the directories this Apply made and has removed nothing
	// since: a name in one that is not in applied is free.
	fresh map[string]struct{}
	// aliased: some path of this Apply went through a symlink inside the
	// root (see sawAlias).
	aliased bool
	// What a file created by this process gets without a chown or a
	// chmod (see ownedAsCreated): its effective ids, and the umask of
	// this goroutine's thread and of the pool's (ok false: unknown,
	// always chmod).
	euid, egid           int
	umask, poolUmask     uint32
	umaskOK, poolUmaskOK bool
	// The owner and default ACL of the root and of the cached parent.
	rootInfo, cacheInfo dirInfo
}

func newApplier(root *os.File, o *applyOptions) (*applier, error) {
	fd, err := unix.Openat(int(root.Fd()), ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %q: %w", root.Name(), err)
	}
	mnt, err := rootMountID(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("root %q: %w", root.Name(), err)
	}
	a := &applier{
		o:          o,
		rootFd:     fd,
		rootMnt:    mnt,
		cacheFd:    -1,
		applied:    make(map[string]struct{}),
		hasApplied: make(map[string]struct{}),
		dirTimes:   make(map[string][2]unix.Timespec),
		buf:        make([]byte, applyCopyBufferSize),
		pool:       newFilePool(),
		fresh:      make(map[string]struct{}),
		euid:       unix.Geteuid(),
		egid:       unix.Getegid(),
	}
	a.umask, a.umaskOK = threadUmask()
	a.poolUmask, a.poolUmaskOK = processUmask()
	return a, nil
}

func (a *applier) close() {
	if a.pool != nil {
		a.pool.close(true)
	}
	a.dropCache()
	a.closeRetired()
	if a.rootFd >= 0 {
		unix.Close(a.rootFd)
		a.rootFd = -1
	}
}

func (a *applier) apply(e *Entry, content io.Reader) error {
	a.closeRetired()
	if a.pool != nil {
		if err := a.pool.failure(); err != nil {
			return err
		}
	}
	if e.Header == nil {
		return a.opaqueMarker(e.Path)
	}
	if e.Whiteout {
		return a.whiteout(e.Path)
	}
	hdr := e.Header
	// Refuse what cannot be applied before touching anything.
	switch hdr.Typeflag {
	case tar.TypeDir, tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo:
	case tar.TypeChar, tar.TypeBlock:
		if !a.o.allowDevices {
			return fmt.Errorf("%w: device %d:%d", ErrDeviceNotAllowed, hdr.Devmajor, hdr.Devminor)
		}
	default:
		return fmt.Errorf("%w: type %q", ErrUnsupportedEntry, hdr.Typeflag)
	}
	if e.Path == "" && hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("%w: the root must be a directory, not type %q", ErrUnsupportedEntry, hdr.Typeflag)
	}
	dir, name := splitEntryPath(e.Path)
	var err error
	switch {
	case hdr.Typeflag == tar.TypeLink && hdr.Linkname == e.Path:
		// A hard link to itself: GNU tar's second copy of a path it was
		// given twice (tar -cf x ./ ./etc). The path already is what it
		// links to; replacing it would remove the only name of the target
		// (GNU tar extracts it as nothing to do too).
	case hdr.Typeflag == tar.TypeLink:
		// A hard link's header metadata is not applied: it would change
		// the inode it shares with its target.
		err = a.hardlink(e.Path, dir, name, hdr.Linkname)
	default:
		err = a.create(e, dir, name, content)
	}
	if err != nil {
		return err
	}
	a.markApplied(e.Path)
	return nil
}

// create applies a directory, regular file, symlink, fifo or device entry
// with its metadata.
func (a *applier) create(e *Entry, dir, name string, content io.Reader) error {
	hdr := e.Header
	uid, gid, err := a.o.idMap.ToHost(hdr.Uid, hdr.Gid)
	if err != nil {
		return err
	}
	m := entryMeta{uid: uid, gid: gid, mode: uint32(hdr.Mode) & 0o7777, hdr: hdr}
	if m.times, err = headerTimes(hdr); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeDir {
		return a.dir(e, dir, name, &m)
	}
	return a.nonDir(e.Path, dir, name, &m, content)
}

// entryMeta is what an entry sets on the inode it creates.
type entryMeta struct {
	uid, gid int
	mode     uint32 // permission bits with setuid/setgid/sticky
	times    [2]unix.Timespec
	hdr      *tar.Header
}

func headerTimes(hdr *tar.Header) ([2]unix.Timespec, error) {
	var ts [2]unix.Timespec
	mtime, err := unix.TimeToTimespec(hdr.ModTime)
	if err != nil {
		return ts, fmt.Errorf("mtime %v: %w", hdr.ModTime, err)
	}
	atime := mtime
	if !hdr.AccessTime.IsZero() {
		if atime, err = unix.TimeToTimespec(hdr.AccessTime); err != nil {
			return ts, fmt.Errorf("atime %v: %w", hdr.AccessTime, err)
		}
	}
	return [2]unix.Timespec{atime, mtime}, nil
}

// splitEntryPath splits an entry path into its parent and last name; the root
// is ("", ".").
func splitEntryPath(p string) (dir, name string) {
	if p == "" {
		return "", "."
	}
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// dir applies a directory entry: a directory over a directory keeps it
// (emptied first if the entry is opaque), anything else is replaced.
func (a *applier) dir(e *Entry, dir, name string, m *entryMeta) error {
	if a.pool != nil && (a.pool.creates(e.Path) || a.pool.fills(e.Path)) {
		if err := a.pool.wait(); err != nil {
			return err
		}
	}
	pfd, err := a.parent(dir, true)
	if err != nil {
		return err
	}
	exists := false
	if e.Path == "" {
		exists = true
	} else if err := unix.Mkdirat(pfd, name, 0o700); errors.Is(err, unix.EEXIST) {
		st, err := a.statAt(pfd, name, e.Path)
		if errors.Is(err, ErrCrossesMount) {
			return err
		} else if err != nil {
			return fmt.Errorf("stat: %w", err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			exists = true
		} else {
			if err := a.removeAt(pfd, name, e.Path); err != nil {
				return err
			}
			if err := unix.Mkdirat(pfd, name, 0o700); err != nil {
				return fmt.Errorf("mkdir: %w", err)
			}
			a.fresh[e.Path] = struct{}{}
		}
	} else if err != nil {
		return fmt.Errorf("mkdir: %w", err)
	} else {
		a.fresh[e.Path] = struct{}{}
	}
	if exists && e.Opaque {
		if err := a.makeOpaque(pfd, name, e.Path, false); err != nil {
			return err
		}
	}
	fd, err := openDirAt(pfd, name, e.Path)
	if errors.Is(err, ErrCrossesMount) {
		return err
	} else if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer unix.Close(fd)
	// Files created in it from now on inherit its new owner and ACL.
	a.forgetDirInfo(e.Path)
	if err := a.setFdMeta(fd, m); err != nil {
		return err
	}
	a.dirTimes[e.Path] = m.times
	return nil
}

// nonDir creates a regular file, symlink, fifo or device at name, replacing
// whatever is there.
func (a *applier) nonDir(p, dir, name string, m *entryMeta, content io.Reader) error {
	pfd, err := a.parent(dir, true)
	if err != nil {
		return err
	}
	if a.pool != nil && a.pool.creates(p) {
		if err := a.pool.wait(); err != nil {
			return err
		}
	}
	hdr := m.hdr
	create := func() error {
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			return unix.Symlinkat(hdr.Linkname, pfd, name)
		case tar.TypeFifo:
			return unix.Mknodat(pfd, name, unix.S_IFIFO|0o600, 0)
		case tar.TypeChar:
			return unix.Mknodat(pfd, name, unix.S_IFCHR|0o600, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))))
		case tar.TypeBlock:
			return unix.Mknodat(pfd, name, unix.S_IFBLK|0o600, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))))
		}
		panic("unreachable")
	}
	if isRegularType(hdr) {
		// Created 0600 until chown and chmod, unless creating it gives it
		// its owner and mode already.
		var fd int
		info := a.dirInfo(dir, pfd)
		mode, chown, chmod := uint32(0o600), true, true
		if a.ownedAsCreated(m, info) {
			mode, chown = m.mode, false
		}
		if a.pool != nil && hdr.Size <= poolMaxFile && a.isFree(dir, p) {
			chmod = chown || !umaskKeeps(mode, a.poolUmask, a.poolUmaskOK, info)
			return a.createInPool(p, dir, name, pfd, mode, m, content, chown, chmod)
		}
		chmod = chown || !umaskKeeps(mode, a.umask, a.umaskOK, info)
		create = func() (err error) {
			fd, err = unix.Openat(pfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
			return err
		}
		if err := a.createReplacing(pfd, name, p, create); err != nil {
			if hdr.Size == 0 && errors.Is(err, ErrCrossesMount) && a.fileMountAt(pfd, name) {
				return nil // a mount point stub, see Apply
			}
			return err
		}
		return a.writeFile(fd, p, m, content, chown, chmod)
	}
	if err := a.createReplacing(pfd, name, p, create); err != nil {
		return err
	}
	return a.setAtMeta(pfd, name, m)
}

// fileMountAt reports whether a non-directory is mounted at pfd/name: an
// engine's bind of /etc/hosts, /etc/hostname, /etc/resolv.conf or
// /run/.containerenv.
func (a *applier) fileMountAt(pfd int, name string) bool {
	var sx unix.Statx_t
	err := unix.Statx(pfd, name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, unix.STATX_TYPE|unix.STATX_MNT_ID, &sx)
	return err == nil && sx.Mnt_id != a.rootMnt && sx.Mode&unix.S_IFMT != unix.S_IFDIR
}

// createReplacing runs create (an O_EXCL-style *at call on pfd/name); if
// the name is taken, it removes what is there (a directory recursively,
// never following a symlink) and tries once more.
func (a *applier) createReplacing(pfd int, name, p string, create func() error) error {
	err := create()
	if errors.Is(err, unix.EEXIST) {
		if err := a.removeAt(pfd, name, p); err != nil {
			return err
		}
		err = create()
	}
	if errors.Is(err, ErrCrossesMount) {
		return err
	}
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	return nil
}

// writeFile streams the content into the new file fd (which it closes),
// then sets ownership, mode (after chown, which clears setuid/setgid),
// xattrs and times; chown and chmod false skip what creating the file did
// already. A small file is read into the pool's memory and finished by a
// worker.
func (a *applier) writeFile(fd int, p string, m *entryMeta, content io.Reader, chown, chmod bool) (err error) {
	if a.pool != nil && m.hdr.Size <= poolMaxFile {
		data := a.pool.reserve(int(m.hdr.Size))
		if n, err := io.ReadFull(content, data); err != nil {
			unix.Close(fd)
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return fmt.Errorf("content: %d of %d bytes: %w", n, m.hdr.Size, ErrTruncated)
			}
			return err
		}
		a.pool.push(fileJob{fd: fd, name: applyEntryName(&Entry{Path: p}), m: *m, data: data, chown: chown, chmod: chmod})
		return nil
	}
	defer func() {
		if cerr := unix.Close(fd); err == nil && cerr != nil {
			err = fmt.Errorf("close: %w", cerr)
		}
	}()
	n, err := io.CopyBuffer(rawFdWriter(fd), content, a.buf)
	if err != nil {
		return err
	}
	if n != m.hdr.Size {
		return fmt.Errorf("content: %d of %d bytes: %w", n, m.hdr.Size, ErrTruncated)
	}
	return setFdMetaOpt(fd, m, chown, chmod)
}

func closeFd(fd int) error { return unix.Close(fd) }

// isFree reports whether nothing is at p, in directory dir: dir was made
// by this Apply and nothing has been applied at p since.
func (a *applier) isFree(dir, p string) bool {
	if a.aliased {
		return false
	}
	if _, ok := a.fresh[dir]; !ok {
		return false
	}
	_, applied := a.applied[p]
	return !applied
}

// createInPool has a worker create the small regular file p (free, see
// isFree) in directory dir, open at pfd, and finish it.
func (a *applier) createInPool(p, dir, name string, pfd int, mode uint32, m *entryMeta, content io.Reader, chown, chmod bool) error {
	ref, err := a.pool.createIn(dir, pfd)
	if err != nil {
		return err
	}
	data := a.pool.reserve(int(m.hdr.Size))
	if n, err := io.ReadFull(content, data); err != nil {
		ref.release()
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return fmt.Errorf("content: %d of %d bytes: %w", n, m.hdr.Size, ErrTruncated)
		}
		return err
	}
	a.pool.pushNew(fileJob{fd: -1, dir: ref, base: name, mode: mode, name: applyEntryName(&Entry{Path: p}), m: *m, data: data, chown: chown, chmod: chmod}, p, dir)
	return nil
}

// rawFdWriter writes to a file descriptor; unlike *os.File it has no ReadFrom,
// so io.CopyBuffer uses the caller's buffer.
type rawFdWriter int

func (w rawFdWriter) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		n, err := unix.Write(int(w), p[written:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return written, fmt.Errorf("write: %w", err)
		}
		written += n
	}
	return written, nil
}

// hardlink links name to target, both resolved inside root. linkat without
// AT_SYMLINK_FOLLOW links a final symlink itself, never what it points to.
func (a *applier) hardlink(p, dir, name, target string) error {
	if a.pool != nil && (a.pool.creates(p) || a.pool.creates(target)) {
		if err := a.pool.wait(); err != nil {
			return err
		}
	}
	tdir, tname := splitEntryPath(target)
	tfd, err := a.openBeneath(tdir)
	if err != nil {
		return fmt.Errorf("link target %q: %w", target, err)
	}
	defer unix.Close(tfd)
	pfd, err := a.parent(dir, true)
	if err != nil {
		return err
	}
	return a.createReplacing(pfd, name, p, func() error {
		err := unix.Linkat(tfd, tname, pfd, name, 0)
		if errors.Is(err, unix.EXDEV) {
			// The target is another mount's root (a bind-mounted file).
			return fmt.Errorf("%w: link target %q is a mount point", ErrCrossesMount, target)
		}
		return err
	})
}

func (a *applier) markApplied(p string) {
	a.applied[p] = struct{}{}
	for p != "" {
		p, _ = splitEntryPath(p)
		if _, ok := a.hasApplied[p]; ok {
			return
		}
		a.hasApplied[p] = struct{}{}
	}
}

// finish sets the directories' times, deepest first, once all their
// children exist. A directory removed or replaced later in the stream is
// skipped.
func (a *applier) finish() error {
	if a.pool != nil {
		if err := a.pool.wait(); err != nil {
			return err
		}
	}
	paths := make([]string, 0, len(a.dirTimes))
	for p := range a.dirTimes {
		paths = append(paths, p)
	}
	depth := func(p string) int {
		if p == "" {
			return 0
		}
		return 1 + strings.Count(p, "/")
	}
	sort.Slice(paths, func(i, j int) bool {
		if di, dj := depth(paths[i]), depth(paths[j]); di != dj {
			return di > dj
		}
		return paths[i] < paths[j]
	})
	for _, p := range paths {
		dir, name := splitEntryPath(p)
		// What the name leads to now, if it is a directory on the root's
		// mount: the one the entry made, or the one that replaced it.
		pfd, err := a.parent(dir, false)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, ErrInsecurePath) || errors.Is(err, ErrCrossesMount) {
			continue
		}
		if err != nil {
			return fmt.Errorf("set times of %q: %w", p, err)
		}
		if st, err := a.statAt(pfd, name, p); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		ts := a.dirTimes[p]
		if err := unix.UtimesNanoAt(pfd, name, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("set times of %q: %w", p, err)
		}
	}
	return nil
}
