package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// TestRestoreGVisorShape restores a tar in the shape `runsc tar rootfs-upper`
// writes: "./" root, char 0/0 whiteouts with the second and later ones as
// hard links to the first, SCHILY.xattr.trusted.overlay.opaque, numeric ids
// and no user/group names.
func TestRestoreGVisorShape(t *testing.T) {
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	snap := filepath.Join(snapshotDir(t), "gvisor.tar")
	mt := testutil.BuildTime
	writeTar(t, snap, []testutil.Node{
		testutil.Dir("./"),
		testutil.Whiteout("./README"),
		testutil.Dir("./data/"),
		testutil.Hardlink("./data/old", "./README"), // gVisor: later whiteouts link to the first
		testutil.Dir("./etc/"),
		testutil.Dir("./etc/app/").WithMode(0o700).WithOpaque(),
		testutil.File("./etc/app/new.conf", "new\n").WithMode(0o640).WithOwner(1000, 1000),
		testutil.Dir("./var/"),
		testutil.Dir("./var/log/"),
		testutil.Hardlink("./var/log/image.log", "./README"),
	}, false)

	b := newBundle(t, img)
	b.spec.Annotations["io.ocisnap.restore"] = snap
	crioHooks(t, b, hooksDir)
	if out, err := b.runToCompletion("sh", "-c", "test ! -e /README && test ! -e /data/old && test ! -e /var/log/image.log && test \"$(ls /etc/app)\" = new.conf && test \"$(cat /etc/app/new.conf)\" = new"); err != nil {
		t.Fatalf("restored gVisor-shaped snapshot is wrong inside the container: %v\n%s", err, out)
	}
	var st os.FileInfo
	st, err := os.Stat(filepath.Join(b.rootfs, "etc/app/new.conf"))
	must(t, err)
	if st.Mode().Perm() != 0o640 || !st.ModTime().Equal(mt) {
		t.Errorf("new.conf metadata: %v %v", st.Mode(), st.ModTime())
	}
}

// TestRestoreOCILayerFromPodman restores the top layer of an image that
// `podman commit` made (OCI whiteouts, written by containers/storage) onto
// a container of the base image: it must look like a container of the
// committed image.
func TestRestoreOCILayerFromPodman(t *testing.T) {
	p := newPodman(t, hooksDir)
	img := p.testImage()
	id := p.run("run", "-d", "--network=none", img, "sleep", "1000")
	p.run("exec", id, "sh", "-c", `set -e
rm /README && rm -rf /data/old && rm -rf /etc/app && mkdir /etc/app && echo fresh > /etc/app/fresh
mkdir -p /new/d && echo n > /new/d/f && ln -s d/f /new/l && chmod 4755 /new/d/f`)
	p.run("stop", "-t", "0", id)
	p.run("commit", "-q", id, "localhost/ocisnap-e2e-committed:latest")
	dir := filepath.Join(t.TempDir(), "oci")
	p.run("save", "--format", "oci-dir", "-o", dir, "localhost/ocisnap-e2e-committed:latest")
	layerPath := topLayer(t, dir)
	snap := filepath.Join(snapshotDir(t), "podman-layer.tar")
	data, err := os.ReadFile(layerPath)
	must(t, err)
	must(t, os.WriteFile(snap, data, 0o600))

	want := p.run("run", "-d", "--network=none", "localhost/ocisnap-e2e-committed:latest", "sleep", "1000")
	wantM := manifest(t, p.mergedDir(want))
	got := p.run("run", "-d", "--network=none", "--annotation", "io.ocisnap.restore="+snap, img, "sleep", "1000")
	gotM := manifest(t, p.mergedDir(got))
	if wantM != gotM {
		t.Fatalf("restoring podman's layer differs from running the committed image:\n%s", testutil.TreeDiff(wantM, gotM))
	}
	if strings.Contains(gotM, "README ") {
		t.Errorf("README survived")
	}
}

func topLayer(t testing.TB, dir string) string {
	t.Helper()
	var index struct {
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	readJSON(t, filepath.Join(dir, "index.json"), &index)
	if len(index.Manifests) == 0 {
		t.Fatal("oci-dir index has no manifest")
	}
	var m struct {
		Layers []struct{ Digest string } `json:"layers"`
	}
	readJSON(t, blobPath(dir, index.Manifests[0].Digest), &m)
	if len(m.Layers) < 2 {
		t.Fatalf("committed image has %d layers, want 2", len(m.Layers))
	}
	return blobPath(dir, m.Layers[len(m.Layers)-1].Digest)
}

func blobPath(dir, digest string) string {
	algo, hex, _ := strings.Cut(digest, ":")
	return filepath.Join(dir, "blobs", algo, hex)
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	must(t, json.Unmarshal(data, v))
}

// TestGVisorCompatExample: the shipped gVisor-compatibility hooks.d example,
// installed by the administrator, makes gVisor's restore annotation work;
// without it the annotation is ignored.
func TestGVisorCompatExample(t *testing.T) {
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	snap := filepath.Join(snapshotDir(t), "g.tar")
	writeTar(t, snap, []testutil.Node{testutil.Dir("./"), testutil.File("./from-gvisor", "g")}, false)

	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(repoRoot, "oci-hooks.d/examples/ocisnap-gvisor.json"))
	must(t, err)
	data = bytes.Replace(data, []byte("/usr/libexec/oci/hooks.d/ocisnap-hook"), []byte(hookBin), 1)
	must(t, os.WriteFile(filepath.Join(dir, "ocisnap-gvisor.json"), data, 0o644))

	for _, c := range []struct {
		dir  string
		want bool
	}{{dir, true}, {hooksDir, false}} {
		b := newBundle(t, img)
		b.spec.Annotations["dev.gvisor.tar.rootfs.upper"] = snap
		crioHooks(t, b, c.dir)
		out, err := b.runToCompletion("true")
		if err != nil {
			t.Fatalf("runc run: %v\n%s", err, out)
		}
		_, err = os.Stat(filepath.Join(b.rootfs, "from-gvisor"))
		if (err == nil) != c.want {
			t.Errorf("hooks dir %s: restored=%v, want %v", c.dir, err == nil, c.want)
		}
	}
}
