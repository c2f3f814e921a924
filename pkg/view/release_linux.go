package view

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/pkg/mountns"
)

// Release undoes what st records, in reverse order: the binds (in the
// container's mount namespace, if it is still alive), the mountpoint stubs
// that are still empty (from opts.StubRoot: see releaseStubs), the view's
// mount, its loop device and its mountpoint. Each undone step is cleared in st and saved. Release is
// idempotent: what is already gone (not mounted, not attached, missing) is
// skipped, so it may run twice or after a partial Prepare. A step that
// fails is reported and the steps that do not depend on it still run; the
// view is never detached from its loop device while it is still mounted.
func Release(ctx context.Context, st *State, opts ReleaseOptions, save func() error) error {
	var errs []error
	saved := func() {
		if err := save(); err != nil {
			errs = append(errs, err)
		}
	}
	live := opts.Live
	for i := len(st.Binds) - 1; i >= 0; i-- {
		b := &st.Binds[i]
		if !b.Mounted {
			continue
		}
		if live {
			err := inNamespace(opts.Pid, opts.PidStart, func() error { return unmountDst(opts.Rootfs, dstRel(b.Dst)) })
			switch {
			case errors.Is(err, mountns.ErrGone):
				live = false // the binds went with the namespace
			case err != nil:
				errs = append(errs, fmt.Errorf("unmount bind on %q: %w", b.Dst, err))
				continue
			}
		}
		b.Mounted = false
		saved()
	}
	if opts.StubRoot != "" {
		if err := releaseStubs(opts.StubRoot, st, saved); err != nil {
			errs = append(errs, err)
		}
	}
	if st.Mountpoint != "" {
		if err := unmountView(st.Mountpoint); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if st.Mounted {
			st.Mounted = false
			saved()
		}
	}
	if st.LoopDevice != "" {
		if err := detachLoop(st.LoopDevice, st.Source); err != nil {
			errs = append(errs, err)
		} else {
			st.LoopDevice = ""
			saved()
		}
	}
	if st.Mountpoint != "" {
		if err := os.Remove(st.Mountpoint); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove view mountpoint: %w", err))
		} else {
			st.Mountpoint = ""
			saved()
		}
	}
	return errors.Join(errs...)
}

// unmountView unmounts everything stacked on the view's mountpoint; a
// mountpoint with nothing mounted (or missing) is fine. A busy view is
// detached lazily: its users keep it until they let go, and the loop
// device's autoclear follows.
func unmountView(mp string) error {
	for range 8 {
		err := unix.Unmount(mp, unix.UMOUNT_NOFOLLOW)
		if errors.Is(err, unix.EBUSY) {
			err = unix.Unmount(mp, unix.UMOUNT_NOFOLLOW|unix.MNT_DETACH)
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		default:
			return fmt.Errorf("unmount view %s: %w", mp, err)
		}
	}
	return fmt.Errorf("unmount view %s: still mounted", mp)
}

// unmountDst unmounts the bind on rel beneath rootfs, in the calling
// thread's mount namespace; nothing mounted there is fine.
func unmountDst(rootfs, rel string) error {
	root, err := os.OpenFile(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer root.Close()
	fd, err := openat2(int(root.Fd()), rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: resolveBeneath})
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, 0, &stx); err != nil {
		return err
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return nil
	}
	return mountns.Unmount(f)
}

// resolveStub keeps the lookup of a recorded stub beneath the stub root
// and on its mount, and follows no symlink at all: a stub is recorded with
// its symlinks resolved, so a symlink met on the way (or a mount) means
// that the path is no longer the stub that was made.
const resolveStub = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// releaseStubs removes the mountpoint stubs of st's binds from root (the
// rootfs or its upper directory), each bind's deepest first and the last
// bind's first, so that a directory is reached after what was made in it.
// A bind still mounted keeps its stubs (removing a mountpoint would
// detach the mount from the container's namespace behind its back). A
// bind's stubs are forgotten once each is removed, gone, or left in place
// because it is no longer an empty stub: what the container put there is
// its own (README.md, "Boot views"). A stub left because it still holds
// the stubs of a later bind that could not be removed yet stays recorded,
// for the next release.
func releaseStubs(root string, st *State, saved func()) error {
	var rootf *os.File
	defer func() {
		if rootf != nil {
			rootf.Close()
		}
	}()
	var errs []error
	blocked := false // a later bind's stubs are still there
	for i := len(st.Binds) - 1; i >= 0; i-- {
		b := &st.Binds[i]
		stubs := stubsOf(b)
		if len(stubs) == 0 {
			continue
		}
		if b.Mounted {
			blocked = true
			continue
		}
		if rootf == nil {
			f, err := os.OpenFile(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if errors.Is(err, os.ErrNotExist) {
				return nil // nothing left to remove stubs from
			}
			if err != nil {
				return fmt.Errorf("open stub root: %w", err)
			}
			rootf = f
		}
		var berrs []error
		left := false
		for j := len(stubs) - 1; j >= 0; j-- {
			l, err := removeStub(rootf, stubs[j])
			if err != nil {
				berrs = append(berrs, fmt.Errorf("remove mountpoint stub %q in %s: %w", stubs[j].path, root, err))
			}
			left = left || l
		}
		if len(berrs) > 0 {
			errs = append(errs, berrs...)
			blocked = true
			continue
		}
		if left && blocked {
			continue
		}
		b.Stubs, b.LegacyStub = nil, ""
		saved()
	}
	return errors.Join(errs...)
}

// removeStub removes s from root if it is still what was made: an empty
// directory, or an empty regular file. One that is gone is fine; one that
// holds something, or was replaced by something else (a symlink, another
// kind of file), is left in place (left) and that is not an error. A stub
// a mount covers, or one beneath a mount, is an error. The rootfs is not
// changing meanwhile (the container's process is gone, or has not
// started).
func removeStub(root *os.File, s stubRef) (left bool, err error) {
	rel, ok := stubRel(s.path)
	if !ok {
		return false, errors.New("recorded stub is not a path below the root")
	}
	dir, name := ".", rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		dir, name = rel[:i], rel[i+1:]
	}
	pfd, err := openat2(int(root.Fd()), dir, &unix.OpenHow{
		Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveStub})
	switch {
	case errors.Is(err, unix.ENOENT):
		return false, nil
	case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP):
		return true, nil // no longer the directory made
	case errors.Is(err, unix.EXDEV):
		return false, errors.New("the way to it crosses a mount")
	case err != nil:
		return false, err
	}
	defer unix.Close(pfd)
	fd, err := openat2(pfd, name, &unix.OpenHow{
		Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolveStub})
	switch {
	case errors.Is(err, unix.ENOENT):
		return false, nil
	case errors.Is(err, unix.ELOOP):
		return true, nil // a symlink now
	case errors.Is(err, unix.EXDEV):
		return false, errors.New("something is mounted on it")
	case err != nil:
		return false, err
	}
	var fi unix.Stat_t
	err = unix.Fstat(fd, &fi)
	unix.Close(fd)
	if err != nil {
		return false, err
	}
	flags := 0
	switch fi.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if s.kind == stubFile {
			return true, nil
		}
		flags = unix.AT_REMOVEDIR
	case unix.S_IFREG:
		if s.kind == stubDir || fi.Size != 0 {
			return true, nil
		}
	default:
		return true, nil
	}
	err = unix.Unlinkat(pfd, name, flags)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return false, nil
	case errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EEXIST):
		return true, nil // the container's files are in it
	}
	return false, err
}
