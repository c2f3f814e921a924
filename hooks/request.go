package hooks

import (
	"fmt"

	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/ocistate"
)

// Annotation keys (CONTRACT.md, "Annotations"). Each also has the
// per-container form "<key>.<container-name>", resolved by ocistate.
const (
	KeyRestore           = "io.ocisnap.restore"
	KeyExport            = "io.ocisnap.export"
	KeyExportFormat      = "io.ocisnap.export-format"
	KeyExportCompression = "io.ocisnap.export-compression"
	KeyView              = "io.ocisnap.view"
	KeyViewBinds         = "io.ocisnap.view-binds"
	KeyViewMount         = "io.ocisnap.view-mount"
	// KeyGVisorRestore is gVisor's restore annotation, honoured only with
	// --gvisor-compat.
	KeyGVisorRestore = "dev.gvisor.tar.rootfs.upper"

	keyPrefix = "io.ocisnap."
)

// request is what a container's annotations ask of the hook.
type request struct {
	restore, restoreKey string // source and the annotation it came from
	export              *exportRequest
	view                *viewRequest
}

type exportRequest struct {
	dest        string
	format      layer.Format
	compression layer.Compression
}

func (r *request) empty() bool { return r.restore == "" && r.export == nil && r.view == nil }

// parseRequest reads and validates the annotations. It touches no file.
func parseRequest(c *ocistate.Container, cfg *Config) (*request, error) {
	req := &request{}
	if v, ok := c.Annotation(KeyRestore); ok {
		req.restore, req.restoreKey = v, KeyRestore
	} else if v, ok := c.Annotation(KeyGVisorRestore); ok && cfg.Policy.GVisorCompat {
		req.restore, req.restoreKey = v, KeyGVisorRestore
	}
	if req.restoreKey != "" && req.restore == "" {
		return nil, fmt.Errorf("%s: empty value", req.restoreKey)
	}
	if dest, ok := c.Annotation(KeyExport); ok {
		if dest == "" {
			return nil, fmt.Errorf("%s: empty value", KeyExport)
		}
		fv, _ := c.Annotation(KeyExportFormat)
		f, err := layer.ParseFormat(fv)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", KeyExportFormat, err)
		}
		cv, _ := c.Annotation(KeyExportCompression)
		if cv == "" && location.HoldsManifest(dest) {
			cv = string(layer.CompressionZstd) // the default of oci:/docker:// (docs/locations.md)
		}
		comp, err := layer.ParseCompression(cv)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", KeyExportCompression, err)
		}
		req.export = &exportRequest{dest: dest, format: f, compression: comp}
	}
	v, err := parseViewRequest(c)
	if err != nil {
		return nil, err
	}
	req.view = v
	return req, nil
}
