package hooks

import (
	"context"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/ocistate"
	"github.com/ocisnap/ocisnap/pkg/policy"
)

// restore applies the snapshot at ref onto the container's rootfs. The
// source is checked against the policy before a byte is read (inside an
// --allow-dir, never inside an --allow-view-dir: README.md, "Security
// model"); every entry is confined to the rootfs by layer.Apply.
func (h *hook) restore(ctx context.Context, c *ocistate.Container, ref string) error {
	src, err := location.ParseSource(ref, &h.cfg.Policy)
	if err != nil {
		return err
	}
	rc, err := src.Open(ctx)
	if err != nil {
		return missing("snapshot", ref, err)
	}
	defer rc.Close()
	root, err := os.OpenFile(c.Rootfs, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("open rootfs: %w", err)
	}
	defer root.Close()
	opts := ApplyOpts(&h.cfg.Policy, idMap(c.UIDMappings(), c.GIDMappings()))
	stats, err := layer.Apply(ctx, root, rc, opts...)
	if err != nil {
		return err
	}
	h.log.Info("restored", "source", src.String(), "rootfs", c.Rootfs, "entries", stats.Entries, "bytes", stats.Bytes)
	return nil
}

// ApplyOpts are the options of a restore under the administrator's policy p
// (device nodes, limits), with the id mapping idm (nil for none). The hook
// and `ocisnap apply` both restore with exactly these.
func ApplyOpts(p *policy.Policy, idm *layer.IDMap) []layer.ApplyOpt {
	opts := []layer.ApplyOpt{layer.WithIDMap(idm), layer.WithAllowDevices(p.AllowDevices)}
	if p.MaxBytes > 0 {
		opts = append(opts, layer.WithMaxBytes(p.MaxBytes))
	}
	if p.MaxEntries > 0 {
		opts = append(opts, layer.WithMaxEntries(p.MaxEntries))
	}
	return opts
}

// idMap converts the runtime spec's mappings; nil when there are none.
func idMap(uids, gids []specs.LinuxIDMapping) *layer.IDMap {
	if len(uids) == 0 && len(gids) == 0 {
		return nil
	}
	conv := func(ms []specs.LinuxIDMapping) []layer.IDMapping {
		out := make([]layer.IDMapping, len(ms))
		for i, m := range ms {
			out[i] = layer.IDMapping{ContainerID: m.ContainerID, HostID: m.HostID, Size: m.Size}
		}
		return out
	}
	return &layer.IDMap{UIDs: conv(uids), GIDs: conv(gids)}
}
