package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

const (
	lockEx       = syscall.LOCK_EX
	lockExNB     = syscall.LOCK_EX | syscall.LOCK_NB
	lockUn       = syscall.LOCK_UN
	openNonblock = syscall.O_NONBLOCK
)

// flock applies flock(2) to f. Locks belong to the open file description:
// another open of the same file does not share them.
func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	cerr := rc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Flock(int(fd), how)
			if ferr != syscall.EINTR {
				return
			}
		}
	})
	if cerr != nil {
		return cerr
	}
	if ferr != nil {
		return &fs.PathError{Op: "flock", Path: f.Name(), Err: ferr}
	}
	return nil
}

func isWouldBlock(err error) bool { return errors.Is(err, syscall.EWOULDBLOCK) }

func linkCount(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}
