package location

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisnap/ocisnap/internal/atomicfile"
	"github.com/ocisnap/ocisnap/pkg/policy"
)

// An OCI image layout (image-spec "image-layout") holding snapshot
// manifests, named as containers-transports(5) does: "oci:/abs/dir[:tag]",
// the tag "latest" when none is given, recorded in index.json as the
// manifest's org.opencontainers.image.ref.name annotation (what skopeo
// reads and writes).

// DefaultTag is the tag of an oci: or docker:// location that names none.
const DefaultTag = "latest"

// validTag reports whether t matches distribution-spec's tag grammar,
// [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}. (Not a package-level regexp: the
// hook's no-op run would pay for compiling it.)
func validTag(t string) bool {
	if t == "" || len(t) > 128 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
		if i > 0 {
			ok = ok || c == '.' || c == '-'
		}
		if !ok {
			return false
		}
	}
	return true
}

// layoutRef is a parsed oci: location.
type layoutRef struct {
	ref string // as given
	dir string // absolute, inside an allowed directory
	tag string
	p   *policy.Policy
	info
}

// info is what a manifest sink records (Describe).
type info struct {
	mu sync.Mutex
	in Info
}

func (i *info) Describe(in Info) {
	i.mu.Lock()
	i.in = in
	i.mu.Unlock()
}

func (i *info) get() Info {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.in
}

// ParseLayoutRef splits "oci:/abs/dir[:tag]" into the directory and the
// tag (DefaultTag when none). The directory must be absolute and hold no
// ':' (as in containers-transports(5), the first ':' ends it).
func ParseLayoutRef(ref string) (dir, tag string, err error) {
	rest, ok := strings.CutPrefix(ref, "oci:")
	if !ok {
		return "", "", fmt.Errorf("location %q: not an oci: location: %w", ref, ErrUnsupported)
	}
	dir, tag, hasTag := strings.Cut(rest, ":")
	if !hasTag {
		tag = DefaultTag
	}
	if strings.HasPrefix(dir, "//") {
		return "", "", fmt.Errorf("location %q: oci: takes a directory, oci:/abs/dir[:tag], not a URL (a registry is docker://host/repo): %w", ref, ErrUnsupported)
	}
	if !path.IsAbs(dir) || strings.IndexByte(dir, 0) >= 0 {
		return "", "", fmt.Errorf("location %q: the layout directory must be an absolute path: %w", ref, ErrUnsupported)
	}
	if !validTag(tag) {
		return "", "", fmt.Errorf("location %q: invalid tag %q: %w", ref, tag, ErrUnsupported)
	}
	return path.Clean(dir), tag, nil
}

func parseLayout(ref string, p *policy.Policy, sink bool) (*layoutRef, error) {
	dir, tag, err := ParseLayoutRef(ref)
	if err != nil {
		return nil, err
	}
	if err := p.Check(dir); err != nil {
		return nil, fmt.Errorf("oci: layout %w", err)
	}
	return &layoutRef{ref: ref, dir: dir, tag: tag, p: p}, nil
}

func (l *layoutRef) String() string { return l.ref }

// Open resolves the tag in the layout's index.json and opens its snapshot.
func (l *layoutRef) Open(ctx context.Context) (*Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	root, err := l.p.OpenDir(l.dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no such layout: %w", l.ref, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("oci: layout %w", err)
	}
	snap, err := openLayout(root, l.ref, l.tag)
	if err != nil {
		root.Close()
		return nil, err
	}
	return snap, nil
}

// Create starts writing a snapshot into the layout (made, 0700, if
// missing).
func (l *layoutRef) Create(ctx context.Context) (Pending, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	root, err := l.p.OpenDir(l.dir, true)
	if err != nil {
		return nil, fmt.Errorf("oci: layout %w", err)
	}
	pend, err := createLayout(root, l.ref, l.tag, l.get())
	if err != nil {
		root.Close()
		return nil, err
	}
	return pend, nil
}

// CreateOn starts writing a layer to add on top of the snapshot whose
// manifest has digest base (Appender): the new manifest lists base's
// layers, whose blobs stay where they are, then the new one. The layout
// must still tag base, else the error wraps ErrBaseMoved.
func (l *layoutRef) CreateOn(ctx context.Context, base digest.Digest) (Pending, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	root, err := l.p.OpenDir(l.dir, false)
	if err != nil {
		return nil, fmt.Errorf("oci: layout %w", err)
	}
	snap, err := openLayout(root, l.ref, l.tag)
	if err != nil {
		root.Close()
		return nil, err
	}
	if snap.Digest != base {
		root.Close()
		return nil, fmt.Errorf("%s: tagged %s, not %s: %w", l.ref, snap.Digest, base, ErrBaseMoved)
	}
	snap.closer = nil // the pending owns root
	pend, err := createLayout(root, l.ref, l.tag, l.get())
	if err != nil {
		root.Close()
		return nil, err
	}
	pend.base = snap
	return pend, nil
}

// openLayout opens the snapshot tagged tag in the layout root (which the
// returned Snapshot closes).
func openLayout(root *os.Root, ref, tag string) (*Snapshot, error) {
	idx, err := readIndex(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no index.json: %w", ref, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	var desc *ocispec.Descriptor
	for i := range idx.Manifests {
		if idx.Manifests[i].Annotations[ocispec.AnnotationRefName] == tag {
			desc = &idx.Manifests[i]
		}
	}
	if desc == nil {
		return nil, fmt.Errorf("%s: no manifest tagged %q: %w", ref, tag, ErrNotFound)
	}
	data, err := readBlob(root, *desc)
	if err != nil {
		return nil, fmt.Errorf("%s: manifest: %w", ref, err)
	}
	m, err := parseManifest(ref, data)
	if err != nil {
		return nil, err
	}
	cdata, err := readBlob(root, m.Config)
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", ref, err)
	}
	var cfg Config
	if err := json.Unmarshal(cdata, &cfg); err != nil {
		return nil, fmt.Errorf("%s: config %s: %w", ref, m.Config.Digest, err)
	}
	snap := &Snapshot{Ref: ref, Digest: desc.Digest, Manifest: m, Config: &cfg, closer: root.Close}
	for _, ld := range m.Layers {
		snap.Layers = append(snap.Layers, Layer{Desc: ld, open: func(context.Context) (io.ReadCloser, error) {
			f, err := openBlob(root, ld)
			if err != nil {
				return nil, fmt.Errorf("%s: layer: %w", ref, err)
			}
			return f, nil
		}})
	}
	return snap, nil
}

func blobPath(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("digest %q: %w", d, err)
	}
	return path.Join("blobs", d.Algorithm().String(), d.Encoded()), nil
}

// openBlob opens a blob of the layout: a regular file (never a FIFO or a
// device; os.Root keeps every lookup inside the layout).
func openBlob(root *os.Root, desc ocispec.Descriptor) (*os.File, error) {
	p, err := blobPath(desc.Digest)
	if err != nil {
		return nil, err
	}
	fi, err := root.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: missing: %w", desc.Digest, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("blob %s: not a regular file", desc.Digest)
	}
	f, err := root.Open(p)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	return f, nil
}

func readBlob(root *os.Root, desc ocispec.Descriptor) ([]byte, error) {
	f, err := openBlob(root, desc)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readVerified(f, desc)
}

func readIndex(root *os.Root) (*ocispec.Index, error) {
	f, err := root.Open("index.json")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	if len(data) > maxMetadataSize {
		return nil, fmt.Errorf("index.json: larger than %d bytes", maxMetadataSize)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	return &idx, nil
}

// writeFileAtomic writes data to name (a path inside root): atomicfile's
// temporary file beside it, synced, renamed over name, the directory synced.
func writeFileAtomic(root *os.Root, name string, data []byte) error {
	dir := root
	if d := path.Dir(name); d != "." {
		sub, err := root.OpenRoot(d)
		if err != nil {
			return err
		}
		defer sub.Close()
		dir = sub
	}
	return atomicfile.WriteFile(dir, path.Base(name), data, 0o600)
}

func syncDir(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// storeBlob stores a small blob (config, manifest) unless it is there.
func storeBlob(root *os.Root, b blob) error {
	p, err := blobPath(b.desc.Digest)
	if err != nil {
		return err
	}
	if fi, err := root.Lstat(p); err == nil && fi.Mode().IsRegular() && fi.Size() == b.desc.Size {
		return nil
	}
	if err := writeFileAtomic(root, p, b.data); err != nil {
		return fmt.Errorf("blob %s: %w", b.desc.Digest, err)
	}
	return nil
}

// layoutPending writes one layer into a temporary file under blobs/, and
// on Commit stores it, the config and the manifest as blobs, then replaces
// index.json (atomically, under the layout's lock) to point the tag at the
// new manifest: a reader sees the old snapshot or the new one, whole.
type layoutPending struct {
	pendingState
	ref   string
	tag   string
	root  *os.Root
	tmp   string
	f     *os.File
	w     *bufio.Writer
	h     hash.Hash
	n     int64
	in    Info
	stats LayerInfo
	// desc is the committed manifest's descriptor.
	desc ocispec.Descriptor
	// base, when set, is the snapshot the new layer goes on top of
	// (CreateOn): its layers come first in the new manifest.
	base *Snapshot
}

func createLayout(root *os.Root, ref, tag string, in Info) (*layoutPending, error) {
	if err := root.MkdirAll("blobs/sha256", 0o700); err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	for range maxAttempts {
		name := path.Join("blobs/sha256", tempName("layer"))
		f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: create temporary blob: %w", ref, err)
		}
		if err := flock(f, lockEx); err != nil {
			f.Close()
			root.Remove(name)
			return nil, fmt.Errorf("%s: lock temporary blob: %w", ref, err)
		}
		h := sha256.New()
		return &layoutPending{pendingState: pendingState{name: ref}, ref: ref, tag: tag, root: root, tmp: name, f: f, h: h,
			w: bufio.NewWriterSize(io.MultiWriter(f, h), bufSize), in: in}, nil
	}
	return nil, fmt.Errorf("%s: could not create a temporary blob in %d attempts", ref, maxAttempts)
}

func (p *layoutPending) Describe(in Info) {
	p.mu.Lock()
	p.in = in
	p.mu.Unlock()
}

func (p *layoutPending) SetLayerStats(entries, bytes int64) {
	p.mu.Lock()
	p.stats = LayerInfo{Entries: entries, Bytes: bytes}
	p.mu.Unlock()
}

func (p *layoutPending) Write(b []byte) (int, error) {
	if err := p.lockWriting(); err != nil {
		return 0, err
	}
	defer p.mu.Unlock()
	n, err := p.w.Write(b)
	p.n += int64(n)
	if err != nil {
		err = fmt.Errorf("%s: write temporary blob: %w", p.ref, err)
	}
	return n, err
}

func (p *layoutPending) Commit() error {
	var rerr error // of releasing the committed blob's file and root
	err := p.finish(func() error {
		if err := p.commit(); err != nil {
			p.discard()
			return err
		}
		rerr = p.release()
		return nil
	})
	if err != nil {
		return err
	}
	return rerr
}

func (p *layoutPending) commit() error {
	if err := p.w.Flush(); err != nil {
		return fmt.Errorf("%s: write temporary blob: %w", p.ref, err)
	}
	layer, config, manifest, err := p.build()
	if err != nil {
		return err
	}
	return p.store(layer, config, manifest)
}

// build describes the written layer (flushed) and makes the config and the
// manifest that list it (after base's layers, if any).
func (p *layoutPending) build() (ocispec.Descriptor, blob, blob, error) {
	mt, err := LayerMediaType(p.in.Format, p.in.Compression)
	if err != nil {
		return ocispec.Descriptor{}, blob{}, blob{}, err
	}
	layer := ocispec.Descriptor{MediaType: mt, Digest: digest.NewDigest(digest.SHA256, p.h), Size: p.n}
	created := p.in.Created
	if created.IsZero() {
		created = time.Now().UTC()
	}
	format := p.in.Format
	if format == "" {
		format = "overlay"
	}
	stats := p.stats
	stats.Created = created
	cfg := &Config{Format: format, Created: created, Container: p.in.Container, Base: p.in.Base,
		Layers: []LayerInfo{stats}}
	layers := []ocispec.Descriptor{layer}
	if b := p.base; b != nil {
		layers = append(slices.Clone(b.Manifest.Layers), layer)
		infos := slices.Clone(b.Config.Layers)
		for len(infos) < len(b.Manifest.Layers) {
			infos = append(infos, LayerInfo{})
		}
		cfg.Layers = append(infos[:len(b.Manifest.Layers)], stats)
	}
	config, manifest, err := buildManifest(cfg, layers)
	if err != nil {
		return ocispec.Descriptor{}, blob{}, blob{}, err
	}
	return layer, config, manifest, nil
}

// store makes the layer (the temporary blob, synced and renamed), the
// config and the manifest blobs of the layout, and points the tag at the
// manifest.
func (p *layoutPending) store(layer ocispec.Descriptor, config, manifest blob) error {
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("%s: sync temporary blob: %w", p.ref, err)
	}
	lp, _ := blobPath(layer.Digest)
	if err := p.root.Rename(p.tmp, lp); err != nil {
		return fmt.Errorf("%s: store layer blob %s: %w", p.ref, layer.Digest, err)
	}
	p.tmp = ""
	if err := syncDir(p.root, "blobs/sha256"); err != nil {
		return fmt.Errorf("%s: sync blobs: %w", p.ref, err)
	}
	for _, b := range []blob{config, manifest} {
		if err := storeBlob(p.root, b); err != nil {
			return fmt.Errorf("%s: %w", p.ref, err)
		}
	}
	if err := tagLayout(p.root, p.tag, manifest.desc); err != nil {
		return fmt.Errorf("%s: %w", p.ref, err)
	}
	p.desc = manifest.desc
	return nil
}

// tagLayout points tag at desc in index.json, replacing the file
// atomically while it holds an exclusive flock of the layout's blobs
// directory, so that concurrent writers of one layout (other tags, or the
// same) each leave a whole index; the last commit of a tag wins. (Not the
// layout directory itself: atomicfile locks that one for each rename in it.
// The blobs directory exists in every layout and adds no file to it.)
func tagLayout(root *os.Root, tag string, desc ocispec.Descriptor) error {
	d, err := root.Open("blobs")
	if err != nil {
		return err
	}
	defer d.Close()
	if err := flock(d, lockEx); err != nil {
		return fmt.Errorf("lock layout: %w", err)
	}
	defer flock(d, lockUn)
	if _, err := root.Lstat(ocispec.ImageLayoutFile); errors.Is(err, fs.ErrNotExist) {
		lj, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := writeFileAtomic(root, ocispec.ImageLayoutFile, lj); err != nil {
			return fmt.Errorf("%s: %w", ocispec.ImageLayoutFile, err)
		}
	}
	idx, err := readIndex(root)
	if errors.Is(err, fs.ErrNotExist) {
		idx = &ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	} else if err != nil {
		return err
	}
	keep := idx.Manifests[:0]
	for _, m := range idx.Manifests {
		if m.Annotations[ocispec.AnnotationRefName] != tag {
			keep = append(keep, m)
		}
	}
	desc.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
	desc.ArtifactType = ArtifactType
	idx.Manifests = append(keep, desc)
	data, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(root, "index.json", data); err != nil {
		return fmt.Errorf("index.json: %w", err)
	}
	return nil
}

func (p *layoutPending) Abort() error {
	return p.cancel(p.discard)
}

func (p *layoutPending) discard() error {
	var err error
	if p.tmp != "" {
		if rerr := p.root.Remove(p.tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = fmt.Errorf("%s: remove temporary blob: %w", p.ref, rerr)
		}
		p.tmp = ""
	}
	return errors.Join(err, p.release())
}

func (p *layoutPending) release() error {
	if p.f == nil {
		return nil
	}
	err := p.f.Close()
	p.root.Close()
	p.f, p.w = nil, nil
	if err != nil {
		return fmt.Errorf("%s: close temporary blob: %w", p.ref, err)
	}
	return nil
}
