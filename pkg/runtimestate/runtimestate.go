// Package runtimestate finds a container that an OCI runtime has created
// and not yet deleted, from the state the runtime keeps for it: runc's
// <root>/<id>/state.json or crun's <root>/<id>/status. It is what
// `ocisnap export CONTAINER` starts from (the bundle, the init pid, the
// cgroup) and what `ocisnap gc` asks before it drops the state of a
// stopped container whose poststop is still to come.
//
// The runtime roots are trusted: they are the runtime's own state
// directories, writable by root (or the rootless user) only. A container id
// is not: it is checked to be one path component. Do not use this package
// inside the hook, which gets the container's state on stdin from the
// runtime itself.
package runtimestate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ErrNoContainer is wrapped when no container with a given id (or unique
// id prefix) exists under the runtime roots searched.
var ErrNoContainer = errors.New("no such container")

// Roots returns the state directories of runc and crun, searched in this
// order: their --root defaults when run as root (/run/runc, /run/crun),
// then, if $XDG_RUNTIME_DIR is set, their rootless defaults
// ($XDG_RUNTIME_DIR/runc, $XDG_RUNTIME_DIR/crun). Podman and CRI-O keep
// their containers there unless configured otherwise.
func Roots() []string {
	roots := []string{"/run/runc", "/run/crun"}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		roots = append(roots, filepath.Join(d, "runc"), filepath.Join(d, "crun"))
	}
	return roots
}

// Container is a container as its runtime's state directory records it.
type Container struct {
	// State has the id, the bundle, the init pid and a status: "running"
	// while the init process lives, "stopped" otherwise.
	State specs.State
	// Runtime is "runc" or "crun"; StateFile the file read.
	Runtime, StateFile string
	// CgroupPaths is runc's record of the container's cgroup directories
	// (v1 controller name, or "" for v2, to directory); nil for crun.
	CgroupPaths map[string]string
}

// Find reads the state of container id from the first of roots that has
// it. id may also be a prefix of exactly one container's id, as podman
// accepts. Roots that do not exist are skipped. An id that is not one path
// component, or that no root has, is ErrNoContainer.
func Find(roots []string, id string) (*Container, error) {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return nil, fmt.Errorf("container %q: %w: not a container id", id, ErrNoContainer)
	}
	var matches []string
	for _, root := range roots {
		if _, err := os.Stat(filepath.Join(root, id)); err == nil {
			return load(root, id)
		}
		ents, err := os.ReadDir(root)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), id) {
				matches = append(matches, filepath.Join(root, e.Name()))
			}
		}
	}
	switch len(matches) {
	case 0:
		return nil, fmt.Errorf("container %q: %w under %s", id, ErrNoContainer, strings.Join(roots, ", "))
	case 1:
		return load(filepath.Dir(matches[0]), filepath.Base(matches[0]))
	}
	return nil, fmt.Errorf("container %q: the prefix matches %d containers (%s, ...): give more of the id",
		id, len(matches), filepath.Base(matches[0]))
}
