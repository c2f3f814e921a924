// Package ocistate reads what an OCI runtime hands a hook: the container state
// on stdin and the bundle's config.json, and resolves the container's rootfs
// and annotations (with Kubernetes per-container keys).
//
// The state and the bundle come from the runtime, which runs the hook as root:
// they are trusted to be well-formed paths chosen by the runtime. The
// annotations inside them are not: they are written by whoever created the
// container, and this package only reads them; deciding what they may touch is
// package policy's job. The container id is validated because callers use it
// in file names.
//
// Do not use this package to read a runtime's own state directory
// (/run/runc/<id>/state.json): that is a private format.
package ocistate
