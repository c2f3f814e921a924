package location

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The snapshot manifest (docs/locations.md, "The snapshot manifest"): an
// OCI image manifest whose artifactType and config media type say it is an
// ocisnap snapshot, and whose layers, oldest first, are snapshot layers.
const (
	ArtifactType    = "application/vnd.ocisnap.snapshot.v1"
	ConfigMediaType = "application/vnd.ocisnap.snapshot.config.v1+json"

	// Layer media types: the OCI image-spec ones for the oci format, ours
	// for the overlay format (its whiteouts are character devices).
	MediaTypeOverlayLayer = "application/vnd.ocisnap.layer.v1.tar"
)

// maxMetadataSize bounds what is read of a manifest, a config or an
// index.json: they are small, and a hostile location must not make a
// restore hold an unbounded amount in memory.
const maxMetadataSize = 4 << 20

var (
	// ErrDigestMismatch is wrapped by the error of a blob whose bytes do
	// not hash to its digest; the error names the digest.
	ErrDigestMismatch = errors.New("location: content does not match its digest")
	// ErrSizeMismatch is wrapped when a blob is shorter or longer than its
	// descriptor says.
	ErrSizeMismatch = errors.New("location: content does not match its size")
	// ErrNotSnapshot is wrapped when a manifest is not a snapshot manifest.
	ErrNotSnapshot = errors.New("location: not an ocisnap snapshot manifest")
	// ErrNotFound is wrapped when a location holds no snapshot (no such
	// tag, file or manifest).
	ErrNotFound = errors.New("location: snapshot not found")
)

// Config is the snapshot's config blob.
type Config struct {
	// Format is the whiteout format of the layers: "overlay" or "oci".
	Format  string    `json:"format"`
	Created time.Time `json:"created"`
	// Container is the container's name (Kubernetes) when known.
	Container string `json:"container,omitempty"`
	// Base is the image the snapshot's changes are relative to.
	Base *BaseImage `json:"base,omitempty"`
	// Layers has one entry per manifest layer, in the same order.
	Layers []LayerInfo `json:"layers"`
}

// BaseImage identifies the image below a snapshot: its name and digest
// when the engine says them (containerd, CRI-O), and for podman, which puts
// neither in config.json, a digest of the chain of lower layers.
type BaseImage struct {
	Name       string `json:"name,omitempty"`
	Digest     string `json:"digest,omitempty"`
	LowerChain string `json:"lowerChain,omitempty"`
}

// LayerInfo is what the config says of one layer.
type LayerInfo struct {
	Entries int64 `json:"entries"`
	Bytes   int64 `json:"bytes"`
	// Created is when the layer was written (zero in snapshots of older
	// versions).
	Created time.Time `json:"created,omitzero"`
}

// Appender is implemented by the sinks of manifest locations (oci:,
// docker://): CreateOn starts a layer to add on top of the snapshot with
// manifest digest base, which the location must still hold (else the
// error wraps ErrBaseMoved). Earlier layers are referenced, never written
// or uploaded again (docs/locations.md, "Layered snapshots").
type Appender interface {
	CreateOn(ctx context.Context, base digest.Digest) (Pending, error)
}

// ErrBaseMoved is wrapped when the location no longer holds the snapshot
// a layer was to be added to.
var ErrBaseMoved = errors.New("location: the snapshot to add a layer to is no longer there")

// Info describes the snapshot a Pending of a manifest location writes;
// plain files ignore it. See Describe.
type Info struct {
	Format      string // "overlay" (default) or "oci"
	Compression string // "none", "gzip" or "zstd"
	Container   string
	Base        *BaseImage
	Created     time.Time // zero: the time of Commit
}

// Describer is implemented by the sinks and pendings of manifest
// locations (oci:, docker://).
type Describer interface {
	Describe(Info)
}

// LayerStater is implemented by the pendings of manifest locations: the
// written layer's entries and bytes, recorded in the config.
type LayerStater interface {
	SetLayerStats(entries, bytes int64)
}

// Describe gives s (a Sink or a Pending) what it records in a snapshot
// manifest; a plain file sink ignores it.
func Describe(s any, info Info) {
	if d, ok := s.(Describer); ok {
		d.Describe(info)
	}
}

// SetLayerStats records the entries and bytes of the layer written to p
// (for a manifest location's config); other pendings ignore it.
func SetLayerStats(p Pending, entries, bytes int64) {
	if s, ok := p.(LayerStater); ok {
		s.SetLayerStats(entries, bytes)
	}
}

// LayerMediaType is the media type of a layer of format and compression
// (docs/snapshot-format.md).
func LayerMediaType(format, compression string) (string, error) {
	base := MediaTypeOverlayLayer
	switch format {
	case "", "overlay":
	case "oci":
		base = ocispec.MediaTypeImageLayer
	default:
		return "", fmt.Errorf("location: unknown format %q", format)
	}
	switch compression {
	case "", "none":
		return base, nil
	case "gzip", "zstd":
		return base + "+" + compression, nil
	}
	return "", fmt.Errorf("location: unknown compression %q", compression)
}

// isLayerMediaType reports whether mt is one of the snapshot layer types.
func isLayerMediaType(mt string) bool {
	for _, f := range []string{"overlay", "oci"} {
		for _, c := range []string{"none", "gzip", "zstd"} {
			if m, _ := LayerMediaType(f, c); m == mt {
				return true
			}
		}
	}
	return false
}

// blob is a descriptor with its bytes, for the small blobs (config,
// manifest) built in memory.
type blob struct {
	desc ocispec.Descriptor
	data []byte
}

func newBlob(mediaType string, data []byte) blob {
	return blob{
		desc: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))},
		data: data,
	}
}

// buildManifest makes the config and manifest blobs of a snapshot whose
// layers are given oldest first, with their stats in cfg.Layers.
func buildManifest(cfg *Config, layers []ocispec.Descriptor) (config, manifest blob, err error) {
	cj, err := json.Marshal(cfg)
	if err != nil {
		return blob{}, blob{}, err
	}
	config = newBlob(ConfigMediaType, cj)
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       config.desc,
		Layers:       layers,
		Annotations:  map[string]string{ocispec.AnnotationCreated: cfg.Created.UTC().Format(time.RFC3339)},
	}
	mj, err := json.Marshal(m)
	if err != nil {
		return blob{}, blob{}, err
	}
	return config, newBlob(ocispec.MediaTypeImageManifest, mj), nil
}

// parseManifest decodes and checks a snapshot manifest (already verified
// against its digest): an image manifest with our artifact or config type
// and snapshot layers only.
func parseManifest(where string, data []byte) (*ocispec.Manifest, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: manifest: %w", where, err)
	}
	if m.MediaType != "" && m.MediaType != ocispec.MediaTypeImageManifest {
		return nil, fmt.Errorf("%s: manifest media type %q: %w", where, m.MediaType, ErrNotSnapshot)
	}
	if m.ArtifactType != ArtifactType && m.Config.MediaType != ConfigMediaType {
		return nil, fmt.Errorf("%s: artifact type %q, config %q: %w", where, m.ArtifactType, m.Config.MediaType, ErrNotSnapshot)
	}
	if len(m.Layers) == 0 {
		return nil, fmt.Errorf("%s: manifest has no layers: %w", where, ErrNotSnapshot)
	}
	for _, l := range m.Layers {
		if !isLayerMediaType(l.MediaType) {
			return nil, fmt.Errorf("%s: layer %s: media type %q: %w", where, l.Digest, l.MediaType, ErrNotSnapshot)
		}
		if err := l.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("%s: layer digest %q: %w", where, l.Digest, err)
		}
	}
	if err := m.Config.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("%s: config digest %q: %w", where, m.Config.Digest, err)
	}
	return &m, nil
}

// readVerified reads a small blob whole, verified against desc.
func readVerified(r io.Reader, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size < 0 || desc.Size > maxMetadataSize {
		return nil, fmt.Errorf("blob %s: size %d exceeds %d bytes", desc.Digest, desc.Size, maxMetadataSize)
	}
	v := newVerifier(r, desc)
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// verifier passes a blob's bytes through, hashing them: reading past the
// descriptor's size, an early end, or a wrong digest is an error naming
// the digest, returned instead of io.EOF.
type verifier struct {
	r    io.Reader
	desc ocispec.Descriptor
	h    hash.Hash
	n    int64
	err  error
}

func newVerifier(r io.Reader, desc ocispec.Descriptor) *verifier {
	return &verifier{r: r, desc: desc, h: desc.Digest.Algorithm().Hash()}
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	// One byte more than is left, to see trailing data.
	if left := v.desc.Size - v.n + 1; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := v.r.Read(p)
	v.n += int64(n)
	v.h.Write(p[:n])
	if v.n > v.desc.Size {
		v.err = fmt.Errorf("blob %s: more than its %d bytes: %w", v.desc.Digest, v.desc.Size, ErrSizeMismatch)
		return n - int(v.n-v.desc.Size), v.err
	}
	if err == io.EOF {
		v.err = v.check()
		if v.err == nil {
			v.err = io.EOF
		}
		return n, v.err
	}
	if err != nil {
		v.err = fmt.Errorf("blob %s: %w", v.desc.Digest, err)
	}
	return n, v.err
}

func (v *verifier) check() error {
	if v.n != v.desc.Size {
		return fmt.Errorf("blob %s: %d bytes, want %d: %w", v.desc.Digest, v.n, v.desc.Size, ErrSizeMismatch)
	}
	if got := digest.NewDigest(v.desc.Digest.Algorithm(), v.h); got != v.desc.Digest {
		return fmt.Errorf("blob %s: content has digest %s: %w", v.desc.Digest, got, ErrDigestMismatch)
	}
	return nil
}

// finish reads what the consumer left (a tar reader stops at the archive's
// end, before the padding and the compressor's trailer) and reports
// whether the whole blob matched its digest.
func (v *verifier) finish() error {
	if v.err == nil {
		_, err := io.Copy(io.Discard, v)
		if err != nil {
			return err
		}
	}
	if v.err == io.EOF {
		return nil
	}
	return v.err
}

// Snapshot is an opened snapshot: its manifest (nil for a plain file) and
// its layers, oldest first. Close releases it.
type Snapshot struct {
	// Ref is the location as given.
	Ref string
	// Digest is the manifest's digest; "" for a plain file.
	Digest digest.Digest
	// Manifest and Config are nil for a plain file.
	Manifest *ocispec.Manifest
	Config   *Config
	// Layers, oldest first; a plain file is one layer.
	Layers []Layer
	closer func() error
}

// Layer is one layer of a Snapshot.
type Layer struct {
	// Desc is the layer's descriptor; for a plain file only Size is set
	// (-1 when not known).
	Desc ocispec.Descriptor
	open func(ctx context.Context) (io.ReadCloser, error)
}

// Close releases the snapshot.
func (s *Snapshot) Close() error {
	if s.closer == nil {
		return nil
	}
	c := s.closer
	s.closer = nil
	return c()
}

// Each calls fn for each layer, oldest first, with a stream of its bytes
// (compressed as stored). For a manifest location the stream is verified
// as it is read: after fn returns, the rest of the blob is read and the
// layer's digest and size checked; a mismatch is an error wrapping
// ErrDigestMismatch (or ErrSizeMismatch) naming the digest, whatever fn
// returned. fn's error stops the loop.
func (s *Snapshot) Each(ctx context.Context, fn func(i int, l Layer, r io.Reader) error) error {
	for i, l := range s.Layers {
		rc, err := l.open(ctx)
		if err != nil {
			return err
		}
		var r io.Reader = rc
		var v *verifier
		if l.Desc.Digest != "" {
			v = newVerifier(rc, l.Desc)
			r = v
		}
		err = fn(i, l, r)
		if v != nil {
			// Also after an error of fn: altered bytes usually fail the
			// decompressor first, and the digest is what explains it.
			verr := v.finish()
			switch {
			case verr == nil:
			case err == nil:
				err = verr
			default:
				// The blob's own failure (a mismatch, a broken stream)
				// explains fn's, which usually follows from it.
				err = fmt.Errorf("%w (applying it: %v)", verr, err)
			}
		}
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// LayerReader is one layer's stream (OpenLayer). Verify reads what is left
// and reports a digest or size mismatch; Close releases it.
type LayerReader struct {
	rc io.ReadCloser
	v  *verifier // nil for a plain file
}

func (l *LayerReader) Read(p []byte) (int, error) {
	if l.v != nil {
		return l.v.Read(p)
	}
	return l.rc.Read(p)
}

// Verify reads the rest of the layer and checks its digest and size (a
// plain file has nothing to check).
func (l *LayerReader) Verify() error {
	if l.v == nil {
		return nil
	}
	return l.v.finish()
}

func (l *LayerReader) Close() error { return l.rc.Close() }

// OpenLayer opens layer i alone, for a caller that reads one stream (see
// Each for the usual way).
func (s *Snapshot) OpenLayer(ctx context.Context, i int) (*LayerReader, error) {
	if i < 0 || i >= len(s.Layers) {
		return nil, fmt.Errorf("%s: no layer %d", s.Ref, i)
	}
	l := s.Layers[i]
	rc, err := l.open(ctx)
	if err != nil {
		return nil, err
	}
	lr := &LayerReader{rc: rc}
	if l.Desc.Digest != "" {
		lr.v = newVerifier(rc, l.Desc)
	}
	return lr, nil
}
