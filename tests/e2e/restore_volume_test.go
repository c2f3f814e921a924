package e2e

// Issue 10, finding 2: a restore never reaches into a volume. A snapshot
// holding a whiteout of /data (char 0/0) and /data/planted, restored into a
// container with a host directory bind-mounted at /data, fails the start
// naming the entry, and the host directory keeps every file, owner, mode
// and xattr: with the hook at createRuntime (in the runtime's namespace,
// the volume mounted in the container's) and at createContainer (inside
// the container's namespace, the volume mounted inside the rootfs).

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// writeStageHooksDir writes an ocisnap hooks.d file that runs the
// installed hook at stage only (the stage given as its argument), with the
// default policy, into a new directory under dir.
func writeStageHooksDir(t testing.TB, dir, stage string) string {
	t.Helper()
	dir = writeHooksDir(t, dir, hookBin, 0, stage)
	// The shipped file's "when", its stages narrowed to stage.
	f := filepath.Join(dir, "ocisnap.json")
	data, err := os.ReadFile(f)
	must(t, err)
	var conf map[string]any
	must(t, json.Unmarshal(data, &conf))
	conf["stages"] = []string{stage}
	must(t, os.WriteFile(f, jsonMarshal(t, conf), 0o644))
	return dir
}

// volumeSnapshot writes the snapshot: ./data whited out, then
// ./data/planted.
func volumeSnapshot(t testing.TB) string {
	t.Helper()
	snap := filepath.Join(snapshotDir(t), "volume.tar")
	writeTar(t, snap, []testutil.Node{
		testutil.Dir("./"),
		testutil.Whiteout("./data"),
		testutil.File("./data/planted", "planted"),
	}, false)
	return snap
}

// hostVolume is a host directory to mount as a volume, with files, a
// subdirectory, owners, modes and an xattr.
func hostVolume(t testing.TB) string {
	t.Helper()
	host := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(host, "sub"), 0o750))
	must(t, os.WriteFile(filepath.Join(host, "keep"), []byte("host data\n"), 0o640))
	must(t, os.WriteFile(filepath.Join(host, "sub/f"), []byte("nested\n"), 0o600))
	must(t, os.Lchown(filepath.Join(host, "keep"), 1234, 5678))
	must(t, os.Chmod(host, 0o751))
	must(t, unix.Setxattr(host, "user.volume", []byte("v"), 0))
	return host
}

// expectRefused checks the start's error and that the host directory is
// as it was.
func expectRefused(t testing.TB, out string, err error, host, before string, more ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("the container started:\n%s", out)
	}
	out = strings.ReplaceAll(out, `\"`, `"`) // runc quotes the hook's stderr
	for _, w := range append([]string{"io.ocisnap.restore", `apply "./data"`, "crosses into another mount", `"data" is a mount point`}, more...) {
		if !strings.Contains(out, w) {
			t.Errorf("the error does not mention %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "STARTED") {
		t.Errorf("the container's process ran:\n%s", out)
	}
	if after := testutil.DescribeTree(t, host); after != before {
		t.Errorf("the host directory changed:\n%s", testutil.TreeDiff(before, after))
	}
}

func TestRestoreVolumePodman(t *testing.T) {
	testutil.RequireRoot(t)
	for _, stage := range []string{"createRuntime", "createContainer"} {
		t.Run(stage, func(t *testing.T) {
			dir := hooksDir
			if stage == "createContainer" {
				dir = writeStageHooksDir(t, filepath.Join(t.TempDir(), "hooks.d"), stage)
			}
			p := newPodman(t, dir)
			img := p.testImage()
			snap := volumeSnapshot(t)
			host := hostVolume(t)
			before := testutil.DescribeTree(t, host)
			out, err := p.runErr("run", "--name", "vol-"+stage, "--network=none", "-v", host+":/data",
				"--annotation", "io.ocisnap.restore="+snap, img, "sh", "-c", "echo STARTED; ls -la /data")
			expectRefused(t, out, err, host, before)
			// The same container without the restore starts, with its
			// volume (nothing of it was detached or emptied).
			out = p.run("run", "--rm", "--network=none", "-v", host+":/data", img, "cat", "/data/keep")
			if out != "host data" {
				t.Errorf("the volume seen by a new container: %q", out)
			}
		})
	}
}

// The same with a plain runc bundle: a bind mount in config.json, the hook
// in config.json at either stage.
func TestRestoreVolumeRunc(t *testing.T) {
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	for _, stage := range []string{"createRuntime", "createContainer"} {
		t.Run(stage, func(t *testing.T) {
			snap := volumeSnapshot(t)
			host := hostVolume(t)
			before := testutil.DescribeTree(t, host)
			b := newBundle(t, img)
			b.spec.Mounts = append(b.spec.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: host, Options: []string{"rbind", "rw"}})
			b.spec.Annotations["io.ocisnap.restore"] = snap
			h := ocisnapHook()
			if stage == "createContainer" {
				h.Args = append(h.Args, stage)
				b.spec.Hooks = &specs.Hooks{CreateContainer: []specs.Hook{h}}
			} else {
				b.spec.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{h}}
			}
			out, err := b.runToCompletion("sh", "-c", "echo STARTED; ls -la /data")
			expectRefused(t, out, err, host, before, b.id)
			// The rootfs's own stub of the mount point is still there.
			if st, err := os.Lstat(filepath.Join(b.rootfs, "data")); err != nil || !st.IsDir() {
				t.Errorf("rootfs /data: %v %v", st, err)
			}
			if _, err := os.Lstat(filepath.Join(b.upper, "data/planted")); err == nil {
				t.Errorf("data/planted was written into the upper")
			}
		})
	}
}
