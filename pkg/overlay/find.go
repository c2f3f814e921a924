package overlay

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// canonicalMountpoint makes mountpoint absolute and clean and, when it
// exists, resolves its symlinks, as the mount table shows mountpoints
// resolved.
func canonicalMountpoint(mountpoint string) (string, error) {
	mp, err := filepath.Abs(mountpoint)
	if err != nil {
		return "", fmt.Errorf("overlay: mountpoint %q: %w", mountpoint, err)
	}
	if real, err := filepath.EvalSymlinks(mp); err == nil {
		mp = real
	}
	return mp, nil
}

// fromEntry builds a Mount from the fields of the topmost mount table entry
// on mountpoint.
func fromEntry(mountpoint, fsType, source, vfsOptions string) (*Mount, error) {
	if fsType != FSType {
		return nil, fmt.Errorf("%w: %q is a %s mount (source %q); only overlayfs is supported",
			ErrNotOverlay, mountpoint, fsType, source)
	}
	p, err := parseOptions(vfsOptions)
	if err != nil {
		return nil, fmt.Errorf("overlay mount %q: %w", mountpoint, err)
	}
	m := &Mount{
		Mountpoint:  mountpoint,
		Options:     p.raw,
		UserXattr:   p.userXattr,
		Metacopy:    p.metacopy,
		RedirectDir: p.redirectDir,
	}
	r := resolver{mountpoint: mountpoint}
	if p.upper != nil {
		if m.Upper, err = r.resolve(*p.upper); err != nil {
			return nil, err
		}
	}
	if p.work != nil {
		if m.Work, err = r.resolve(*p.work); err != nil {
			return nil, err
		}
	}
	for _, l := range p.lowers {
		d, err := r.resolve(l)
		if err != nil {
			return nil, err
		}
		m.Lowers = append(m.Lowers, d)
	}
	for _, l := range p.datas {
		d, err := r.resolve(l)
		if err != nil {
			return nil, err
		}
		m.DataDirs = append(m.DataDirs, d)
	}
	if len(m.Lowers) == 0 {
		return nil, fmt.Errorf("overlay mount %q has no lower layer in its options %q", mountpoint, vfsOptions)
	}
	return m, nil
}

// resolver turns the layer paths of one overlay mount into absolute,
// symlink-free paths.
type resolver struct {
	mountpoint string
}

// resolve returns the real path of one layer option.
//
// An absolute path is cleaned and its symlinks resolved (containers/storage
// gives lower layers as <home>/l/XXXX symlinks even when absolute); when it
// does not exist in our mount namespace it is returned as given, the mount
// being live means it exists where the mounter sees it.
//
// A relative path is relative to the mounter's working directory at mount
// time, which the mount table does not record; the only mounter known to do
// this is containers/storage, from its home, so the path is resolved against
// the home of a <home>/<id>/merged mountpoint and must exist there.
func (r resolver) resolve(o layerOption) (string, error) {
	if filepath.IsAbs(o.path) {
		p := filepath.Clean(o.path)
		real, err := filepath.EvalSymlinks(p)
		switch {
		case err == nil:
			return real, nil
		case errors.Is(err, fs.ErrNotExist):
			return p, nil
		default:
			return "", fmt.Errorf("overlay mount %q: option %s=%q: %w", r.mountpoint, o.opt, o.path, err)
		}
	}
	if filepath.Base(r.mountpoint) != "merged" {
		return "", fmt.Errorf("overlay mount %q: option %s=%q is a relative path and the mountpoint is not "+
			"<home>/<id>/merged as containers/storage mounts, so its base directory is unknown",
			r.mountpoint, o.opt, o.path)
	}
	home := filepath.Dir(filepath.Dir(r.mountpoint))
	real, err := filepath.EvalSymlinks(filepath.Join(home, o.path))
	if err != nil {
		return "", fmt.Errorf("overlay mount %q: option %s=%q: resolve relative to containers/storage home %q: %w",
			r.mountpoint, o.opt, o.path, home, err)
	}
	st, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("overlay mount %q: option %s=%q: %w", r.mountpoint, o.opt, o.path, err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("overlay mount %q: option %s=%q: %q is not a directory", r.mountpoint, o.opt, o.path, real)
	}
	return real, nil
}
