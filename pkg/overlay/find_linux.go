package overlay

import (
	"fmt"
	"io"

	"github.com/moby/sys/mountinfo"
)

// Find returns the overlay mounted at mountpoint, read from this process's
// mount table. mountpoint is made absolute and, when it exists, its symlinks
// are resolved. When several mounts are stacked on it, the topmost (the last
// in the table) is the one the container sees and the one returned.
//
// Nothing mounted there gives an error wrapping ErrNotMounted; another file
// system type one wrapping ErrNotOverlay. The layer paths are resolved as the
// package doc describes; a relative one that cannot be resolved is an error
// naming the option.
func Find(mountpoint string) (*Mount, error) {
	mp, err := canonicalMountpoint(mountpoint)
	if err != nil {
		return nil, err
	}
	infos, err := mountinfo.GetMounts(mountpointFilter(mp))
	if err != nil {
		return nil, fmt.Errorf("overlay: read mount table: %w", err)
	}
	return pick(infos, mp)
}

// FindFromReader is Find on a mount table in /proc/<pid>/mountinfo format
// read from r, for tests and for another process's table. Layer paths are
// still resolved against this process's file system.
func FindFromReader(r io.Reader, mountpoint string) (*Mount, error) {
	mp, err := canonicalMountpoint(mountpoint)
	if err != nil {
		return nil, err
	}
	infos, err := mountinfo.GetMountsFromReader(r, mountpointFilter(mp))
	if err != nil {
		return nil, fmt.Errorf("overlay: read mount table: %w", err)
	}
	return pick(infos, mp)
}

// mountpointFilter keeps every entry on mp: unlike mountinfo's
// SingleEntryFilter it does not stop at the first, the last one wins.
func mountpointFilter(mp string) mountinfo.FilterFunc {
	return func(i *mountinfo.Info) (skip, stop bool) {
		return i.Mountpoint != mp, false
	}
}

func pick(infos []*mountinfo.Info, mp string) (*Mount, error) {
	if len(infos) == 0 {
		return nil, fmt.Errorf("%w at %q", ErrNotMounted, mp)
	}
	top := infos[len(infos)-1]
	return fromEntry(top.Mountpoint, top.FSType, top.Source, top.VFSOptions)
}
