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
		Long: "Re-encode a snapshot in the other whiteout format (overlay: char 0/0 whiteouts and the\n" +
			"trusted.overlay.opaque xattr, as runsc writes; oci: .wh. files, an OCI image layer) and\n" +
			"compression. The encoding is canonical: a snapshot written by ocisnap converted to the\n" +
			"other format and back is byte-identical. OUT is written atomically.",
		Args: usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("compression") && location.HoldsManifest(args[1]) {
				compression = string(layer.CompressionZstd) // the default of oci:/docker://
			}
			return a.convert(cmd.Context(), to, compression, args[0], args[1])
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "whiteout format to write: overlay or oci")
	cmd.Flags().StringVar(&compression, "compression", string(layer.CompressionNone), "compression to write: none, gzip or zstd")
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
