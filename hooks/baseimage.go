package hooks

import (
	"errors"
	"fmt"

	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/ocistate"
	"github.com/ocisnap/ocisnap/pkg/overlay"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// ErrImageMismatch is wrapped by the refusal, under --require-same-image,
// of a snapshot recorded on another base image than the container's.
var ErrImageMismatch = errors.New("hooks: snapshot was taken on another base image")

// containerBase is the container's base image as an export of it would
// record it (recordBase): the engine's image name and digest, and the chain
// of its overlay's lower layers. Nil when none of them is known.
func containerBase(c *ocistate.Container) *location.BaseImage {
	var lowers []string
	if m, err := overlay.Find(c.Rootfs); err == nil {
		lowers = m.Lowers
	}
	var e statefile.Export
	recordBase(&e, c, lowers)
	return snapshotInfo(&e).Base
}

// baseMismatch compares the base image a snapshot recorded with the
// container's, on the strongest identity both have: the digest, else the
// name, else the lower-layer chain. It returns a description of each when
// they differ, and "", "" when they match or cannot be compared (a plain
// tar records nothing).
func baseMismatch(recorded, current *location.BaseImage) (was, is string) {
	if recorded == nil || current == nil {
		return "", ""
	}
	for _, pick := range []func(*location.BaseImage) string{
		func(b *location.BaseImage) string { return b.Digest },
		func(b *location.BaseImage) string { return b.Name },
		func(b *location.BaseImage) string { return b.LowerChain },
	} {
		r, c := pick(recorded), pick(current)
		if r == "" || c == "" {
			continue
		}
		if r == c {
			return "", ""
		}
		return baseName(recorded), baseName(current)
	}
	return "", ""
}

// baseName names a base image for a log or an error.
func baseName(b *location.BaseImage) string {
	switch {
	case b.Name != "" && b.Digest != "":
		return b.Name + "@" + b.Digest
	case b.Name != "":
		return b.Name
	case b.Digest != "":
		return b.Digest
	}
	return "lower layers " + b.LowerChain
}

// checkBase warns when the snapshot at ref was taken on another base image
// than the container's (applying a snapshot to a newer image is a real
// use), and with --require-same-image refuses the restore, naming both
// (docs/policy.md).
func (h *hook) checkBase(c *ocistate.Container, ref string, cfg *location.Config) error {
	if cfg == nil || cfg.Base == nil {
		return nil
	}
	was, is := baseMismatch(cfg.Base, containerBase(c))
	if was == "" {
		return nil
	}
	if h.cfg.RequireSameImage {
		return fmt.Errorf("%w: snapshot base %s, container image %s (--require-same-image)", ErrImageMismatch, was, is)
	}
	h.log.Warn("restoring a snapshot taken on another base image", "source", ref,
		"snapshot_base", was, "container_image", is)
	return nil
}
