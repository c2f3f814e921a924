package location

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocisnap/ocisnap/internal/atomicfile"
	"github.com/ocisnap/ocisnap/pkg/policy"
)

func TestParseLayoutRef(t *testing.T) {
	for _, tt := range []struct{ ref, dir, tag string }{
		{"oci:/a/b", "/a/b", "latest"},
		{"oci:/a/b:t1", "/a/b", "t1"},
		{"oci:/a/b/../c:v1.2-x_y", "/a/c", "v1.2-x_y"},
	} {
		dir, tag, err := ParseLayoutRef(tt.ref)
		if err != nil || dir != tt.dir || tag != tt.tag {
			t.Errorf("ParseLayoutRef(%q) = %q, %q, %v; want %q, %q", tt.ref, dir, tag, err, tt.dir, tt.tag)
		}
	}
	for _, ref := range []string{"oci:rel/dir", "oci:", "oci://registry/x", "oci:/a:bad tag", "oci:/a:-x", "oci:/a:", "oci:/a:" + strings.Repeat("x", 129)} {
		if _, _, err := ParseLayoutRef(ref); !errors.Is(err, ErrUnsupported) {
			t.Errorf("ParseLayoutRef(%q) = %v, want ErrUnsupported", ref, err)
		}
	}
}

func TestParseDockerRef(t *testing.T) {
	dg := "sha256:" + strings.Repeat("ab", 32)
	for _, tt := range []struct{ ref, host, repo, tag, dg string }{
		{"docker://reg.example.com/snaps/app:v1", "reg.example.com", "snaps/app", "v1", ""},
		{"docker://127.0.0.1:5000/a/b", "127.0.0.1:5000", "a/b", "latest", ""},
		{"docker://h:5000/a@" + dg, "h:5000", "a", "", dg},
	} {
		host, repo, tag, d, err := ParseDockerRef(tt.ref)
		if err != nil || host != tt.host || repo != tt.repo || tag != tt.tag || string(d) != tt.dg {
			t.Errorf("ParseDockerRef(%q) = %q %q %q %q %v", tt.ref, host, repo, tag, d, err)
		}
	}
	for _, ref := range []string{"docker://host", "docker://host/", "docker://h/Upper/x", "docker://h/a/../b",
		"docker://h/a@sha256:short", "docker://h/a:bad tag", "docker://h:port/a", "docker://user@h/a", "docker://h/a//b"} {
		if _, _, _, _, err := ParseDockerRef(ref); !errors.Is(err, ErrUnsupported) {
			t.Errorf("ParseDockerRef(%q) = %v, want ErrUnsupported", ref, err)
		}
	}
}

// TestDockerRefused: a repository no --allow-registry prefix covers is
// refused by ParseSource and ParseSink (before any client exists: nothing
// can reach the network).
func TestDockerRefused(t *testing.T) {
	p := &policy.Policy{AllowRegistries: []string{"reg.example.com/snaps/"}}
	for _, ref := range []string{"docker://reg.example.com/other/x:v1", "docker://reg.example.com/snapsx/x",
		"docker://evil.example.com/snaps/x", "docker://reg.example.com:444/snaps/x"} {
		if _, err := ParseSource(ref, p); !errors.Is(err, policy.ErrRegistryNotAllowed) {
			t.Errorf("ParseSource(%q) = %v", ref, err)
		}
		if _, err := ParseSink(ref, p); !errors.Is(err, policy.ErrRegistryNotAllowed) {
			t.Errorf("ParseSink(%q) = %v", ref, err)
		}
	}
	if _, err := ParseSink("docker://reg.example.com/snaps/x@sha256:"+strings.Repeat("0", 64), p); !errors.Is(err, ErrUnsupported) {
		t.Errorf("a digest-pinned sink: %v", err)
	}
	if _, err := ParseSource("docker://reg.example.com/snaps/x", &policy.Policy{}); !errors.Is(err, policy.ErrRegistryNotAllowed) {
		t.Errorf("no --allow-registry: %v", err)
	}
}

func writeLayout(t *testing.T, p *policy.Policy, ref, content string) {
	t.Helper()
	sink, err := ParseSink(ref, p)
	if err != nil {
		t.Fatal(err)
	}
	Describe(sink, Info{Format: "oci", Compression: "zstd", Container: "app"})
	pend, err := sink.Create(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(pend, content); err != nil {
		t.Fatal(err)
	}
	SetLayerStats(pend, 3, int64(len(content)))
	if err := pend.Commit(); err != nil {
		t.Fatal(err)
	}
}

func readLayout(t *testing.T, p *policy.Policy, ref string) (*Snapshot, string, error) {
	t.Helper()
	src, err := ParseSource(ref, p)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := src.Open(context.Background())
	if err != nil {
		return nil, "", err
	}
	defer snap.Close()
	var b []byte
	err = snap.Each(context.Background(), func(_ int, _ Layer, r io.Reader) error {
		b, err = io.ReadAll(r)
		return err
	})
	return snap, string(b), err
}

func TestLayoutRoundTrip(t *testing.T) {
	allow := t.TempDir()
	p := &policy.Policy{AllowDirs: []string{allow}}
	dir := filepath.Join(allow, "lay")
	writeLayout(t, p, "oci:"+dir+":t1", "first")
	writeLayout(t, p, "oci:"+dir+":t2", "other")
	writeLayout(t, p, "oci:"+dir+":t1", "second") // moves t1
	snap, got, err := readLayout(t, p, "oci:"+dir+":t1")
	if err != nil || got != "second" {
		t.Fatalf("t1 = %q, %v; want second", got, err)
	}
	if snap.Manifest.ArtifactType != ArtifactType || snap.Manifest.Config.MediaType != ConfigMediaType ||
		snap.Manifest.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+zstd" {
		t.Errorf("manifest %+v", snap.Manifest)
	}
	if c := snap.Config; c.Format != "oci" || c.Container != "app" || len(c.Layers) != 1 || c.Layers[0].Entries != 3 || c.Created.IsZero() {
		t.Errorf("config %+v", c)
	}
	if _, got, _ := readLayout(t, p, "oci:"+dir+":t2"); got != "other" {
		t.Errorf("t2 = %q", got)
	}
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil || len(idx.Manifests) != 2 {
		t.Fatalf("index.json: %v, %s", err, data)
	}
	assertNoTempsIn(t, dir)
	assertNoTempsIn(t, filepath.Join(dir, "blobs/sha256"))
	if _, _, err := readLayout(t, p, "oci:"+dir+":none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing tag: %v", err)
	}
	if _, _, err := readLayout(t, p, "oci:"+filepath.Join(allow, "nolayout")); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing layout: %v", err)
	}
}

func assertNoTempsIn(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), atomicfile.TempInfix) {
			t.Errorf("temporary file left: %s", filepath.Join(dir, e.Name()))
		}
	}
}

// TestLayoutAbort: an aborted snapshot leaves the tagged one whole and no
// temporary blob.
func TestLayoutAbort(t *testing.T) {
	allow := t.TempDir()
	p := &policy.Policy{AllowDirs: []string{allow}}
	ref := "oci:" + filepath.Join(allow, "lay")
	writeLayout(t, p, ref, "kept")
	sink, _ := ParseSink(ref, p)
	pend, err := sink.Create(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(pend, "half")
	if err := pend.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := pend.Commit(); !errors.Is(err, ErrAborted) {
		t.Errorf("Commit after Abort = %v", err)
	}
	if _, got, err := readLayout(t, p, ref); err != nil || got != "kept" {
		t.Errorf("after abort: %q, %v", got, err)
	}
	assertNoTempsIn(t, filepath.Join(allow, "lay/blobs/sha256"))
}

// TestLayoutVerify: an altered, a truncated and an extended layer blob are
// refused, naming the digest.
func TestLayoutVerify(t *testing.T) {
	for _, tt := range []struct {
		name  string
		alter func([]byte) []byte
		want  error
	}{
		{"altered", func(b []byte) []byte { b[0] ^= 1; return b }, ErrDigestMismatch},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }, ErrSizeMismatch},
		{"extended", func(b []byte) []byte { return append(b, 'x') }, ErrSizeMismatch},
	} {
		t.Run(tt.name, func(t *testing.T) {
			allow := t.TempDir()
			p := &policy.Policy{AllowDirs: []string{allow}}
			ref := "oci:" + filepath.Join(allow, "lay")
			writeLayout(t, p, ref, "snapshot bytes")
			snap, _, err := readLayout(t, p, ref)
			if err != nil {
				t.Fatal(err)
			}
			d := snap.Manifest.Layers[0].Digest
			blob := filepath.Join(allow, "lay/blobs/sha256", d.Encoded())
			b, _ := os.ReadFile(blob)
			if err := os.WriteFile(blob, tt.alter(b), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err = readLayout(t, p, ref)
			if !errors.Is(err, tt.want) || !strings.Contains(fmt.Sprint(err), d.String()) {
				t.Errorf("read = %v, want %v naming %s", err, tt.want, d)
			}
		})
	}
}

// TestLayoutConfined: a layout outside the allowed directories, or reached
// through a symlink leading out, is refused.
func TestLayoutConfined(t *testing.T) {
	allow, outside := t.TempDir(), t.TempDir()
	p := &policy.Policy{AllowDirs: []string{allow}}
	if _, err := ParseSink("oci:"+filepath.Join(outside, "lay"), p); !errors.Is(err, policy.ErrNotAllowed) {
		t.Errorf("outside: %v", err)
	}
	if err := os.Symlink(outside, filepath.Join(allow, "out")); err != nil {
		t.Fatal(err)
	}
	sink, err := ParseSink("oci:"+filepath.Join(allow, "out/lay"), p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Create(context.Background()); !errors.Is(err, policy.ErrNotAllowed) {
		t.Errorf("through a symlink out: %v", err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("something was written outside: %v", ents)
	}
	src, _ := ParseSource("oci:"+filepath.Join(allow, "out"), p)
	if _, err := src.Open(context.Background()); !errors.Is(err, policy.ErrNotAllowed) {
		t.Errorf("read through a symlink out: %v", err)
	}
}

// TestLayoutConcurrentCommits: writers committing to one tag at once each
// leave a whole index.json, and the tag names one whole snapshot.
func TestLayoutConcurrentCommits(t *testing.T) {
	allow := t.TempDir()
	p := &policy.Policy{AllowDirs: []string{allow}}
	ref := "oci:" + filepath.Join(allow, "lay") + ":same"
	var wg sync.WaitGroup
	contents := map[string]bool{}
	for i := range 8 {
		c := fmt.Sprintf("writer %d %s", i, strings.Repeat("x", i*1000))
		contents[c] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			writeLayout(t, p, ref, c)
		}()
	}
	wg.Wait()
	_, got, err := readLayout(t, p, ref)
	if err != nil || !contents[got] {
		t.Fatalf("after concurrent commits: %v, %d bytes not one writer's", err, len(got))
	}
	data, _ := os.ReadFile(filepath.Join(allow, "lay/index.json"))
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil || len(idx.Manifests) != 1 {
		t.Errorf("index.json: %v, %s", err, data)
	}
}

func TestLookupCredential(t *testing.T) {
	dir := t.TempDir()
	enc := func(u, p string) string { return base64.StdEncoding.EncodeToString([]byte(u + ":" + p)) }
	file := filepath.Join(dir, "auth.json")
	os.WriteFile(file, []byte(fmt.Sprintf(`{"auths":{
		"reg.example.com":{"auth":%q},
		"reg.example.com/team":{"auth":%q},
		"reg.example.com/team/app":{"auth":%q},
		"https://legacy.example.com/v1/":{"auth":%q}}}`,
		enc("host", "p1"), enc("ns", "p2"), enc("repo", "p3"), enc("legacy", "p4"))), 0o600)
	for _, tt := range []struct{ host, repo, user string }{
		{"reg.example.com", "team/app", "repo"},
		{"reg.example.com", "team/other", "ns"},
		{"reg.example.com", "else/x", "host"},
		{"legacy.example.com", "a/b", "legacy"},
		{"none.example.com", "a", ""},
	} {
		c, err := lookupCredential(file, tt.host, tt.repo)
		if err != nil || c.Username != tt.user {
			t.Errorf("%s/%s: user %q, %v; want %q", tt.host, tt.repo, c.Username, err, tt.user)
		}
	}
	if _, err := lookupCredential(filepath.Join(dir, "missing.json"), "h", "r"); err == nil {
		t.Error("a missing --registry-auth-file is not an error")
	}
	secret := "topsecret-value"
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"auths":{"h":{"auth":"`+secret+`"`), 0o600)
	if _, err := lookupCredential(bad, "h", "r"); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("broken file: %v (must fail without the content)", err)
	}
	os.WriteFile(bad, []byte(`{"auths":{"h":{"auth":"`+secret+`!"}}}`), 0o600)
	if _, err := lookupCredential(bad, "h", "r"); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("bad base64: %v (must fail without the content)", err)
	}
}

func TestTLSConfigCertsDir(t *testing.T) {
	dir := t.TempDir()
	if cfg, err := tlsConfig(dir, "absent:5000"); err != nil || cfg.RootCAs != nil || cfg.InsecureSkipVerify {
		t.Errorf("missing host directory: %+v, %v", cfg, err)
	}
	h := filepath.Join(dir, "reg:5000")
	os.MkdirAll(h, 0o755)
	os.WriteFile(filepath.Join(h, "client.cert"), []byte("x"), 0o644)
	if _, err := tlsConfig(dir, "reg:5000"); err == nil {
		t.Error("a .cert without its .key is accepted")
	}
	os.Remove(filepath.Join(h, "client.cert"))
	os.WriteFile(filepath.Join(h, "ca.crt"), []byte("not pem"), 0o644)
	if _, err := tlsConfig(dir, "reg:5000"); err == nil {
		t.Error("a .crt without a certificate is accepted")
	}
	if _, err := tlsConfig(dir, "../etc"); err == nil {
		t.Error("a host with a slash is accepted")
	}
}

// TestLayoutLayersOldestFirst: a snapshot manifest of several layers
// yields them in manifest order, each verified.
func TestLayoutLayersOldestFirst(t *testing.T) {
	allow := t.TempDir()
	p := &policy.Policy{AllowDirs: []string{allow}}
	dir := filepath.Join(allow, "lay")
	root, err := p.OpenDir(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := root.MkdirAll("blobs/sha256", 0o700); err != nil {
		t.Fatal(err)
	}
	var descs []ocispec.Descriptor
	for _, c := range []string{"oldest", "middle", "newest"} {
		b := newBlob(MediaTypeOverlayLayer, []byte(c))
		if err := storeBlob(root, b); err != nil {
			t.Fatal(err)
		}
		descs = append(descs, b.desc)
	}
	cfg, man, err := buildManifest(&Config{Format: "overlay", Layers: make([]LayerInfo, 3)}, descs)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []blob{cfg, man} {
		if err := storeBlob(root, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tagLayout(root, "v1", man.desc); err != nil {
		t.Fatal(err)
	}
	src, _ := ParseSource("oci:"+dir+":v1", p)
	snap, err := src.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	var got []string
	if err := snap.Each(context.Background(), func(i int, l Layer, r io.Reader) error {
		b, err := io.ReadAll(r)
		got = append(got, string(b))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "oldest,middle,newest" {
		t.Errorf("layers %v", got)
	}
}

// TestLayoutCreateOn: a layer added on top of a snapshot lists the earlier
// layers first, unchanged, with their stats; a base the tag no longer
// points at is refused with ErrBaseMoved.
func TestLayoutCreateOn(t *testing.T) {
	allow := t.TempDir()
	p := &policy.Policy{AllowDirs: []string{allow}}
	ref := "oci:" + filepath.Join(allow, "lay") + ":app"
	writeLayout(t, p, ref, "base")
	base, _, err := readLayout(t, p, ref)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := ParseSink(ref, p)
	if err != nil {
		t.Fatal(err)
	}
	Describe(sink, Info{Format: "oci", Compression: "zstd"})
	pend, err := sink.(Appender).CreateOn(context.Background(), base.Digest)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(pend, "delta")
	SetLayerStats(pend, 1, 5)
	if err := pend.Commit(); err != nil {
		t.Fatal(err)
	}
	src, _ := ParseSource(ref, p)
	snap, err := src.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	var got []string
	if err := snap.Each(context.Background(), func(_ int, _ Layer, r io.Reader) error {
		b, err := io.ReadAll(r)
		got = append(got, string(b))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "base,delta" || snap.Manifest.Layers[0].Digest != base.Manifest.Layers[0].Digest {
		t.Fatalf("layers %q, want base,delta with the base's blob", got)
	}
	if c := snap.Config.Layers; len(c) != 2 || c[0].Entries != 3 || c[1].Entries != 1 || c[1].Created.IsZero() {
		t.Fatalf("config layers %+v", c)
	}
	if _, err := sink.(Appender).CreateOn(context.Background(), base.Digest); !errors.Is(err, ErrBaseMoved) {
		t.Fatalf("CreateOn an old base: %v, want ErrBaseMoved", err)
	}
}
