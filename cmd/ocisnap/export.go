package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"

	"github.com/ocisnap/ocisnap/hooks"
	"github.com/ocisnap/ocisnap/pkg/cgroupfreeze"
	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/ocistate"
	"github.com/ocisnap/ocisnap/pkg/progress"
	"github.com/ocisnap/ocisnap/pkg/runtimestate"
)

type exportOpts struct {
	output, format, compression string
	rootfs, upper, cgroup       string
	runtimeRoots                []string
	stateDir                    string
	noPause                     bool
	freezeTimeout               time.Duration
}

func newExportCmd(a *app) *cobra.Command {
	o := exportOpts{freezeTimeout: 30 * time.Second}
	cmd := &cobra.Command{
		Use:   "export [CONTAINER] -o FILE|-",
		Short: "Snapshot a running container's writable layer",
		Long: "Write the writable (overlay upper) layer of a container as a snapshot, like the hook does\n" +
			"at poststop but while the container runs. CONTAINER is a runc or crun container id, or a\n" +
			"unique prefix of one (podman's container ids are runc's), or a podman container name (resolved\n" +
			"with podman container inspect, if podman is installed); --rootfs or --upper name the layer\n" +
			"of anything else. The container's cgroup is frozen while the layer is read, so the snapshot\n" +
			"is of one instant, and thawed afterwards, also on error or interrupt.",
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("runtime-root") {
				o.runtimeRoots = runtimestate.Roots()
			}
			if !cmd.Flags().Changed("compression") && location.HoldsManifest(o.output) {
				o.compression = string(layer.CompressionZstd) // the default of oci:/docker://
			}
			return a.export(cmd.Context(), &o, args)
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVarP(&o.output, "output", "o", "", "snapshot file to write (atomically), or - for stdout")
	f.StringVar(&o.format, "format", string(layer.FormatOverlay), "whiteout format: overlay or oci")
	f.StringVar(&o.compression, "compression", string(layer.CompressionNone), "compression: none, gzip or zstd")
	f.BoolVar(&o.noPause, "no-pause", false, "do not freeze the container (the snapshot may then be inconsistent)")
	f.StringArrayVar(&o.runtimeRoots, "runtime-root", o.runtimeRoots,
		"runtime state directory to find CONTAINER in (repeatable; default runc's and crun's: "+
			strings.Join(runtimestate.Roots(), ", ")+")")
	f.StringVar(&o.rootfs, "rootfs", "", "export the overlay mounted at this path instead of a container's")
	f.StringVar(&o.upper, "upper", "", "export this overlay upper directory instead of a container's")
	f.StringVar(&o.cgroup, "cgroup", "", "with --rootfs or --upper: cgroup directory to freeze while exporting")
	f.DurationVar(&o.freezeTimeout, "freeze-timeout", o.freezeTimeout, "give up if the container is not frozen within this time")
	f.StringVar(&o.stateDir, "state-dir", hooks.DefaultConfig().StateDir, "the hook's state directory (for the binds of views to leave out)")
	_ = cmd.MarkFlagRequired("output")
	return cmd
}

// source is what to export and what to freeze meanwhile.
type exportSource struct {
	name  string // for messages
	upper string
	opts  []layer.WriteOpt
	cg    *cgroupfreeze.Cgroup // nil: nothing to freeze
}

func (a *app) export(ctx context.Context, o *exportOpts, args []string) error {
	given := 0
	for _, set := range []bool{len(args) == 1, o.rootfs != "", o.upper != ""} {
		if set {
			given++
		}
	}
	if given != 1 {
		return usagef("name exactly one of CONTAINER, --rootfs or --upper")
	}
	if o.cgroup != "" && len(args) == 1 {
		return usagef("--cgroup goes with --rootfs or --upper; a container's cgroup is found from its state")
	}
	format, err := layer.ParseFormat(o.format)
	if err != nil {
		return usagef("--format: %w", err)
	}
	comp, err := layer.ParseCompression(o.compression)
	if err != nil {
		return usagef("--compression: %w", err)
	}
	sink, err := a.outputSink(o.output)
	if err != nil {
		return err
	}
	location.Describe(sink, location.Info{Format: string(format), Compression: string(comp)})
	src, err := a.exportSource(ctx, o, args)
	if err != nil {
		return err
	}
	// Create the output before freezing: a bad output path fails here.
	pending, err := sink.Create(ctx)
	if err != nil {
		return fmt.Errorf("output: %w", err)
	}

	release := func() error { return nil }
	if src.cg != nil && !o.noPause {
		fctx, cancel := context.WithTimeout(ctx, o.freezeTimeout)
		release, err = cgroupfreeze.Hold(fctx, src.cg)
		cancel()
		if err != nil {
			return errors.Join(fmt.Errorf("%s: %w", src.name, err), pending.Abort())
		}
		a.log.Info("container frozen", "container", src.name, "cgroup", src.cg.Path)
	} else if src.cg != nil {
		a.log.Warn("not freezing the container (--no-pause): files it writes meanwhile may be inconsistent in the snapshot",
			"container", src.name)
	}
	frozenAt := time.Now()
	// Thaw as soon as the layer is read; and at once on SIGINT/SIGTERM,
	// whatever the writer is doing (it may block on a full pipe).
	stop := context.AfterFunc(ctx, func() { release() })
	defer stop()
	thaw := func() {
		if err := release(); err == nil && src.cg != nil && !o.noPause {
			a.log.Info("container thawed", "container", src.name, "frozen_for", time.Since(frozenAt).Round(time.Millisecond))
		}
	}

	bar := progress.New(a.stderr, "export "+src.name, -1)
	opts := append(src.opts,
		layer.WithFormat(format),
		layer.WithCompression(comp),
		layer.WithProgress(func(s layer.Stats) { bar.SetBytes(s.Bytes); bar.SetEntries(s.Entries) }),
	)
	out := &thawingPending{Pending: pending, beforeCommit: thaw}
	done := make(chan error, 1)
	go func() { done <- hooks.WriteSnapshot(ctx, out, src.upper, opts...) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// The writer stops at its next read or write and removes its
		// temporary file. One blocked on a full stdout pipe cannot be
		// woken; the process exits without it (nothing to clean up).
		grace := 10 * time.Second
		if o.output == "-" {
			grace = time.Second
		}
		select {
		case err = <-done:
		case <-time.After(grace):
			err = errors.New("the writer did not stop in time")
		}
	}
	bar.Done(err)
	thawErr := release()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w: the snapshot was not completed", context.Cause(ctx))
	}
	if thawErr != nil {
		// The worst outcome: say it first.
		return errors.Join(fmt.Errorf("%s: CONTAINER LEFT FROZEN: %w", src.name, thawErr), err)
	}
	if err != nil {
		return fmt.Errorf("export %s to %s: %w", src.name, sink, err)
	}
	a.log.Info("exported", "container", src.name, "output", sink.String())
	return nil
}

// exportSource finds the upper directory to export and the cgroup to
// freeze.
func (a *app) exportSource(ctx context.Context, o *exportOpts, args []string) (*exportSource, error) {
	cgroupOf := func() (*cgroupfreeze.Cgroup, error) {
		if o.cgroup == "" || o.noPause {
			return nil, nil
		}
		return cgroupfreeze.Open(o.cgroup)
	}
	switch {
	case o.upper != "":
		fi, err := os.Stat(o.upper)
		if err != nil {
			return nil, fmt.Errorf("--upper: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("--upper %s: not a directory", o.upper)
		}
		cg, err := cgroupOf()
		if err != nil {
			return nil, err
		}
		return &exportSource{name: o.upper, upper: o.upper, cg: cg}, nil
	case o.rootfs != "":
		upper, opts, err := hooks.RootfsUpper(o.rootfs)
		if err != nil {
			return nil, fmt.Errorf("--rootfs: %w", err)
		}
		cg, err := cgroupOf()
		if err != nil {
			return nil, err
		}
		return &exportSource{name: o.rootfs, upper: upper, opts: opts, cg: cg}, nil
	}
	rc, err := runtimestate.Find(o.runtimeRoots, args[0])
	if errors.Is(err, runtimestate.ErrNoContainer) {
		// Not a runtime's id: perhaps a podman name.
		id, perr := podmanID(ctx, args[0])
		if perr != nil {
			return nil, fmt.Errorf("%w (%v: give the container's id, as `podman ps --no-trunc` or `runc list` show it)", err, perr)
		}
		a.log.Info("podman container name resolved", "name", args[0], "id", id)
		rc, err = runtimestate.Find(o.runtimeRoots, id)
	}
	if err != nil {
		return nil, err
	}
	c, err := ocistate.Load(&rc.State)
	if err != nil {
		return nil, err
	}
	cfg := hooks.DefaultConfig()
	cfg.StateDir, cfg.Logger = o.stateDir, a.log
	upper, opts, err := hooks.ContainerUpper(c, &cfg)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", rc.State.ID, err)
	}
	src := &exportSource{name: rc.State.ID, upper: upper, opts: opts}
	if len(src.name) > 12 {
		src.name = src.name[:12]
	}
	if rc.State.Status != specs.StateRunning || o.noPause {
		if !o.noPause {
			a.log.Info("container is not running: nothing to freeze", "container", rc.State.ID)
		}
		return src, nil
	}
	if src.cg, err = cgroupfreeze.FromPaths(rc.CgroupPaths); err != nil {
		if src.cg, err = cgroupfreeze.ForPid(rc.State.Pid); err != nil {
			return nil, fmt.Errorf("container %s: find its cgroup to freeze (or give --no-pause): %w", rc.State.ID, err)
		}
	}
	return src, nil
}

// podmanTimeout bounds the podman call that resolves a name.
const podmanTimeout = 15 * time.Second

// podmanID asks podman (if installed, with its configuration from the
// environment) for the id of the container called name.
func podmanID(ctx context.Context, name string) (string, error) {
	bin, err := exec.LookPath("podman")
	if err != nil {
		return "", errors.New("not a container id, and there is no podman to resolve it as a name")
	}
	ctx, cancel := context.WithTimeout(ctx, podmanTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "container", "inspect", "--format", "{{.Id}}", "--", name)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		return "", fmt.Errorf("not a container id, nor a name podman knows (podman container inspect: %v: %s)", err, msg)
	}
	id := strings.TrimSpace(stdout.String())
	if id == "" || strings.ContainsAny(id, "/\n") {
		return "", fmt.Errorf("podman gave no id for %q", name)
	}
	return id, nil
}
