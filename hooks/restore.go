package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/mountns"
	"github.com/ocisnap/ocisnap/pkg/ocistate"
	"github.com/ocisnap/ocisnap/pkg/policy"
	"github.com/ocisnap/ocisnap/pkg/procstat"
)

// restore applies the snapshot at ref onto the container's rootfs. The
// source is checked against the policy before a byte is read (inside an
// --allow-dir, never inside an --allow-view-dir: README.md, "Security
// model"); every entry is confined to the rootfs, and to the rootfs's own
// mount, by layer.Apply.
func (h *hook) restore(ctx context.Context, c *ocistate.Container, ref, stage string) error {
	_, err := h.restoreSnapshot(ctx, c, ref, stage, false)
	return err
}

// restored is what a restore applied: the manifest's digest ("" for a
// plain file, or when nothing was there), its layer count and format.
type restored struct {
	digest string
	layers int
	format string
}

// restoreSnapshot is restore; with emptyOK (io.ocisnap.persist) a location
// that holds no snapshot yet is a first start: nothing is applied, and
// the zero restored is returned. Any other error still fails.
func (h *hook) restoreSnapshot(ctx context.Context, c *ocistate.Container, ref, stage string, emptyOK bool) (restored, error) {
	src, err := location.ParseSource(ref, &h.cfg.Policy, h.registryOpt())
	if err != nil {
		return restored{}, err
	}
	if location.Kind(ref) == location.KindDocker {
		var cancel context.CancelFunc
		ctx, cancel = h.registryContext(ctx)
		defer cancel()
	}
	snap, err := src.Open(ctx)
	if emptyOK && (errors.Is(err, location.ErrNotFound) || errors.Is(err, fs.ErrNotExist)) {
		h.log.Info("nothing to restore yet: the container starts empty", "annotation", KeyPersist, "source", ref, "why", err)
		return restored{}, nil
	}
	if err != nil {
		return restored{}, missing("snapshot", ref, err)
	}
	defer snap.Close()
	if err := h.checkBase(c, ref, snap.Config); err != nil {
		return restored{}, err
	}
	root, err := openRootfs(c, stage)
	if err != nil {
		return restored{}, fmt.Errorf("open rootfs: %w", err)
	}
	defer root.Close()
	opts := ApplyOpts(&h.cfg.Policy, idMap(c.UIDMappings(), c.GIDMappings()))
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
		return restored{}, err
	}
	h.log.Info("restored", "source", src.String(), "rootfs", c.Rootfs, "layers", len(snap.Layers),
		"entries", total.Entries, "bytes", total.Bytes)
	res := restored{digest: snap.Digest.String(), layers: len(snap.Layers)}
	if snap.Config != nil {
		res.format = snap.Config.Format
	}
	return res, nil
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

// openRootfs opens the rootfs as the container's mount namespace has it,
// with the volumes and other mounts the runtime made inside it: layer.Apply
// then refuses any entry that would cross into one (README, "Security
// model"). At createContainer the hook runs in that namespace already; at
// createRuntime (and prestart) the runtime has made the mounts in the
// container's namespace, where the hook enters to open the rootfs. Seen
// from the runtime's namespace the volumes' mount points are plain
// directories, and removing one there would detach the volume from the
// container. Without a pid the rootfs is opened where the hook runs.
func openRootfs(c *ocistate.Container, stage string) (*os.File, error) {
	var root *os.File
	open := func() (err error) {
		root, err = os.OpenFile(c.Rootfs, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		return err
	}
	// At createContainer the state's pid is the container's init as its
	// own pid namespace numbers it: not one to look up in /proc.
	if stage == StageCreateContainer || c.State.Pid <= 0 {
		return root, open()
	}
	// The runtime holds the container's init stopped before its process
	// starts, so its start time read now is the one to enter with.
	start, err := procstat.StartTime(c.State.Pid)
	if err != nil {
		return nil, err
	}
	err = mountns.Do(mountns.Process{Pid: c.State.Pid, Start: start}, open)
	return root, err
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
