package location

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/internal/testutil/registryfixture"
	"github.com/ocisnap/ocisnap/pkg/policy"
)

// The real registry of the e2e tests, for the behaviour only a registry
// shows.
func startTestRegistry(t *testing.T) (*registryfixture.Registry, Registry, *policy.Policy) {
	t.Helper()
	testutil.RequireTools(t, registryfixture.Tools...)
	r, err := registryfixture.New(filepath.Join(t.TempDir(), "registry"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Kill)
	reg := Registry{AuthFile: r.AuthFile, CertsDir: r.CertsDir, RegistriesConf: filepath.Join(t.TempDir(), "none.conf"),
		SpoolDir: filepath.Join(t.TempDir(), "spool")}
	return r, reg, &policy.Policy{AllowRegistries: []string{r.Host + "/snaps/"}}
}

func pushBytes(t *testing.T, ctx context.Context, ref string, p *policy.Policy, reg Registry, base digest.Digest, data []byte) error {
	t.Helper()
	sink, err := ParseSink(ref, p, WithRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	Describe(sink, Info{Format: "overlay", Compression: "none"})
	var pend Pending
	if base != "" {
		pend, err = sink.(Appender).CreateOn(ctx, base)
	} else {
		pend, err = sink.Create(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pend.Write(data); err != nil {
		t.Fatal(err)
	}
	return pend.Commit()
}

// tagged is the snapshot ref names (closed: its manifest and config).
func tagged(t *testing.T, ctx context.Context, ref string, p *policy.Policy, reg Registry) *Snapshot {
	t.Helper()
	s := openSnapshot(t, ctx, ref, p, reg)
	s.Close()
	return s
}

// openSnapshot opens ref (the caller closes it); a failure fails the test.
func openSnapshot(t *testing.T, ctx context.Context, ref string, p *policy.Policy, reg Registry) *Snapshot {
	t.Helper()
	src, err := ParseSource(ref, p, WithRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	s, err := src.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRegistryStreamedPush: an export streams its layer while writing it
// and leaves nothing in the spool once pushed; the registry holds the
// bytes written.
func TestRegistryStreamedPush(t *testing.T) {
	_, reg, p := startTestRegistry(t)
	ctx := context.Background()
	ref := "docker://" + p.AllowRegistries[0] + "stream:v1"
	data := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16+7) // several writer buffers
	if err := pushBytes(t, ctx, ref, p, reg, "", data); err != nil {
		t.Fatal(err)
	}
	s := tagged(t, ctx, ref, p, reg)
	if got, want := s.Manifest.Layers[0].Digest, digest.FromBytes(data); got != want {
		t.Fatalf("layer %s, want %s", got, want)
	}
	if ps, _ := ListPending(reg.SpoolDir); len(ps) != 0 {
		t.Fatalf("spool holds %d entries after a push", len(ps))
	}
}

// TestRegistryDeltaOnMovedTag: a layer added to the chain the container
// restored (CreateOn) is never pushed over a tag another export moved
// meanwhile — neither by the hook's direct push nor, late, by PushPending —
// so the newer snapshot stays tagged; the entry stays pending with the
// failure status shows (the tag and both digests), and force delivers it.
func TestRegistryDeltaOnMovedTag(t *testing.T) {
	r, reg, p := startTestRegistry(t)
	ctx := context.Background()
	ref := "docker://" + p.AllowRegistries[0] + "chain:v1"
	if err := pushBytes(t, ctx, ref, p, reg, "", []byte("base layer")); err != nil {
		t.Fatal(err)
	}
	a := tagged(t, ctx, ref, p, reg).Digest

	// 1. Direct push: the tag moves between CreateOn and Commit.
	sink, _ := ParseSink(ref, p, WithRegistry(reg))
	Describe(sink, Info{Format: "overlay", Compression: "none"})
	pend, err := sink.(Appender).CreateOn(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	pend.Write([]byte("delta on a"))
	if err := pushBytes(t, ctx, ref, p, reg, "", []byte("newer whole snapshot")); err != nil {
		t.Fatal(err)
	}
	b := tagged(t, ctx, ref, p, reg).Digest
	err = pend.Commit()
	if !errors.Is(err, ErrSpooled) || !errors.Is(err, ErrBaseMoved) {
		t.Fatalf("commit of a delta over a moved tag: %v, want ErrSpooled and ErrBaseMoved", err)
	}
	if got := tagged(t, ctx, ref, p, reg).Digest; got != b {
		t.Fatalf("the tag moved to %s, want it kept at the newer %s", got, b)
	}
	checkPendingMoved(t, reg, a, b)
	for _, pp := range mustPushPending(t, ctx, reg, false) {
		if !errors.Is(pp.Err, ErrBaseMoved) {
			t.Fatalf("push --pending of the delta: %v, want ErrBaseMoved", pp.Err)
		}
	}
	if got := tagged(t, ctx, ref, p, reg).Digest; got != b {
		t.Fatalf("push --pending moved the tag to %s", got)
	}
	checkPendingMoved(t, reg, a, b)
	res := mustPushPending(t, ctx, reg, true)
	if len(res) != 1 || res[0].Err != nil {
		t.Fatalf("push --pending --force: %+v", res)
	}
	forced := tagged(t, ctx, ref, p, reg)
	if len(forced.Manifest.Layers) != 2 || forced.Manifest.Layers[1].Digest != digest.FromBytes([]byte("delta on a")) {
		t.Fatalf("after --force the tag holds %v, want base's layer and the delta", forced.Manifest.Layers)
	}

	// 2. Spooled delivery: the registry is down at the export, the tag
	// moves before push --pending.
	c := forced.Digest
	pend, err = sink.(Appender).CreateOn(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	pend.Write([]byte("delta on c"))
	r.Kill()
	if err := pend.Commit(); !errors.Is(err, ErrSpooled) || errors.Is(err, ErrBaseMoved) {
		t.Fatalf("commit with the registry down: %v, want ErrSpooled only", err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if err := pushBytes(t, ctx, ref, p, reg, "", []byte("another whole snapshot")); err != nil {
		t.Fatal(err)
	}
	d := tagged(t, ctx, ref, p, reg).Digest
	for _, pp := range mustPushPending(t, ctx, reg, false) {
		if !errors.Is(pp.Err, ErrBaseMoved) {
			t.Fatalf("late delivery of a delta over a moved tag: %v, want ErrBaseMoved", pp.Err)
		}
	}
	if got := tagged(t, ctx, ref, p, reg).Digest; got != d {
		t.Fatalf("late delivery moved the tag to %s, want the newer %s kept", got, d)
	}
	checkPendingMoved(t, reg, c, d)
}

func mustPushPending(t *testing.T, ctx context.Context, reg Registry, force bool) []PendingPush {
	t.Helper()
	res, err := PushPending(ctx, reg.SpoolDir, reg, force)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 {
		t.Fatalf("PushPending tried %d entries, want 1", len(res))
	}
	return res
}

func checkPendingMoved(t *testing.T, reg Registry, base, now digest.Digest) {
	t.Helper()
	ps, err := ListPending(reg.SpoolDir)
	if err != nil || len(ps) != 1 {
		t.Fatalf("spool: %d entries, %v; want the delta pending", len(ps), err)
	}
	pp := ps[0]
	if !pp.BaseMoved || pp.Base != base || !strings.Contains(pp.LastFailure, base.String()) ||
		!strings.Contains(pp.LastFailure, now.String()) || !strings.Contains(pp.LastFailure, ":v1") {
		t.Fatalf("pending entry %+v: want BaseMoved on %s, the failure naming the tag, %s and %s", pp, base, base, now)
	}
}

// streamingPending starts an export to ref whose layer streams to the
// registry as it is written (the stream is checked to have started).
func streamingPending(t *testing.T, ctx context.Context, ref string, p *policy.Policy, reg Registry) *dockerPending {
	t.Helper()
	sink, err := ParseSink(ref, p, WithRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	Describe(sink, Info{Format: "overlay", Compression: "none"})
	pend, err := sink.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dp := pend.(*dockerPending)
	if dp.s == nil {
		t.Fatal("no stream started")
	}
	return dp
}

// TestRegistryStreamCarriesTheLayer: the layer goes up by the stream
// itself, not by the push from the spool entry that follows a failed one
// (which TestRegistryStreamedPush's outcome alone cannot tell apart), also
// when the upload asks for the digest before the writer is done.
func TestRegistryStreamCarriesTheLayer(t *testing.T) {
	_, reg, p := startTestRegistry(t)
	ctx := context.Background()
	ref := "docker://" + p.AllowRegistries[0] + "carried:v1"
	dp := streamingPending(t, ctx, ref, p, reg)
	// More than the queue holds: the writer waits for the upload to read,
	// so the upload starts before the digest is known, as on any export
	// longer than the connection's set-up.
	data := bytes.Repeat([]byte("streamed"), (teeDepth+3)*bufSize/8+3)
	if _, err := dp.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := dp.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := dp.s.wait(); err != nil {
		t.Fatalf("the stream's upload failed: %v", err)
	}
	if got, want := tagged(t, ctx, ref, p, reg).Manifest.Layers[0].Digest, digest.FromBytes(data); got != want {
		t.Fatalf("layer %s, want %s", got, want)
	}
}

// TestRegistryStreamEndsWithTheExport: a Commit that fails before the
// layer is complete (its last flush), or an Abort, ends the upload's
// goroutine before it returns, rather than leave it waiting for the rest
// of the layer; nothing is pushed or kept.
func TestRegistryStreamEndsWithTheExport(t *testing.T) {
	_, reg, p := startTestRegistry(t)
	ctx := context.Background()
	ref := "docker://" + p.AllowRegistries[0] + "ends:v1"
	open := func() *dockerPending {
		dp := streamingPending(t, ctx, ref, p, reg)
		if _, err := dp.Write([]byte("part of a layer")); err != nil {
			t.Fatal(err)
		}
		return dp
	}
	ended := func(what string, dp *dockerPending) {
		t.Helper()
		select {
		case <-dp.s.ended:
		default:
			t.Fatalf("%s: the upload is still running", what)
		}
	}

	dp := open()
	dp.f.Close() // the flush of the buffered bytes fails
	if err := dp.Commit(); err == nil || errors.Is(err, ErrSpooled) {
		t.Fatalf("Commit with a failing flush: %v, want its error", err)
	}
	ended("failed Commit", dp)

	dp = open()
	if err := dp.Abort(); err != nil {
		t.Fatal(err)
	}
	ended("Abort", dp)

	if ps, _ := ListPending(reg.SpoolDir); len(ps) != 0 {
		t.Fatalf("spool holds %d entries", len(ps))
	}
}

// TestRegistryTimeoutBoundsNetworkWaits: --registry-timeout (PushTimeout)
// bounds what an export waits on the registry, not how long the export
// takes to write its layer. A layer written more slowly than the timeout
// to a registry that keeps up is pushed; a registry that stops reading
// makes the export wait at most the timeout, then the snapshot is spooled,
// whole, naming the timeout.
func TestRegistryTimeoutBoundsNetworkWaits(t *testing.T) {
	r, reg, p := startTestRegistry(t)
	ctx := context.Background()
	reg.PushTimeout = 2 * time.Second
	write := func(ref string, chunks int, pause time.Duration, between func(i int)) (*dockerPending, []byte) {
		t.Helper()
		dp := streamingPending(t, ctx, ref, p, reg)
		var all []byte
		for i := range chunks {
			between(i)
			chunk := bytes.Repeat([]byte{byte('a' + i)}, bufSize+17)
			if _, err := dp.Write(chunk); err != nil {
				t.Fatal(err)
			}
			all = append(all, chunk...)
			time.Sleep(pause)
		}
		return dp, all
	}

	// 1. Slow writer, healthy registry: 4 chunks 1 s apart is twice the
	// timeout, and the push still goes through.
	ref := "docker://" + p.AllowRegistries[0] + "slowwriter:v1"
	dp, data := write(ref, 4, time.Second, func(int) {})
	if err := dp.Commit(); err != nil {
		t.Fatalf("a layer written in %v with a %v timeout, registry healthy: %v", 4*time.Second, reg.PushTimeout, err)
	}
	if got, want := tagged(t, ctx, ref, p, reg).Manifest.Layers[0].Digest, digest.FromBytes(data); got != want {
		t.Fatalf("layer %s, want %s", got, want)
	}

	// 2. The registry stops reading after the first chunk: the writer's
	// waits end at the timeout, the rest goes to the spool copy, and the
	// entry is kept whole for push --pending.
	ref = "docker://" + p.AllowRegistries[0] + "stalled:v1"
	dp, data = write(ref, teeDepth+8, 0, func(i int) {
		if i == 1 {
			r.Pause()
		}
	})
	err := dp.Commit()
	r.Resume()
	if !errors.Is(err, ErrSpooled) || !strings.Contains(err.Error(), "push took longer than") {
		t.Fatalf("commit with a stalled registry: %v, want ErrSpooled naming the timeout", err)
	}
	res := mustPushPending(t, ctx, reg, false)
	if len(res) != 1 || res[0].Err != nil {
		t.Fatalf("push --pending after the registry resumed: %+v", res)
	}
	if got, want := tagged(t, ctx, ref, p, reg).Manifest.Layers[0].Digest, digest.FromBytes(data); got != want {
		t.Fatalf("delivered layer %s, want %s", got, want)
	}
}

// TestRegistryBlobFetch: a layer streams from the registry as it stored
// it, and what the registry sends is checked by the snapshot's own
// verifier (fetchBlob leaves the verification to it): altered bytes of
// the same size fail at the digest, a shortened blob at once at its size
// (the length the registry announces), each naming the layer's digest.
func TestRegistryBlobFetch(t *testing.T) {
	r, reg, p := startTestRegistry(t)
	ctx := context.Background()
	ref := "docker://" + p.AllowRegistries[0] + "fetch:v1"
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	if err := pushBytes(t, ctx, ref, p, reg, "", data); err != nil {
		t.Fatal(err)
	}
	read := func() ([]byte, error) { return readLayers(t, ctx, ref, p, reg) }
	got, err := read()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("restore: %d bytes, err %v; want the %d bytes pushed", len(got), err, len(data))
	}
	layer := tagged(t, ctx, ref, p, reg).Manifest.Layers[0].Digest.String()
	blob := r.BlobPath(layer)
	altered := bytes.Clone(data)
	altered[len(altered)/2] ^= 1
	if err := os.WriteFile(blob, altered, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := read(); !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), layer) {
		t.Fatalf("altered blob: err %v, want ErrDigestMismatch naming %s", err, layer)
	}
	if err := os.WriteFile(blob, data[:len(data)-1], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := read(); !errors.Is(err, ErrSizeMismatch) || !strings.Contains(err.Error(), layer) {
		t.Fatalf("shortened blob: err %v, want ErrSizeMismatch naming %s", err, layer)
	}
}

// TestRegistryOnePing: a client authenticates once for all it pulls (the
// manifest, the config, the layers) and once for all it pushes (the
// layer, the config, the manifest), not once per request: on a distant
// registry each ping is a round trip before the request itself.
func TestRegistryOnePing(t *testing.T) {
	r, reg, p := startTestRegistry(t)
	ctx := context.Background()
	ref := "docker://" + p.AllowRegistries[0] + "ping:v1"
	pings := func() int { return strings.Count(r.Log(), `"GET /v2/ HTTP`) }
	before := pings()
	if err := pushBytes(t, ctx, ref, p, reg, "", []byte("layer")); err != nil {
		t.Fatal(err)
	}
	if n := pings() - before; n != 1 {
		t.Errorf("push: %d pings, want 1", n)
	}
	before = pings()
	if _, err := readLayers(t, ctx, ref, p, reg); err != nil {
		t.Fatal(err)
	}
	if n := pings() - before; n != 1 {
		t.Errorf("restore: %d pings, want 1", n)
	}
}

// readLayers restores ref's layers as bytes (one after the other), each
// verified as it streams; an error of opening ref fails the test.
func readLayers(t *testing.T, ctx context.Context, ref string, p *policy.Policy, reg Registry) ([]byte, error) {
	t.Helper()
	s := openSnapshot(t, ctx, ref, p, reg)
	defer s.Close()
	var got []byte
	err := s.Each(ctx, func(_ int, _ Layer, rd io.Reader) error {
		b, err := io.ReadAll(rd)
		got = append(got, b...)
		return err
	})
	return got, err
}

// fetchFromTestServer fetches the blob "layer" from a TLS test server
// playing the part of a registry that Debian's docker-registry cannot be
// made to play (a redirect of a blob, a failure once): it answers the ping
// and serves the blob with blob, through a client with its own certs.d,
// auth file and registries.conf.
func fetchFromTestServer(t *testing.T, blob http.HandlerFunc) (io.ReadCloser, error) {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			w.WriteHeader(http.StatusOK)
		case strings.HasPrefix(r.URL.Path, "/v2/snaps/r/blobs/"):
			blob(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs.d")
	if err := os.MkdirAll(filepath.Join(certs, host), 0o755); err != nil {
		t.Fatal(err)
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(certs, host, "ca.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(dir, "auth.json")
	if err := os.WriteFile(auth, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := Registry{AuthFile: auth, CertsDir: certs, RegistriesConf: filepath.Join(dir, "none.conf")}
	ctx := context.Background()
	c, err := newClient(ctx, host, "snaps/r", reg)
	if err != nil {
		t.Fatal(err)
	}
	return c.fetchBlob(ctx, ocispec.Descriptor{Digest: digest.FromString("layer"), Size: 5})
}

// TestRegistryBlobRedirect: a registry that redirects a blob to an
// address of the node (here a private one, with a presigned-looking
// query) is refused, and the error shows neither the query nor anything
// fetched.
func TestRegistryBlobRedirect(t *testing.T) {
	rc, err := fetchFromTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://10.0.0.1:9/blob?X-Amz-Signature=topsecret", http.StatusTemporaryRedirect)
	})
	if err == nil {
		rc.Close()
		t.Fatal("a redirect to 10.0.0.1 was followed")
	}
	if !strings.Contains(err.Error(), "refused") || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("err %q: want the redirect refused, without its query", err)
	}
}

// TestRegistryBlobRetry: a blob the registry fails to serve once (503, as
// a registry behind a proxy does when overloaded) is fetched again, as
// the library retries its own requests.
func TestRegistryBlobRetry(t *testing.T) {
	var gets atomic.Int32
	rc, err := fetchFromTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if gets.Add(1) == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "layer")
	})
	if err != nil {
		t.Fatalf("after one 503: %v", err)
	}
	defer rc.Close()
	if b, err := io.ReadAll(rc); err != nil || string(b) != "layer" || gets.Load() != 2 {
		t.Errorf("got %q, %v after %d GETs; want \"layer\" after 2", b, err, gets.Load())
	}
}
