package mountns

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/pkg/procstat"
)

// Do runs fn on an OS thread in the mount namespace of process p and
// returns its error. When the caller is already in that namespace (a
// createContainer hook runs inside it) fn runs directly. When p has exited
// or its pid now names another process, fn does not run and the error
// wraps ErrGone.
//
// The check and the entry are one operation (see the package doc): the
// start time is read and the namespace opened through one descriptor of
// /proc/<pid>.
//
// In fn, path lookups resolve in p's namespace (its root and cwd are that
// namespace's root); file descriptors opened before Do stay usable. A
// goroutine started by fn runs on an ordinary thread in the caller's
// namespace: see Outside.
func Do(p Process, fn func() error) error {
	ns, err := openNS(p)
	if err != nil {
		return err
	}
	defer ns.Close()
	same, err := isOwn(ns)
	if err != nil {
		return err
	}
	if same {
		return fn()
	}
	errc := make(chan error, 1)
	onOwnThread(func() {
		// setns(CLONE_NEWNS) refuses a thread whose fs_struct (root, cwd,
		// umask) is shared with other threads, as every Go thread's is.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("mountns: unshare(CLONE_FS): %w", err)
			return
		}
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("mountns: enter mount namespace of process %d: %w", p.Pid, err)
			return
		}
		errc <- fn()
	})
	return <-errc
}

// Same reports whether process p is in the caller's mount namespace; the
// error wraps ErrGone when p is gone.
func Same(p Process) (bool, error) {
	ns, err := openNS(p)
	if err != nil {
		return false, err
	}
	defer ns.Close()
	return isOwn(ns)
}

// openNS opens the mount namespace of p, after checking that p is still
// the process that started at p.Start. Both go through one descriptor of
// /proc/<pid>, which stays bound to the process it was opened for: if that
// process is gone, a lookup through it fails (ENOENT, ESRCH) rather than
// reaching the pid's next owner. A zombie has no namespaces left.
func openNS(p Process) (*os.File, error) {
	if p.Pid <= 0 {
		return nil, fmt.Errorf("mountns: %d is not a process id", p.Pid)
	}
	if p.Start == 0 {
		return nil, fmt.Errorf("mountns: process %d: start time unknown", p.Pid)
	}
	dir := "/proc/" + strconv.Itoa(p.Pid)
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return nil, fmt.Errorf("%w: process %d", ErrGone, p.Pid)
	}
	if err != nil {
		return nil, fmt.Errorf("mountns: open %s: %w", dir, err)
	}
	defer unix.Close(dfd)
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(dfd, &sfs); err != nil {
		return nil, fmt.Errorf("mountns: statfs %s: %w", dir, err)
	}
	if sfs.Type != unix.PROC_SUPER_MAGIC {
		return nil, fmt.Errorf("mountns: %s is not on a proc file system", dir)
	}
	gone := func(err error) bool { return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) }
	stat, err := readAt(dfd, "stat")
	if gone(err) {
		return nil, fmt.Errorf("%w: process %d", ErrGone, p.Pid)
	}
	if err != nil {
		return nil, fmt.Errorf("mountns: read %s/stat: %w", dir, err)
	}
	st, err := procstat.Parse(stat)
	if err != nil {
		return nil, fmt.Errorf("mountns: parse %s/stat: %w", dir, err)
	}
	if st.Start != p.Start {
		return nil, fmt.Errorf("%w: pid %d is now another process (started at %d, want %d)", ErrGone, p.Pid, st.Start, p.Start)
	}
	if !st.Running() {
		return nil, fmt.Errorf("%w: process %d has exited", ErrGone, p.Pid)
	}
	fd, err := unix.Openat(dfd, "ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if gone(err) {
		return nil, fmt.Errorf("%w: process %d", ErrGone, p.Pid)
	}
	if err != nil {
		return nil, fmt.Errorf("mountns: open mount namespace of process %d: %w", p.Pid, err)
	}
	return os.NewFile(uintptr(fd), dir+"/ns/mnt"), nil
}

// readAt reads the (small) file name in directory dfd.
func readAt(dfd int, name string) ([]byte, error) {
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 4096))
}

// isOwn reports whether ns is the calling thread's mount namespace.
func isOwn(ns *os.File) (bool, error) {
	var self, other unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/mnt", &self); err != nil {
		return false, fmt.Errorf("mountns: own mount namespace: %w", err)
	}
	if err := unix.Fstat(int(ns.Fd()), &other); err != nil {
		return false, fmt.Errorf("mountns: stat %s: %w", ns.Name(), err)
	}
	return self.Dev == other.Dev && self.Ino == other.Ino, nil
}

// onOwnThread runs f on a locked OS thread that exits afterwards: the
// thread is never unlocked, because once its fs_struct is unshared and its
// mount namespace changed it must not run other goroutines. That thread is
// never the main thread, whose namespace is the one /proc/<pid> shows and
// which the Go runtime would keep (wedged) rather than end: on the main
// thread, f is handed to another goroutine, which cannot be scheduled on
// the main thread while this one holds it.
func onOwnThread(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			onOwnThread(f)
			runtime.UnlockOSThread()
			return
		}
		f()
	}()
	<-done
}

// Outside runs fn in a new goroutine and waits for it. Called from inside
// Do, fn runs on another thread, in the namespace Do was called from: use
// it for file writes meant for the caller's namespace (a state file).
func Outside(fn func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- fn() }()
	return <-errc
}

// Tree is a detached mount: a clone of a file or directory that is
// mounted nowhere until Attach.
type Tree struct {
	f *os.File
	// remount is set when mount_setattr was not available: the read-only
	// flags are applied by a remount after Attach.
	remount bool
}

// roAttrs are the attributes of every bind made here.
const roAttrs = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV

// CloneReadOnly clones the file or directory src (any open file, O_PATH
// will do) into a detached read-only, nosuid, nodev bind mount with private
// propagation. Mounts beneath src are not included (like mount --bind, not
// --rbind).
func CloneReadOnly(src *os.File) (*Tree, error) {
	fd, err := unix.OpenTree(int(src.Fd()), "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			return nil, fmt.Errorf("%w: open_tree (Linux 5.2 or later is needed)", ErrNotSupported)
		}
		return nil, fmt.Errorf("clone %s: open_tree: %w", src.Name(), err)
	}
	t := &Tree{f: os.NewFile(uintptr(fd), "tree:"+src.Name())}
	attr := unix.MountAttr{Attr_set: roAttrs, Propagation: unix.MS_PRIVATE}
	err = unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr)
	switch {
	case err == nil:
	case errors.Is(err, unix.ENOSYS):
		t.remount = true
	default:
		t.f.Close()
		return nil, fmt.Errorf("clone %s: mount_setattr ro,nosuid,nodev: %w", src.Name(), err)
	}
	return t, nil
}

// Attach mounts the tree on target (an open file, O_PATH will do, in the
// calling thread's mount namespace) and consumes the tree. The tree and the
// target must be of the same kind (file on file, directory on directory).
func (t *Tree) Attach(target *os.File) error {
	defer t.Close()
	err := unix.MoveMount(int(t.f.Fd()), "", int(target.Fd()), "",
		unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("move_mount onto %s: %w", target.Name(), err)
	}
	if !t.remount {
		return nil
	}
	// A read-only bind is a bind plus a remount: the bind flags of a new
	// bind cannot be set by the bind itself. Remount the new mount, reached
	// through the target's magic link, which now resolves to the mount on
	// top of it.
	p := "/proc/thread-self/fd/" + strconv.Itoa(int(target.Fd()))
	mp, err := os.OpenFile(p, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err == nil {
		p = "/proc/thread-self/fd/" + strconv.Itoa(int(mp.Fd()))
		err = unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
		if err == nil {
			err = unix.Mount("", p, "", unix.MS_PRIVATE, "")
		}
		mp.Close()
	}
	if err != nil {
		unmountPath(p, unix.MNT_DETACH)
		return fmt.Errorf("remount %s read-only: %w", target.Name(), err)
	}
	return nil
}

// Close releases a tree that was not attached (the kernel unmounts it).
func (t *Tree) Close() error {
	if t == nil || t.f == nil {
		return nil
	}
	err := t.f.Close()
	t.f = nil
	return err
}

// Unmount detaches the mount whose root target is (an O_PATH file opened on
// a mountpoint after the mount was made). A target that is not the root of
// a mount is left alone and is not an error.
func Unmount(target *os.File) error {
	return unmountPath("/proc/thread-self/fd/"+strconv.Itoa(int(target.Fd())), unix.MNT_DETACH)
}

func unmountPath(p string, flags int) error {
	err := unix.Unmount(p, flags)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}
