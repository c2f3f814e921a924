// Package mountns runs code in another process's mount namespace and makes
// read-only bind mounts across mount namespaces.
//
// A hook that runs in the runtime's namespaces (prestart, createRuntime)
// must put a bind into the container's mount namespace, which was created
// before the hook ran: mounts made in the hook's own namespace do not appear
// there. Two tools do that together:
//
//   - Do runs a function on a dedicated OS thread that has entered the
//     container's mount namespace (setns on /proc/<pid>/ns/mnt). Go cannot
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
// The process pid must be trusted to stay the container's process while Do
// runs; checking that (pid plus start time) is the caller's job.
package mountns

import "errors"

// ErrNotSupported is returned where the kernel or OS lacks what is needed
// (setns, open_tree, move_mount).
var ErrNotSupported = errors.New("mountns: not supported on this system")
