package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/location"
)

func newInspectCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect LOCATION",
		Short: "Show what a snapshot is: format, compression, entries, bytes, layers, base image",
		Long: "Show what the snapshot at LOCATION (a tar file, oci:DIR[:TAG] or docker://HOST/REPO[:TAG]) is.\n\n" +
			"For oci: and docker:// snapshots the manifest and its config say it all: the format, each\n" +
			"layer's digest, media type, size, entries and bytes, the base image, the time it was created\n" +
			"and the container's name; no layer is read. A plain tar file carries no metadata: inspect\n" +
			"reads it through, counts its entries and bytes, and tells its format from its whiteouts\n" +
			"(docs/snapshot-format.md).",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.inspect(cmd.Context(), args[0], asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

// inspection is what `ocisnap inspect` prints (docs/ocisnap-inspect.1.md).
type inspection struct {
	Location string `json:"location"`
	Kind     string `json:"kind"`
	Digest   string `json:"digest,omitempty"`
	// Metadata is false for a plain tar file, which records nothing
	// beyond its entries: no base image, creation time or container.
	Metadata bool `json:"metadata"`
	// Format is "overlay" or "oci"; for a plain tar as told by its
	// whiteouts: "mixed" when it has both styles, "" when it has none.
	Format      string              `json:"format"`
	Compression string              `json:"compression"`
	Entries     int64               `json:"entries"`
	Bytes       int64               `json:"bytes"`
	Created     *time.Time          `json:"created,omitempty"`
	Container   string              `json:"container,omitempty"`
	Base        *location.BaseImage `json:"base,omitempty"`
	Layers      []inspectedLayer    `json:"layers"`
}

type inspectedLayer struct {
	Digest      string `json:"digest,omitempty"`
	MediaType   string `json:"mediaType,omitempty"`
	Size        int64  `json:"size"`
	Compression string `json:"compression"`
	Entries     int64  `json:"entries"`
	Bytes       int64  `json:"bytes"`
}

func (a *app) inspect(ctx context.Context, ref string, asJSON bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	snap, err := a.openSnapshot(ctx, ref)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", ref, err)
	}
	defer snap.Close()
	in := &inspection{Location: ref, Kind: location.Kind(ref), Layers: []inspectedLayer{}}
	if snap.Manifest == nil {
		if err := inspectTar(ctx, snap, in); err != nil {
			return fmt.Errorf("inspect %s: %w", ref, err)
		}
	} else {
		inspectManifest(snap, in)
	}
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(in)
	}
	return printInspection(newLineWriter(a.stdout), in)
}

// inspectManifest fills in from the manifest and its config.
func inspectManifest(snap *location.Snapshot, in *inspection) {
	in.Metadata = true
	in.Digest = snap.Digest.String()
	cfg := snap.Config
	if cfg == nil {
		cfg = &location.Config{}
	}
	in.Format, in.Container, in.Base = cfg.Format, cfg.Container, cfg.Base
	if !cfg.Created.IsZero() {
		t := cfg.Created
		in.Created = &t
	}
	comps := map[string]bool{}
	for i, l := range snap.Layers {
		il := inspectedLayer{Digest: l.Desc.Digest.String(), MediaType: l.Desc.MediaType, Size: l.Desc.Size,
			Compression: mediaTypeCompression(l.Desc.MediaType)}
		if i < len(cfg.Layers) {
			il.Entries, il.Bytes = cfg.Layers[i].Entries, cfg.Layers[i].Bytes
		}
		in.Entries += il.Entries
		in.Bytes += il.Bytes
		comps[il.Compression] = true
		in.Layers = append(in.Layers, il)
	}
	for c := range comps {
		if in.Compression != "" {
			in.Compression = "mixed"
			break
		}
		in.Compression = c
	}
}

func mediaTypeCompression(mt string) string {
	switch {
	case strings.HasSuffix(mt, "+gzip"):
		return string(layer.CompressionGzip)
	case strings.HasSuffix(mt, "+zstd"):
		return string(layer.CompressionZstd)
	}
	return string(layer.CompressionNone)
}

// inspectTar reads a plain tar through: its entries, content bytes,
// compression, and its format told by its whiteouts and opaque
// directories (a char 0/0 device or an opaque xattr: overlay; a .wh. file
// or a .wh..wh..opq marker: oci).
func inspectTar(ctx context.Context, snap *location.Snapshot, in *inspection) error {
	var overlay, oci bool
	err := snap.Each(ctx, func(_ int, l location.Layer, r io.Reader) error {
		rd, err := layer.NewReader(r)
		if err != nil {
			return err
		}
		defer rd.Close()
		il := inspectedLayer{Size: l.Desc.Size, Compression: string(rd.Compression())}
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			e, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			il.Entries++
			switch {
			case e.Header == nil: // a marker-only opaque entry
				oci = true
			case e.Whiteout && e.Header.Typeflag == tar.TypeReg:
				oci = true
			case e.Whiteout, e.Opaque:
				overlay = true
			case e.Header.Typeflag == tar.TypeReg:
				il.Bytes += e.Header.Size
			}
		}
		in.Entries += il.Entries
		in.Bytes += il.Bytes
		in.Compression = il.Compression
		in.Layers = append(in.Layers, il)
		return nil
	})
	switch {
	case overlay && oci:
		in.Format = "mixed"
	case overlay:
		in.Format = string(layer.FormatOverlay)
	case oci:
		in.Format = string(layer.FormatOCI)
	}
	return err
}

func printInspection(w *lineWriter, in *inspection) error {
	w.printf("Location:     %s\n", in.Location)
	if in.Digest != "" {
		w.printf("Digest:       %s\n", in.Digest)
	}
	format := in.Format
	switch {
	case format == "" && !in.Metadata:
		format = "either (no whiteouts or opaque directories to tell by)"
	case format == "mixed":
		format = "mixed (overlay and oci whiteouts)"
	case !in.Metadata:
		format += " (told by its whiteouts)"
	}
	w.printf("Format:       %s\n", format)
	w.printf("Compression:  %s\n", in.Compression)
	w.printf("Entries:      %d\n", in.Entries)
	w.printf("Bytes:        %d\n", in.Bytes)
	if !in.Metadata {
		w.printf("Metadata:     none (a plain tar records no base image, creation time or container;\n" +
			"              oci: and docker:// snapshots do)\n")
		return w.flush()
	}
	if in.Created != nil {
		w.printf("Created:      %s\n", in.Created.UTC().Format(time.RFC3339))
	}
	if in.Container != "" {
		w.printf("Container:    %s\n", in.Container)
	}
	w.printf("Base image:   %s\n", describeBase(in.Base))
	w.printf("Layers:       %d (oldest first)\n", len(in.Layers))
	for i, l := range in.Layers {
		w.printf("  %d  %s  %s  %d bytes stored, %d entries, %d bytes\n", i+1, l.Digest, l.MediaType, l.Size, l.Entries, l.Bytes)
	}
	return w.flush()
}

// describeBase names a base image for people: name and digest, or the
// lower-layer chain podman's containers are identified by.
func describeBase(b *location.BaseImage) string {
	if b == nil {
		return "not recorded"
	}
	var parts []string
	if b.Name != "" {
		parts = append(parts, b.Name)
	}
	if b.Digest != "" {
		parts = append(parts, "digest "+b.Digest)
	}
	if b.LowerChain != "" {
		parts = append(parts, "lower layers "+b.LowerChain)
	}
	if len(parts) == 0 {
		return "not recorded"
	}
	return strings.Join(parts, ", ")
}
