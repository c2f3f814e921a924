//go:build linux

package layer

// Metadata of applied inodes: ownership, mode, xattrs, times.

import (
	"archive/tar"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// setFdMeta sets ownership, mode, xattrs and (except for directories, done
// at the end) times on an open regular file or directory.
func (a *applier) setFdMeta(fd int, m *entryMeta) error {
	return setFdMetaOpt(fd, m, true, true)
}

// setFdMetaOpt is setFdMeta; chown or chmod false skips an owner or mode
// the inode has already.
func setFdMetaOpt(fd int, m *entryMeta, chown, chmod bool) error {
	if chown {
		if err := unix.Fchown(fd, m.uid, m.gid); err != nil {
			return fmt.Errorf("chown %d:%d: %w", m.uid, m.gid, err)
		}
	}
	if chmod {
		if err := unix.Fchmod(fd, m.mode); err != nil {
			return fmt.Errorf("chmod %#o: %w", m.mode, err)
		}
	}
	if err := forXattrs(m.hdr, false, func(name string, value []byte) error {
		return unix.Fsetxattr(fd, name, value, 0)
	}); err != nil {
		return err
	}
	if m.hdr.Typeflag == tar.TypeDir {
		return dropStaleXattrs(fd, m.hdr)
	}
	if err := futimensFd(fd, &m.times); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// dropStaleXattrs removes from a directory the xattrs its entry does not
// have: a directory over a directory takes the new metadata
// (docs/snapshot-format.md), so an xattr a later layer of a snapshot
// dropped is gone after the restore too. The overlay's own and
// security.selinux (the host's labelling) are kept.
func dropStaleXattrs(fd int, hdr *tar.Header) error {
	names, err := flistxattrNames(fd)
	if err != nil || len(names) == 0 {
		return nil // nothing listed: nothing to drop
	}
	for _, x := range names {
		if isOverlayXattr(x) || x == "security.selinux" {
			continue
		}
		if _, ok := hdr.PAXRecords[paxSchilyXattr+x]; ok {
			continue
		}
		if err := unix.Fremovexattr(fd, x); err != nil && !errors.Is(err, unix.ENODATA) {
			return fmt.Errorf("remove xattr %q: %w", x, err)
		}
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

// savedDirMeta is what recreateDir carries over from a directory it replaces.
type savedDirMeta struct {
	st     unix.Stat_t
	xattrs map[string][]byte
}

func saveDirMeta(pfd int, name, p string) (*savedDirMeta, error) {
	fd, err := openDirAt(pfd, name, p)
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

func (m *savedDirMeta) restore(pfd int, name, p string) error {
	fd, err := openDirAt(pfd, name, p)
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

// dirInfo is what decides the owner and mode of a file created in a
// directory besides the creator's ids and umask: the directory's group
// (inherited if the directory is setgid, or always on a filesystem
// mounted grpid) and its default ACL (which replaces the umask).
type dirInfo struct {
	known      bool // false: not read yet, or unreadable
	gid        uint32
	defaultACL bool
}

// ownedAsCreated reports whether a regular file created by this process
// in a directory with info gets m's owner without a chown: the creator's
// ids, and a group that both inheritance rules give. Never with
// setuid/setgid/sticky bits, which chmod sets after chown.
func (a *applier) ownedAsCreated(m *entryMeta, info dirInfo) bool {
	return info.known && m.mode&0o7000 == 0 &&
		m.uid == a.euid && m.gid == a.egid && uint32(m.gid) == info.gid
}

// dirInfo returns the info of directory dir, open at fd (the root or the
// cached parent), reading it once.
func (a *applier) dirInfo(dir string, fd int) dirInfo {
	slot := &a.rootInfo
	if dir != "" {
		if dir != a.cacheDir || fd != a.cacheFd {
			return dirInfo{}
		}
		slot = &a.cacheInfo
	}
	if !slot.known {
		*slot = readDirInfo(fd)
	}
	return *slot
}

// forgetDirInfo drops what is known of directories: the metadata of p is
// about to change. All of it goes, not only p's: a symlink inside the root
// can make the cached directory and p one and the same.
func (a *applier) forgetDirInfo(p string) {
	a.rootInfo = dirInfo{}
	a.cacheInfo = dirInfo{}
}

func readDirInfo(fd int) dirInfo {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return dirInfo{}
	}
	// An O_PATH descriptor has no fgetxattr; its /proc link does.
	_, err := unix.Getxattr(fmt.Sprintf("/proc/self/fd/%d", fd), "system.posix_acl_default", nil)
	var acl bool
	switch {
	case err == nil:
		acl = true
	case errors.Is(err, unix.ENODATA), errors.Is(err, unix.EOPNOTSUPP):
	default:
		return dirInfo{}
	}
	return dirInfo{known: true, gid: st.Gid, defaultACL: acl}
}

// threadUmask reads the calling thread's umask (Linux 4.7), which
// umask(2) cannot do without changing it: what a file this goroutine
// creates is masked with (a goroutine that is not locked to its thread
// shares the umask of every unlocked thread).
func threadUmask() (uint32, bool) { return readUmask("/proc/thread-self/status") }

// processUmask reads the main thread's umask: what the pool's workers'
// files are masked with. The runtime starts threads for them from a
// thread in the default state, never from a locked thread that may have
// unshared its umask (CLONE_FS).
func processUmask() (uint32, bool) { return readUmask("/proc/self/status") }

func readUmask(status string) (uint32, bool) {
	data, err := os.ReadFile(status)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			u, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			return uint32(u), err == nil
		}
	}
	return 0, false
}

// umaskKeeps reports whether a file created with mode in a directory with
// info, under umask (if known), has exactly mode.
func umaskKeeps(mode, umask uint32, known bool, info dirInfo) bool {
	return known && umask&mode == 0 && !info.defaultACL
}
