package hooks

// Export planning: the upper directory of a container's rootfs overlay and
// the layer.Write options its export uses. The hook's poststop export and
// `ocisnap export` both build their options here, so that the two never
// disagree.

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/ocistate"
	"github.com/ocisnap/ocisnap/pkg/overlay"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// ContainerUpper returns the upper directory of container c's rootfs
// overlay and the layer.Write options that the hook's poststop export
// would use for it: the runtime's mountpoint stubs and the binds of views
// recorded in cfg.StateDir left out, ids mapped back into the container's
// user namespace, lower layers for metacopy and redirected directories.
// The rootfs must be mounted.
func ContainerUpper(c *ocistate.Container, cfg *Config) (string, []layer.WriteOpt, error) {
	h := &hook{cfg: cfg, log: cfg.Logger, state: statefile.Dir{Path: cfg.StateDir}}
	rec, err := h.newRecord(c, &request{export: &exportRequest{dest: "-"}})
	if err != nil {
		return "", nil, err
	}
	if old, err := h.state.Read(c.State.ID); err == nil {
		rec.Views = old.Views
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", nil, fmt.Errorf("read state of container %s: %w", c.State.ID, err)
	}
	return rec.Overlay.Upper, writeOpts(rec), nil
}

// RootfsUpper returns the upper directory of the overlay mounted at rootfs
// and the write options for its lower layers; nothing is excluded (there is
// no container spec to name the mountpoint stubs).
func RootfsUpper(rootfs string) (string, []layer.WriteOpt, error) {
	m, err := overlay.Find(rootfs)
	if err != nil {
		return "", nil, err
	}
	if m.Upper == "" {
		return "", nil, fmt.Errorf("rootfs %q is a read-only overlay (no upperdir): nothing to export", rootfs)
	}
	rec := &statefile.Record{Overlay: &statefile.Overlay{
		Upper: m.Upper, Lowers: m.Lowers, DataDirs: m.DataDirs, UserXattr: m.UserXattr,
	}}
	return m.Upper, writeOpts(rec), nil
}

// writeOpts are the options of an export of rec's upper, format and
// compression aside. (The hook's export uses the same list.)
func writeOpts(rec *statefile.Record) []layer.WriteOpt {
	opts := []layer.WriteOpt{
		layer.WithLowers(append(append([]string{}, rec.Overlay.Lowers...), rec.Overlay.DataDirs...)...),
		layer.WithUserXattr(rec.Overlay.UserXattr),
	}
	if ex := excludes(rec); len(ex) > 0 {
		opts = append(opts, layer.WithExclude(ex...))
	}
	if m := idMap(rec.UIDMappings, rec.GIDMappings); m != nil {
		opts = append(opts, layer.WithIDMap(m))
	}
	return opts
}
