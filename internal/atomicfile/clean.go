package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// CleanStale removes, in dir (not below it), the temporary files of
// writers that died without committing or aborting: those whose flock can
// be taken. A temporary file still locked by a live writer is kept, and so
// is anything that is not a regular file of the temporary form. It returns
// the names removed. dir is trusted to be the caller's; nothing is followed
// out of it.
func CleanStale(dir *os.Root) (removed []string, err error) {
	d, err := dir.Open(".")
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, name := range names {
		if !IsTemp(name) {
			continue
		}
		ok, err := removeIfUnlocked(dir, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		if ok {
			removed = append(removed, name)
		}
	}
	return removed, errors.Join(errs...)
}

func removeIfUnlocked(root *os.Root, name string) (bool, error) {
	fi, err := root.Lstat(name)
	if err != nil || !fi.Mode().IsRegular() {
		return false, ignoreNotExist(err)
	}
	f, err := root.OpenFile(name, os.O_RDONLY|openNonblock, 0)
	if err != nil {
		return false, ignoreNotExist(err)
	}
	defer f.Close()
	if ffi, err := f.Stat(); err != nil || !os.SameFile(fi, ffi) {
		return false, err
	}
	if err := flock(f, lockExNB); err != nil {
		if isWouldBlock(err) {
			return false, nil // a live writer
		}
		return false, err
	}
	// Locked: its writer is gone. Remove it if the name still is this file.
	if now, err := root.Lstat(name); err != nil || !os.SameFile(fi, now) {
		return false, ignoreNotExist(err)
	}
	if err := root.Remove(name); err != nil {
		return false, ignoreNotExist(err)
	}
	return true, nil
}

func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
