package e2e

// Hardening (issue 7): overlays whose upper is not self-contained
// (metacopy, redirect_dir), snapshot integrity at hook level, concurrent
// exports, and faults (full disks, a hook killed mid-export, state lost to
// a reboot). Plain runc bundles on overlays the tests mount themselves, with
// the hooks from hooks.d files (CRI-O's way) or written into config.json.

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/pkg/layer"
)

// writeHooksDir writes an ocisnap hooks.d file into a new directory: the
// shipped oci-hooks.d/ocisnap.json (its "when" and stages) with the hook
// binary at path, the admin's args, and a timeout (seconds) if not 0. It
// returns the directory.
func writeHooksDir(t testing.TB, dir, path string, timeout int, args ...string) string {
	t.Helper()
	data, err := os.ReadFile("../../oci-hooks.d/ocisnap.json")
	must(t, err)
	var conf map[string]any
	must(t, json.Unmarshal(data, &conf))
	hook := map[string]any{"path": path, "args": append([]string{"ocisnap-hook"}, args...)}
	if timeout > 0 {
		hook["timeout"] = timeout
	}
	conf["hook"] = hook
	must(t, os.MkdirAll(dir, 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "ocisnap.json"), jsonMarshal(t, conf), 0o644))
	return dir
}

// mountTmpfs mounts a tmpfs of the given size on a new directory and
// unmounts it at cleanup (after everything registered later).
func mountTmpfs(t testing.TB, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		testutil.SkipOrFail(t, "mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// remount mounts the bundle's overlay again with its upper and work
// directories in dir (when not "") and extra overlay options.
func (b *bundle) remount(dir, extra string) {
	b.t.Helper()
	b.unmount()
	work := filepath.Join(b.dir, "work")
	if dir != "" {
		b.upper, work = filepath.Join(dir, "upper"), filepath.Join(dir, "work")
		must(b.t, os.MkdirAll(b.upper, 0o755))
		must(b.t, os.MkdirAll(work, 0o755))
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", b.lower, b.upper, work)
	if extra != "" {
		opts += "," + extra
	}
	if out, err := exec.Command("mount", "-t", "overlay", "overlay", "-o", opts, b.rootfs).CombinedOutput(); err != nil {
		b.t.Fatalf("mount overlay -o %s: %v\n%s", opts, err, out)
	}
	b.mounted = true
	// Unmount the rootfs before whatever its upper lives on (cleanups run
	// last registered first).
	b.t.Cleanup(b.unmount)
}

// createStart creates and starts the container (createRuntime hooks run)
// and waits until its process has exited.
func (b *bundle) createStart(cmd ...string) error {
	b.spec.Process.Args = cmd
	b.writeSpec()
	if out, err := b.runc("create", "--bundle", b.dir, b.id); err != nil {
		return fmt.Errorf("runc create: %v\n%s", err, out)
	}
	if out, err := b.runc("start", b.id); err != nil {
		return fmt.Errorf("runc start: %v\n%s", err, out)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		out, err := b.runc("state", b.id)
		if err == nil && strings.Contains(out, `"status": "stopped"`) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("container %s did not stop", b.id)
}

func sha256File(t testing.TB, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	must(t, err)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func randomBytes(t testing.TB, n int) string {
	b := make([]byte, n)
	_, err := rand.Read(b)
	must(t, err)
	return string(b)
}

// tempsIn lists the ocisnap temporary files in dir.
func tempsIn(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	var out []string
	for _, e := range ents {
		if strings.Contains(e.Name(), ".ocisnap-tmp-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestMetacopyRedirect: an overlay mounted with metacopy=on and
// redirect_dir=on, where the container renames a lower directory (the
// upper holds a redirect) and chmods/chowns a 32 MiB lower file (the upper
// holds metadata only). The export restores to the same tree as the merged
// view, whether the rootfs is unmounted before poststop (CRI-O) or not
// (Podman).
func TestMetacopyRedirect(t *testing.T) {
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	must(t, os.WriteFile(filepath.Join(img, "data/big.bin"), []byte(randomBytes(t, 32<<20)), 0o644))
	const script = `set -e
mv /data/old /data/renamed
echo new > /data/renamed/new && rm /data/renamed/f2 && mv /data/renamed/sub /data/renamed/sub-moved
chmod 600 /data/big.bin && chown 1234:5678 /data/big.bin
touch -d '2002-03-04 05:06:07' /boot/vmlinuz`
	for _, crio := range []bool{true, false} {
		name := "podman-order"
		if crio {
			name = "crio-unmounted"
		}
		t.Run(name, func(t *testing.T) {
			snap := filepath.Join(snapshotDir(t), "meta.tar")
			b := newBundle(t, img)
			b.remount("", "metacopy=on,redirect_dir=on")
			b.spec.Annotations["io.ocisnap.export"] = snap
			crioHooks(t, b, hooksDir)
			if err := b.createStart("sh", "-c", script); err != nil {
				t.Fatal(err)
			}
			// The upper really is not self-contained.
			for p, x := range map[string]string{"data/big.bin": "trusted.overlay.metacopy", "data/renamed": "trusted.overlay.redirect"} {
				if _, err := unix.Lgetxattr(filepath.Join(b.upper, p), x, nil); err != nil {
					t.Fatalf("upper %s has no %s (%v): the overlay did not use metacopy/redirect_dir", p, x, err)
				}
			}
			if fi, err := os.Stat(filepath.Join(b.upper, "data/big.bin")); err != nil || blocks(fi) > 64 {
				t.Fatalf("upper data/big.bin holds data (%v blocks, %v): not a metacopy file", blocks(fi), err)
			}
			want := manifest(t, b.rootfs)
			if crio {
				b.unmount()
			}
			if out, err := b.runc("delete", b.id); err != nil {
				t.Fatalf("runc delete: %v\n%s", err, out)
			}
			b.unmount()

			hs := readTarHeaders(t, snap)
			if h := hs["./data/big.bin"]; h == nil || h.Size != 32<<20 || h.Uid != 1234 || h.Mode&0o777 != 0o600 {
				t.Errorf("./data/big.bin exported as %+v, want the full 32 MiB, 1234, 0600", h)
			}
			if h := hs["./data/renamed/"]; h == nil || h.PAXRecords["SCHILY.xattr.trusted.overlay.opaque"] != "y" {
				t.Errorf("redirected ./data/renamed/ not exported as an opaque directory: %+v", h)
			}
			for _, n := range []string{"./data/renamed/f1", "./data/renamed/sub-moved/f3", "./data/renamed/new"} {
				if hs[n] == nil {
					t.Errorf("%s (merged content of the redirected directory) missing", n)
				}
			}
			if h := hs["./data/old"]; h == nil || h.Typeflag != tar.TypeChar {
				t.Errorf("the origin ./data/old is not whited out: %+v", h)
			}
			for n, h := range hs {
				for k := range h.PAXRecords {
					if strings.Contains(k, "overlay.redirect") || strings.Contains(k, "overlay.metacopy") || strings.Contains(k, "overlay.origin") {
						t.Errorf("%s: overlay bookkeeping exported: %s", n, k)
					}
				}
			}

			b2 := newBundle(t, img)
			b2.spec.Annotations["io.ocisnap.restore"] = snap
			crioHooks(t, b2, hooksDir)
			if out, err := b2.runToCompletion("true"); err != nil {
				t.Fatalf("restore: %v\n%s", err, out)
			}
			if got := manifest(t, b2.rootfs); got != want {
				t.Fatalf("restored tree differs from the merged view:\n%s", testutil.TreeDiff(want, got))
			}
		})
	}
}

func blocks(fi os.FileInfo) int64 {
	if fi == nil {
		return -1
	}
	return fi.Sys().(*syscall.Stat_t).Blocks
}

// TestIntegrityAtHook: a snapshot cut at an entry boundary (every entry
// whole, no end-of-archive blocks), one with garbage after the end, and
// gzip/zstd streams with a bad checksum each fail the container's start
// with an error naming the cause; the container's process never runs.
func TestIntegrityAtHook(t *testing.T) {
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	dir := snapshotDir(t)
	ents := []testutil.Node{
		testutil.Dir("./"),
		testutil.File("./a", "a"),
		testutil.Whiteout("./README"),
		testutil.File("./b", strings.Repeat("b", 5000)),
	}
	good := filepath.Join(dir, "good.tar")
	writeTar(t, good, ents, false)
	goodBytes, err := os.ReadFile(good)
	must(t, err)
	compressed := func(c layer.Compression) []byte {
		var buf bytes.Buffer
		w, err := layer.Compress(&buf, c)
		must(t, err)
		_, err = w.Write(goodBytes)
		must(t, err)
		must(t, w.Close())
		return buf.Bytes()
	}
	gz := compressed(layer.CompressionGzip)
	gz[len(gz)-8] ^= 0x55 // CRC32 (RFC 1952 2.3.1)
	zs := compressed(layer.CompressionZstd)
	zs[len(zs)-1] ^= 0x55 // content checksum (RFC 8878 3.1.1)

	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"truncated-at-entry-boundary", goodBytes[:len(goodBytes)-1024], "truncated"},
		{"trailing-garbage", append(append([]byte{}, goodBytes...), "not zeros"...), "data after end of archive"},
		{"gzip-bad-crc", gz, "gzip: invalid checksum"},
		{"zstd-bad-checksum", zs, "CRC check failed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			snap := filepath.Join(dir, c.name)
			must(t, os.WriteFile(snap, c.data, 0o600))
			b := newBundle(t, img)
			b.spec.Annotations["io.ocisnap.restore"] = snap
			crioHooks(t, b, hooksDir)
			out, err := b.runToCompletion("sh", "-c", "echo started > /started")
			if err == nil {
				t.Fatalf("container started from a broken snapshot:\n%s", out)
			}
			for _, w := range []string{c.want, b.id, "io.ocisnap.restore", snap} {
				if !strings.Contains(out, w) {
					t.Errorf("error does not say %q:\n%s", w, out)
				}
			}
			if _, err := os.Stat(filepath.Join(b.rootfs, "started")); err == nil {
				t.Errorf("the container's process ran")
			}
		})
	}
	// The same stream, whole, restores (the cases above fail for the cut
	// or the corruption only).
	b := newBundle(t, img)
	b.spec.Annotations["io.ocisnap.restore"] = good
	crioHooks(t, b, hooksDir)
	if out, err := b.runToCompletion("test", "-f", "/a", "-a", "!", "-e", "/README"); err != nil {
		t.Fatalf("intact snapshot: %v\n%s", err, out)
	}
}

// TestConcurrentExportSamePath: two containers exporting to the same path
// at the same time leave one complete snapshot, equal to one of the two,
// and no temporary file.
func TestConcurrentExportSamePath(t *testing.T) {
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	dir := snapshotDir(t)
	snap := filepath.Join(dir, "shared.tar")
	for round := 0; round < 2; round++ {
		var bs [2]*bundle
		var wants [2]string
		for i := range bs {
			b := newBundle(t, img)
			b.spec.Annotations["io.ocisnap.export"] = snap
			crioHooks(t, b, hooksDir)
			script := fmt.Sprintf("dd if=/dev/urandom of=/c%d.bin bs=1M count=48 2>/dev/null && echo %d > /who && rm /README && mkdir -p /d%d/e && sync", i, i, i)
			if err := b.createStart("sh", "-c", script); err != nil {
				t.Fatal(err)
			}
			wants[i] = manifest(t, b.rootfs)
			b.unmount()
			bs[i] = b
		}
		var wg sync.WaitGroup
		for _, b := range bs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if out, err := b.runc("delete", b.id); err != nil {
					t.Errorf("runc delete %s: %v\n%s", b.id, err, out)
				}
			}()
		}
		wg.Wait()
		if tmps := tempsIn(t, dir); len(tmps) != 0 {
			t.Errorf("temporary files left: %v", tmps)
		}
		r := newBundle(t, img)
		r.spec.Annotations["io.ocisnap.restore"] = snap
		crioHooks(t, r, hooksDir)
		if out, err := r.runToCompletion("true"); err != nil {
			t.Fatalf("round %d: the snapshot does not restore: %v\n%s", round, err, out)
		}
		got := manifest(t, r.rootfs)
		if got != wants[0] && got != wants[1] {
			t.Fatalf("round %d: the snapshot is neither container's:\nvs 0:\n%s\nvs 1:\n%s", round, testutil.TreeDiff(wants[0], got), testutil.TreeDiff(wants[1], got))
		}
	}
}

// TestFiftyConcurrentExports: fifty containers exporting to distinct paths
// (in one directory) at the same time all succeed, each with its own
// content.
func TestFiftyConcurrentExports(t *testing.T) {
	testutil.RequireRoot(t)
	const n = 50
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	dir := snapshotDir(t)
	bs := make([]*bundle, n)
	for i := range bs {
		bs[i] = newBundle(t, img)
		bs[i].spec.Annotations["io.ocisnap.export"] = filepath.Join(dir, fmt.Sprintf("c%02d.tar.zst", i))
		bs[i].spec.Annotations["io.ocisnap.export-compression"] = "zstd"
		crioHooks(t, bs[i], hooksDir)
	}
	parallel := func(what string, limit int, fn func(i int, b *bundle) error) {
		t.Helper()
		var wg sync.WaitGroup
		sem := make(chan struct{}, limit)
		for i, b := range bs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				if err := fn(i, b); err != nil {
					t.Errorf("%s %s: %v", what, b.id, err)
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
	}
	parallel("run", 8, func(i int, b *bundle) error {
		return b.createStart("sh", "-c", fmt.Sprintf("echo %d > /id && dd if=/dev/urandom of=/r bs=64k count=16 2>/dev/null", i))
	})
	// All fifty poststop exports at once.
	parallel("delete", n, func(i int, b *bundle) error {
		if out, err := b.runc("delete", b.id); err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		return nil
	})
	for i := range bs {
		snap := filepath.Join(dir, fmt.Sprintf("c%02d.tar.zst", i))
		f, err := os.Open(snap)
		if err != nil {
			t.Errorf("container %d: %v", i, err)
			continue
		}
		rd, err := layer.NewReader(f)
		must(t, err)
		id := ""
		for {
			e, err := rd.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Errorf("%s: %v", snap, err)
				}
				break
			}
			if e.Path == "id" {
				var buf bytes.Buffer
				buf.ReadFrom(rd)
				id = strings.TrimSpace(buf.String())
			}
		}
		rd.Close()
		f.Close()
		if id != fmt.Sprint(i) {
			t.Errorf("%s holds /id %q, want %d", snap, id, i)
		}
	}
	if tmps := tempsIn(t, dir); len(tmps) != 0 {
		t.Errorf("temporary files left: %v", tmps)
	}
}

// TestENOSPCRestore: a restore that fills the container's upper (an 8 MiB
// tmpfs, a 32 MiB file in the snapshot) fails the start with an error
// naming the entry and the cause, and the snapshot file is untouched.
func TestENOSPCRestore(t *testing.T) {
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	snap := filepath.Join(snapshotDir(t), "big.tar")
	writeTar(t, snap, []testutil.Node{
		testutil.Dir("./"),
		testutil.File("./small", "s"),
		testutil.File("./big", randomBytes(t, 32<<20)),
		testutil.File("./after", "a"),
	}, false)
	before := sha256File(t, snap)
	fi, err := os.Stat(snap)
	must(t, err)

	b := newBundle(t, img)
	b.remount(mountTmpfs(t, "8m"), "")
	b.spec.Annotations["io.ocisnap.restore"] = snap
	crioHooks(t, b, hooksDir)
	out, err := b.runToCompletion("sh", "-c", "echo started > /started")
	if err == nil {
		t.Fatalf("container started although its restore could not fit:\n%s", out)
	}
	for _, w := range []string{"no space left on device", "./big", b.id, "io.ocisnap.restore"} {
		if !strings.Contains(out, w) {
			t.Errorf("error does not say %q:\n%s", w, out)
		}
	}
	if _, err := os.Stat(filepath.Join(b.upper, "started")); err == nil {
		t.Errorf("the container's process ran")
	}
	if after := sha256File(t, snap); after != before {
		t.Errorf("the snapshot changed: sha256 %s -> %s", before, after)
	}
	if fi2, err := os.Stat(snap); err != nil || !fi2.ModTime().Equal(fi.ModTime()) || fi2.Mode() != fi.Mode() {
		t.Errorf("the snapshot file's metadata changed: %v %v", fi2, err)
	}
}

// TestENOSPCExport: an export to an allowed directory on a full tmpfs
// (allowed by a custom hooks.d file's --allow-dir) leaves the previous
// snapshot intact and no temporary file, logs the cause, and the
// runtime's delete succeeds.
func TestENOSPCExport(t *testing.T) {
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	small := mountTmpfs(t, "4m")
	logFile := filepath.Join(t.TempDir(), "hook.log")
	hd := writeHooksDir(t, t.TempDir(), hookBin, 0, "--allow-dir", small, "--state-dir", filepath.Join(t.TempDir(), "state"), "--log-file", logFile)
	snap := filepath.Join(small, "snap.tar")
	writeTar(t, snap, []testutil.Node{testutil.Dir("./"), testutil.File("./previous", "previous")}, false)
	before := sha256File(t, snap)

	b := newBundle(t, img)
	b.spec.Annotations["io.ocisnap.export"] = snap
	crioHooks(t, b, hd)
	if b.spec.Hooks == nil || len(b.spec.Hooks.Poststop) != 1 {
		t.Fatalf("custom hooks.d not injected: %+v", b.spec.Hooks)
	}
	if out, err := b.runToCompletion("sh", "-c", "dd if=/dev/urandom of=/big bs=1M count=16 2>/dev/null"); err != nil {
		t.Fatalf("runc run (delete must succeed although the export failed): %v\n%s", err, out)
	}
	if after := sha256File(t, snap); after != before {
		t.Errorf("the previous snapshot changed")
	}
	if tmps := tempsIn(t, small); len(tmps) != 0 {
		t.Errorf("temporary files left: %v", tmps)
	}
	if log, _ := os.ReadFile(logFile); !strings.Contains(string(log), "no space left on device") || !strings.Contains(string(log), "export failed") {
		t.Errorf("the failure was not logged with its cause:\n%s", log)
	}
	if _, err := b.runc("state", b.id); err == nil {
		t.Errorf("container still exists after runc run returned")
	}
}

// TestHookKilledMidExport: runc kills the poststop hook with SIGKILL at
// its timeout while it writes a large gzip export. The previous snapshot
// stays intact; the dead writer's temporary file is removed by the next
// export to that destination, or by `ocisnap gc`.
func TestHookKilledMidExport(t *testing.T) {
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	dir := snapshotDir(t)
	stateDir := filepath.Join(t.TempDir(), "state")
	snap := filepath.Join(dir, "snap.tar.gz")
	writeTar(t, snap, []testutil.Node{testutil.Dir("./"), testutil.File("./previous", "previous")}, false)
	before := sha256File(t, snap)
	timeout := 1

	// killed runs a container that makes a 64 GiB sparse file and
	// exports it with gzip under a 1 s poststop timeout: reading and
	// compressing 64 GiB of zeros takes far longer than that on any
	// machine, while the temporary file stays small.
	killed := func() string {
		t.Helper()
		b := newBundle(t, img)
		b.spec.Annotations["io.ocisnap.export"] = snap
		b.spec.Annotations["io.ocisnap.export-compression"] = "gzip"
		post := ocisnapHook("--state-dir", stateDir)
		post.Timeout = &timeout
		b.spec.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{ocisnapHook("--state-dir", stateDir)}, Poststop: []specs.Hook{post}}
		// runc logs the poststop failure; its exit status is the process's.
		out, err := b.runToCompletion("busybox", "truncate", "-s", "64G", "/big")
		if !strings.Contains(out, "ran past specified timeout") {
			t.Fatalf("the poststop hook was not killed at its timeout (err %v):\n%s", err, out)
		}
		exec.Command("runc", "delete", "-f", b.id).Run()
		tmps := tempsIn(t, dir)
		if len(tmps) != 1 {
			t.Fatalf("want the killed writer's temporary file, found %v (was the hook killed mid-write?)", tmps)
		}
		if after := sha256File(t, snap); after != before {
			t.Fatalf("the previous snapshot changed")
		}
		return tmps[0]
	}

	stale := killed()
	// The next export to the same destination removes it.
	b := newBundle(t, img)
	b.spec.Annotations["io.ocisnap.export"] = snap
	b.spec.Annotations["io.ocisnap.export-compression"] = "gzip"
	b.spec.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{ocisnapHook("--state-dir", stateDir)},
		Poststop: []specs.Hook{ocisnapHook("--state-dir", stateDir)}}
	if out, err := b.runToCompletion("sh", "-c", "echo next > /next"); err != nil {
		t.Fatalf("next export: %v\n%s", err, out)
	}
	if _, err := os.Lstat(filepath.Join(dir, stale)); err == nil {
		t.Errorf("the next export to %s kept the stale %s", snap, stale)
	}
	if h := readTarHeaders(t, snap)["./next"]; h == nil {
		t.Errorf("the next export did not replace the snapshot")
	}
	before = sha256File(t, snap)

	stale = killed()
	out, err := exec.Command(cliBin, "gc", "--allow-dir", dir, "--state-dir", stateDir).CombinedOutput()
	if err != nil {
		t.Fatalf("ocisnap gc: %v\n%s", err, out)
	}
	if _, err := os.Lstat(filepath.Join(dir, stale)); err == nil {
		t.Errorf("ocisnap gc kept the stale %s:\n%s", stale, out)
	}
	if !strings.Contains(string(out), stale) {
		t.Errorf("ocisnap gc does not report removing %s:\n%s", stale, out)
	}
}

// TestStateLostBeforePoststop: the host rebooted between createRuntime and
// poststop (the state directory is gone). Poststop logs what it could not
// do and exits 0 so the runtime's delete succeeds; if the rootfs is still
// a mounted overlay (Podman's order), it exports from it.
func TestStateLostBeforePoststop(t *testing.T) {
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	dir := snapshotDir(t)
	for _, mounted := range []bool{false, true} {
		t.Run(fmt.Sprintf("rootfs-mounted=%v", mounted), func(t *testing.T) {
			stateDir := filepath.Join(t.TempDir(), "state")
			logFile := filepath.Join(t.TempDir(), "hook.log")
			hd := writeHooksDir(t, t.TempDir(), hookBin, 0, "--state-dir", stateDir, "--log-file", logFile)
			snap := filepath.Join(dir, fmt.Sprintf("lost-%v.tar", mounted))
			b := newBundle(t, img)
			b.spec.Annotations["io.ocisnap.export"] = snap
			crioHooks(t, b, hd)
			if err := b.createStart("sh", "-c", "echo x > /x"); err != nil {
				t.Fatal(err)
			}
			if recs, err := filepath.Glob(filepath.Join(stateDir, "*.json")); err != nil || len(recs) != 1 {
				t.Fatalf("createRuntime recorded no state: %v %v", recs, err)
			}
			must(t, os.RemoveAll(stateDir)) // the reboot
			if !mounted {
				b.unmount()
			}
			if out, err := b.runc("delete", b.id); err != nil {
				t.Fatalf("runc delete: %v\n%s", err, out)
			}
			log, _ := os.ReadFile(logFile)
			_, statErr := os.Stat(snap)
			if mounted {
				if statErr != nil {
					t.Errorf("rootfs still mounted, but nothing exported: %v\n%s", statErr, log)
				} else if readTarHeaders(t, snap)["./x"] == nil {
					t.Errorf("the recovered export lacks ./x")
				}
			} else {
				if statErr == nil {
					t.Errorf("an export was written from an unmounted rootfs without state")
				}
				if !strings.Contains(string(log), "no state recorded") {
					t.Errorf("poststop did not log the lost state:\n%s", log)
				}
			}
			if tmps := tempsIn(t, dir); len(tmps) != 0 {
				t.Errorf("temporary files left: %v", tmps)
			}
		})
	}
}
