package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/hooks"
	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/progress"
)

type applyOpts struct {
	cfg          hooks.Config
	uidmap, gidm []string
}

func newApplyCmd(a *app) *cobra.Command {
	o := applyOpts{cfg: hooks.DefaultConfig()}
	cmd := &cobra.Command{
		Use:   "apply SNAPSHOT|- DIR",
		Short: "Apply a snapshot onto a directory (offline restore)",
		Long: "Apply a snapshot (plain, gzip or zstd; overlay or oci whiteouts) onto DIR as the hook\n" +
			"restores one onto a container's rootfs: deletions and opaque directories remove what DIR\n" +
			"has, every write stays inside DIR, and the hook's limits and device policy apply.",
		Args: usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.apply(cmd.Context(), &o, args[0], args[1])
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	hookFlags(f, &o.cfg, "max-bytes", "max-entries", "allow-devices")
	f.StringArrayVar(&o.uidmap, "uidmap", nil,
		"CONTAINER_ID:HOST_ID:SIZE: translate the snapshot's uids as a user namespace does (repeatable)")
	f.StringArrayVar(&o.gidm, "gidmap", nil, "CONTAINER_ID:HOST_ID:SIZE: the same for gids (repeatable)")
	return cmd
}

// hookFlags adds the named administrator flags of the hook (same names,
// defaults and help) to f, bound to cfg.
func hookFlags(f *pflag.FlagSet, cfg *hooks.Config, names ...string) {
	all := pflag.NewFlagSet("hook", pflag.ContinueOnError)
	hooks.RegisterFlags(all, cfg)
	for _, n := range names {
		f.AddFlag(all.Lookup(n))
	}
}

func (a *app) apply(ctx context.Context, o *applyOpts, snapshot, dir string) error {
	idm, err := parseIDMaps(o.uidmap, o.gidm)
	if err != nil {
		return err
	}
	var in io.ReadCloser
	var snap *location.Snapshot
	size := int64(-1)
	if location.HoldsManifest(snapshot) {
		// Every layer, oldest first, each verified as it streams.
		if snap, err = a.openSnapshot(ctx, snapshot); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		defer snap.Close()
		size = 0
		for _, l := range snap.Layers {
			size += l.Desc.Size
		}
	} else {
		if in, size, err = a.openInput(snapshot); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		defer in.Close()
	}
	root, err := os.OpenFile(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("target directory: %w", err)
	}
	defer root.Close()
	opts := hooks.ApplyOpts(&o.cfg.Policy, idm)
	bar := progress.New(a.stderr, "apply", size)
	opts = append(opts, layer.WithProgress(func(s layer.Stats) { bar.SetEntries(s.Entries) }))
	var st layer.Stats
	if snap != nil {
		err = snap.Each(ctx, func(_ int, _ location.Layer, r io.Reader) error {
			s, err := layer.Apply(ctx, root, bar.Reader(r), opts...)
			st.Entries += s.Entries
			st.Bytes += s.Bytes
			return err
		})
	} else {
		st, err = layer.Apply(ctx, root, bar.Reader(in), opts...)
	}
	bar.Done(err)
	if err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return fmt.Errorf("apply %s onto %s: %w (what was applied before stays)", snapshot, dir, err)
	}
	a.log.Info("applied", "snapshot", snapshot, "dir", dir, "entries", st.Entries, "bytes", st.Bytes)
	return nil
}

// parseIDMaps parses --uidmap/--gidmap values, podman's
// CONTAINER_ID:HOST_ID:SIZE.
func parseIDMaps(uids, gids []string) (*layer.IDMap, error) {
	if len(uids) == 0 && len(gids) == 0 {
		return nil, nil
	}
	m := &layer.IDMap{}
	for _, v := range []struct {
		flag string
		in   []string
		out  *[]layer.IDMapping
	}{{"--uidmap", uids, &m.UIDs}, {"--gidmap", gids, &m.GIDs}} {
		for _, s := range v.in {
			f := strings.Split(s, ":")
			if len(f) != 3 {
				return nil, usagef("%s %q: want CONTAINER_ID:HOST_ID:SIZE", v.flag, s)
			}
			var n [3]uint32
			for i, x := range f {
				u, err := strconv.ParseUint(x, 10, 32)
				if err != nil {
					return nil, usagef("%s %q: %w", v.flag, s, errors.Unwrap(err))
				}
				n[i] = uint32(u)
			}
			*v.out = append(*v.out, layer.IDMapping{ContainerID: n[0], HostID: n[1], Size: n[2]})
		}
	}
	return m, nil
}
