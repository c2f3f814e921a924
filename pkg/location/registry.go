package location

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
	"oras.land/oras-go/v2/registry/remote/retry"

	"github.com/ocisnap/ocisnap/pkg/policy"
)

// A snapshot manifest in an OCI registry, named as containers-transports(5)
// does: "docker://host[:port]/repo[:tag|@sha256:…]". The client is oras-go
// (registry/remote): blobs stream both ways, are verified against their
// digests while they stream (Snapshot.Each), are uploaded only when a HEAD
// says they are missing, and the manifest goes last, so that the tag moves
// only once every blob it references is stored (distribution-spec).

// Registry says how registries are reached. Its zero value uses podman's
// auth.json lookup (DefaultAuthFiles), DefaultCertsDir, and a temporary
// staging directory removed after the push.
type Registry struct {
	// AuthFile is a containers-auth.json(5) file; "" is podman's lookup.
	AuthFile string
	// CertsDir is a containers-certs.d(5) directory; "" is DefaultCertsDir.
	CertsDir string
	// SpoolDir is where an export to a registry is staged, and kept when
	// the registry cannot be reached, for PushPending (`ocisnap push
	// --pending`). "" stages in a temporary directory and keeps nothing.
	SpoolDir string
	// Attempts bounds the tries of each upload (default 3); the caller's
	// context bounds the time.
	Attempts int
}

var (
	// ErrAuth is wrapped when the registry refuses the credentials (or
	// asks for some and none are configured).
	ErrAuth = errors.New("location: registry authentication failed")
	// ErrSpooled is wrapped by Commit's error when the snapshot could not
	// be pushed and was kept in the spool, to be delivered later.
	ErrSpooled = errors.New("location: registry unreachable, snapshot kept in the spool")
)

// dockerRef is a parsed docker:// location.
type dockerRef struct {
	ref  string // as given
	r    registry.Reference
	tag  string        // "" when pinned by digest
	dgst digest.Digest // "" when by tag
	reg  Registry
	info
}

// ParseDockerRef parses "docker://host[:port]/repo[:tag|@sha256:…]"; the
// tag is DefaultTag when neither is given.
func ParseDockerRef(ref string) (host, repo, tag string, dgst digest.Digest, err error) {
	rest, ok := strings.CutPrefix(ref, "docker://")
	if !ok {
		return "", "", "", "", fmt.Errorf("location %q: not a docker:// location: %w", ref, ErrUnsupported)
	}
	r, perr := registry.ParseReference(rest)
	if perr != nil || !strings.Contains(rest, "/") {
		return "", "", "", "", fmt.Errorf("location %q: want docker://host[:port]/repo[:tag|@sha256:...]: %w", ref, ErrUnsupported)
	}
	switch {
	case r.Reference == "":
		tag = DefaultTag
	case strings.Contains(rest, "@"):
		dgst, err = r.Digest()
		if err != nil {
			return "", "", "", "", fmt.Errorf("location %q: %w", ref, ErrUnsupported)
		}
	default:
		tag = r.Reference
	}
	return r.Registry, r.Repository, tag, dgst, nil
}

func parseDocker(ref string, p *policy.Policy, reg Registry, sink bool) (*dockerRef, error) {
	host, repo, tag, dgst, err := ParseDockerRef(ref)
	if err != nil {
		return nil, err
	}
	if sink && tag == "" {
		return nil, fmt.Errorf("location %q: a snapshot is written under a tag, not a digest: %w", ref, ErrUnsupported)
	}
	if err := p.CheckRegistry(host + "/" + repo); err != nil {
		return nil, err
	}
	d := &dockerRef{ref: ref, tag: tag, dgst: dgst, reg: reg,
		r: registry.Reference{Registry: host, Repository: repo, Reference: tag}}
	if dgst != "" {
		d.r.Reference = dgst.String()
	}
	return d, nil
}

func (d *dockerRef) String() string { return d.ref }

// repository is the oras client for d: TLS from certs.d, credentials from
// the auth file, looked up only for this repository's host (an annotation
// names the repository, never the credentials).
func (d *dockerRef) repository() (*remote.Repository, error) {
	return newRepository(d.r, d.reg)
}

func newRepository(r registry.Reference, reg Registry) (*remote.Repository, error) {
	tlsCfg, err := tlsConfig(reg.CertsDir, r.Registry)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	host, repo, authFile := r.Registry, r.Repository, reg.AuthFile
	client := &auth.Client{
		Client: &http.Client{Transport: retry.NewTransport(tr)},
		Cache:  auth.NewCache(),
		Header: http.Header{"User-Agent": {"ocisnap"}},
		Credential: func(ctx context.Context, hostport string) (auth.Credential, error) {
			if hostport != host {
				return auth.EmptyCredential, nil // a token service elsewhere gets none of ours
			}
			c, err := lookupCredential(authFile, host, repo)
			if err != nil {
				return auth.EmptyCredential, err
			}
			return auth.Credential{Username: c.Username, Password: c.Password, RefreshToken: c.IdentityToken}, nil
		},
	}
	return &remote.Repository{Client: client, Reference: r, SkipReferrersGC: true}, nil
}

// remoteErr names what failed and classifies it: authentication failures
// wrap ErrAuth, a missing manifest or blob ErrNotFound. oras's messages
// hold the method, the URL and the registry's error codes, never the
// credentials.
func remoteErr(ref, what string, err error) error {
	var er *errcode.ErrorResponse
	if errors.As(err, &er) && (er.StatusCode == http.StatusUnauthorized || er.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("%s: %s: %w (check the credentials for %s in the registry auth file): %v", ref, what, ErrAuth, er.URL.Host, err)
	}
	if errors.Is(err, errdef.ErrNotFound) {
		return fmt.Errorf("%s: %s: %w: %v", ref, what, ErrNotFound, err)
	}
	return fmt.Errorf("%s: %s: %w", ref, what, err)
}

// Open fetches the manifest (by tag, or by digest without touching any
// tag) and the config, verified; the layers stream from the registry when
// Snapshot.Each reads them.
func (d *dockerRef) Open(ctx context.Context) (*Snapshot, error) {
	repo, err := d.repository()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.ref, err)
	}
	desc, rc, err := repo.FetchReference(ctx, d.r.Reference)
	if err != nil {
		return nil, remoteErr(d.ref, "fetch manifest", err)
	}
	if d.dgst != "" && desc.Digest != d.dgst {
		rc.Close()
		return nil, fmt.Errorf("%s: manifest %s: %w", d.ref, d.dgst, ErrDigestMismatch)
	}
	data, err := readVerified(rc, desc)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: manifest: %w", d.ref, err)
	}
	m, err := parseManifest(d.ref, data)
	if err != nil {
		return nil, err
	}
	crc, err := repo.Fetch(ctx, m.Config)
	if err != nil {
		return nil, remoteErr(d.ref, "fetch config "+m.Config.Digest.String(), err)
	}
	cdata, err := readVerified(crc, m.Config)
	crc.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", d.ref, err)
	}
	var cfg Config
	if err := json.Unmarshal(cdata, &cfg); err != nil {
		return nil, fmt.Errorf("%s: config %s: %w", d.ref, m.Config.Digest, err)
	}
	snap := &Snapshot{Ref: d.ref, Digest: desc.Digest, Manifest: m, Config: &cfg}
	for _, ld := range m.Layers {
		snap.Layers = append(snap.Layers, Layer{Desc: ld, open: func(ctx context.Context) (io.ReadCloser, error) {
			rc, err := repo.Fetch(ctx, ld)
			if err != nil {
				return nil, remoteErr(d.ref, "fetch layer "+ld.Digest.String(), err)
			}
			return rc, nil
		}})
	}
	return snap, nil
}

// Create stages the snapshot as an OCI layout in a spool entry (see
// spool.go); Commit pushes it and removes the entry, or keeps it when the
// push fails.
func (d *dockerRef) Create(ctx context.Context) (Pending, error) {
	e, err := newSpoolEntry(d.reg.SpoolDir, d.ref)
	if err != nil {
		return nil, err
	}
	lp, err := createLayout(e.root, d.ref, spoolTag, d.get())
	if err != nil {
		e.remove()
		return nil, err
	}
	e.root = nil // lp owns it now
	return &dockerPending{layoutPending: lp, ctx: ctx, d: d, e: e}, nil
}

type dockerPending struct {
	*layoutPending
	ctx context.Context
	d   *dockerRef
	e   *spoolEntry
}

// Commit stores the staged snapshot (a crash from here on leaves it in the
// spool, whole), pushes it and drops the entry. A push that fails keeps the
// entry when the sink has a spool (the error wraps ErrSpooled) and removes
// it otherwise.
func (p *dockerPending) Commit() error {
	if err := p.layoutPending.Commit(); err != nil {
		p.e.remove()
		return err
	}
	err := pushLayout(p.ctx, p.e.layoutDir(), p.d.r, p.d.reg)
	if err == nil {
		return p.e.remove()
	}
	if !p.e.keep {
		p.e.remove()
		return err
	}
	p.e.unlock()
	return fmt.Errorf("%w (%s, delivered by `ocisnap push --pending`): %w", ErrSpooled, p.e.dir, err)
}

func (p *dockerPending) Abort() error {
	err := p.layoutPending.Abort()
	return errors.Join(err, p.e.remove())
}

// pushLayout pushes the snapshot tagged spoolTag in the layout dir to the
// registry reference r (tag moved last).
func pushLayout(ctx context.Context, dir string, r registry.Reference, reg Registry) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	snap, err := openLayout(root, dir, spoolTag)
	if err != nil {
		root.Close()
		return err
	}
	defer snap.Close()
	return pushSnapshot(ctx, snap, func(d ocispec.Descriptor) (io.ReadCloser, error) { return openBlob(root, d) },
		r, reg)
}

// pushSnapshot pushes the blobs of snap (opened by open), then its
// manifest under r's tag. Each blob is HEADed first and uploaded only when
// missing; an upload is retried, with backoff, up to reg.Attempts times
// while ctx allows.
func pushSnapshot(ctx context.Context, snap *Snapshot, open func(ocispec.Descriptor) (io.ReadCloser, error),
	r registry.Reference, reg Registry) error {
	repo, err := newRepository(r, reg)
	if err != nil {
		return err
	}
	ref := "docker://" + r.String()
	blobs := append([]ocispec.Descriptor{snap.Manifest.Config}, snap.Manifest.Layers...)
	for _, b := range blobs {
		err := retryPush(ctx, reg.Attempts, func() error {
			ok, err := repo.Exists(ctx, b)
			if err != nil {
				return remoteErr(ref, "check blob "+b.Digest.String(), err)
			}
			if ok {
				return nil
			}
			rc, err := open(b)
			if err != nil {
				return err
			}
			defer rc.Close()
			if err := repo.Push(ctx, b, rc); err != nil {
				return remoteErr(ref, "push blob "+b.Digest.String(), err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	mdata, err := json.Marshal(snap.Manifest)
	if err != nil {
		return err
	}
	// The manifest's bytes as stored, so that its digest stays the same.
	if snap.Digest != "" && digest.FromBytes(mdata) != snap.Digest {
		rc, err := open(ocispec.Descriptor{Digest: snap.Digest})
		if err != nil {
			return err
		}
		mdata, err = io.ReadAll(io.LimitReader(rc, maxMetadataSize))
		rc.Close()
		if err != nil {
			return err
		}
	}
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mdata), Size: int64(len(mdata))}
	return retryPush(ctx, reg.Attempts, func() error {
		if err := repo.PushReference(ctx, md, bytes.NewReader(mdata), r.Reference); err != nil {
			return remoteErr(ref, "push manifest", err)
		}
		return nil
	})
}

// retryPush runs op up to attempts times (default 3), with backoff, while
// ctx allows; an authentication failure is not retried.
func retryPush(ctx context.Context, attempts int, op func() error) error {
	if attempts <= 0 {
		attempts = 3
	}
	wait := 500 * time.Millisecond
	var err error
	for i := range attempts {
		if err = op(); err == nil || errors.Is(err, ErrAuth) || ctx.Err() != nil || i == attempts-1 {
			break
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, context.Cause(ctx))
		case <-time.After(wait):
		}
		wait *= 2
	}
	return err
}

// TagInfo is one tag of a repository (List).
type TagInfo struct {
	Tag     string
	Digest  digest.Digest
	Size    int64 // config and layers
	Created time.Time
	// Err is why the tag could not be described (not a snapshot, say).
	Err error
}

// List returns the tags of the repository of a docker:// location (its
// tag, if any, is ignored), each with its manifest's digest, size and
// creation time, sorted by tag. The repository must be allowed by p.
func List(ctx context.Context, ref string, p *policy.Policy, reg Registry) ([]TagInfo, error) {
	d, err := parseDocker(ref, p, reg, false)
	if err != nil {
		return nil, err
	}
	repo, err := d.repository()
	if err != nil {
		return nil, err
	}
	var tags []string
	if err := repo.Tags(ctx, "", func(t []string) error { tags = append(tags, t...); return nil }); err != nil {
		return nil, remoteErr(ref, "list tags", err)
	}
	sort.Strings(tags)
	out := make([]TagInfo, 0, len(tags))
	for _, t := range tags {
		ti := TagInfo{Tag: t}
		d2 := &dockerRef{r: d.r, tag: t, reg: d.reg}
		d2.r.Reference = t
		d2.ref = "docker://" + d2.r.String()
		snap, err := d2.Open(ctx)
		if err != nil {
			ti.Err = err
		} else {
			ti.Digest, ti.Created = snap.Digest, snap.Config.Created
			ti.Size = snap.Manifest.Config.Size
			for _, l := range snap.Manifest.Layers {
				ti.Size += l.Size
			}
		}
		out = append(out, ti)
	}
	return out, nil
}
