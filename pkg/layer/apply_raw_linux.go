//go:build linux

package layer

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Raw system calls for the pool's workers (fileJob.run): the same calls,
// flags and arguments as x/sys/unix makes, without telling the Go
// scheduler. A worker's openat, write, utimensat and close through
// overlayfs take 20-100 µs each; every call longer than sysmon's 20 µs
// tick made the runtime hand the worker's P to another thread and the
// worker wait for one back (futex) when the call returned, and kept
// sysmon waking every 20 µs. Measured on the tiny workload (100k files,
// 2 workers on 2 cores, perf stat): 50-68k context switches and 25-35k
// nanosleeps per restore before, 4k and 1.5k with these. The cost: a
// worker keeps its P during a call, so a call that blocks (a full journal)
// holds it; there are at most poolMaxWorkers of them, and they only
// create, write and close regular files this Apply has just created
// (O_CREAT|O_EXCL), so no call waits on this process.

func rawErr(errno unix.Errno) error {
	if errno == 0 {
		return nil
	}
	return errno
}

// rawOpenat is unix.Openat (which adds O_LARGEFILE too).
func rawOpenat(dirfd int, name string, flags int, mode uint32) (int, error) {
	flags |= unix.O_LARGEFILE
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return -1, err
	}
	for {
		fd, _, errno := unix.RawSyscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(flags), uintptr(mode), 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return -1, errno
		}
		return int(fd), nil
	}
}

func rawWriteAll(fd int, b []byte) (int, error) {
	written := 0
	for written < len(b) {
		p := b[written:]
		n, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return written, errno
		}
		written += int(n)
	}
	return written, nil
}

func rawFd3(trap uintptr, fd int, a, b uintptr) error {
	for {
		_, _, errno := unix.RawSyscall(trap, uintptr(fd), a, b)
		if errno == unix.EINTR {
			continue
		}
		return rawErr(errno)
	}
}

func rawFutimens(fd int, ts *[2]unix.Timespec) error {
	for {
		_, _, errno := unix.RawSyscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		return rawErr(errno)
	}
}

func rawClose(fd int) error {
	_, _, errno := unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
	return rawErr(errno)
}
