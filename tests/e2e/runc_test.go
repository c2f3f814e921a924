package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	cihooks "go.podman.io/common/pkg/hooks"

	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/pkg/layer"
)

// bundle is a runc bundle whose rootfs is an overlay the test mounts itself
// (the image root as the lower), as CRI-O and Podman do with containers/storage.
type bundle struct {
	t                         testing.TB
	dir, lower, upper, rootfs string
	id                        string
	spec                      *specs.Spec
	mounted                   bool
}

var bundleSeq int

func newBundle(t testing.TB, lower string) *bundle {
	t.Helper()
	testutil.RequireTools(t, "runc")
	dir := t.TempDir()
	bundleSeq++
	b := &bundle{t: t, dir: dir, lower: lower, upper: filepath.Join(dir, "upper"),
		rootfs: filepath.Join(dir, "rootfs"), id: fmt.Sprintf("ocisnap-e2e-%d-%d", os.Getpid(), bundleSeq)}
	for _, d := range []string{b.upper, filepath.Join(dir, "work"), b.rootfs} {
		must(t, os.MkdirAll(d, 0o755))
	}
	b.mount()
	out, err := exec.Command("runc", "spec", "--bundle", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	must(t, err)
	b.spec = &specs.Spec{}
	must(t, json.Unmarshal(data, b.spec))
	b.spec.Root = &specs.Root{Path: "rootfs"}
	b.spec.Process.Terminal = false
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_MKNOD", "CAP_SETUID", "CAP_SETGID", "CAP_KILL"}
	b.spec.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	b.spec.Annotations = map[string]string{}
	t.Cleanup(func() {
		exec.Command("runc", "delete", "-f", b.id).Run()
		b.unmount()
	})
	return b
}

func (b *bundle) mount() {
	b.t.Helper()
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", b.lower, b.upper, filepath.Join(b.dir, "work"))
	if out, err := exec.Command("mount", "-t", "overlay", "overlay", "-o", opts, b.rootfs).CombinedOutput(); err != nil {
		b.t.Fatalf("mount overlay: %v\n%s", err, out)
	}
	b.mounted = true
}

func (b *bundle) unmount() {
	if b.mounted {
		exec.Command("umount", b.rootfs).Run()
		b.mounted = false
	}
}

func (b *bundle) writeSpec() {
	b.t.Helper()
	must(b.t, os.WriteFile(filepath.Join(b.dir, "config.json"), jsonMarshal(b.t, b.spec), 0o644))
}

// hook is an ocisnap hook entry for config.json.
func ocisnapHook(args ...string) specs.Hook {
	return specs.Hook{Path: hookBin, Args: append([]string{"ocisnap-hook"}, args...)}
}

// runc runs a runc subcommand on the bundle; it returns combined output.
func (b *bundle) runc(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "runc", args...)
	cmd.Dir = b.dir
	// A file, not a pipe: after `runc create` the container's process
	// keeps runc's stdio open, and a pipe would never reach EOF.
	out, err := os.CreateTemp(b.dir, "runc-out-")
	if err != nil {
		return "", err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	data, _ := os.ReadFile(out.Name())
	return string(data), err
}

// runToCompletion runs the container's process in the foreground: runc
// creates it (createRuntime hooks), runs it, and deletes it (poststop).
func (b *bundle) runToCompletion(cmd ...string) (string, error) {
	b.spec.Process.Args = cmd
	b.writeSpec()
	return b.runc("run", "--bundle", b.dir, b.id)
}

// TestRuncPlain: hooks written into config.json by hand, runc run.
func TestRuncPlain(t *testing.T) {
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	snap := filepath.Join(snapshotDir(t), "runc.tar")

	b := newBundle(t, img)
	b.spec.Annotations["io.ocisnap.export"] = snap
	b.spec.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{ocisnapHook()}, Poststop: []specs.Hook{ocisnapHook()}}
	if out, err := b.runToCompletion("sh", "-c", changes); err != nil {
		t.Fatalf("runc run: %v\n%s", err, out)
	}
	want := manifest(t, b.rootfs)
	b.unmount()
	if _, err := os.Stat(snap); err != nil {
		t.Fatalf("no snapshot: %v", err)
	}
	checkSnapshotFormat(t, snap, "overlay")

	b2 := newBundle(t, img)
	b2.spec.Annotations["io.ocisnap.restore"] = snap
	b2.spec.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{ocisnapHook()}}
	if out, err := b2.runToCompletion("test", "-f", "/new/dir/file"); err != nil {
		t.Fatalf("runc run with restore: %v\n%s", err, out)
	}
	if got := manifest(t, b2.rootfs); got != want {
		t.Fatalf("restored rootfs differs:\n%s", testutil.TreeDiff(want, got))
	}
}

// crioHooks loads the repository's installed hooks.d directory the way
// CRI-O does and injects the matching hooks into the bundle's spec.
func crioHooks(t testing.TB, b *bundle, dir string) {
	t.Helper()
	mgr, err := cihooks.New(context.Background(), []string{dir}, nil)
	if err != nil {
		t.Fatalf("hooks.New(%s): %v", dir, err)
	}
	ext, err := mgr.Hooks(b.spec, b.spec.Annotations, false)
	if err != nil {
		t.Fatalf("hooks.Hooks: %v", err)
	}
	if len(ext) != 0 {
		t.Fatalf("unexpected extension-stage hooks: %v", ext)
	}
}

// TestCRIOFlow: hooks from hooks.d via go.podman.io/common/pkg/hooks, runc
// create/start, and the rootfs unmounted before `runc delete` as CRI-O does:
// the export must still hold every change.
func TestCRIOFlow(t *testing.T) {
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	for _, format := range []string{"overlay", "oci"} {
		t.Run(format, func(t *testing.T) {
			snap := filepath.Join(snapshotDir(t), "crio.tar")
			b := newBundle(t, img)
			b.spec.Annotations["io.kubernetes.container.name"] = "app"
			// Pod-level key for another container and a per-container key for ours.
			b.spec.Annotations["io.ocisnap.export.sidecar"] = filepath.Join(filepath.Dir(snap), "sidecar.tar")
			b.spec.Annotations["io.ocisnap.export.app"] = snap
			b.spec.Annotations["io.ocisnap.export-format.app"] = format
			crioHooks(t, b, hooksDir)
			if b.spec.Hooks == nil || len(b.spec.Hooks.CreateRuntime) != 1 || len(b.spec.Hooks.Poststop) != 1 {
				t.Fatalf("hooks.d did not inject createRuntime+poststop: %+v", b.spec.Hooks)
			}
			b.spec.Process.Args = []string{"sh", "-c", changes}
			b.writeSpec()
			if out, err := b.runc("create", "--bundle", b.dir, b.id); err != nil {
				t.Fatalf("runc create: %v\n%s", err, out)
			}
			if out, err := b.runc("start", b.id); err != nil {
				t.Fatalf("runc start: %v\n%s", err, out)
			}
			waitStopped(t, b)
			want := manifest(t, b.rootfs)
			b.unmount() // CRI-O unmounts storage before deleting the container
			if out, err := b.runc("delete", b.id); err != nil {
				t.Fatalf("runc delete: %v\n%s", err, out)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(snap), "sidecar.tar")); err == nil {
				t.Errorf("the sidecar's per-container key was used for container app")
			}
			checkSnapshotFormat(t, snap, layer.Format(format))

			b2 := newBundle(t, img)
			b2.spec.Annotations["io.ocisnap.restore"] = snap
			crioHooks(t, b2, hooksDir)
			if out, err := b2.runToCompletion("true"); err != nil {
				t.Fatalf("runc run with restore: %v\n%s", err, out)
			}
			if got := manifest(t, b2.rootfs); got != want {
				t.Fatalf("restored rootfs differs:\n%s", testutil.TreeDiff(want, got))
			}
		})
	}
}

func waitStopped(t testing.TB, b *bundle) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		out, err := b.runc("state", b.id)
		if err == nil && strings.Contains(out, `"status": "stopped"`) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("container %s did not stop", b.id)
}
