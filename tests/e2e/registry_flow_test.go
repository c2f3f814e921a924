package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// regChanges is what node A's container does: new, modified and deleted
// image files and directories, an opaque directory, a symlink, a hard
// link, an owner, a 16 MiB file.
const regChanges = `set -e
mkdir -p /new/dir/sub && echo hello > /new/dir/file
dd if=/dev/urandom of=/new/big bs=1M count=16 2>/dev/null
echo modified >> /etc/app/app.conf
rm /README && rm -rf /data/old
ln -s ../etc/app/app.conf /new/link && ln /new/dir/file /new/hl
echo o > /new/owned && chown 1234:5678 /new/owned
rm -rf /etc/app && mkdir /etc/app && echo fresh > /etc/app/fresh
sync`

// exportVia runs a container on n that makes regChanges and is exported
// to dest at removal; it returns the container's tree.
func exportVia(t *testing.T, n *node, dest string) string {
	t.Helper()
	id := n.run("run", "-d", "--network=none", "--annotation", "io.ocisnap.export="+dest, n.img, "sleep", "1000")
	n.run("exec", id, "sh", "-c", regChanges)
	want := manifest(t, n.mergedDir(id))
	n.run("stop", "-t", "0", id)
	n.run("rm", id)
	return want
}

// restoreTree starts a container on n restored from src and returns its tree.
func restoreTree(t *testing.T, n *node, src string) string {
	t.Helper()
	id := n.run("run", "-d", "--network=none", "--annotation", "io.ocisnap.restore="+src, n.img, "sleep", "1000")
	defer n.run("rm", "-f", "-t", "0", id)
	return manifest(t, n.mergedDir(id))
}

var digestRE = regexp.MustCompile(`sha256:[0-9a-f]{64}`)

// TestRegistryTwoNodes: node A exports to the registry; node B restores
// from the tag and from the digest the same tree; `ocisnap ls` lists it;
// skopeo copies it to an oci: layout and back unchanged, and B restores
// from both; skopeo inspect --raw shows the snapshot manifest.
func TestRegistryTwoNodes(t *testing.T) {
	r := startRegistry(t)
	a, b := newNode(t, r, r.AuthFile), newNode(t, r, r.AuthFile)
	ref := "docker://" + r.Host + "/snaps/app:v1"
	want := exportVia(t, a, ref)

	if got := restoreTree(t, b, ref); got != want {
		t.Fatalf("restored from the tag, node B's tree differs:\n%s", testutil.TreeDiff(want, got))
	}
	out, err := r.cli(t, "ls", "docker://"+r.Host+"/snaps/app")
	if err != nil {
		t.Fatalf("ocisnap ls: %v\n%s", err, out)
	}
	dg := digestRE.FindString(out)
	if !strings.Contains(out, "v1") || dg == "" {
		t.Fatalf("ocisnap ls shows no v1 with a digest:\n%s", out)
	}
	pinned := "docker://" + r.Host + "/snaps/app@" + dg
	if got := restoreTree(t, b, pinned); got != want {
		t.Fatalf("restored from the digest, node B's tree differs:\n%s", testutil.TreeDiff(want, got))
	}

	creds := []string{"--authfile", r.AuthFile, "--cert-dir", filepath.Join(r.CertsDir, r.Host)}
	raw := r.skopeo(t, append(append([]string{"inspect", "--raw"}, creds...), ref)...)
	for _, s := range []string{"application/vnd.ocisnap.snapshot.v1", "application/vnd.ocisnap.snapshot.config.v1+json",
		"application/vnd.ocisnap.layer.v1.tar+zstd"} {
		if !strings.Contains(raw, s) {
			t.Errorf("skopeo inspect --raw lacks %s:\n%s", s, raw)
		}
	}
	layout := filepath.Join(b.allow, "layout")
	r.skopeo(t, "copy", "--src-authfile", r.AuthFile, "--src-cert-dir", filepath.Join(r.CertsDir, r.Host),
		ref, "oci:"+layout+":copied")
	if got := restoreTree(t, b, "oci:"+layout+":copied"); got != want {
		t.Fatalf("restored from skopeo's oci: copy, node B's tree differs:\n%s", testutil.TreeDiff(want, got))
	}
	back := "docker://" + r.Host + "/snaps/back:v1"
	r.skopeo(t, "copy", "--dest-authfile", r.AuthFile, "--dest-cert-dir", filepath.Join(r.CertsDir, r.Host),
		"oci:"+layout+":copied", back)
	if got := restoreTree(t, b, back); got != want {
		t.Fatalf("restored from skopeo's copy back to the registry, node B's tree differs:\n%s", testutil.TreeDiff(want, got))
	}
	raw2 := r.skopeo(t, append(append([]string{"inspect", "--raw"}, creds...), back)...)
	if digestRE.FindString(raw2) == "" || raw2 != raw {
		t.Errorf("skopeo's round trip changed the manifest:\n%s\nvs\n%s", raw, raw2)
	}
}

// TestRegistryLayoutExportSkopeoPush: an oci: export on A, pushed by skopeo
// to the registry, restores on B.
func TestRegistryLayoutExportSkopeoPush(t *testing.T) {
	r := startRegistry(t)
	a, b := newNode(t, r, r.AuthFile), newNode(t, r, r.AuthFile)
	layout := "oci:" + filepath.Join(a.allow, "lay") + ":snap"
	want := exportVia(t, a, layout)
	ref := "docker://" + r.Host + "/snaps/fromlayout:v1"
	r.skopeo(t, "copy", "--dest-authfile", r.AuthFile, "--dest-cert-dir", filepath.Join(r.CertsDir, r.Host), layout, ref)
	if got := restoreTree(t, b, ref); got != want {
		t.Fatalf("node B's tree differs:\n%s", testutil.TreeDiff(want, got))
	}
	assertNoTemps(t, filepath.Join(a.allow, "lay", "blobs", "sha256"))
}

// TestRegistryRefusals: a repository outside --allow-registry and another
// host are refused with no request reaching the registry; wrong
// credentials fail the start saying authentication failed, without the
// secret.
func TestRegistryRefusals(t *testing.T) {
	r := startRegistry(t)
	n := newNode(t, r, r.AuthFile)
	for _, ref := range []string{
		"docker://" + r.Host + "/other/app:v1",
		"docker://" + r.Host + "/snapsx/app:v1",
		"docker://127.0.0.2:" + strings.Split(r.Host, ":")[1] + "/snaps/app:v1",
	} {
		out, err := n.runErr("run", "--rm", "--network=none", "--annotation", "io.ocisnap.restore="+ref, n.img, "true")
		if err == nil {
			t.Fatalf("restore from %s: the container started", ref)
		}
		if !strings.Contains(out, "allow-registry") {
			t.Errorf("restore from %s: the error does not name --allow-registry:\n%s", ref, out)
		}
		out, err = n.runErr("run", "--rm", "--network=none", "--annotation", "io.ocisnap.export="+ref, n.img, "true")
		if err == nil {
			t.Fatalf("export to %s: the container started", ref)
		}
	}
	for _, s := range []string{"/other/", "/snapsx/"} {
		if c := r.Requests(s); c != 0 {
			t.Errorf("%d requests for %s reached the registry:\n%s", c, s, r.Log())
		}
	}
	// An oci: layout reached through a symlink out of the allowed
	// directory is refused at start, and nothing is written outside.
	outside := t.TempDir()
	must(t, os.Symlink(outside, filepath.Join(n.allow, "out")))
	out, err := n.runErr("run", "--rm", "--network=none", "--annotation",
		"io.ocisnap.export=oci:"+filepath.Join(n.allow, "out/lay")+":v1", n.img, "true")
	if err == nil || !strings.Contains(out, "not allowed") {
		t.Errorf("export to a layout through a symlink out: %v\n%s", err, out)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("written outside the allowed directory: %v", ents)
	}
	// Wrong credentials.
	bad := newNode(t, r, r.BadAuth)
	ref := "docker://" + r.Host + "/snaps/app:v1"
	out, err = bad.runErr("run", "--rm", "--network=none", "--annotation", "io.ocisnap.restore="+ref, bad.img, "true")
	if err == nil {
		t.Fatal("restore with wrong credentials: the container started")
	}
	if !strings.Contains(out, "authentication failed") {
		t.Errorf("the error does not say authentication failed:\n%s", out)
	}
	if strings.Contains(out, regPassword) || strings.Contains(out, "wrong-") {
		t.Errorf("the error holds the secret:\n%s", out)
	}
	assertNoSecretIn(t, bad.state)
}

func assertNoSecretIn(t *testing.T, dir string) {
	t.Helper()
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), regPassword) {
				t.Errorf("%s holds the registry password", p)
			}
		}
		return nil
	})
}

// TestRegistryFaults: the registry stopped at export time: the container's
// removal succeeds, the snapshot waits in the spool, `ocisnap push
// --pending` delivers it after the restart and B restores it. A blob
// altered on the registry's disk: the restore is refused naming the
// digest.
func TestRegistryFaults(t *testing.T) {
	r := startRegistry(t)
	a, b := newNode(t, r, r.AuthFile), newNode(t, r, r.AuthFile)
	ref := "docker://" + r.Host + "/snaps/spooled:v1"
	id := a.run("run", "-d", "--network=none", "--annotation", "io.ocisnap.export="+ref, a.img, "sleep", "1000")
	a.run("exec", id, "sh", "-c", regChanges)
	want := manifest(t, a.mergedDir(id))
	r.Kill()
	a.run("stop", "-t", "0", id)
	a.run("rm", id) // succeeds: the export is spooled
	ents, err := os.ReadDir(a.spool)
	if err != nil || len(ents) != 1 {
		t.Fatalf("spool %s: %v entries, %v; want 1", a.spool, len(ents), err)
	}
	if fi, err := os.Stat(a.spool); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("spool mode: %v %v, want 0700", fi.Mode(), err)
	}
	assertNoSecretIn(t, a.spool)
	// ocisnap status lists it under the pending pushes.
	st, err := r.cli(t, "status", "--json", "--spool-dir", a.spool, "--state-dir", t.TempDir(), "--status-dir", t.TempDir())
	if err != nil || !strings.Contains(st, `"dest": "`+ref+`"`) {
		t.Fatalf("status does not list the spooled export to %s: %v\n%s", ref, err, st)
	}
	r.Start()
	out, err := r.cli(t, "push", "--pending", "--spool-dir", a.spool)
	if err != nil || !strings.Contains(out, "delivered "+ref) {
		t.Fatalf("push --pending: %v\n%s", err, out)
	}
	if ents, _ := os.ReadDir(a.spool); len(ents) != 0 {
		t.Errorf("spool still holds %d entries after delivery", len(ents))
	}
	if got := restoreTree(t, b, ref); got != want {
		t.Fatalf("node B's tree differs:\n%s", testutil.TreeDiff(want, got))
	}

	// Alter the layer blob on the registry's disk.
	raw := r.skopeo(t, "inspect", "--raw", "--authfile", r.AuthFile, "--cert-dir", filepath.Join(r.CertsDir, r.Host), ref)
	all := digestRE.FindAllString(raw, -1)
	layerDigest := all[len(all)-1] // config first, then the layer
	blob := r.BlobPath(layerDigest)
	data, err := os.ReadFile(blob)
	must(t, err)
	data[len(data)/2] ^= 0xff
	must(t, os.WriteFile(blob, data, 0o644))
	out, err = b.runErr("run", "--rm", "--network=none", "--annotation", "io.ocisnap.restore="+ref, b.img, "true")
	if err == nil {
		t.Fatal("restore of an altered blob: the container started")
	}
	if !strings.Contains(out, layerDigest) {
		t.Errorf("the error does not name the digest %s:\n%s", layerDigest, out)
	}
}

// TestRegistryCLI: ocisnap push, pull and ls against the registry.
func TestRegistryCLI(t *testing.T) {
	r := startRegistry(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	must(t, os.MkdirAll(filepath.Join(src, "d"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "d", "f"), []byte("cli\n"), 0o644))
	snap := filepath.Join(dir, "snap.tar")
	if out, err := r.cli(t, "convert", "--to", "overlay", "--compression", "zstd", mustTar(t, src, dir), snap); err != nil {
		t.Fatalf("convert: %v\n%s", err, out)
	}
	ref := "docker://" + r.Host + "/snaps/cli:t1"
	if out, err := r.cli(t, "push", snap, ref); err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	out, err := r.cli(t, "ls", "docker://"+r.Host+"/snaps/cli")
	if err != nil || !strings.Contains(out, "t1") || digestRE.FindString(out) == "" {
		t.Fatalf("ls: %v\n%s", err, out)
	}
	pulled := filepath.Join(dir, "pulled.tar.zst")
	if out, err := r.cli(t, "pull", ref, "-o", pulled); err != nil {
		t.Fatalf("pull: %v\n%s", err, out)
	}
	a, _ := os.ReadFile(snap)
	b, _ := os.ReadFile(pulled)
	if string(a) != string(b) || len(a) == 0 {
		t.Errorf("pulled %d bytes differ from the %d pushed", len(b), len(a))
	}
	target := filepath.Join(dir, "target")
	must(t, os.Mkdir(target, 0o755))
	if out, err := r.cli(t, "apply", ref, target); err != nil {
		t.Fatalf("apply %s: %v\n%s", ref, err, out)
	}
	if got, _ := os.ReadFile(filepath.Join(target, "d", "f")); string(got) != "cli\n" {
		t.Errorf("applied d/f = %q", got)
	}
	// convert writes straight to a registry (zstd by default there), and
	// diff reads from it.
	conv := "docker://" + r.Host + "/snaps/cli:oci"
	if out, err := r.cli(t, "convert", "--to", "oci", snap, conv); err != nil {
		t.Fatalf("convert to %s: %v\n%s", conv, err, out)
	}
	raw := r.skopeo(t, "inspect", "--raw", "--authfile", r.AuthFile, "--cert-dir", filepath.Join(r.CertsDir, r.Host), conv)
	if !strings.Contains(raw, "application/vnd.oci.image.layer.v1.tar+zstd") {
		t.Errorf("converted snapshot's manifest:\n%s", raw)
	}
	if out, err := r.cli(t, "diff", conv); err != nil || !strings.Contains(out, "d/f") {
		t.Errorf("diff %s: %v\n%s", conv, err, out)
	}
	// A failed push is the operator's error, never spooled.
	if out, err := r.cli(t, "push", snap, "docker://127.0.0.1:1/snaps/x:v1"); err == nil || strings.Contains(out, "spool") {
		t.Errorf("push to a closed port: %v\n%s", err, out)
	}
}

// mustTar writes a plain tar of dir's contents (rooted at ./) into out's
// directory and returns its path.
func mustTar(t *testing.T, dir, outDir string) string {
	t.Helper()
	p := filepath.Join(outDir, "in.tar")
	if out, err := exec.Command("tar", "-C", dir, "--numeric-owner", "-cf", p, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	return p
}
