// Package mountns runs code in another process's mount namespace and makes
// read-only bind mounts across mount namespaces.
//
// A hook that runs in the runtime's namespaces (prestart, createRuntime)
// must put a bind into the container's mount namespace, which was created
// before the hook ran: mounts made in the hook's own namespace do not appear
// there. Two tools do that together:
//
//   - Do runs a function on a dedicated OS thread that has entered the
//     container's mount namespace (setns on its ns/mnt). Go cannot
//     setns a mount namespace on a shared thread: the thread first unshares
//     CLONE_FS, and it is never given back to the scheduler (it exits with
//     its goroutine).
//   - Tree is a detached mount (open_tree(OPEN_TREE_CLONE), the new mount
//     API): cloned in the hook's namespace, where the source is visible, and
//     attached (move_mount) from inside the container's namespace, where the
//     destination is.
//
// Do not use this package to enter other namespaces (user, pid, network):
// only the mount namespace and the file system state of one thread change.
//
// Pid reuse. A process is named by its pid and its start time (Process),
// and Do checks both and enters the namespace as one operation: it holds a
// directory descriptor of /proc/<pid>, reads the start time through it and
// opens ns/mnt through it. A descriptor of /proc/<pid> stays bound to the
// process it was opened for; once that process is gone, lookups through it
// fail instead of reaching a newer process that got the same pid. So a
// check followed by a path-based open of /proc/<pid>/ns/mnt, which could
// enter a stranger's namespace, is never made.
package mountns

import "errors"

var (
	// ErrNotSupported is returned where the kernel or OS lacks what is
	// needed (setns, open_tree, move_mount).
	ErrNotSupported = errors.New("mountns: not supported on this system")
	// ErrGone is wrapped when the process has exited (a zombie included:
	// its namespaces are gone) or its pid now names another process.
	ErrGone = errors.New("mountns: process is gone")
)

// Process names one process for its whole life: a pid alone may be reused
// once the process is gone.
type Process struct {
	Pid int
	// Start is the process's start time in clock ticks after boot, field
	// 22 (starttime) of /proc/<pid>/stat (proc(5)); see
	// procstat.StartTime. It must be known (non-zero).
	Start uint64
}
