package ocistate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Annotations naming a container inside a Kubernetes pod, whose annotations
// are shared by all its containers.
const (
	// AnnotationContainerdName is set by containerd's CRI plugin.
	AnnotationContainerdName = "io.kubernetes.cri.container-name"
	// AnnotationCRIOName is set by CRI-O.
	AnnotationCRIOName = "io.kubernetes.container.name"
)

// Container is a container as a hook sees it: the runtime's state, the
// bundle's config.json and what follows from them.
type Container struct {
	State *specs.State
	// Spec is the bundle's config.json, nil when it no longer exists at
	// poststop (see Load).
	Spec *specs.Spec
	// Rootfs is the absolute path of the container's root file system on the
	// host (root.path resolved against the bundle), "" when Spec is nil or
	// has no root.
	Rootfs string
	// Name is the container's name inside its pod, "" outside Kubernetes.
	Name string
}

// Load reads <bundle>/config.json for state and resolves the rootfs and the
// container name.
//
// A config.json that does not exist is not an error when the state's status
// is "stopped" (poststop: a runtime or engine may already have removed the
// bundle): Load then returns a Container with Spec nil and Rootfs "", and
// annotations come from the state only. At any other status a missing
// config.json is an error wrapping fs.ErrNotExist, as is any other failure to
// read or decode it.
//
// The bundle and config.json belong to the runtime and are trusted: root.path
// is joined to the bundle without symlink checks.
func Load(state *specs.State) (*Container, error) {
	if state == nil {
		return nil, fmt.Errorf("%w: nil state", ErrInvalidState)
	}
	c := &Container{State: state}
	path := filepath.Join(state.Bundle, "config.json")
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && state.Status == specs.StateStopped:
		c.Name = containerName(c.Annotations())
		return c, nil
	case err != nil:
		return nil, fmt.Errorf("container %s: read bundle config: %w", state.ID, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("container %s: decode %q: %w", state.ID, path, err)
	}
	c.Spec = &spec
	if spec.Root != nil && spec.Root.Path != "" {
		c.Rootfs = spec.Root.Path
		if !filepath.IsAbs(c.Rootfs) {
			c.Rootfs = filepath.Join(state.Bundle, c.Rootfs)
		}
		c.Rootfs = filepath.Clean(c.Rootfs)
	}
	c.Name = containerName(c.Annotations())
	return c, nil
}

func containerName(annotations map[string]string) string {
	if n := annotations[AnnotationContainerdName]; n != "" {
		return n
	}
	return annotations[AnnotationCRIOName]
}

// Annotations returns the state's annotations or, when the state has none
// (some runtimes leave them out), the spec's. The map must not be modified.
func (c *Container) Annotations() map[string]string {
	if c.State != nil && len(c.State.Annotations) > 0 {
		return c.State.Annotations
	}
	if c.Spec != nil {
		return c.Spec.Annotations
	}
	return nil
}

// Annotation looks key up for this container: when the container has a Name
// and "<key>.<Name>" is set, that value wins over the plain key's, so one pod
// can give each of its containers its own value.
func (c *Container) Annotation(key string) (string, bool) {
	_, v, ok := c.AnnotationKey(key)
	return v, ok
}

// AnnotationKey is Annotation that also returns the key the value was found
// under: "<key>.<Name>" or key itself, so that an error can name the
// annotation as the user wrote it.
func (c *Container) AnnotationKey(key string) (found, value string, ok bool) {
	a := c.Annotations()
	if c.Name != "" {
		if v, ok := a[key+"."+c.Name]; ok {
			return key + "." + c.Name, v, true
		}
	}
	v, ok := a[key]
	return key, v, ok
}

// HasAny reports whether some key of annotations starts with one of prefixes
// (a key equal to a prefix counts). It is the cheap test a hook makes before
// anything else to exit at once when nothing concerns it; a true answer may
// still turn out to ask for nothing (e.g. prefix "io.ocisnap.export" matches
// "io.ocisnap.export-format").
func HasAny(annotations map[string]string, prefixes ...string) bool {
	for k := range annotations {
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				return true
			}
		}
	}
	return false
}

// MountDestinations returns the destinations of the spec's mounts as clean
// absolute paths inside the container, in spec order without duplicates. A
// relative destination (accepted by runc for old specs) is taken relative to
// "/". It returns nil when there is no spec.
func (c *Container) MountDestinations() []string {
	if c.Spec == nil {
		return nil
	}
	var out []string
	seen := make(map[string]bool)
	for _, m := range c.Spec.Mounts {
		if m.Destination == "" {
			continue
		}
		d := filepath.Clean("/" + m.Destination)
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// UIDMappings returns the container's user namespace uid mappings, nil when it
// has none.
func (c *Container) UIDMappings() []specs.LinuxIDMapping {
	if c.Spec == nil || c.Spec.Linux == nil {
		return nil
	}
	return c.Spec.Linux.UIDMappings
}

// GIDMappings returns the container's user namespace gid mappings, nil when it
// has none.
func (c *Container) GIDMappings() []specs.LinuxIDMapping {
	if c.Spec == nil || c.Spec.Linux == nil {
		return nil
	}
	return c.Spec.Linux.GIDMappings
}
