package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// pollUntil polls cond every 20 ms until it holds or d passes.
func pollUntil(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

// uploading reports whether the registry holds a partial upload of repo.
func (r *testRegistry) uploading(repo string) bool {
	found := false
	filepath.Walk(filepath.Join(r.Storage, "docker/registry/v2/repositories", repo, "_uploads"),
		func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() && fi.Name() == "data" && fi.Size() > 0 {
				found = true
			}
			return nil
		})
	return found
}

// TestRegistryKilledMidPush: the registry is killed while a 512 MiB
// snapshot is being pushed over an older one: the container's removal
// succeeds, the tag still points at the older, whole snapshot, and the
// spool delivers the new one once the registry is back.
func TestRegistryKilledMidPush(t *testing.T) {
	r := startRegistry(t)
	a, b := newNode(t, r, r.AuthFile), newNode(t, r, r.AuthFile)
	ref := "docker://" + r.Host + "/snaps/big:v1"
	old := exportVia(t, a, ref)

	id := a.run("run", "-d", "--network=none", "--annotation", "io.ocisnap.export="+ref,
		"--annotation", "io.ocisnap.export-compression=none", a.img, "sleep", "1000")
	a.run("exec", id, "sh", "-c", "dd if=/dev/urandom of=/big bs=1M count=512 2>/dev/null && echo new > /marker && sync")
	want := manifest(t, a.mergedDir(id))
	// Podman runs the poststop hook (the export) when the container
	// stops.
	var wg sync.WaitGroup
	var rmErr error
	var rmOut string
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		if rmOut, rmErr = a.runErr("stop", "-t", "0", id); rmErr == nil {
			rmOut, rmErr = a.runErr("rm", id)
		}
	}()
	seen := pollUntil(2*time.Minute, func() bool {
		select {
		case <-done:
			return true
		default:
		}
		return r.uploading("snaps/big")
	})
	if !seen || !r.uploading("snaps/big") {
		wg.Wait()
		t.Fatalf("no upload seen in the registry's storage (stop/rm: %v %s)", rmErr, rmOut)
	}
	r.Kill()
	wg.Wait()
	if rmErr != nil {
		t.Fatalf("stopping and removing the container with the registry killed mid-push: %v\n%s", rmErr, rmOut)
	}
	r.Start()
	if got := restoreTree(t, b, ref); got != old {
		t.Fatalf("after the killed push the tag does not point at the older snapshot:\n%s", testutil.TreeDiff(old, got))
	}
	out, err := r.cli(t, "push", "--pending", "--spool-dir", a.spool)
	if err != nil || !strings.Contains(out, "delivered "+ref) {
		t.Fatalf("push --pending: %v\n%s", err, out)
	}
	if got := restoreTree(t, b, ref); got != want {
		t.Fatalf("after delivery node B's tree differs:\n%s", testutil.TreeDiff(want, got))
	}
}

// TestRegistryKilledMidPull: the registry is killed while node B pulls a
// large snapshot: the start fails cleanly, leaving no state record.
func TestRegistryKilledMidPull(t *testing.T) {
	r := startRegistry(t)
	a, b := newNode(t, r, r.AuthFile), newNode(t, r, r.AuthFile)
	ref := "docker://" + r.Host + "/snaps/pull:v1"
	id := a.run("run", "-d", "--network=none", "--annotation", "io.ocisnap.export="+ref,
		"--annotation", "io.ocisnap.export-compression=none", a.img, "sleep", "1000")
	a.run("exec", id, "sh", "-c", "dd if=/dev/urandom of=/big bs=1M count=512 2>/dev/null && sync")
	a.run("rm", "-f", "-t", "0", id)

	var wg sync.WaitGroup
	var out string
	var err error
	wg.Add(1)
	go func() {
		defer wg.Done()
		out, err = b.runErr("run", "--rm", "--network=none", "--annotation", "io.ocisnap.restore="+ref, b.img, "true")
	}()
	// The layer is streaming once its big file appears in the new
	// container's upper directory.
	if !pollUntil(time.Minute, func() bool {
		m, _ := filepath.Glob(filepath.Join(b.dir, "storage/overlay/*/diff/big"))
		return len(m) > 0
	}) {
		wg.Wait()
		t.Fatalf("the pull never fetched the manifest: %v\n%s\n%s", err, out, r.Log())
	}
	r.Kill()
	wg.Wait()
	if err == nil {
		t.Fatal("the container started although the registry was killed during the pull")
	}
	if !strings.Contains(out, ref) {
		t.Errorf("the error does not name the location:\n%s", out)
	}
	if ents, _ := os.ReadDir(b.state); len(ents) != 0 {
		t.Errorf("state left behind: %v", ents)
	}
}

// TestRegistryConcurrentExports: two containers exporting to one tag at
// once leave one complete snapshot: the tag restores one of the two trees.
func TestRegistryConcurrentExports(t *testing.T) {
	r := startRegistry(t)
	a, b := newNode(t, r, r.AuthFile), newNode(t, r, r.AuthFile)
	ref := "docker://" + r.Host + "/snaps/race:v1"
	var ids []string
	trees := map[string]bool{}
	for i, n := range []string{"8", "24"} {
		id := a.run("run", "-d", "--network=none", "--annotation", "io.ocisnap.export="+ref, a.img, "sleep", "1000")
		a.run("exec", id, "sh", "-c", "dd if=/dev/urandom of=/f bs=1M count="+n+" 2>/dev/null && echo "+n+" > /which && sync")
		trees[manifest(t, a.mergedDir(id))] = true
		a.run("stop", "-t", "0", id)
		ids = append(ids, id)
		_ = i
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() { defer wg.Done(); a.run("rm", id) }()
	}
	wg.Wait()
	if got := restoreTree(t, b, ref); !trees[got] {
		t.Fatalf("the tag restores neither container's tree:\n%s", got)
	}
	if ents, _ := os.ReadDir(a.spool); len(ents) != 0 {
		t.Errorf("spool holds %d entries after two delivered exports", len(ents))
	}
}

// TestRegistryTimeout: a registry that accepts connections and then hangs
// is bounded by --registry-timeout: a restore fails the start in time; an
// export's push gives up in time, the removal succeeds and the snapshot
// waits in the spool, delivered once the registry answers again.
func TestRegistryTimeout(t *testing.T) {
	r := startRegistry(t)
	a := newNode(t, r, r.AuthFile, "--registry-timeout", "4s")
	ref := "docker://" + r.Host + "/snaps/slow:v1"
	id := a.run("run", "-d", "--network=none", "--annotation", "io.ocisnap.export="+ref, a.img, "sleep", "1000")
	a.run("exec", id, "sh", "-c", "echo slow > /slow")
	want := manifest(t, a.mergedDir(id))
	r.Pause()
	start := time.Now()
	a.run("stop", "-t", "0", id)
	a.run("rm", id)
	if d := time.Since(start); d > 40*time.Second {
		t.Errorf("stop and rm took %v with a 4s --registry-timeout", d)
	}
	if ents, _ := os.ReadDir(a.spool); len(ents) != 1 {
		t.Fatalf("spool holds %d entries, want 1", len(ents))
	}
	start = time.Now()
	out, err := a.runErr("run", "--rm", "--network=none", "--annotation", "io.ocisnap.restore="+ref, a.img, "true")
	if err == nil {
		t.Fatal("restore from a hanging registry: the container started")
	}
	if d := time.Since(start); d > 40*time.Second {
		t.Errorf("the failed start took %v with a 4s --registry-timeout:\n%s", d, out)
	}
	if !strings.Contains(out, "registry-timeout") && !strings.Contains(out, "deadline") {
		t.Errorf("the error does not say the time ran out:\n%s", out)
	}
	r.Resume()
	if out, err := r.cli(t, "push", "--pending", "--spool-dir", a.spool); err != nil || !strings.Contains(out, "delivered "+ref) {
		t.Fatalf("push --pending: %v\n%s", err, out)
	}
	if got := restoreTree(t, a, ref); got != want {
		t.Fatalf("restored tree differs:\n%s", testutil.TreeDiff(want, got))
	}
}
