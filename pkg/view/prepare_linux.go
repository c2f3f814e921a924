package view

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/pkg/mountns"
)

// Prepare mounts the view req asks for and makes its binds, recording each
// step in st (whose Kind and Source the caller has set) and calling save
// to store it. On failure everything done is released again (see Release)
// and the error says what failed; a bind's error is a *BindError.
func Prepare(ctx context.Context, req *Request, st *State, save func() error) (err error) {
	if err := req.validate(); err != nil {
		return err
	}
	defer func() {
		if err == nil {
			return
		}
		opts := ReleaseOptions{Live: true, Pid: req.Pid, PidStart: req.PidStart, Rootfs: req.Rootfs, StubRoot: req.Rootfs}
		if rerr := Release(context.WithoutCancel(ctx), st, opts, save); rerr != nil {
			err = errors.Join(err, fmt.Errorf("roll back: %w", rerr))
		}
	}()
	root, err := mountView(ctx, req, st, save)
	if err != nil {
		return err
	}
	defer root.Close()
	for i := range req.Binds {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := bind(req, i, root, st, save); err != nil {
			return err
		}
	}
	return nil
}

// mountView mounts the view on its mountpoint and returns its root, open.
func mountView(ctx context.Context, req *Request, st *State, save func() error) (*os.File, error) {
	if err := ensurePrivateDir(req.Dir); err != nil {
		return nil, err
	}
	st.Mountpoint = Mountpoint(req.Dir, req.ID)
	if err := save(); err != nil {
		return nil, err
	}
	if err := makeMountpoint(st.Mountpoint); err != nil {
		if errors.Is(err, ErrInUse) {
			// Not ours: the rollback must leave it alone.
			st.Mountpoint = ""
		}
		return nil, err
	}
	var err error
	switch req.Kind {
	case KindImage:
		err = mountImage(req.Overlay, st.Mountpoint)
	case KindDir:
		err = mountDir(req, st)
	case KindFile:
		err = mountFile(ctx, req, st, save)
	}
	if err != nil {
		return nil, err
	}
	st.Mounted = true
	if err := save(); err != nil {
		return nil, err
	}
	root, err := os.OpenFile(st.Mountpoint, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open view: %w", err)
	}
	return root, nil
}

// makeMountpoint creates the view's mountpoint (mode 0700), or reuses an
// existing directory that holds no mount.
func makeMountpoint(mp string) error {
	err := unix.Mkdir(mp, 0o700)
	if err == nil || !errors.Is(err, unix.EEXIST) {
		if err != nil {
			return fmt.Errorf("create view mountpoint %s: %w", mp, err)
		}
		return nil
	}
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, mp, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE, &stx); err != nil {
		return fmt.Errorf("view mountpoint %s: %w", mp, err)
	}
	if stx.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("view mountpoint %s: exists and is not a directory", mp)
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return fmt.Errorf("%w: %s (run `ocisnap gc`)", ErrInUse, mp)
	}
	return nil
}

// bind binds req.Binds[i] from the view (root) into the container.
func bind(req *Request, i int, root *os.File, st *State, save func() error) error {
	b := req.Binds[i]
	fail := func(side string, err error) error { return &BindError{Index: i, Bind: b, Side: side, Err: err} }
	src, err := openInView(root, srcRel(b.Src))
	if err != nil {
		return fail("src", err)
	}
	defer src.Close()
	var fi unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &fi); err != nil {
		return fail("src", err)
	}
	isDir := fi.Mode&unix.S_IFMT == unix.S_IFDIR
	if !isDir && fi.Mode&unix.S_IFMT != unix.S_IFREG {
		return fail("src", errors.New("not a regular file or directory"))
	}
	tree, err := mountns.CloneReadOnly(src)
	if err != nil {
		return fail("src", err)
	}
	defer tree.Close()

	st.Binds = append(st.Binds, BindState{Src: b.Src, Dst: b.Dst})
	sb := &st.Binds[len(st.Binds)-1]
	if err := save(); err != nil {
		return err
	}
	// The destination is created and the tree attached from inside the
	// container's mount namespace. Stubs are recorded before they are
	// made; the state is written from a thread outside that namespace
	// (where the state directory is known to be).
	recordStubs := func(stubs []Stub) error {
		sb.Stubs = stubs
		return mountns.Outside(save)
	}
	err = inNamespace(req.Pid, req.PidStart, func() error {
		dst, err := openDst(req.Rootfs, dstRel(b.Dst), isDir, recordStubs)
		if err != nil {
			return err
		}
		defer dst.Close()
		return tree.Attach(dst)
	})
	if err != nil {
		return fail("dst", err)
	}
	sb.Mounted = true
	return save()
}

// openInView opens rel inside the view as an O_PATH file, resolving every
// symlink as if the view were the root and never leaving its mount.
func openInView(root *os.File, rel string) (*os.File, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	fd, err := openat2(int(root.Fd()), rel, &how)
	switch {
	case err == nil:
		return os.NewFile(uintptr(fd), rel), nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		return nil, ErrNotInView
	case errors.Is(err, unix.EXDEV):
		return nil, errors.New("crosses a mount inside the view")
	}
	return nil, err
}

// openat2 retries on EAGAIN, which the kernel returns for RESOLVE_IN_ROOT
// and RESOLVE_BENEATH when a rename raced with the lookup.
func openat2(dirfd int, path string, how *unix.OpenHow) (int, error) {
	for range 16 {
		fd, err := unix.Openat2(dirfd, path, how)
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
	return -1, unix.EAGAIN
}
