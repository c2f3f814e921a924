//go:build linux

package layer

// What the parallel Apply (apply_pool_linux.go) and the staged Write
// (export_pipe_linux.go) share.

import (
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// parallelism overrides the number of workers of Apply and whether Write
// runs in stages (below 2: serial); -1 is automatic. For tests.
var parallelism = -1

// goroutines is how many goroutines to run a parallel stage with: one
// per P, at most limit, unless the tests override it.
func goroutines(limit int) int {
	if parallelism >= 0 {
		return parallelism
	}
	return min(runtime.GOMAXPROCS(0), limit)
}

// dirRef is a directory descriptor shared by the jobs that create or read
// files in it, closed by the last one.
type dirRef struct {
	fd   int
	refs atomic.Int32
}

// newDirRef duplicates the directory descriptor fd into a dirRef holding
// one reference.
func newDirRef(fd int) (*dirRef, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	d := &dirRef{fd: nfd}
	d.refs.Store(1)
	return d, nil
}

func (d *dirRef) release() {
	if d.refs.Add(-1) == 0 {
		unix.Close(d.fd)
	}
}
