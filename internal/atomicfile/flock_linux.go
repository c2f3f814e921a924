package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	lockEx       = unix.LOCK_EX
	lockExNB     = unix.LOCK_EX | unix.LOCK_NB
	lockUn       = unix.LOCK_UN
	openNonblock = unix.O_NONBLOCK
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
			ferr = unix.Flock(int(fd), how)
			if ferr != unix.EINTR {
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

func isWouldBlock(err error) bool { return errors.Is(err, unix.EWOULDBLOCK) }

func linkCount(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}
