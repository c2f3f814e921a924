package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/policy"
	"github.com/ocisnap/ocisnap/pkg/progress"
)

// registryFlags are the credential flags every command shares with the
// hook (docs/ocisnap.1.md): the same files podman and skopeo use.
//
// The CLI stages a push in a temporary directory and keeps nothing: a
// failed push is the operator's error to see, not a spool entry.
func registryFlags(f *pflag.FlagSet, a *app) {
	f.StringVar(&a.reg.AuthFile, "registry-auth-file", "",
		"containers-auth.json(5) file of registry credentials (default: podman's lookup)")
	f.StringVar(&a.reg.CertsDir, "registry-certs-dir", location.DefaultCertsDir,
		"containers-certs.d(5) directory of registry CAs and client certificates")
	f.StringVar(&a.reg.RegistriesConf, "registries-conf", location.DefaultRegistriesConf,
		"containers-registries.conf(5) file (and its .d drop-ins): a registry with insecure = true is reached without verifying its certificate")
}

// trustedPolicy allows exactly the location ref names: the operator is
// trusted (unlike annotations), so an oci: layout may be anywhere and any
// registry repository may be reached.
func trustedPolicy(ref string) (*policy.Policy, error) {
	switch location.Kind(ref) {
	case location.KindLayout:
		dir, _, err := location.ParseLayoutRef(ref)
		if err != nil {
			return nil, usageError{err}
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		parent := filepath.Dir(abs)
		if r, err := filepath.EvalSymlinks(parent); err == nil {
			parent = r
		}
		return &policy.Policy{AllowDirs: []string{parent}}, nil
	case location.KindDocker:
		host, repo, _, _, err := location.ParseDockerRef(ref)
		if err != nil {
			return nil, usageError{err}
		}
		return &policy.Policy{AllowRegistries: []string{host + "/" + repo}}, nil
	}
	return nil, fmt.Errorf("%s: not an oci: or docker:// location", ref)
}

// openSnapshot opens any location for reading.
func (a *app) openSnapshot(ctx context.Context, ref string) (*location.Snapshot, error) {
	var p *policy.Policy
	if location.HoldsManifest(ref) {
		var err error
		if p, err = trustedPolicy(ref); err != nil {
			return nil, err
		}
	} else {
		abs, err := filepath.Abs(ref)
		if err != nil {
			return nil, err
		}
		if r, err := filepath.EvalSymlinks(abs); err == nil {
			abs = r
		}
		ref = abs
		p = &policy.Policy{AllowDirs: []string{filepath.Dir(abs)}}
	}
	src, err := location.ParseSource(ref, p, location.WithRegistry(a.reg))
	if err != nil {
		return nil, err
	}
	return src.Open(ctx)
}

// manifestInput is one layer of an oci:/docker:// snapshot read as a
// stream; Verify checks its digest.
type manifestInput struct {
	*location.LayerReader
	snap *location.Snapshot
}

func (m *manifestInput) Close() error {
	err := m.LayerReader.Close()
	m.snap.Close()
	return err
}

// openManifestInput opens an oci:/docker:// snapshot of one layer as a
// stream (apply reads many layers through Snapshot.Each instead).
func (a *app) openManifestInput(ctx context.Context, ref string) (io.ReadCloser, int64, error) {
	snap, err := a.openSnapshot(ctx, ref)
	if err != nil {
		return nil, 0, err
	}
	if n := len(snap.Layers); n != 1 {
		snap.Close()
		return nil, 0, fmt.Errorf("%s: has %d layers; apply it, or squash it first", ref, n)
	}
	lr, err := snap.OpenLayer(ctx, 0)
	if err != nil {
		snap.Close()
		return nil, 0, err
	}
	return &manifestInput{LayerReader: lr, snap: snap}, snap.Layers[0].Desc.Size, nil
}

func newPushCmd(a *app) *cobra.Command {
	var pending, force bool
	var spool string
	cmd := &cobra.Command{
		Use:   "push SRC DST | push --pending",
		Short: "Copy a snapshot to an oci: layout or a docker:// registry; deliver the spool",
		Long: "Copy the snapshot at SRC (a file, oci:DIR[:TAG] or docker://HOST/REPO[:TAG]) to DST, blobs\n" +
			"first, the tag moved last. With --pending, deliver the exports the hook kept in the spool\n" +
			"because the registry could not be reached, removing each one once pushed.",
		Args: usageArgs(func(cmd *cobra.Command, args []string) error {
			if pending {
				return cobra.NoArgs(cmd, args)
			}
			if force {
				return usagef("--force goes with --pending")
			}
			return cobra.ExactArgs(2)(cmd, args)
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			if pending {
				return a.pushPending(cmd.Context(), spool, force)
			}
			return a.copySnapshot(cmd.Context(), args[0], args[1])
		},
	}
	cmd.Flags().BoolVar(&pending, "pending", false, "deliver the spooled exports")
	cmd.Flags().BoolVar(&force, "force", false, "with --pending: also deliver a layer whose tag moved off the snapshot it was built on (the newer snapshot is dropped from the tag)")
	cmd.Flags().StringVar(&spool, "spool-dir", location.DefaultSpoolDir, "the hook's spool directory (with --pending)")
	return cmd
}

func newPullCmd(a *app) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "pull SRC -o DST",
		Short: "Copy a snapshot from a registry or layout to a file, oci: layout or registry",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("no output: give -o DST")
			}
			return a.copySnapshot(cmd.Context(), args[0], out)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "destination: FILE, oci:DIR[:TAG] or docker://HOST/REPO[:TAG]")
	return cmd
}

// copySnapshot streams a one-layer snapshot from src to dst, keeping the
// layer's bytes (and, between manifest locations, the config's format,
// container and base image). A plain-file destination gets the layer as
// stored (plain, gzip or zstd: every reader detects which).
func (a *app) copySnapshot(ctx context.Context, src, dst string) error {
	in, size, err := a.openInput(src)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer in.Close()
	sink, err := a.outputSink(dst)
	if err != nil {
		return err
	}
	br := bufio.NewReaderSize(in, 1<<16)
	head, _ := br.Peek(4)
	info := location.Info{Compression: sniffCompression(head), Format: "overlay"}
	if mi, ok := in.(*manifestInput); ok && mi.snap.Config != nil {
		c := mi.snap.Config
		info.Format, info.Container, info.Base, info.Created = c.Format, c.Container, c.Base, c.Created
	}
	location.Describe(sink, info)
	p, err := sink.Create(ctx)
	if err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	if mi, ok := in.(*manifestInput); ok && mi.snap.Config != nil && len(mi.snap.Config.Layers) == 1 {
		l := mi.snap.Config.Layers[0]
		location.SetLayerStats(p, l.Entries, l.Bytes)
	}
	bar := progress.New(a.stderr, "copy", size)
	_, err = io.Copy(p, bar.Reader(br))
	if v, ok := in.(*manifestInput); ok && err == nil {
		err = v.Verify()
	}
	if err != nil {
		bar.Done(err)
		return errors.Join(fmt.Errorf("copy %s to %s: %w", src, dst, err), p.Abort())
	}
	err = p.Commit()
	bar.Done(err)
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

func sniffCompression(b []byte) string {
	switch {
	case len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b:
		return "gzip"
	case len(b) >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd:
		return "zstd"
	}
	return "none"
}

func (a *app) pushPending(ctx context.Context, spool string, force bool) error {
	res, err := location.PushPending(ctx, spool, a.reg, force)
	if err != nil {
		return fmt.Errorf("spool %s: %w", spool, err)
	}
	var errs []error
	for _, r := range res {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.Ref, r.Err))
			continue
		}
		fmt.Fprintf(a.stdout, "delivered %s\n", r.Ref)
	}
	return errors.Join(errs...)
}

func newLsCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "ls docker://HOST/REPO",
		Short: "List a registry repository's snapshots: tag, digest, size, created",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := trustedPolicy(args[0])
			if err != nil {
				return err
			}
			if location.Kind(args[0]) != location.KindDocker {
				return usagef("%s: ls lists a docker:// repository", args[0])
			}
			tags, err := location.List(cmd.Context(), args[0], p, a.reg)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TAG\tDIGEST\tSIZE\tCREATED")
			for _, t := range tags {
				if t.Err != nil {
					fmt.Fprintf(w, "%s\t-\t-\t(%s)\n", t.Tag, shortErr(t.Err))
					continue
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", t.Tag, t.Digest, t.Size, t.Created.UTC().Format(time.RFC3339))
			}
			return w.Flush()
		},
	}
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && errors.Is(err, location.ErrNotSnapshot) {
		return "not a snapshot"
	}
	return s
}
