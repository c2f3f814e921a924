//go:build linux

package layer

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// applyCopyBufferSize is the buffer for file content: large enough that a
// decompressed stream is copied in few write(2)s.
const applyCopyBufferSize = 1 << 20

// resolveBeneath confines a path lookup to root: openat2(2) fails with
// EXDEV if an absolute symlink or ".." would leave it, and refuses
// /proc-style magic links outright.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS

// applier applies entries under root with *at syscalls. See Apply for the
// threat model.
type applier struct {
	o      *applyOptions
	rootFd int // O_PATH, owned

	// The parent directory of the last entry, kept open because sorted
	// snapshots put siblings next to each other. cacheFd is -1 when
	// nothing is cached; invalidate drops it when a directory at or above
	// cacheDir is removed.
	cacheDir string
	cacheFd  int

	// applied holds every path created or replaced in this run (and the
	// parents created for them); hasApplied every directory with an
	// applied descendant. An opaque directory keeps exactly those.
	applied    map[string]struct{}
	hasApplied map[string]struct{}
	// dirTimes are set at the end, once no child changes them any more.
	dirTimes map[string][2]unix.Timespec

	buf []byte
}

func newApplier(root *os.File, o *applyOptions) (*applier, error) {
	fd, err := unix.Openat(int(root.Fd()), ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %q: %w", root.Name(), err)
	}
	return &applier{
		o:          o,
		rootFd:     fd,
		cacheFd:    -1,
		applied:    make(map[string]struct{}),
		hasApplied: make(map[string]struct{}),
		dirTimes:   make(map[string][2]unix.Timespec),
		buf:        make([]byte, applyCopyBufferSize),
	}, nil
}

func (a *applier) close() {
	a.dropCache()
	if a.rootFd >= 0 {
		unix.Close(a.rootFd)
		a.rootFd = -1
	}
}

func (a *applier) apply(e *Entry, content io.Reader) error {
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
	if hdr.Typeflag == tar.TypeLink {
		// A hard link's header metadata is not applied: it would change
		// the inode it shares with its target.
		err = a.hardlink(e.Path, dir, name, hdr.Linkname)
	} else {
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
	pfd, err := a.parent(dir, true)
	if err != nil {
		return err
	}
	exists := false
	if e.Path == "" {
		exists = true
	} else if err := unix.Mkdirat(pfd, name, 0o700); errors.Is(err, unix.EEXIST) {
		var st unix.Stat_t
		if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
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
		}
	} else if err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	if exists && e.Opaque {
		if err := a.makeOpaque(pfd, name, e.Path, false); err != nil {
			return err
		}
	}
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer unix.Close(fd)
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
		var fd int
		create = func() (err error) {
			fd, err = unix.Openat(pfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
			return err
		}
		if err := a.createReplacing(pfd, name, p, create); err != nil {
			return err
		}
		return a.writeFile(fd, m, content)
	}
	if err := a.createReplacing(pfd, name, p, create); err != nil {
		return err
	}
	return a.setAtMeta(pfd, name, m)
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
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	return nil
}

// writeFile streams the content into the new file fd (which it closes),
// then sets ownership, mode (after chown, which clears setuid/setgid),
// xattrs and times.
//
// The copy goes through a buffer; a plain snapshot file could later be
// copied with copy_file_range(2) instead, content being an io.Reader.
func (a *applier) writeFile(fd int, m *entryMeta, content io.Reader) (err error) {
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
	return a.setFdMeta(fd, m)
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

// setFdMeta sets ownership, mode, xattrs and (except for directories, done
// at the end) times on an open regular file or directory.
func (a *applier) setFdMeta(fd int, m *entryMeta) error {
	if err := unix.Fchown(fd, m.uid, m.gid); err != nil {
		return fmt.Errorf("chown %d:%d: %w", m.uid, m.gid, err)
	}
	if err := unix.Fchmod(fd, m.mode); err != nil {
		return fmt.Errorf("chmod %#o: %w", m.mode, err)
	}
	if err := forXattrs(m.hdr, false, func(name string, value []byte) error {
		return unix.Fsetxattr(fd, name, value, 0)
	}); err != nil {
		return err
	}
	if m.hdr.Typeflag == tar.TypeDir {
		return nil
	}
	if err := futimensFd(fd, &m.times); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// setAtMeta sets the metadata of a symlink, fifo or device just created at
// pfd/name, without following a symlink and without opening the node (a
// fifo would block, a device would be driven).
func (a *applier) setAtMeta(pfd int, name string, m *entryMeta) error {
	if err := unix.Fchownat(pfd, name, m.uid, m.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %d:%d: %w", m.uid, m.gid, err)
	}
	if m.hdr.Typeflag != tar.TypeSymlink {
		// fchmodat2(2) (Linux 6.6) takes AT_SYMLINK_NOFOLLOW; before it,
		// name is still the node mknodat just made, not a symlink.
		err := unix.Fchmodat(pfd, name, m.mode, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.EOPNOTSUPP) {
			err = unix.Fchmodat(pfd, name, m.mode, 0)
		}
		if err != nil {
			return fmt.Errorf("chmod %#o: %w", m.mode, err)
		}
	}
	procPath := fmt.Sprintf("/proc/self/fd/%d/%s", pfd, name)
	if err := forXattrs(m.hdr, true, func(x string, value []byte) error {
		return unix.Lsetxattr(procPath, x, value, 0)
	}); err != nil {
		return err
	}
	if err := unix.UtimesNanoAt(pfd, name, m.times[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// forXattrs calls set for each SCHILY.xattr record of hdr but the overlay's
// own. On special files (symlinks, fifos, devices) only trusted.* and
// security.* apply: the kernel refuses user.* there. A filesystem without
// SELinux labels may refuse security.selinux; that alone is tolerated.
func forXattrs(hdr *tar.Header, special bool, set func(name string, value []byte) error) error {
	for k, v := range hdr.PAXRecords {
		x, ok := strings.CutPrefix(k, paxSchilyXattr)
		if !ok || x == "" || isOverlayXattr(x) {
			continue
		}
		if special && !strings.HasPrefix(x, "trusted.") && !strings.HasPrefix(x, "security.") {
			continue
		}
		if err := set(x, []byte(v)); err != nil {
			if x == "security.selinux" && errors.Is(err, unix.EOPNOTSUPP) {
				continue
			}
			return fmt.Errorf("set xattr %q: %w", x, err)
		}
	}
	return nil
}

func futimensFd(fd int, ts *[2]unix.Timespec) error {
	// utimensat(fd, NULL, ts, 0), as glibc's futimensFd: x/sys passes a
	// path, and "" needs AT_EMPTY_PATH (Linux 5.8+).
	for {
		_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}

// hardlink links name to target, both resolved inside root. linkat without
// AT_SYMLINK_FOLLOW links a final symlink itself, never what it points to.
func (a *applier) hardlink(p, dir, name, target string) error {
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
		return unix.Linkat(tfd, tname, pfd, name, 0)
	})
}

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
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
		return nil
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
// the root, or a busy mount point) it removes the children not applied in
// this run, recursively.
func (a *applier) makeOpaque(pfd int, name, p string, keepMeta bool) error {
	if _, ok := a.hasApplied[p]; !ok && p != "" {
		err := a.recreateDir(pfd, name, p, keepMeta)
		if !errors.Is(err, unix.EBUSY) {
			return err
		}
	}
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
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
		cfd, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			continue // an applied non-directory
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
// marker; a directory entry sets its own). Its error wraps EBUSY when the
// directory cannot be removed (a mount point).
func (a *applier) recreateDir(pfd int, name, p string, keepMeta bool) error {
	var old *savedDirMeta
	if keepMeta {
		var err error
		if old, err = saveDirMeta(pfd, name); err != nil {
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
	return old.restore(pfd, name)
}

// removeAt removes pfd/name (path p), a directory recursively, without
// following symlinks. An absent name is fine.
func (a *applier) removeAt(pfd int, name, p string) error {
	a.invalidate(p)
	if err := removeAllAt(pfd, name); err != nil {
		return fmt.Errorf("remove %q: %w", p, err)
	}
	return nil
}

func removeAllAt(pfd int, name string) error {
	err := unix.Unlinkat(pfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) {
		return err
	}
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	names, err := getdentsNames(fd)
	for _, n := range names {
		if err == nil {
			err = removeAllAt(fd, n)
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
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(a.rootFd, p, how)
		switch {
		case err == nil:
			return fd, nil
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

func (a *applier) dropCache() {
	if a.cacheFd >= 0 {
		unix.Close(a.cacheFd)
	}
	a.cacheDir, a.cacheFd = "", -1
}

// invalidate drops the cached parent if p is it or one of its ancestors:
// p is about to be removed or replaced.
func (a *applier) invalidate(p string) {
	if a.cacheFd >= 0 && (p == "" || a.cacheDir == p || strings.HasPrefix(a.cacheDir, p+"/")) {
		a.dropCache()
	}
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
		pfd, err := a.parent(dir, false)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, ErrInsecurePath) {
			continue
		}
		if err != nil {
			return fmt.Errorf("set times of %q: %w", p, err)
		}
		var st unix.Stat_t
		if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		ts := a.dirTimes[p]
		if err := unix.UtimesNanoAt(pfd, name, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("set times of %q: %w", p, err)
		}
	}
	return nil
}

// savedDirMeta is what recreateDir carries over from a directory it replaces.
type savedDirMeta struct {
	st     unix.Stat_t
	xattrs map[string][]byte
}

func saveDirMeta(pfd int, name string) (*savedDirMeta, error) {
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	m := &savedDirMeta{xattrs: make(map[string][]byte)}
	if err := unix.Fstat(fd, &m.st); err != nil {
		return nil, err
	}
	names, err := flistxattrNames(fd)
	if err != nil {
		return nil, err
	}
	for _, x := range names {
		if isOverlayXattr(x) {
			continue
		}
		v, err := fgetxattrValue(fd, x)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("xattr %q: %w", x, err)
		}
		m.xattrs[x] = v
	}
	return m, nil
}

func (m *savedDirMeta) restore(pfd int, name string) error {
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Fchown(fd, int(m.st.Uid), int(m.st.Gid)); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(fd, m.st.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	for x, v := range m.xattrs {
		if err := unix.Fsetxattr(fd, x, v, 0); err != nil && !(x == "security.selinux" && errors.Is(err, unix.EOPNOTSUPP)) {
			return fmt.Errorf("set xattr %q: %w", x, err)
		}
	}
	ts := [2]unix.Timespec{m.st.Atim, m.st.Mtim}
	return futimensFd(fd, &ts)
}

func flistxattrNames(fd int) ([]string, error) {
	for {
		n, err := unix.Flistxattr(fd, nil)
		if err != nil || n == 0 {
			return nil, err
		}
		buf := make([]byte, n)
		n, err = unix.Flistxattr(fd, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew in between
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, x := range strings.Split(string(buf[:n]), "\x00") {
			if x != "" {
				names = append(names, x)
			}
		}
		return names, nil
	}
}

func fgetxattrValue(fd int, name string) ([]byte, error) {
	for {
		n, err := unix.Fgetxattr(fd, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, n)
		n, err = unix.Fgetxattr(fd, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
