package hooks

import (
	"context"
	"fmt"
	"io"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/ocistate"
)

// restore applies the snapshot at ref onto the container's rootfs. The
// source is checked against the policy before a byte is read (inside an
// --allow-dir, never inside an --allow-view-dir: README.md, "Security
// model"); every entry is confined to the rootfs by layer.Apply.
func (h *hook) restore(ctx context.Context, c *ocistate.Container, ref string) error {
	src, err := location.ParseSource(ref, &h.cfg.Policy, h.registryOpt())
	if err != nil {
		return err
	}
	if location.Kind(ref) == location.KindDocker {
		var cancel context.CancelFunc
		ctx, cancel = h.registryContext(ctx)
		defer cancel()
	}
	snap, err := src.Open(ctx)
	if err != nil {
		return err
	}
	defer snap.Close()
	root, err := os.OpenFile(c.Rootfs, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("open rootfs: %w", err)
	}
	defer root.Close()
	opts := []layer.ApplyOpt{
		layer.WithIDMap(idMap(c.UIDMappings(), c.GIDMappings())),
		layer.WithAllowDevices(h.cfg.Policy.AllowDevices),
	}
	if h.cfg.Policy.MaxBytes > 0 {
		opts = append(opts, layer.WithMaxBytes(h.cfg.Policy.MaxBytes))
	}
	if h.cfg.Policy.MaxEntries > 0 {
		opts = append(opts, layer.WithMaxEntries(h.cfg.Policy.MaxEntries))
	}
	// Layers oldest first, each verified against its digest as it streams
	// (docs/locations.md).
	var total layer.Stats
	err = snap.Each(ctx, func(_ int, _ location.Layer, r io.Reader) error {
		stats, err := layer.Apply(ctx, root, r, opts...)
		total.Entries += stats.Entries
		total.Bytes += stats.Bytes
		return err
	})
	if err != nil {
		return err
	}
	h.log.Info("restored", "source", src.String(), "rootfs", c.Rootfs, "layers", len(snap.Layers),
		"entries", total.Entries, "bytes", total.Bytes)
	return nil
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
