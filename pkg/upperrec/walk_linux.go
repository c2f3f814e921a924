package upperrec

import (
	"fmt"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/pkg/layer"
)

// opaqueDir reports whether the directory open at fd has the overlay's
// opaque xattr (trusted.overlay.opaque, or user.overlay.opaque with
// userxattr).
func opaqueDir(fd int) bool {
	var v [1]byte
	for _, x := range []string{"trusted.overlay.opaque", "user.overlay.opaque"} {
		if n, err := unix.Fgetxattr(fd, x, v[:]); err == nil && n == 1 && v[0] == 'y' {
			return true
		}
	}
	return false
}

func dirID(dir string) (ino, dev uint64, err error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, 0, err
	}
	return st.Ino, st.Dev, nil
}

// walk calls fn for every entry below upper, in layer.Write's order.
func walk(upper string, fn func(rel string, id layer.FileID, opaque bool) error) error {
	fd, err := unix.Open(upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return walkDir(fd, "", make([]byte, 64<<10), fn)
}

func walkDir(fd int, rel string, buf []byte, fn func(string, layer.FileID, bool) error) error {
	var names []string
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("read directory %q: %w", "/"+rel, err)
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	sort.Strings(names)
	for _, name := range names {
		r := name
		if rel != "" {
			r = rel + "/" + name
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("%q: %w", "/"+r, err)
		}
		id := layer.StatFileID(&st)
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := fn(r, id, false); err != nil {
				return err
			}
			continue
		}
		cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%q: %w", "/"+r, err)
		}
		if err := fn(r, id, opaqueDir(cfd)); err != nil {
			unix.Close(cfd)
			return err
		}
		{
			err = walkDir(cfd, r, buf, fn)
			unix.Close(cfd)
			if err != nil {
				return err
			}
		}
	}
	return nil
}
