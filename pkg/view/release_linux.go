package view

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/pkg/mountns"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// Release undoes what st records, in reverse order: the binds (in the
// container's mount namespace, if it is still alive), the mountpoint stubs
// (from opts.StubRoot), the view's mount, its loop device and its
// mountpoint. Each undone step is cleared in st and saved. Release is
// idempotent: what is already gone (not mounted, not attached, missing) is
// skipped, so it may run twice or after a partial Prepare. A step that
// fails is reported and the steps that do not depend on it still run; the
// view is never detached from its loop device while it is still mounted.
func Release(ctx context.Context, st *statefile.View, opts ReleaseOptions, save func() error) error {
	var errs []error
	saved := func() {
		if err := save(); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(st.Binds) - 1; i >= 0; i-- {
		b := &st.Binds[i]
		if !b.Mounted {
			continue
		}
		if opts.Live {
			err := inNamespace(opts.Pid, func() error { return unmountDst(opts.Rootfs, dstRel(b.Dst)) })
			if err != nil {
				errs = append(errs, fmt.Errorf("unmount bind on %q: %w", b.Dst, err))
				continue
			}
		}
		b.Mounted = false
		saved()
	}
	if opts.StubRoot != "" {
		for i := len(st.Binds) - 1; i >= 0; i-- {
			b := &st.Binds[i]
			if b.Stub == "" {
				continue
			}
			if err := removeStub(opts.StubRoot, b.Stub); err != nil {
				errs = append(errs, fmt.Errorf("remove mountpoint stub %q: %w", b.Stub, err))
				continue
			}
			b.Stub = ""
			saved()
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

// removeStub removes the stub (a container path) and what is beneath it
// from root, never following a symlink out of root.
func removeStub(root, stub string) error {
	rel := strings.TrimLeft(stub, "/")
	if rel == "" || strings.Contains("/"+rel+"/", "/../") {
		return fmt.Errorf("recorded stub %q is not a path below the root", stub)
	}
	r, err := os.OpenRoot(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer r.Close()
	return r.RemoveAll(rel)
}
