package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/pkg/layer"
	"github.com/ocisnap/ocisnap/pkg/location"
	"github.com/ocisnap/ocisnap/pkg/policy"
)

// snapshotEntries lists the entry names of a plain snapshot file.
func snapshotEntries(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	rd, err := layer.NewReader(f)
	must(t, err)
	var names []string
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		must(t, err)
		names = append(names, "./"+e.Path)
	}
}

// TestPodmanExportLeavesOutRuntimeStubs (issue 14 item 6): a container
// that only wrote /x exports only ./x, not the ./etc/, ./etc/mtab and ./run/
// podman made in its upper; like `podman diff`.
func TestPodmanExportLeavesOutRuntimeStubs(t *testing.T) {
	p := newPodman(t, hooksDir)
	img := p.testImage()
	snap := filepath.Join(snapshotDir(t), "x.tar")
	id := p.run("run", "-d", "--network=none", "--annotation", "io.ocisnap.export="+snap, img, "sleep", "1000")
	p.run("exec", id, "sh", "-c", "echo x > /x")
	diff := p.run("diff", id)
	upper := testutil.DescribeTree(t, p.upperDir(id), testutil.WithoutCtime(), testutil.WithoutTimes())
	p.run("rm", "-f", "-t", "0", id)
	got := snapshotEntries(t, snap)
	if strings.Join(got, " ") != "./ ./x" {
		t.Fatalf("export holds %q, want only ./ and ./x (podman diff: %q; the upper held:\n%s)", got, diff, upper)
	}
}

// openChain opens the snapshot at an oci: ref.
func openChain(t *testing.T, ref, allow string) *location.Snapshot {
	t.Helper()
	src, err := location.ParseSource(ref, &policy.Policy{AllowDirs: []string{allow}})
	must(t, err)
	snap, err := src.Open(context.Background())
	must(t, err)
	t.Cleanup(func() { snap.Close() })
	return snap
}

// persistCycle runs one container with io.ocisnap.persist=ref, checks that
// it starts with the tree want (unless want is ""), runs script in it and
// returns the tree at its stop.
func persistCycle(t *testing.T, p *podman, img, ref, want, script string, beforeStop func(id string)) string {
	t.Helper()
	id := p.run("run", "-d", "--network=none", "--annotation", "io.ocisnap.persist="+ref, img, "sleep", "1000")
	merged := p.mergedDir(id)
	if want != "" {
		if got := manifest(t, merged); got != want {
			p.run("rm", "-f", "-t", "0", id)
			t.Fatalf("restored tree differs from the tree at the last stop:\n%s", testutil.TreeDiff(want, got))
		}
	}
	p.run("exec", id, "sh", "-c", script)
	tree := manifest(t, merged)
	if beforeStop != nil {
		beforeStop(id)
	}
	p.run("stop", "-t", "0", id)
	p.run("rm", id)
	return tree
}

const base5k = `set -e
mkdir -p /data/a /data/b
i=0; while [ $i -lt 2500 ]; do echo "file $i" > /data/a/f$i; echo "file $i" > /data/b/f$i; i=$((i+1)); done
sync`

// TestPodmanPersistChain: io.ocisnap.persist on an oci: layout. The first
// start starts empty; a base of 5,000 files is one layer; each later stop
// adds one small layer of only its changes; past --max-layers the export is
// one whole layer again; `ocisnap squash` gives one layer with the same
// tree, also as a plain tar; and with the container's record lost before
// its stop, the export is a correct whole layer.
func TestPodmanPersistChain(t *testing.T) {
	state := t.TempDir()
	const maxLayers = 4
	hooks := writeHooksDir(t, filepath.Join(t.TempDir(), "hooks.d"), hookBin, 0,
		"--state-dir", state, "--max-layers", fmt.Sprint(maxLayers))
	p := newPodman(t, hooks)
	img := p.testImage()
	dir := snapshotDir(t)
	layout := filepath.Join(dir, "layout")
	ref := "oci:" + layout + ":app"

	want := persistCycle(t, p, img, ref, "", base5k, nil)
	snap := openChain(t, ref, dir)
	if len(snap.Layers) != 1 {
		t.Fatalf("base: %d layers, want 1", len(snap.Layers))
	}
	full := snap.Layers[0].Desc.Size
	fullEntries := snap.Config.Layers[0].Entries
	if fullEntries < 5000 {
		t.Fatalf("base layer has %d entries, want 5,000 and more", fullEntries)
	}
	changes := []string{
		"echo changed >> /data/a/f1",
		"rm /data/b/f2 && mkdir /data/c && echo new > /data/c/n",
		"rm -rf /data/c && chmod 600 /data/a/f3",
		"mv /data/a/f4 /data/a/moved && ln /data/a/f5 /data/a/link5",
		"echo again >> /data/a/f1 && rm -rf /etc/app && mkdir /etc/app && echo fresh > /etc/app/fresh",
		"echo more > /data/b/f7",
	}
	layers := 1
	for i, script := range changes {
		want = persistCycle(t, p, img, ref, want, script+" && sync", nil)
		snap = openChain(t, ref, dir)
		layers++
		if layers > maxLayers {
			layers = 1
		}
		if len(snap.Layers) != layers {
			t.Fatalf("cycle %d: %d layers, want %d", i, len(snap.Layers), layers)
		}
		last := len(snap.Layers) - 1
		size, entries := snap.Layers[last].Desc.Size, snap.Config.Layers[last].Entries
		t.Logf("cycle %d: %d layers, last %d bytes, %d entries (base %d bytes)", i, len(snap.Layers), size, entries, full)
		if layers > 1 && (size > full/20 || entries > 20) {
			t.Errorf("cycle %d: delta layer of %d bytes and %d entries for %q (base %d bytes)", i, size, entries, script, full)
		}
		if layers == 1 && entries < 5000 {
			t.Errorf("cycle %d: the layer past --max-layers has %d entries, want the whole state", i, entries)
		}
	}
	// A chain of more than one layer to squash.
	want = persistCycle(t, p, img, ref, want, "echo sq > /data/sq && sync", nil)
	if n := len(openChain(t, ref, dir).Layers); n < 2 {
		t.Fatalf("%d layers before the squash", n)
	}
	flat := filepath.Join(dir, "flat.tar")
	if out, err := exec.Command(cliBin, "squash", ref, "-o", flat).CombinedOutput(); err != nil {
		t.Fatalf("ocisnap squash -o: %v\n%s", err, out)
	}
	id := p.run("run", "-d", "--network=none", "--annotation", "io.ocisnap.restore="+flat, img, "sleep", "1000")
	got := manifest(t, p.mergedDir(id))
	p.run("rm", "-f", "-t", "0", id)
	if got != want {
		t.Fatalf("squashed plain tar restores another tree:\n%s", testutil.TreeDiff(want, got))
	}
	if out, err := exec.Command(cliBin, "squash", ref).CombinedOutput(); err != nil {
		t.Fatalf("ocisnap squash: %v\n%s", err, out)
	}
	if n := len(openChain(t, ref, dir).Layers); n != 1 {
		t.Fatalf("%d layers after the squash", n)
	}
	// The squashed location is persisted on like any other.
	want = persistCycle(t, p, img, ref, want, "echo after > /data/after && sync", nil)

	// State lost between restore and stop: a whole layer, still right.
	want = persistCycle(t, p, img, ref, want, "echo lost > /data/lost && sync", func(id string) {
		must(t, os.Remove(filepath.Join(state, id+".upper")))
	})
	snap = openChain(t, ref, dir)
	if n := len(snap.Layers); n != 1 || snap.Config.Layers[0].Entries < 5000 {
		t.Fatalf("after the record was lost: %d layers (want 1 whole layer)", n)
	}
	persistCycle(t, p, img, ref, want, "true", nil)
}

// TestRegistryPersistChain: io.ocisnap.persist through a registry: each
// stop pushes only its new layer (and config, manifest), the earlier
// layers referenced, and a second node restores the chain.
func TestRegistryPersistChain(t *testing.T) {
	r := startRegistry(t)
	a := newNode(t, r, r.AuthFile, "--max-layers", "8")
	ref := "docker://" + r.Host + "/snaps/persist:v1"
	want := persistCycle(t, a.podman, a.img, ref, "", base5k, nil)
	for i, script := range []string{"echo c >> /data/a/f1", "rm /data/b/f2", "mkdir /data/n && echo n > /data/n/x"} {
		const upload = `"POST /v2/snaps/persist/blobs/uploads/`
		before := r.Requests(upload)
		want = persistCycle(t, a.podman, a.img, ref, want, script+" && sync", nil)
		// One upload for the new layer, one for the config: none for the
		// earlier layers, which the registry holds.
		if n := r.Requests(upload) - before; n != 2 {
			t.Errorf("cycle %d: %d blob uploads for one small layer, want 2 (layer and config)", i, n)
		}
	}
	raw := r.skopeo(t, "inspect", "--raw", "--authfile", r.AuthFile, "--cert-dir", filepath.Join(r.CertsDir, r.Host), ref)
	if n := strings.Count(raw, "application/vnd.ocisnap.layer.v1.tar+zstd"); n != 4 {
		t.Fatalf("manifest has %d layers, want 4:\n%s", n, raw)
	}
	b := newNode(t, r, r.AuthFile)
	if got := restoreTree(t, b, ref); got != want {
		t.Fatalf("node B restores another tree from the chain:\n%s", testutil.TreeDiff(want, got))
	}
}

// TestPodmanPersistBrokenFailsStart: only "nothing there" starts empty; a
// location holding something that is not a snapshot still fails the
// start, naming the annotation.
func TestPodmanPersistBrokenFailsStart(t *testing.T) {
	p := newPodman(t, hooksDir)
	img := p.testImage()
	dir := snapshotDir(t)
	broken := filepath.Join(dir, "broken.tar")
	must(t, os.WriteFile(broken, []byte("not a tar at all, and long enough to be read as one: "+strings.Repeat("x", 1024)), 0o600))
	out, err := p.runErr("run", "--rm", "--network=none", "--annotation", "io.ocisnap.persist="+broken, img, "true")
	if err == nil || !strings.Contains(out, "io.ocisnap.persist") {
		t.Fatalf("a persist location holding garbage: err %v, output %q; want a failed start naming io.ocisnap.persist", err, out)
	}
	// Nothing there: starts empty, and the stop writes the snapshot.
	fresh := filepath.Join(dir, "fresh.tar")
	p.run("run", "--rm", "--network=none", "--annotation", "io.ocisnap.persist="+fresh, img, "sh", "-c", "echo 1 > /n")
	if got := strings.Join(snapshotEntries(t, fresh), " "); got != "./ ./n" {
		t.Fatalf("first persist to a file wrote %q, want ./ ./n", got)
	}
}
