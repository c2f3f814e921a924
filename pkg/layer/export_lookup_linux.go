//go:build linux

package layer

import (
	"errors"
	"fmt"
	"path"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file resolves names through the overlay's layers the way overlayfs
// does (fs/overlayfs/namei.c, ovl_lookup), for the two cases where an
// upper directory alone is not the change: metacopy files and redirected
// directories. The layers are trusted (the runtime's); the lookup still
// never follows a symlink, so a lower's symlink cannot send it elsewhere.

// stackOf resolves the layers directory n merges, walking down from the
// root (which merges every layer's root).
func (wk *walker) stackOf(n *dirNode) ([]layerPath, error) {
	if n.resolved {
		return n.stack, nil
	}
	if n.parent == nil {
		n.stack = make([]layerPath, len(wk.roots))
		for i := range wk.roots {
			n.stack[i] = layerPath{layer: i}
		}
	} else {
		ps, err := wk.stackOf(n.parent)
		if err != nil {
			return nil, err
		}
		res, err := wk.lookup(ps, n.name)
		if err != nil {
			return nil, err
		}
		n.stack = res.stack
	}
	n.resolved = true
	return n.stack, nil
}

// lookup resolves name in the directory whose layers are parent, top
// first: the first layer that has it gives the file; a whiteout hides it
// and everything below; a directory merges with the directories below it
// until one is opaque; a directory's or a metacopy file's redirect changes
// the name looked up below it (relative: another name in the same parent;
// absolute: a path from each lower root); a metacopy file's data is in the
// first non-metacopy file below it.
func (wk *walker) lookup(parent []layerPath, name string) (lookupResult, error) {
	var (
		res     lookupResult
		cur     = name // the name looked up in the parent's layers
		abs     string // after an absolute redirect: the path in every lower
		absNext int    // after an absolute redirect: the next layer
		i       int
	)
	for {
		f := &found{}
		if abs != "" {
			if absNext >= len(wk.roots) {
				break
			}
			f.layer, f.path = absNext, abs
			absNext++
		} else {
			if i >= len(parent) {
				break
			}
			f.layer, f.path = parent[i].layer, joinRel(parent[i].path, cur)
			i++
		}
		ok, err := wk.statAt(f.layer, f.path, abs != "", &f.st)
		if err != nil {
			return res, err
		}
		if !ok {
			continue
		}
		ob := wk.layerObject(f)
		if wo, err := wk.isWhiteout(&ob); err != nil || wo {
			return res, err
		}
		dir := f.st.Mode&unix.S_IFMT == unix.S_IFDIR
		if res.top == nil {
			res.top = f
		} else if dir != (res.top.st.Mode&unix.S_IFMT == unix.S_IFDIR) {
			break
		}
		if dir {
			res.stack = append(res.stack, layerPath{f.layer, f.path})
			v, _, err := wk.getXattr(-1, &ob, wk.ovl+ovlOpaque)
			if err != nil {
				return res, err
			}
			if v == "y" {
				break
			}
		} else {
			meta := false
			if f.st.Mode&unix.S_IFMT == unix.S_IFREG {
				if _, meta, err = wk.getXattr(-1, &ob, wk.ovl+ovlMetacopy); err != nil {
					return res, err
				}
			}
			if !meta {
				res.data = f
				break
			}
		}
		r, ok, err := wk.getXattr(-1, &ob, wk.ovl+ovlRedirect)
		if err != nil {
			return res, err
		}
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(r, "/"):
			abs = strings.TrimPrefix(path.Clean(r), "/")
			if abs == "" {
				return res, fmt.Errorf("%q: bad redirect %q", ob.full, r)
			}
			absNext = f.layer + 1
		case r == "" || r == "." || r == ".." || strings.Contains(r, "/"):
			return res, fmt.Errorf("%q: bad redirect %q", ob.full, r)
		case abs != "":
			abs = joinRel(path.Dir(abs), r)
			if strings.HasPrefix(abs, "./") {
				abs = abs[2:]
			}
		default:
			cur = r
		}
	}
	return res, nil
}

func (wk *walker) layerObject(f *found) object {
	return object{dirfd: wk.roots[f.layer], name: f.path, full: wk.rootPaths[f.layer] + "/" + f.path, st: f.st}
}

// statAt stats p in a layer, reporting false if it does not exist. With
// beneath, p's directories are checked too (no symlinks, no escape): p is
// a redirect, not a path walked already.
func (wk *walker) statAt(layer int, p string, beneath bool, st *unix.Stat_t) (bool, error) {
	var err error
	if beneath {
		err = statBeneath(wk.roots[layer], p, st)
	} else {
		err = unix.Fstatat(wk.roots[layer], p, st, unix.AT_SYMLINK_NOFOLLOW)
	}
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV):
		return false, nil
	}
	return false, fmt.Errorf("lookup %q: %w", wk.rootPaths[layer]+"/"+p, err)
}

func statBeneath(root int, p string, st *unix.Stat_t) error {
	fd, err := unix.Openat2(root, p, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOSYS) {
		return unix.Fstatat(root, p, st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fstat(fd, st)
}

// isWhiteout reports whether ob is an overlay whiteout: a char 0/0 device
// or an empty file with the overlay.whiteout xattr.
func (wk *walker) isWhiteout(ob *object) (bool, error) {
	switch ob.st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		return ob.st.Rdev == 0, nil
	case unix.S_IFREG:
		if ob.st.Size != 0 {
			return false, nil
		}
		_, ok, err := wk.getXattr(-1, ob, wk.ovl+ovlWhiteout)
		return ok, err
	}
	return false, nil
}

// xattrs reads ob's xattrs (through fd if it is open, else by name),
// split into overlay metadata (keyed without the prefix) and the others,
// which are exported. trusted.overlay.* xattrs are never exported.
func (wk *walker) xattrs(fd int, ob *object) (meta, plain map[string]string, err error) {
	names, err := wk.listXattrs(fd, ob)
	if err != nil {
		return nil, nil, err
	}
	for _, n := range names {
		isOvl := strings.HasPrefix(n, wk.ovl)
		if !isOvl && strings.HasPrefix(n, overlayXattrPrefix) {
			continue
		}
		v, ok, err := wk.getXattr(fd, ob, n)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			continue
		}
		if isOvl {
			if meta == nil {
				meta = make(map[string]string)
			}
			meta[n[len(wk.ovl):]] = v
			continue
		}
		if plain == nil {
			plain = make(map[string]string)
		}
		plain[n] = v
	}
	return meta, plain, nil
}

func (wk *walker) listXattrs(fd int, ob *object) ([]string, error) {
	if wk.nameBuf == nil {
		wk.nameBuf = make([]byte, 4<<10)
	}
	for {
		n, err := wk.listRaw(fd, ob, wk.nameBuf)
		if errors.Is(err, unix.ERANGE) {
			size, err := wk.listRaw(fd, ob, nil)
			if err != nil {
				return nil, fmt.Errorf("list xattrs: %w", err)
			}
			wk.nameBuf = make([]byte, max(size, 2*len(wk.nameBuf)))
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list xattrs: %w", err)
		}
		var names []string
		for _, s := range strings.Split(string(wk.nameBuf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
}

func (wk *walker) listRaw(fd int, ob *object, buf []byte) (int, error) {
	if fd >= 0 {
		return unix.Flistxattr(fd, buf)
	}
	if !wk.noXattrAt {
		n, err := listxattrat(ob.dirfd, ob.name, buf)
		if !errors.Is(err, unix.ENOSYS) {
			return n, err
		}
		wk.noXattrAt = true
	}
	return unix.Llistxattr(ob.full, buf)
}

// getXattr reads one xattr of ob; false if it is not set.
func (wk *walker) getXattr(fd int, ob *object, attr string) (string, bool, error) {
	if wk.valBuf == nil {
		wk.valBuf = make([]byte, 64<<10) // XATTR_SIZE_MAX
	}
	for {
		n, err := wk.getRaw(fd, ob, attr, wk.valBuf)
		if errors.Is(err, unix.ERANGE) {
			size, err := wk.getRaw(fd, ob, attr, nil)
			if err != nil {
				return "", false, fmt.Errorf("xattr %s: %w", attr, err)
			}
			wk.valBuf = make([]byte, max(size, 2*len(wk.valBuf)))
			continue
		}
		if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) {
			return "", false, nil
		}
		if err != nil {
			return "", false, fmt.Errorf("xattr %s: %w", attr, err)
		}
		return string(wk.valBuf[:n]), true, nil
	}
}

func (wk *walker) getRaw(fd int, ob *object, attr string, buf []byte) (int, error) {
	if fd >= 0 {
		return unix.Fgetxattr(fd, attr, buf)
	}
	if !wk.noXattrAt {
		n, err := getxattrat(ob.dirfd, ob.name, attr, buf)
		if !errors.Is(err, unix.ENOSYS) {
			return n, err
		}
		wk.noXattrAt = true
	}
	return unix.Lgetxattr(ob.full, attr, buf)
}

// xattrArgs is struct xattr_args (include/uapi/linux/xattr.h, Linux 6.13).
type xattrArgs struct {
	value uint64
	size  uint32
	flags uint32
}

// getxattrat is getxattrat(2) (Linux 6.13) without following a trailing
// symlink: an xattr read relative to a directory fd.
func getxattrat(dirfd int, name, attr string, dest []byte) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return 0, err
	}
	a, err := unix.BytePtrFromString(attr)
	if err != nil {
		return 0, err
	}
	args := xattrArgs{size: uint32(len(dest))}
	if len(dest) > 0 {
		args.value = uint64(uintptr(unsafe.Pointer(&dest[0])))
	}
	r, _, e := unix.Syscall6(unix.SYS_GETXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(unsafe.Pointer(a)), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
	runtime.KeepAlive(dest)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// listxattrat is listxattrat(2) (Linux 6.13) without following a trailing
// symlink.
func listxattrat(dirfd int, name string, dest []byte) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return 0, err
	}
	var ptr unsafe.Pointer
	if len(dest) > 0 {
		ptr = unsafe.Pointer(&dest[0])
	}
	r, _, e := unix.Syscall6(unix.SYS_LISTXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(ptr), uintptr(len(dest)), 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
