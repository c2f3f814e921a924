package view

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// resolveBeneath keeps a lookup under the rootfs: an absolute symlink or a
// ".." above the root fails with EXDEV instead of being followed (the
// unsafe path is refused, not reinterpreted).
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS

// openDst opens the bind destination rel (relative to the rootfs at
// rootfs, in the calling thread's mount namespace) as an O_PATH file,
// creating it when missing: a directory if isDir, else an empty file, and
// its missing parents as directories. When the first missing component is
// on the rootfs's own mount, recordStubs is called, before anything is
// created, with every component about to be created (container paths,
// symlinks resolved, outermost first: the missing directories, then the
// mountpoint); if a creation fails, it is called again with the ones
// actually created. Components created on a tmpfs mounted in the container
// are not recorded (they go with the container's mount namespace);
// creating one on any other mount (a volume bound from the host) is
// refused.
func openDst(rootfs, rel string, isDir bool, recordStubs func([]Stub) error) (*os.File, error) {
	root, err := os.OpenFile(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open container rootfs: %w", err)
	}
	defer root.Close()
	rootReal, err := fdPath(root)
	if err != nil {
		return nil, err
	}
	rootMnt, err := mountID(root)
	if err != nil {
		return nil, err
	}
	comps := strings.Split(rel, "/")
	first := -1         // index of the first component missing
	var planned []Stub  // recorded stubs, comps[first:]
	created := -1       // index of the component created last
	var parent *os.File // the directory holding comps[i], nil for the root
	defer func() {
		if parent != nil {
			parent.Close()
		}
	}()
	for i := 0; i < len(comps); {
		last := i == len(comps)-1
		sub := strings.Join(comps[:i+1], "/")
		flags := uint64(unix.O_PATH | unix.O_CLOEXEC)
		if !last {
			flags |= unix.O_DIRECTORY
		}
		fd, err := openat2(int(root.Fd()), sub, &unix.OpenHow{Flags: flags, Resolve: resolveBeneath})
		switch {
		case err == nil:
			f := os.NewFile(uintptr(fd), "/"+sub)
			if last {
				if err := checkKind(f, isDir); err != nil {
					f.Close()
					return nil, err
				}
				return f, nil
			}
			if parent != nil {
				parent.Close()
			}
			parent = f
			i++
			continue
		case errors.Is(err, unix.EXDEV):
			return nil, ErrEscapesRootfs
		case errors.Is(err, unix.ENOTDIR):
			return nil, fmt.Errorf("%q is not a directory", "/"+sub)
		case errors.Is(err, unix.ELOOP):
			return nil, fmt.Errorf("%q: too many levels of symbolic links", "/"+sub)
		case !errors.Is(err, unix.ENOENT):
			return nil, fmt.Errorf("open %q: %w", "/"+sub, err)
		}
		// comps[i] is missing: create it in parent.
		if created == i {
			return nil, fmt.Errorf("%q vanished after it was created", "/"+sub)
		}
		created = i
		dir := root
		if parent != nil {
			dir = parent
		}
		if first < 0 {
			// Every component below is created in a directory made here,
			// on the same mount: one check, one record.
			first = i
			stub, err := stubPath(dir, rootReal, rootMnt, comps[i])
			if err != nil {
				return nil, err
			}
			if stub != "" {
				planned = stubChain(stub, comps[i+1:], isDir)
				if err := recordStubs(planned); err != nil {
					return nil, err
				}
			}
		}
		if err := create(dir, comps[i], !last || isDir); err != nil {
			if planned != nil {
				// Forget what was not made; keep what was.
				if rerr := recordStubs(planned[:i-first]); rerr != nil {
					err = errors.Join(err, rerr)
				}
			}
			if errors.Is(err, unix.EEXIST) {
				return nil, fmt.Errorf("%q is a dangling symbolic link", "/"+sub)
			}
			return nil, fmt.Errorf("create mountpoint %q: %w", "/"+sub, err)
		}
		// Loop again on the same component: open what was just made.
	}
	panic("unreachable")
}

// stubChain returns the stubs of a destination whose first missing
// component is at container path top, with the components below it: all
// directories but the last, which is a directory if isDir.
func stubChain(top string, below []string, isDir bool) []Stub {
	out := []Stub{{Path: top, Dir: len(below) > 0 || isDir}}
	p := top
	for j, c := range below {
		p += "/" + c
		out = append(out, Stub{Path: p, Dir: j < len(below)-1 || isDir})
	}
	return out
}

// stubPath returns the container path of name in dir, if a stub made
// there must be recorded: "" on a tmpfs mounted in the container, an error
// on another mount than the rootfs's.
func stubPath(dir *os.File, rootReal string, rootMnt uint64, name string) (string, error) {
	mnt, err := mountID(dir)
	if err != nil {
		return "", err
	}
	if mnt != rootMnt {
		var sfs unix.Statfs_t
		if err := unix.Fstatfs(int(dir.Fd()), &sfs); err != nil {
			return "", fmt.Errorf("statfs %s: %w", dir.Name(), err)
		}
		if sfs.Type == unix.TMPFS_MAGIC {
			return "", nil
		}
		return "", fmt.Errorf("would create a mountpoint in %s, which is on another mount than the container's rootfs", dir.Name())
	}
	p, err := fdPath(dir)
	if err != nil {
		return "", err
	}
	rel, ok := strings.CutPrefix(p, rootReal)
	if !ok || (rel != "" && rel[0] != '/') {
		return "", fmt.Errorf("%s (%s) is not beneath the rootfs %s", dir.Name(), p, rootReal)
	}
	return rel + "/" + name, nil
}

func create(dir *os.File, name string, isDir bool) error {
	if isDir {
		return unix.Mkdirat(int(dir.Fd()), name, 0o755)
	}
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

func checkKind(f *os.File, isDir bool) error {
	var fi unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &fi); err != nil {
		return err
	}
	switch dir := fi.Mode&unix.S_IFMT == unix.S_IFDIR; {
	case isDir && !dir:
		return fmt.Errorf("%w: the source is a directory, the destination is not", ErrKindMismatch)
	case !isDir && dir:
		return fmt.Errorf("%w: the source is a file, the destination a directory", ErrKindMismatch)
	}
	return nil
}

// fdPath returns the path of f in the calling thread's mount namespace.
func fdPath(f *os.File) (string, error) {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		return "", fmt.Errorf("path of %s: %w", f.Name(), err)
	}
	return p, nil
}

// mountID returns the id of the mount f is on.
func mountID(f *os.File) (uint64, error) {
	var stx unix.Statx_t
	if err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &stx); err != nil {
		return 0, fmt.Errorf("statx %s: %w", f.Name(), err)
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 {
		return 0, fmt.Errorf("statx %s: no mount id (Linux 5.8 or later is needed)", f.Name())
	}
	return stx.Mnt_id, nil
}
