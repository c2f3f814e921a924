package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/progress"
)

func newConvertCmd(a *app) *cobra.Command {
	var to, compression string
	cmd := &cobra.Command{
		Use:   "convert --to overlay|oci IN|- OUT|-",
		Short: "Convert a snapshot between the overlay and oci whiteout formats and compressions",
		Long: "Re-encode a snapshot (any whiteout format, also mixed; plain, gzip or zstd) in the whiteout\n" +
			"format --to (overlay: char 0/0 whiteouts and the trusted.overlay.opaque xattr, as runsc\n" +
			"writes; oci: .wh. files, an OCI image layer) with the compression --compression. It\n" +
			"converts exactly these two: the whiteout format and the compression. To change only the\n" +
			"compression, give the snapshot's own format as --to. The encoding is canonical: a snapshot\n" +
			"written by ocisnap converted to the other format and back is byte-identical. OUT is\n" +
			"written atomically.",
		Args: usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("compression") && location.HoldsManifest(args[1]) {
				compression = string(layer.CompressionZstd) // the default of oci:/docker://
			}
			return a.convert(cmd.Context(), to, compression, args[0], args[1])
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "whiteout format to write: overlay or oci (required; the input's own to change only the compression)")
	cmd.Flags().StringVar(&compression, "compression", string(layer.CompressionNone), "compression to write: none, gzip or zstd, whatever the input's")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

func (a *app) convert(ctx context.Context, to, compression, inName, outName string) error {
	format, err := layer.ParseFormat(to)
	if err != nil || to == "" {
		return usagef("--to %q: want overlay or oci", to)
	}
	comp, err := layer.ParseCompression(compression)
	if err != nil {
		return usagef("--compression: %w", err)
	}
	sink, err := a.outputSink(outName)
	if err != nil {
		return err
	}
	location.Describe(sink, location.Info{Format: string(format), Compression: string(comp)})
	in, size, err := a.openInput(inName)
	if err != nil {
		return fmt.Errorf("input: %w", err)
	}
	defer in.Close()
	out, err := sink.Create(ctx)
	if err != nil {
		return fmt.Errorf("output: %w", err)
	}
	bar := progress.New(a.stderr, "convert", size)
	_, err = layer.Convert(ctx, out, bar.Reader(in), format, comp)
	if err == nil {
		err = out.Commit()
	} else {
		err = errors.Join(err, out.Abort())
	}
	bar.Done(err)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %v", context.Cause(ctx), err)
		}
		return fmt.Errorf("convert %s to %s: %w", inName, sink, err)
	}
	return nil
}
