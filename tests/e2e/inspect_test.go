package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// TestInspectAndSameImage (docs/ocisnap-inspect.1.md, docs/policy.md): a
// podman export to an oci: layout records its base image (the chain of
// lower layers), which `ocisnap inspect` shows beside its layers; a plain
// tar export is said to carry no metadata. Restoring the layout into a
// container of another image logs a warning naming both; with
// --require-same-image the start fails naming both. The same image
// restores without a warning.
func TestInspectAndSameImage(t *testing.T) {
	testutil.RequireRoot(t)
	dir := snapshotDir(t)
	logFile := filepath.Join(t.TempDir(), "hook.log")
	hd := writeHooksDir(t, t.TempDir(), hookBin, 0, "--log-file", logFile)
	p := newPodman(t, hd)
	img := p.testImage()

	layout := "oci:" + filepath.Join(dir, "lay") + ":v1"
	plain := filepath.Join(dir, "plain.tar")
	p.run("run", "--rm", "--network=none", "--annotation", "io.ocisnap.export="+layout, img, "sh", "-c", "echo a > /a && rm /README")
	p.run("run", "--rm", "--network=none", "--annotation", "io.ocisnap.export="+plain, img, "sh", "-c", "echo a > /a && rm /README")

	var in struct {
		Kind, Format, Compression string
		Metadata                  bool
		Entries, Bytes            int64
		Base                      *struct{ Name, Digest, LowerChain string }
		Layers                    []struct {
			Digest, MediaType string
			Size              int64
			Entries, Bytes    int64
		}
	}
	must(t, json.Unmarshal([]byte(mustCLI(t, "inspect", "--json", layout)), &in))
	if !in.Metadata || in.Format != "overlay" || in.Compression != "zstd" || len(in.Layers) != 1 ||
		in.Layers[0].Entries == 0 || in.Layers[0].Bytes != 2 || !strings.HasSuffix(in.Layers[0].MediaType, "+zstd") ||
		in.Base == nil || !strings.HasPrefix(in.Base.LowerChain, "sha256:") || in.Base.Name != img {
		t.Errorf("inspect %s: %+v", layout, in)
	}
	text := mustCLI(t, "inspect", layout)
	t.Logf("ocisnap inspect %s:\n%s", layout, text)
	// The name from containers/storage's metadata (podman puts none in
	// config.json), beside the chain of lower layers.
	for _, want := range []string{"Base image:   " + img + ", lower layers sha256:", "Layers:       1", "Created:"} {
		if !strings.Contains(text, want) {
			t.Errorf("inspect does not show %q", want)
		}
	}
	text = mustCLI(t, "inspect", plain)
	t.Logf("ocisnap inspect %s:\n%s", plain, text)
	if !strings.Contains(text, "Metadata:     none") || !strings.Contains(text, "Format:       overlay") {
		t.Errorf("inspect of the plain tar:\n%s", text)
	}

	// The same image: no warning.
	p.run("run", "--rm", "--network=none", "--annotation", "io.ocisnap.restore="+layout, img, "test", "-f", "/a")
	if b, _ := os.ReadFile(logFile); strings.Contains(string(b), "another base image") {
		t.Errorf("restore onto the same image warned:\n%s", b)
	}
	// Another image: a warning naming both, and the restore is done.
	p.run("run", "--name", "other-src", "--network=none", img, "sh", "-c", "echo x > /other")
	p.run("commit", "-q", "other-src", "localhost/ocisnap-other:latest")
	p.run("rm", "other-src")
	other := "localhost/ocisnap-other:latest"
	p.run("run", "--rm", "--network=none", "--annotation", "io.ocisnap.restore="+layout, other, "test", "-f", "/a")
	b, _ := os.ReadFile(logFile)
	if !strings.Contains(string(b), "another base image") || !strings.Contains(string(b), "snapshot_base") ||
		!strings.Contains(string(b), "container_image") {
		t.Errorf("restore onto another image did not warn naming both:\n%s", b)
	}

	// --require-same-image refuses it.
	hd = writeHooksDir(t, t.TempDir(), hookBin, 0, "--require-same-image")
	ps := newPodman(t, hd)
	img = ps.testImage()
	ps.run("run", "--name", "other-src", "--network=none", img, "sh", "-c", "echo x > /other")
	ps.run("commit", "-q", "other-src", other)
	out, err := ps.runErr("run", "--rm", "--network=none", "--annotation", "io.ocisnap.restore="+layout, other, "echo", "started")
	if err == nil || strings.Contains(out, "started") {
		t.Fatalf("--require-same-image: the container started (%v)\n%s", err, out)
	}
	// The snapshot's base by its name, the container's by its chain.
	if !strings.Contains(out, img) || !strings.Contains(out, "lower layers sha256:") || !strings.Contains(out, "--require-same-image") ||
		!strings.Contains(out, "io.ocisnap.restore="+layout) {
		t.Errorf("the refusal does not name both images:\n%s", out)
	}
}
