package hooks

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"

	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/ocistate"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

func (h *hook) registryOpt() location.Option {
	r := h.cfg.Registry
	r.PushTimeout = h.cfg.RegistryTimeout
	return location.WithRegistry(r)
}

// registryContext bounds a registry operation by --registry-timeout.
func (h *hook) registryContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, h.cfg.RegistryTimeout,
		fmt.Errorf("registry operations took longer than --registry-timeout %v", h.cfg.RegistryTimeout))
}

// checkManifestDest refuses, at create time, an oci:/docker:// export
// destination the policy does not allow (no network request is made).
func (h *hook) checkManifestDest(dest string) error {
	if _, err := location.ParseSink(dest, &h.cfg.Policy, h.registryOpt()); err != nil {
		return err
	}
	if location.Kind(dest) != location.KindLayout {
		return nil
	}
	// A layout is resolved now too, as a file's parent is: a symlink out
	// of the allowed directory fails the start, not only the export.
	dir, _, _ := location.ParseLayoutRef(dest)
	root, err := h.cfg.Policy.OpenDir(dir, true)
	if err != nil {
		return fmt.Errorf("oci: layout %w", err)
	}
	return root.Close()
}

// Annotations the engines set with the container's image (docs/locations.md,
// "The snapshot manifest").
const (
	annotationContainerdImage = "io.kubernetes.cri.image-name"
	annotationCRIOImage       = "io.kubernetes.cri-o.ImageName"
	annotationCRIOImageRef    = "io.kubernetes.cri-o.ImageRef"
)

// recordBase records what identifies the container's base image: the name
// (and, from CRI-O, the digest) the engine annotates, and for every engine
// the chain of lower layers — containers/storage names a pulled layer by
// its chain id, the same on every node — as a digest of the layer ids.
func recordBase(e *statefile.Export, c *ocistate.Container, lowers []string) {
	a := c.Annotations()
	e.Container = c.Name
	e.BaseImage = a[annotationContainerdImage]
	if e.BaseImage == "" {
		e.BaseImage = a[annotationCRIOImage]
	}
	if ref := a[annotationCRIOImageRef]; strings.HasPrefix(ref, "sha256:") {
		e.BaseImageDigest = ref
	}
	if len(lowers) == 0 {
		return
	}
	ids := make([]string, 0, len(lowers))
	for _, l := range lowers {
		if r, err := filepath.EvalSymlinks(l); err == nil {
			l = r
		}
		// <storage>/overlay/<layer id>/diff
		if filepath.Base(l) == "diff" {
			l = filepath.Dir(l)
		}
		ids = append(ids, filepath.Base(l))
	}
	e.LowerChain = digest.FromString(strings.Join(ids, "\n")).String()
}

// podmanImageName is the name containers/storage gives the image whose top
// layer is the container's topmost lower layer: podman puts no image name
// in config.json. From <graphroot>/overlay/<layer id>/diff (the lower, after
// its overlay/l/ symlink), the first name of the image in
// <graphroot>/overlay-images/images.json whose "layer" is that id, read as
// a stream (bounded). "" when the lowers are not containers/storage's or no
// image matches. Run at export only: never on the hook's no-op path.
func podmanImageName(lowers []string) string {
	if len(lowers) == 0 {
		return ""
	}
	l := lowers[0]
	if r, err := filepath.EvalSymlinks(l); err == nil {
		l = r
	}
	if filepath.Base(l) != "diff" {
		return ""
	}
	layerDir := filepath.Dir(l)
	driverDir := filepath.Dir(layerDir)
	if filepath.Base(driverDir) != "overlay" {
		return ""
	}
	id := filepath.Base(layerDir)
	f, err := os.Open(filepath.Join(filepath.Dir(driverDir), "overlay-images", "images.json"))
	if err != nil {
		return ""
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReader(io.LimitReader(f, maxImagesJSON)))
	if t, err := dec.Token(); err != nil || t != json.Delim('[') {
		return ""
	}
	for dec.More() {
		var img struct {
			Names []string `json:"names"`
			Layer string   `json:"layer"`
		}
		if dec.Decode(&img) != nil {
			return ""
		}
		if img.Layer == id && len(img.Names) > 0 {
			return img.Names[0]
		}
	}
	return ""
}

// maxImagesJSON bounds what podmanImageName reads of images.json.
const maxImagesJSON = 64 << 20

// snapshotInfo is what an oci:/docker:// export records in the config.
func snapshotInfo(e *statefile.Export) location.Info {
	in := location.Info{Format: e.Format, Compression: e.Compression, Container: e.Container}
	if e.BaseImage != "" || e.BaseImageDigest != "" || e.LowerChain != "" {
		in.Base = &location.BaseImage{Name: e.BaseImage, Digest: e.BaseImageDigest, LowerChain: e.LowerChain}
	}
	return in
}
