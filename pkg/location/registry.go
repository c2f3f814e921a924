package location

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisnap/ocisnap/pkg/policy"
)

// A snapshot manifest in an OCI registry, named as containers-transports(5)
// does: "docker://host[:port]/repo[:tag|@sha256:…]". The client is
// go-containerregistry's remote package, chosen by measurement: it adds the
// least start-up time to the hook, which runs for every container of a
// node. Blobs stream both ways, are verified against their digests while
// they stream (Snapshot.Each), are uploaded only when a HEAD says they are
// missing, and the manifest goes last, so that the tag moves only once
// every blob it references is stored (distribution-spec). Only https is
// spoken (httpsOnly), verified unless registries.conf(5) marks the registry insecure: go-containerregistry would fall back
// to plain http for loopback and private addresses.

// Registry says how registries are reached. Its zero value uses podman's
// auth.json lookup (DefaultAuthFiles), DefaultCertsDir, and a temporary
// staging directory removed after the push.
type Registry struct {
	// AuthFile is a containers-auth.json(5) file; "" is podman's lookup.
	AuthFile string
	// CertsDir is a containers-certs.d(5) directory; "" is DefaultCertsDir.
	CertsDir string
	// RegistriesConf is a containers-registries.conf(5) file (its drop-ins
	// in the same name + ".d"); "" is DefaultRegistriesConf. A registry
	// it marks insecure = true is reached without verifying its TLS
	// certificate, still over https only.
	RegistriesConf string
	// SpoolDir is where an export to a registry is staged, and kept when
	// the registry cannot be reached, for PushPending (`ocisnap push
	// --pending`). "" stages in a temporary directory and keeps nothing.
	SpoolDir string
	// Attempts bounds the tries of each upload (default 3); the caller's
	// context bounds the time.
	Attempts int
	// PushTimeout, when positive, bounds the time an export waits on the
	// network: while the layer is written, the writer's waits for the
	// upload (a registry that reads slower than the export writes), and
	// at Commit the rest of the push. Writing the layer itself is not
	// bounded by it. Past it the snapshot stays in the spool.
	PushTimeout time.Duration
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
	host string
	repo string
	tag  string        // "" when pinned by digest
	dgst digest.Digest // "" when by tag
	reg  Registry
	info
}

// reference is the tag or the digest.
func (d *dockerRef) reference() string {
	if d.dgst != "" {
		return d.dgst.String()
	}
	return d.tag
}

// ParseDockerRef parses "docker://host[:port]/repo[:tag|@sha256:…]"; the
// tag is DefaultTag when neither is given. The repository is
// distribution-spec's: lower-case components of [a-z0-9] separated by
// '.', '_', '__' or '-'s, joined by '/'.
func ParseDockerRef(ref string) (host, repo, tag string, dgst digest.Digest, err error) {
	bad := func() (string, string, string, digest.Digest, error) {
		return "", "", "", "", fmt.Errorf("location %q: want docker://host[:port]/repo[:tag|@sha256:...]: %w", ref, ErrUnsupported)
	}
	rest, ok := strings.CutPrefix(ref, "docker://")
	if !ok {
		return bad()
	}
	host, path, ok := strings.Cut(rest, "/")
	if !ok || host == "" || strings.ContainsAny(host, "@\x00 ") {
		return bad()
	}
	if p, d, ok := strings.Cut(path, "@"); ok {
		dgst = digest.Digest(d)
		if dgst.Validate() != nil || dgst.Algorithm() != digest.SHA256 {
			return bad()
		}
		path = p
	} else if i := strings.LastIndexByte(path, ':'); i >= 0 {
		path, tag = path[:i], path[i+1:]
		if !validTag(tag) {
			return bad()
		}
	} else {
		tag = DefaultTag
	}
	if !validRepo(path) || !validHost(host) {
		return bad()
	}
	return host, path, tag, dgst, nil
}

func validRepo(r string) bool {
	if r == "" || len(r) > 255 {
		return false
	}
	for _, comp := range strings.Split(r, "/") {
		if comp == "" {
			return false
		}
		for i := 0; i < len(comp); i++ {
			c := comp[i]
			alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
			sep := c == '.' || c == '_' || c == '-'
			if !alnum && (!sep || i == 0 || i == len(comp)-1) {
				return false
			}
		}
	}
	return true
}

func validHost(h string) bool {
	hostname, port, hasPort := strings.Cut(h, ":")
	if hasPort {
		if port == "" || len(port) > 5 {
			return false
		}
		for i := 0; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return false
			}
		}
	}
	if hostname == "" {
		return false
	}
	for i := 0; i < len(hostname); i++ {
		c := hostname[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
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
	return &dockerRef{ref: ref, host: host, repo: repo, tag: tag, dgst: dgst, reg: reg}, nil
}

func (d *dockerRef) String() string { return d.ref }

// client is what reaches one repository.
type client struct {
	repo name.Repository
	ref  string // for messages
	opts []remote.Option

	// What pulls reach the registry with: the base transport (https
	// only, retries, user agent) and the credentials; pull is the
	// authenticated transport, made on first use and shared by every pull
	// of the client (manifests, tags, blobs): one ping per client, not
	// one per request. pusher shares its authentication the same way
	// between the uploads and the manifest of an export.
	base   http.RoundTripper
	auth   authn.Authenticator
	pullMu sync.Mutex
	pull   http.RoundTripper
	pusher *remote.Pusher
}

// newClient prepares the client of host/repo: TLS from certs.d, https
// only, credentials from the auth file looked up for this repository (an
// annotation names the repository, never the credentials). Nothing is sent
// yet.
func newClient(ctx context.Context, host, repo string, reg Registry) (*client, error) {
	ref := "docker://" + host + "/" + repo
	tlsCfg, err := tlsConfig(reg.CertsDir, host)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	insecure, err := insecureRegistry(reg.RegistriesConf, host, repo)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	// registries.conf(5) insecure = true for this registry only: its
	// certificate is not verified (docs/locations.md, "TLS").
	tlsCfg.InsecureSkipVerify = insecure
	cred, err := lookupCredential(reg.AuthFile, host, repo)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	r, err := name.NewRegistry(host)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, ErrUnsupported)
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
		// HTTP/1.1: a blob is one long stream per connection, which
		// HTTP/2's framing and flow control only make costlier. Measured
		// on loopback against docker-registry (2 cores, ~250 MiB zstd
		// layer): the registry's CPU 0.36 s instead of 0.59-0.67 s for a
		// restore, 1.0-1.3 s instead of 1.6-1.7 s for a push, the
		// client's the same, its peak RSS 4-7 MiB lower.
		ForceAttemptHTTP2: false,
	}
	auth := authn.Anonymous
	if cred != (credential{}) {
		auth = authn.FromConfig(authn.AuthConfig{Username: cred.Username, Password: cred.Password, IdentityToken: cred.IdentityToken})
	}
	backoff := remote.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3}
	c := &client{repo: r.Repo(repo), ref: ref, opts: []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(httpsOnly{tr}),
		remote.WithAuth(auth),
		remote.WithUserAgent(userAgent),
		remote.WithRetryBackoff(backoff),
	},
		// The library's own wrapping of what it is given (retries of
		// what a retry may fix, the user agent): the pulls go through
		// this, authenticated once (puller), and the library does not
		// wrap an authenticated transport again.
		base: transport.NewUserAgent(transport.NewRetry(httpsOnly{tr}, transport.WithRetryBackoff(backoff),
			transport.WithRetryPredicate(retryable), transport.WithRetryStatusCodes(retryStatusCodes...)), userAgent),
		auth: auth,
	}
	// Sends nothing until used.
	if c.pusher, err = remote.NewPusher(c.opts...); err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	return c, nil
}

const userAgent = "ocisnap"

// retryStatusCodes are the answers a pull is retried on: the library's own
// list (timeouts, rate limits, a registry or its proxy failing).
var retryStatusCodes = []int{
	http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
	http.StatusServiceUnavailable, http.StatusGatewayTimeout,
	499, // nginx: the client closed the request
	522, // Cloudflare: connection timed out
}

// retryable is the library's own rule for the network errors a retry may
// fix.
func retryable(err error) bool {
	var t interface{ Temporary() bool }
	return (errors.As(err, &t) && t.Temporary()) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// httpsOnly refuses every request that is not https: no downgrade to
// plain http, whatever the address.
type httpsOnly struct{ rt http.RoundTripper }

func (h httpsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" {
		return nil, fmt.Errorf("refusing plain %s to %s: registries are reached over verified TLS only", req.URL.Scheme, req.URL.Host)
	}
	return h.rt.RoundTrip(req)
}

// remoteErr names what failed and classifies it: authentication failures
// wrap ErrAuth, a missing manifest or blob ErrNotFound. The library's
// messages hold the method, the URL and the registry's error codes, never
// the credentials.
func remoteErr(ref, what string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%s: %s: %w (check the credentials for this registry in the registry auth file): %v", ref, what, ErrAuth, err)
		case http.StatusNotFound:
			return fmt.Errorf("%s: %s: %w: %v", ref, what, ErrNotFound, err)
		}
	}
	return fmt.Errorf("%s: %s: %w", ref, what, err)
}

// Open fetches the manifest (by tag, or by digest without touching any
// tag) and the config, verified; the layers stream from the registry when
// Snapshot.Each reads them.
func (d *dockerRef) Open(ctx context.Context) (*Snapshot, error) {
	c, err := newClient(ctx, d.host, d.repo, d.reg)
	if err != nil {
		return nil, err
	}
	return c.open(ctx, d.ref, d.reference())
}

func (c *client) open(ctx context.Context, ref, reference string) (*Snapshot, error) {
	var nref name.Reference = c.repo.Tag(reference)
	if strings.HasPrefix(reference, "sha256:") {
		nref = c.repo.Digest(reference)
	}
	opts, err := c.pullOpts(ctx)
	if err != nil {
		return nil, remoteErr(ref, "fetch manifest", err)
	}
	rd, err := remote.Get(nref, opts...)
	if err != nil {
		return nil, remoteErr(ref, "fetch manifest", err)
	}
	desc := ocispec.Descriptor{MediaType: string(rd.MediaType), Digest: digest.Digest(rd.Digest.String()), Size: rd.Size}
	if strings.HasPrefix(reference, "sha256:") && desc.Digest.String() != reference {
		return nil, fmt.Errorf("%s: manifest %s: %w", ref, reference, ErrDigestMismatch)
	}
	// Verify the bytes against the digest, whatever the library did.
	data, err := readVerified(bytes.NewReader(rd.Manifest), ocispec.Descriptor{Digest: desc.Digest, Size: int64(len(rd.Manifest))})
	if err != nil {
		return nil, fmt.Errorf("%s: manifest: %w", ref, err)
	}
	m, err := parseManifest(ref, data)
	if err != nil {
		return nil, err
	}
	crc, err := c.fetchBlob(ctx, m.Config)
	if err != nil {
		return nil, remoteErr(ref, "fetch config "+m.Config.Digest.String(), err)
	}
	cdata, err := readVerified(crc, m.Config)
	crc.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", ref, err)
	}
	var cfg Config
	if err := json.Unmarshal(cdata, &cfg); err != nil {
		return nil, fmt.Errorf("%s: config %s: %w", ref, m.Config.Digest, err)
	}
	snap := &Snapshot{Ref: ref, Digest: desc.Digest, Manifest: m, Config: &cfg}
	for _, ld := range m.Layers {
		snap.Layers = append(snap.Layers, Layer{Desc: ld, open: func(ctx context.Context) (io.ReadCloser, error) {
			rc, err := c.fetchBlob(ctx, ld)
			if err != nil {
				return nil, remoteErr(ref, "fetch layer "+ld.Digest.String(), err)
			}
			return rc, nil
		}})
	}
	return snap, nil
}

// fetchBlob streams a blob, to be verified by the caller (Snapshot.Each,
// readVerified) while it is read: a GET of its own rather than the
// library's, which verifies every blob too and so would hash each byte of
// a layer twice (a tenth of a restore's CPU for a 167 MiB layer).
func (c *client) fetchBlob(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	rt, err := c.puller(ctx)
	if err != nil {
		return nil, err
	}
	u := url.URL{Scheme: "https", Host: c.repo.RegistryStr(), Path: "/v2/" + c.repo.RepositoryStr() + "/blobs/" + d.Digest.String()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: rt, CheckRedirect: checkRedirect}).Do(req)
	if err != nil {
		return nil, redactURL(err)
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		return nil, err
	}
	if resp.ContentLength >= 0 && resp.ContentLength != d.Size {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: the registry sends %d bytes, the manifest says %d: %w", u.Redacted(), resp.ContentLength, d.Size, ErrSizeMismatch)
	}
	return resp.Body, nil
}

// puller is the client's authenticated transport for pulls, made once
// (its ping and, with a token server, its token shared by every pull).
func (c *client) puller(ctx context.Context) (http.RoundTripper, error) {
	c.pullMu.Lock()
	defer c.pullMu.Unlock()
	if c.pull != nil {
		return c.pull, nil
	}
	rt, err := transport.NewWithContext(ctx, c.repo.Registry, c.auth, c.base, []string{c.repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, err
	}
	c.pull = rt
	return c.pull, nil
}

// pullOpts are the library's options for a pull through the client's
// shared authenticated transport (puller).
func (c *client) pullOpts(ctx context.Context) ([]remote.Option, error) {
	rt, err := c.puller(ctx)
	if err != nil {
		return nil, err
	}
	return append(slices.Clip(c.opts), remote.WithTransport(rt)), nil
}

// pushOpts are the library's options for an upload or a manifest put,
// all of one client through one authenticated writer (its pusher).
func (c *client) pushOpts() []remote.Option {
	return append(slices.Clip(c.opts), remote.Reuse(c.pusher))
}

// redactURL drops the query and the user info of the URL in a request's
// error: the URL of a redirect to a blob store is often presigned, its
// signature (and a session token) in the query.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery, u.User, u.Fragment = "", nil, ""
			ue.URL = u.String()
		} else {
			ue.URL = "(unparsable URL)"
		}
	}
	return err
}

// checkRedirect follows a registry's redirect of a blob (to its blob
// store, say), over https only (httpsOnly), and never to a loopback,
// private, link-local or unspecified address given literally as another
// host (as the library's own fetch refuses; a name that resolves to one
// is not caught here either): a registry must not make the hook reach the
// node's own services by address. The registry's credentials are never
// sent to another host (the library adds them for the registry's host
// only).
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if host := req.URL.Hostname(); host != via[0].URL.Hostname() && internalHost(host) {
		return fmt.Errorf("redirect from %s to %s refused: not a public address", via[0].URL.Host, req.URL.Host)
	}
	return nil
}

// internalHost says whether host is, literally, an address the node
// reaches without leaving it or its networks: in any form the resolver
// takes as an address, the old IPv4 ones too ("0x7f.1", "2130706433").
func internalHost(host string) bool {
	h, _, _ := strings.Cut(host, "%")
	a, err := netip.ParseAddr(h)
	if err != nil {
		var ok bool
		if a, ok = legacyIPv4(h); !ok {
			return false // a DNS name
		}
	}
	a = a.Unmap()
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsUnspecified()
}

// legacyIPv4 reads inet_aton(3)'s forms of an IPv4 address: one to four
// parts, each decimal, octal (0…) or hexadecimal (0x…), the last filling
// the bytes left.
func legacyIPv4(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var v uint64
	for i, p := range parts {
		bits := 8
		if i == len(parts)-1 {
			bits = 8 * (5 - len(parts))
		}
		n, err := strconv.ParseUint(p, 0, bits)
		if err != nil {
			return netip.Addr{}, false
		}
		if i < len(parts)-1 {
			v |= n << (8 * (3 - i))
		} else {
			v |= n
		}
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// Create starts an export: the layer is written into a spool entry (see
// spool.go) and, at the same time, streamed to the registry (teeStream);
// Commit pushes the config and the manifest and drops the entry, unsynced.
// If the push fails, Commit stores the entry durably (synced, a complete
// OCI layout), tries once more from it, and keeps it when that fails too.
func (d *dockerRef) Create(ctx context.Context) (Pending, error) { return d.create(ctx, nil) }

func (d *dockerRef) create(ctx context.Context, base *Snapshot) (Pending, error) {
	var bd digest.Digest
	if base != nil {
		bd = base.Digest
	}
	e, err := newSpoolEntry(d.reg.SpoolDir, d.ref, bd)
	if err != nil {
		return nil, err
	}
	lp, err := createLayout(e.root, d.ref, spoolTag, d.get())
	if err != nil {
		e.remove()
		return nil, err
	}
	e.root = nil // lp owns it now
	lp.base = base
	p := &dockerPending{layoutPending: lp, d: d, e: e, baseDigest: bd}
	// --registry-timeout (PushTimeout) bounds the time the export waits on
	// the network, not the time it takes to write the layer: the writer's
	// waits on a full upload queue (teeStream.budget) plus the rest of the
	// push at Commit.
	var cancel context.CancelCauseFunc
	p.ctx, cancel = context.WithCancelCause(ctx)
	p.cancel = func() { cancel(nil) }
	p.timeout = func() { cancel(fmt.Errorf("push took longer than %v", d.reg.PushTimeout)) }
	p.startStream()
	return p, nil
}

// startStream starts the upload of the layer as it is written. Without a
// client (a bad certs dir, say) the export is stored, then pushed from
// the entry, whose push reports the error.
func (p *dockerPending) startStream() {
	mt, err := LayerMediaType(p.in.Format, p.in.Compression)
	if err != nil {
		return
	}
	c, err := newClient(p.ctx, p.d.host, p.d.repo, p.d.reg)
	if err != nil {
		return
	}
	s := newTeeStream(mt)
	s.budget, s.onTimeout = p.d.reg.PushTimeout, p.timeout
	p.c, p.s = c, s
	p.w = bufio.NewWriterSize(io.MultiWriter(p.f, p.h, s), bufSize)
	go func() {
		err := remote.WriteLayer(c.repo, teeLayer{s}, c.pushOpts()...)
		if err != nil {
			err = remoteErr(c.ref, "push layer", err)
		}
		s.end(err)
	}()
}

// CreateOn stages a layer to add on top of the registry's snapshot with
// manifest digest base (Appender); the push uploads only the new layer
// and config (the registry holds the others: each blob is checked before
// it is uploaded), and moves the tag only if it still points at base
// (else the entry stays in the spool: see PushPending's force).
func (d *dockerRef) CreateOn(ctx context.Context, base digest.Digest) (Pending, error) {
	c, err := newClient(ctx, d.host, d.repo, d.reg)
	if err != nil {
		return nil, err
	}
	snap, err := c.open(ctx, d.ref, d.reference())
	if err != nil {
		return nil, err
	}
	if snap.Digest != base {
		return nil, fmt.Errorf("%s: tagged %s, not %s: %w", d.ref, snap.Digest, base, ErrBaseMoved)
	}
	return d.create(ctx, snap)
}

type dockerPending struct {
	*layoutPending
	ctx        context.Context // of the push: cancelled by Abort, or by timeout once PushTimeout is spent
	cancel     context.CancelFunc
	timeout    func() // cancels ctx with the timeout as its cause
	d          *dockerRef
	e          *spoolEntry
	baseDigest digest.Digest // the manifest the layer goes on ("": none)
	c          *client       // nil: no stream
	s          *teeStream

	cmu   sync.Mutex
	cdone bool
	cerr  error
}

// Commit ends the stream, pushes the config and the manifest (the tag moved
// last) and drops the entry, never synced. When that fails, the snapshot is
// stored in the entry, synced (a crash from here on leaves it there,
// whole), pushed once more from it unless the failure was the credentials'
// or a moved base, and kept when the sink has a spool (the error wraps
// ErrSpooled), removed otherwise.
func (p *dockerPending) Commit() error {
	p.cmu.Lock()
	defer p.cmu.Unlock()
	if !p.cdone {
		p.cdone, p.cerr = true, p.commit()
	}
	return p.cerr
}

func (p *dockerPending) commit() error {
	defer p.cancel()
	if t := p.d.reg.PushTimeout; t > 0 {
		// What the writer waited on the upload counts against the same
		// budget (teeStream.Write).
		if p.s != nil {
			t -= p.s.waited
		}
		stop := time.AfterFunc(max(t, 0), p.timeout)
		defer stop.Stop()
	}
	pushed := false
	pushErr := errors.New("no registry client")
	var rerr error
	err := p.finish(func() error {
		if err := p.w.Flush(); err != nil {
			p.endStream()
			p.discard()
			return fmt.Errorf("%s: write temporary blob: %w", p.ref, err)
		}
		layer, config, manifest, err := p.build()
		if err != nil {
			p.endStream()
			p.discard()
			return err
		}
		if p.s != nil {
			p.s.done(layer.Digest, layer.Size)
			if pushErr = p.s.wait(); pushErr == nil {
				pushErr = p.c.pushTop(p.ctx, config, manifest, p.d.tag, p.baseDigest, p.d.reg.Attempts)
			}
			if pushErr == nil {
				pushed = true
				rerr = p.discard()
				return nil
			}
		}
		if err := p.store(layer, config, manifest); err != nil {
			p.discard()
			return err
		}
		rerr = p.release()
		return nil
	})
	if err != nil {
		p.e.remove()
		return err
	}
	if pushed {
		return errors.Join(rerr, p.e.remove())
	}
	if !errors.Is(pushErr, ErrAuth) && !errors.Is(pushErr, ErrBaseMoved) && p.ctx.Err() == nil {
		// Once more from the stored entry (what the stream stored is not
		// sent again).
		pushErr = pushLayout(p.ctx, p.e.layoutDir(), p.d.host, p.d.repo, p.d.tag, p.baseDigest, p.d.reg)
		if pushErr == nil {
			return errors.Join(rerr, p.e.remove())
		}
	} else if p.ctx.Err() != nil {
		pushErr = errors.Join(pushErr, context.Cause(p.ctx))
	}
	if !p.e.keep {
		p.e.remove()
		return pushErr
	}
	p.e.recordFailure(pushErr)
	p.e.unlock()
	return fmt.Errorf("%w (%s, delivered by `ocisnap push --pending`): %w", ErrSpooled, p.e.dir, pushErr)
}

func (p *dockerPending) Abort() error {
	p.endStream()
	err := p.layoutPending.Abort()
	p.cancel()
	return errors.Join(err, p.e.remove())
}

// endStream fails the upload, unless it has ended already, and waits for
// its goroutine: left alone, it would wait forever for the rest of a layer
// that is never written (its Read waits on the queue, not on the context).
// The context is cancelled first, so an upload blocked on the network ends
// too, and a Commit pushing at the same time ends with its entry kept.
func (p *dockerPending) endStream() {
	if p.s == nil {
		return
	}
	p.s.abort()
	p.cancel()
	p.s.wait()
}

// pushLayout pushes the snapshot tagged spoolTag in the layout dir to
// host/repo:tag (the tag moved last, and only if it still points at base,
// unless base is "").
func pushLayout(ctx context.Context, dir, host, repo, tag string, base digest.Digest, reg Registry) error {
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
	c, err := newClient(ctx, host, repo, reg)
	if err != nil {
		return err
	}
	return c.push(ctx, snap, func(d ocispec.Descriptor) (io.ReadCloser, error) { return openBlob(root, d) }, tag, base, reg.Attempts)
}

// blobLayer is a stored blob as go-containerregistry's v1.Layer (only
// what an upload uses: digest, size, media type, the bytes).
type blobLayer struct {
	d    ocispec.Descriptor
	open func(ocispec.Descriptor) (io.ReadCloser, error)
}

func (b blobLayer) Digest() (v1.Hash, error)             { return v1.NewHash(b.d.Digest.String()) }
func (b blobLayer) DiffID() (v1.Hash, error)             { return v1.NewHash(b.d.Digest.String()) }
func (b blobLayer) Compressed() (io.ReadCloser, error)   { return b.open(b.d) }
func (b blobLayer) Uncompressed() (io.ReadCloser, error) { return b.open(b.d) }
func (b blobLayer) Size() (int64, error)                 { return b.d.Size, nil }
func (b blobLayer) MediaType() (types.MediaType, error)  { return types.MediaType(b.d.MediaType), nil }

// rawManifest is a manifest's bytes as go-containerregistry's Taggable.
type rawManifest struct {
	data []byte
	mt   string
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.data, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return types.MediaType(r.mt), nil }

// push uploads the blobs of snap (opened by open) — each HEADed first and
// uploaded only when missing, retried with backoff up to attempts times
// while ctx allows — then its manifest under tag.
func (c *client) push(ctx context.Context, snap *Snapshot, open func(ocispec.Descriptor) (io.ReadCloser, error),
	tag string, base digest.Digest, attempts int) error {
	blobs := append([]ocispec.Descriptor{snap.Manifest.Config}, snap.Manifest.Layers...)
	for _, b := range blobs {
		err := retryPush(ctx, attempts, func() error {
			if err := remote.WriteLayer(c.repo, blobLayer{d: b, open: open}, c.pushOpts()...); err != nil {
				return remoteErr(c.ref, "push blob "+b.Digest.String(), err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	// The manifest's bytes as stored, so that its digest stays the same.
	rc, err := open(ocispec.Descriptor{Digest: snap.Digest})
	if err != nil {
		return err
	}
	mdata, err := io.ReadAll(io.LimitReader(rc, maxMetadataSize))
	rc.Close()
	if err != nil {
		return err
	}
	if digest.FromBytes(mdata) != snap.Digest {
		return fmt.Errorf("%s: manifest %s: %w", c.ref, snap.Digest, ErrDigestMismatch)
	}
	return c.putManifest(ctx, mdata, tag, base, attempts)
}

// pushTop uploads the config blob (from memory) and puts the manifest:
// the end of a streamed export, whose layer is stored already.
func (c *client) pushTop(ctx context.Context, config, manifest blob, tag string, base digest.Digest, attempts int) error {
	open := func(ocispec.Descriptor) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(config.data)), nil
	}
	err := retryPush(ctx, attempts, func() error {
		if err := remote.WriteLayer(c.repo, blobLayer{d: config.desc, open: open}, c.pushOpts()...); err != nil {
			return remoteErr(c.ref, "push blob "+config.desc.Digest.String(), err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.putManifest(ctx, manifest.data, tag, base, attempts)
}

// putManifest moves tag to the manifest mdata. A manifest built on base
// (a layer added to the chain it restored) is put only while the tag
// still points at base: else the newer snapshot there would be dropped
// from the tag, and the error wraps ErrBaseMoved. (The registry has no
// compare-and-swap: this narrows the race to the two requests.)
func (c *client) putManifest(ctx context.Context, mdata []byte, tag string, base digest.Digest, attempts int) error {
	if base != "" {
		now := "(no such tag)"
		opts, err := c.pullOpts(ctx)
		if err != nil {
			return remoteErr(c.ref, "check tag "+tag, err)
		}
		d, err := remote.Head(c.repo.Tag(tag), opts...)
		if err == nil {
			now = d.Digest.String()
		} else if rerr := remoteErr(c.ref, "check tag "+tag, err); !errors.Is(rerr, ErrNotFound) {
			return rerr
		}
		if now != base.String() {
			return fmt.Errorf("%s:%s now tags %s, not %s, the snapshot this layer was built on: not moving it (`ocisnap push --pending --force` does): %w",
				c.ref, tag, now, base, ErrBaseMoved)
		}
	}
	return retryPush(ctx, attempts, func() error {
		if err := remote.Put(c.repo.Tag(tag), rawManifest{data: mdata, mt: ocispec.MediaTypeImageManifest}, c.pushOpts()...); err != nil {
			return remoteErr(c.ref, "push manifest", err)
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
	c, err := newClient(ctx, d.host, d.repo, reg)
	if err != nil {
		return nil, err
	}
	opts, err := c.pullOpts(ctx)
	if err != nil {
		return nil, remoteErr(ref, "list tags", err)
	}
	tags, err := remote.List(c.repo, opts...)
	if err != nil {
		return nil, remoteErr(ref, "list tags", err)
	}
	sort.Strings(tags)
	out := make([]TagInfo, 0, len(tags))
	for _, t := range tags {
		ti := TagInfo{Tag: t}
		snap, err := c.open(ctx, "docker://"+d.host+"/"+d.repo+":"+t, t)
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
