package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/location"
)

func newSquashCmd(a *app) *cobra.Command {
	var out, compression string
	cmd := &cobra.Command{
		Use:   "squash LOCATION [-o OUT]",
		Short: "Flatten a layered snapshot into one layer",
		Long: "Merge the layers of the snapshot at LOCATION (oci:DIR[:TAG] or docker://HOST/REPO[:TAG];\n" +
			"a plain file is one layer already) into one layer giving the same tree: one streaming pass\n" +
			"over all the layers at once, each verified against its digest, later whiteouts and opaque\n" +
			"directories hiding what earlier layers have beneath them. The result replaces the\n" +
			"snapshot at LOCATION (its tag moved last), or goes to OUT: another location, or a plain\n" +
			"tar file (which runsc can restore), or - for stdout.",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			dst := out
			if dst == "" {
				dst = args[0]
			}
			if !cmd.Flags().Changed("compression") {
				compression = string(layer.CompressionNone)
				if location.HoldsManifest(dst) {
					compression = string(layer.CompressionZstd) // the default of oci:/docker://
				}
			}
			return a.squash(cmd.Context(), args[0], dst, compression)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "where to write the squashed snapshot (default: back to LOCATION)")
	cmd.Flags().StringVar(&compression, "compression", "", "compression to write: none, gzip or zstd (default zstd for oci:/docker://, else none)")
	return cmd
}

func (a *app) squash(ctx context.Context, src, dst, compression string) error {
	comp, err := layer.ParseCompression(compression)
	if err != nil {
		return usagef("--compression: %w", err)
	}
	if !location.HoldsManifest(src) {
		return usagef("%s: not a layered location (oci:DIR[:TAG] or docker://HOST/REPO[:TAG])", src)
	}
	snap, err := a.openSnapshot(ctx, src)
	if err != nil {
		return err
	}
	defer snap.Close()
	format := layer.FormatOverlay
	if snap.Config != nil && snap.Config.Format != "" {
		if format, err = layer.ParseFormat(snap.Config.Format); err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
	}
	sink, err := a.outputSink(dst)
	if err != nil {
		return err
	}
	info := location.Info{Format: string(format), Compression: string(comp)}
	if c := snap.Config; c != nil {
		info.Container, info.Base = c.Container, c.Base
	}
	location.Describe(sink, info)
	readers := make([]io.Reader, len(snap.Layers))
	var lrs []*location.LayerReader
	defer func() {
		for _, lr := range lrs {
			lr.Close()
		}
	}()
	for i := range snap.Layers {
		lr, err := snap.OpenLayer(ctx, i)
		if err != nil {
			return err
		}
		lrs = append(lrs, lr)
		readers[i] = lr
	}
	p, err := sink.Create(ctx)
	if err != nil {
		return fmt.Errorf("output: %w", err)
	}
	st, err := layer.Squash(ctx, p, readers, format, comp)
	for _, lr := range lrs {
		if verr := lr.Verify(); verr != nil {
			// The blob's own failure explains the squash's.
			err = verr
			break
		}
	}
	if err != nil {
		return fmt.Errorf("squash %s: %w", src, errors.Join(err, p.Abort()))
	}
	location.SetLayerStats(p, st.Entries, st.Bytes)
	if err := p.Commit(); err != nil {
		return fmt.Errorf("squash %s to %s: %w", src, sink, err)
	}
	fmt.Fprintf(a.stderr, "squashed %d layers of %s into one (%d entries, %d bytes) at %s\n", len(snap.Layers), src, st.Entries, st.Bytes, sink)
	return nil
}
