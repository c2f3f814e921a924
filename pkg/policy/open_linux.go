package policy

import (
	"os"
	"syscall"
)

// readFlags never block in open(2): a FIFO swapped in after the type check
// opens at once (and is then refused by the second check); O_NOCTTY keeps a
// terminal from becoming the hook's controlling terminal.
const (
	readFlags = os.O_RDONLY | syscall.O_NONBLOCK | syscall.O_NOCTTY
	dirFlag   = syscall.O_DIRECTORY
)

// clearNonblock puts a regular file back into blocking mode. (Reads of a
// regular file never block; this only keeps the descriptor ordinary for
// whoever it is handed to.)
func clearNonblock(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.SetNonblock(int(fd), false) }); err != nil {
		return err
	}
	return serr
}
