package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/hooks"
	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/pkg/policy"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// The installed hooks.d file keeps state in the default state directory.
const defaultStateDir = "/run/ocisnap"

var (
	imageKernel = strings.Repeat("K", 4096) // buildImageRoot's /boot/vmlinuz
	imageInitrd = strings.Repeat("I", 2048)
)

// annotation is a podman --annotation argument. Podman splits the flag's
// value at commas like a CSV record, so a value with commas (several
// view-binds) is quoted as one CSV field.
func annotation(key, value string) string {
	kv := key + "=" + value
	if strings.ContainsAny(kv, ",\"") {
		kv = `"` + strings.ReplaceAll(kv, `"`, `""`) + `"`
	}
	return kv
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// importRoot imports a directory as a single-layer image.
func (p *podman) importRoot(root, name string) string {
	p.t.Helper()
	tarPath := filepath.Join(p.dir, filepath.Base(root)+".tar")
	if out, err := exec.Command("tar", "-C", root, "--numeric-owner", "-cf", tarPath, ".").CombinedOutput(); err != nil {
		p.t.Fatalf("tar: %v\n%s", err, out)
	}
	p.run("import", "-q", tarPath, name)
	return name
}

// viewImage is the test image plus a second layer (committed by podman)
// that changes /boot/initrd.img, with hostile symlinks: so that an image
// view is an overlay of two lower layers.
func (p *podman) viewImage(outside string) string {
	p.t.Helper()
	base := p.testImage()
	id := p.run("run", "-d", "--network=none", base, "sleep", "1000")
	p.run("exec", id, "sh", "-c", "printf L2 > /boot/initrd.img && ln -s /etc/shadow /boot/shadow && "+
		"ln -s "+outside+" /escape && ln -s ../../../../../../.."+outside+" /escape2")
	p.run("commit", "-q", id, "localhost/ocisnap-view:latest")
	p.run("rm", "-f", "-t", "0", id)
	return "localhost/ocisnap-view:latest"
}

// viewTraces returns what is left of container id's view on the host:
// mounts under its view mountpoint, the mountpoint, its state file.
func viewTraces(t testing.TB, stateDir, id string) []string {
	t.Helper()
	var out []string
	data, err := os.ReadFile("/proc/self/mountinfo")
	must(t, err)
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, id) && strings.Contains(l, "ocisnap") {
			out = append(out, "mount: "+l)
		}
	}
	for _, p := range []string{filepath.Join(stateDir, "views", id), filepath.Join(stateDir, id+".json")} {
		if _, err := os.Lstat(p); err == nil {
			out = append(out, "file: "+p)
		}
	}
	return out
}

// waitNoTraces waits a little (poststop may still be running) for id's view
// to be gone, and fails the test if it is not.
func waitNoTraces(t testing.TB, stateDir, id string, images ...string) {
	t.Helper()
	var left []string
	for range 100 {
		left = viewTraces(t, stateDir, id)
		for _, img := range images {
			for _, d := range loopDevicesOf(img) {
				left = append(left, "loop device: "+d)
			}
		}
		if len(left) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("container %s left: %s", id, strings.Join(left, "\n"))
}

// loopDevicesOf returns the loop devices backed by path.
func loopDevicesOf(path string) []string {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == path {
			out = append(out, strings.Split(f, "/")[3])
		}
	}
	return out
}

// viewCheck is run inside a container: it prints the checksum of each
// file and whether writing it failed with a read-only file system.
func viewCheck(paths ...string) string {
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "sha256sum %s; if echo x 2>/dev/null > %s; then echo WRITABLE %s; else echo readonly %s; fi; ", p, p, p, p)
	}
	return b.String()
}

func expectView(t testing.TB, out string, want map[string]string) {
	t.Helper()
	for p, content := range want {
		if !strings.Contains(out, sha(content)+"  "+p) {
			t.Errorf("%s does not have the view's content:\n%s", p, out)
		}
		if !strings.Contains(out, "readonly "+p) || strings.Contains(out, "WRITABLE "+p) {
			t.Errorf("%s is writable:\n%s", p, out)
		}
	}
}

// TestViewImagePodman: a restored snapshot changed /boot/vmlinuz in the
// container's own layer; the bound kernel is still the image's, read-only,
// and after the container stops nothing of the view is left.
func TestViewImagePodman(t *testing.T) {
	p := newPodman(t, hooksDir)
	img := p.viewImage(t.TempDir())
	snapDir := snapshotDir(t)
	snap := filepath.Join(snapDir, "kernel.tar")
	writeTar(t, snap, []testutil.Node{
		testutil.Dir("./"),
		testutil.Dir("./boot/"),
		testutil.File("./boot/vmlinuz", "RESTORED-KERNEL"),
	}, false)

	id := p.run("run", "-d", "--network=none",
		"--annotation", "io.ocisnap.restore="+snap,
		"--annotation", "io.ocisnap.view=image",
		// ";" between the binds, as the README shows: no CSV quoting.
		"--annotation", "io.ocisnap.view-binds=boot/vmlinuz:/run/boot/vmlinuz;/boot/initrd.img:/run/boot/initrd.img;urunc.json:/run/urunc.json",
		"--annotation", "io.ocisnap.view-mount=/mnt/image",
		img, "sleep", "1000")
	out := p.run("exec", id, "sh", "-c", "cat /boot/vmlinuz; echo; "+
		viewCheck("/run/boot/vmlinuz", "/run/boot/initrd.img", "/run/urunc.json", "/mnt/image/boot/vmlinuz")+
		"touch /mnt/image/new 2>/dev/null && echo WRITABLE-VIEW; grep ' /run/boot/vmlinuz ' /proc/self/mountinfo")
	if !strings.HasPrefix(out, "RESTORED-KERNEL") {
		t.Errorf("the restore did not change the container's /boot/vmlinuz:\n%s", out)
	}
	expectView(t, out, map[string]string{
		"/run/boot/vmlinuz":       imageKernel,
		"/run/boot/initrd.img":    "L2",
		"/run/urunc.json":         `{"cmdline":"console=ttyS0"}` + "\n",
		"/mnt/image/boot/vmlinuz": imageKernel,
	})
	if strings.Contains(out, "WRITABLE-VIEW") {
		t.Errorf("the view-mount is writable")
	}
	if !strings.Contains(out, " ro,nosuid,nodev") {
		t.Errorf("bind is not ro,nosuid,nodev:\n%s", out)
	}
	// On the host: the view (an overlay of the two image layers) and the state.
	mp := filepath.Join(defaultStateDir, "views", id)
	if got, err := os.ReadFile(filepath.Join(mp, "boot/initrd.img")); err != nil || string(got) != "L2" {
		t.Errorf("host view %s: %q, %v", mp, got, err)
	}
	rec, err := statefile.Dir{Path: defaultStateDir}.Read(id)
	must(t, err)
	if len(rec.Views) != 1 || !rec.Views[0].Mounted || len(rec.Views[0].Binds) != 4 {
		t.Errorf("state: %+v", rec.Views)
	}
	upper := p.upperDir(id)
	p.run("stop", "-t", "0", id)
	p.run("rm", id)
	waitNoTraces(t, defaultStateDir, id)
	for _, stub := range []string{"run/boot", "mnt"} {
		if _, err := os.Lstat(filepath.Join(upper, stub)); err == nil {
			t.Errorf("stub %s left in the upper", stub)
		}
	}
}

// TestViewFilePodman: file: views of erofs and squashfs images made by the
// real tools, and a dir: view, in the default view directory.
func TestViewFilePodman(t *testing.T) {
	p := newPodman(t, hooksDir)
	img := p.testImage()
	views := viewDir(t)
	src := filepath.Join(t.TempDir(), "src")
	must(t, os.MkdirAll(filepath.Join(src, "boot"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "boot/vmlinuz"), []byte("FILE-KERNEL"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "config.json"), []byte("{}"), 0o644))
	for _, tc := range []struct {
		name, tool string
		args       func(img string) []string
	}{
		{"erofs", "mkfs.erofs", func(img string) []string { return []string{"--quiet", img, src} }},
		{"squashfs", "mksquashfs", func(img string) []string { return []string{src, img, "-noappend", "-quiet", "-no-progress"} }},
		{"dir", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			annotation := "dir:" + src
			var image string
			if tc.tool != "" {
				testutil.RequireTools(t, tc.tool)
				image = filepath.Join(views, "boot."+tc.name)
				if out, err := exec.Command(tc.tool, tc.args(image)...).CombinedOutput(); err != nil {
					t.Fatalf("%s: %v\n%s", tc.tool, err, out)
				}
				annotation = "file:" + image
			} else {
				dir := filepath.Join(views, "bootdir")
				must(t, exec.Command("cp", "-a", src, dir).Run())
				annotation = "dir:" + dir
			}
			id := p.run("run", "-d", "--network=none",
				"--annotation", "io.ocisnap.view="+annotation,
				"--annotation", "io.ocisnap.view-binds=boot/vmlinuz:/run/boot/vmlinuz",
				"--annotation", "io.ocisnap.view-mount=/mnt/boot",
				img, "sleep", "1000")
			out := p.run("exec", id, "sh", "-c", viewCheck("/run/boot/vmlinuz", "/mnt/boot/config.json"))
			expectView(t, out, map[string]string{"/run/boot/vmlinuz": "FILE-KERNEL", "/mnt/boot/config.json": "{}"})
			if image != "" && len(loopDevicesOf(image)) != 1 {
				t.Errorf("loop devices on %s: %v", image, loopDevicesOf(image))
			}
			p.run("stop", "-t", "0", id)
			p.run("rm", id)
			if image != "" {
				waitNoTraces(t, defaultStateDir, id, image)
			} else {
				waitNoTraces(t, defaultStateDir, id)
			}
		})
	}
}

// viewHooks are the ocisnap hooks of a runc bundle with an own state and
// allowed directory, and more hook flags (--allow-view-dir) if given.
func viewHooks(stateDir, allow string, more ...string) *specs.Hooks {
	args := append([]string{"--state-dir", stateDir, "--allow-dir", allow}, more...)
	return &specs.Hooks{CreateRuntime: []specs.Hook{ocisnapHook(args...)}, Poststop: []specs.Hook{ocisnapHook(args...)}}
}

// TestViewRuncPlain: hooks in config.json; an image view over two lower
// layers; the bound kernel is the image's although the container's upper
// has another one at the same path. The view is made at createRuntime (in
// the runtime's namespace) or at createContainer (inside the container's).
func TestViewRuncPlain(t *testing.T) {
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	top := filepath.Join(t.TempDir(), "top")
	must(t, os.MkdirAll(filepath.Join(top, "boot"), 0o755))
	must(t, os.WriteFile(filepath.Join(top, "boot/initrd.img"), []byte("TOP"), 0o644))
	for _, stage := range []string{"createRuntime", "createContainer"} {
		t.Run(stage, func(t *testing.T) {
			stateDir := t.TempDir()
			b := newBundle(t, top+":"+img)
			t.Cleanup(func() { unix.Unmount(filepath.Join(stateDir, "views"), unix.MNT_DETACH) })
			must(t, os.WriteFile(filepath.Join(b.rootfs, "boot/vmlinuz"), []byte("UPPER"), 0o644))
			b.spec.Annotations["io.ocisnap.view"] = "image"
			b.spec.Annotations["io.ocisnap.view-binds"] = "boot/vmlinuz:/run/boot/vmlinuz,boot/initrd.img:/run/boot/initrd.img"
			b.spec.Hooks = viewHooks(stateDir, snapshotDir(t))
			if stage == "createContainer" {
				h := b.spec.Hooks.CreateRuntime[0]
				h.Args = append(h.Args, stage)
				b.spec.Hooks.CreateRuntime = nil
				b.spec.Hooks.CreateContainer = []specs.Hook{h}
			}
			out, err := b.runToCompletion("sh", "-c", viewCheck("/run/boot/vmlinuz", "/run/boot/initrd.img")+"cat /boot/vmlinuz")
			if err != nil {
				t.Fatalf("runc run: %v\n%s", err, out)
			}
			expectView(t, out, map[string]string{"/run/boot/vmlinuz": imageKernel, "/run/boot/initrd.img": "TOP"})
			if !strings.HasSuffix(out, "UPPER") {
				t.Errorf("container's own /boot/vmlinuz changed:\n%s", out)
			}
			waitNoTraces(t, stateDir, b.id)
			if _, err := os.Lstat(filepath.Join(b.upper, "run/boot")); err == nil {
				t.Errorf("stub left in the upper")
			}
		})
	}
}

// TestViewPodmanUserns: a container with an id mapping (containers/storage
// mounts idmapped copies of the layers, gone once the rootfs is mounted)
// still gets the image's view.
func TestViewPodmanUserns(t *testing.T) {
	p := newPodman(t, hooksDir)
	img := p.testImage()
	out := p.run("run", "--rm", "--network=none", "--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536",
		"--annotation", "io.ocisnap.view=image",
		"--annotation", "io.ocisnap.view-binds=boot/vmlinuz:/run/boot/vmlinuz",
		img, "sh", "-c", viewCheck("/run/boot/vmlinuz"))
	expectView(t, out, map[string]string{"/run/boot/vmlinuz": imageKernel})
}

// TestViewCRIOFlow: hooks from the installed hooks.d (as CRI-O loads them),
// runc create/start, storage unmounted before `runc delete`: the stubs are
// removed from the upper directory.
func TestViewCRIOFlow(t *testing.T) {
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	b := newBundle(t, img)
	b.spec.Annotations["io.kubernetes.container.name"] = "vm"
	b.spec.Annotations["io.ocisnap.view.vm"] = "image"
	b.spec.Annotations["io.ocisnap.view-binds.vm"] = "boot/vmlinuz:/run/boot/vmlinuz"
	b.spec.Annotations["io.ocisnap.view-mount.vm"] = "/opt/image"
	crioHooks(t, b, hooksDir)
	if b.spec.Hooks == nil || len(b.spec.Hooks.CreateRuntime) != 1 || len(b.spec.Hooks.Poststop) != 1 {
		t.Fatalf("hooks.d did not inject createRuntime+poststop: %+v", b.spec.Hooks)
	}
	b.spec.Process.Args = []string{"sh", "-c", "(" + viewCheck("/run/boot/vmlinuz", "/opt/image/urunc.json") + ") > /result 2>&1"}
	b.writeSpec()
	runcCreateStart(t, b)
	waitStopped(t, b)
	result, err := os.ReadFile(filepath.Join(b.upper, "result"))
	must(t, err)
	expectView(t, string(result), map[string]string{
		"/run/boot/vmlinuz": imageKernel, "/opt/image/urunc.json": `{"cmdline":"console=ttyS0"}` + "\n"})
	if _, err := os.Lstat(filepath.Join(b.upper, "opt")); err != nil {
		t.Errorf("no stub in the upper before delete: %v", err)
	}
	b.unmount()
	if out, err := b.runc("delete", b.id); err != nil {
		t.Fatalf("runc delete: %v\n%s", err, out)
	}
	waitNoTraces(t, defaultStateDir, b.id)
	for _, stub := range []string{"opt", "run/boot"} {
		if _, err := os.Lstat(filepath.Join(b.upper, stub)); err == nil {
			t.Errorf("stub %s left in the upper", stub)
		}
	}
}

// TestViewRestoreExport: restore + view + export on one container; the
// exported layer holds the restored change and no bind stubs.
func TestViewRestoreExport(t *testing.T) {
	p := newPodman(t, hooksDir)
	img := p.testImage()
	snapDir := snapshotDir(t)
	snap := filepath.Join(snapDir, "state.tar")
	writeTar(t, snap, []testutil.Node{
		testutil.Dir("./"),
		testutil.Dir("./boot/"),
		testutil.File("./boot/vmlinuz", "RESTORED-KERNEL"),
	}, false)
	id := p.run("run", "-d", "--network=none",
		"--annotation", "io.ocisnap.restore="+snap,
		"--annotation", "io.ocisnap.export="+snap,
		"--annotation", "io.ocisnap.view=image",
		"--annotation", annotation("io.ocisnap.view-binds", "boot/vmlinuz:/run/vm/boot/vmlinuz,boot:/srv/boot"),
		"--annotation", "io.ocisnap.view-mount=/mnt/image",
		img, "sleep", "1000")
	out := p.run("exec", id, "sh", "-c", "echo changed > /data/new; "+viewCheck("/run/vm/boot/vmlinuz", "/srv/boot/vmlinuz"))
	expectView(t, out, map[string]string{"/run/vm/boot/vmlinuz": imageKernel, "/srv/boot/vmlinuz": imageKernel})
	p.run("stop", "-t", "0", id)
	p.run("rm", id)
	waitNoTraces(t, defaultStateDir, id)
	names := readTarHeaders(t, snap)
	for _, n := range []string{"./boot/vmlinuz", "./data/new"} {
		if names[n] == nil {
			t.Errorf("export lacks %s", n)
		}
	}
	for n := range names {
		for _, stub := range []string{"./run/vm", "./srv", "./mnt"} {
			if strings.HasPrefix(n, stub) {
				t.Errorf("bind stub exported: %s", n)
			}
		}
	}
}

// TestViewFailures: each bad view fails the container's start with a
// message naming the annotation and the cause, and leaves no mount, loop
// device or state file.
func TestViewFailures(t *testing.T) {
	p := newPodman(t, hooksDir)
	outside := t.TempDir() // a host directory, not in the rootfs
	img := p.viewImage(outside)
	views := viewDir(t)
	garbage := filepath.Join(views, "garbage.img")
	must(t, os.WriteFile(garbage, []byte(strings.Repeat("garbage ", 4096)), 0o644))
	corrupt := filepath.Join(views, "corrupt.erofs")
	fake := make([]byte, 1<<20)
	copy(fake[1024:], []byte{0xE2, 0xE1, 0xF5, 0xE0}) // erofs magic on garbage
	must(t, os.WriteFile(corrupt, fake, 0o644))
	notAllowed := filepath.Join(t.TempDir(), "boot.erofs")
	must(t, os.WriteFile(notAllowed, fake, 0o644))
	for i, tc := range []struct {
		name, view, binds string
		want              []string
		image             string
	}{
		{"src missing", "image", "boot/nope:/run/boot/vmlinuz",
			[]string{`io.ocisnap.view-binds: src "boot/nope": not found in view`}, ""},
		{"src symlink to /etc/shadow", "image", "boot/shadow:/run/boot/vmlinuz",
			[]string{`io.ocisnap.view-binds: src "boot/shadow": not found in view`}, ""},
		{"dst through a symlink out of the rootfs", "image", "boot/vmlinuz:/escape/vmlinuz",
			[]string{`io.ocisnap.view-binds: dst "/escape/vmlinuz"`, "leading out of the container's rootfs"}, ""},
		{"dst through a relative symlink out of the rootfs", "image", "boot/vmlinuz:/escape2/vmlinuz",
			[]string{`io.ocisnap.view-binds: dst "/escape2/vmlinuz"`, "leading out"}, ""},
		{"file outside the view dirs", "file:" + notAllowed, "boot/vmlinuz:/run/boot/vmlinuz",
			[]string{"io.ocisnap.view=file:" + notAllowed, "not inside a view directory"}, notAllowed},
		{"not a file system image", "file:" + garbage, "boot/vmlinuz:/run/boot/vmlinuz",
			[]string{"io.ocisnap.view=file:" + garbage, "not an erofs, squashfs or ext4 image"}, garbage},
		{"corrupt image", "file:" + corrupt, "boot/vmlinuz:/run/boot/vmlinuz",
			[]string{"io.ocisnap.view=file:" + corrupt, "mount as erofs"}, corrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "viewfail" + strconv.Itoa(i)
			out, err := p.runErr("run", "--name", name, "--network=none",
				"--annotation", "io.ocisnap.view="+tc.view,
				"--annotation", "io.ocisnap.view-binds="+tc.binds,
				img, "true")
			if err == nil {
				t.Fatalf("container started:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("error does not say %q:\n%s", w, out)
				}
			}
			id := p.run("inspect", "--format", "{{.Id}}", name)
			upper := p.upperDir(id)
			var images []string
			if tc.image != "" {
				images = append(images, tc.image)
			}
			waitNoTraces(t, defaultStateDir, id, images...)
			if _, err := os.Lstat(filepath.Join(upper, "run/boot")); err == nil {
				t.Errorf("stub left in the upper")
			}
			if ents, _ := os.ReadDir(outside); len(ents) > 0 {
				t.Errorf("created outside the rootfs: %v", ents)
			}
			p.run("rm", "-f", name)
		})
	}
}

// TestViewGC: `ocisnap gc` (hooks.GC) after kill -9 of a container whose
// poststop never runs releases its view (mount, loop device, stubs) and
// state; a live container's view is left alone; a record whose pid was
// reused by another process counts as gone.
func TestViewGC(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.erofs")
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	stateDir := t.TempDir()
	t.Cleanup(func() { unix.Unmount(filepath.Join(stateDir, "views"), unix.MNT_DETACH) })
	allow := snapshotDir(t)
	views := viewDir(t)
	image := filepath.Join(views, "boot.erofs")
	if out, err := exec.Command("mkfs.erofs", "--quiet", image, img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.erofs: %v\n%s", err, out)
	}
	start := func() *bundle {
		b := newBundle(t, img)
		b.spec.Annotations["io.ocisnap.view"] = "file:" + image
		b.spec.Annotations["io.ocisnap.view-binds"] = "boot/vmlinuz:/run/vm/vmlinuz"
		b.spec.Hooks = viewHooks(stateDir, allow, "--allow-view-dir", views)
		b.spec.Process.Args = []string{"sleep", "1000"}
		b.writeSpec()
		runcCreateStart(t, b)
		return b
	}
	dead, live := start(), start()
	if n := len(loopDevicesOf(image)); n != 2 {
		t.Fatalf("%d loop devices on the image, want 2", n)
	}
	rec, err := statefile.Dir{Path: stateDir}.Read(dead.id)
	must(t, err)
	// The container dies and its poststop never runs (the runtime is gone).
	must(t, unix.Kill(rec.Pid, unix.SIGKILL))
	waitStopped(t, dead)
	// A record whose pid is now another process (ours).
	reused := &statefile.Record{ID: "reused-pid", Pid: os.Getpid(), PidStart: 1, Created: time.Now()}
	must(t, statefile.Dir{Path: stateDir}.Write(reused))

	cfg := hooks.DefaultConfig()
	cfg.StateDir = stateDir
	cfg.Policy = policy.Policy{AllowDirs: []string{allow}, ViewDirs: []string{views}}
	cfg.Logger = slog.New(slog.DiscardHandler)
	rep, err := hooks.GC(context.Background(), cfg)
	if err != nil {
		t.Fatalf("gc: %v", err)
	}
	if !sameSet(rep.Removed, []string{dead.id, "reused-pid"}) || !sameSet(rep.Live, []string{live.id}) {
		t.Errorf("gc report %+v, want removed %s and reused-pid, live %s", rep, dead.id, live.id)
	}
	waitNoTraces(t, stateDir, dead.id)
	if _, err := os.Lstat(filepath.Join(dead.upper, "run/vm")); err == nil {
		t.Errorf("stub of the dead container left in its upper")
	}
	if n := len(loopDevicesOf(image)); n != 1 {
		t.Errorf("%d loop devices on the image after gc, want the live container's 1", n)
	}
	// The live container is untouched.
	if left := viewTraces(t, stateDir, live.id); len(left) != 3 {
		t.Errorf("live container's view: %v", left)
	}
	if out, err := live.runc("exec", live.id, "cat", "/run/vm/vmlinuz"); err != nil || out != imageKernel {
		t.Errorf("live container's bind: %v %.40q", err, out)
	}
	// A second gc finds nothing more; the dead container's delete (its late
	// poststop) finds no state and succeeds.
	rep, err = hooks.GC(context.Background(), cfg)
	if err != nil || len(rep.Removed) != 0 {
		t.Errorf("second gc: %+v, %v", rep, err)
	}
	if out, err := dead.runc("delete", dead.id); err != nil {
		t.Errorf("runc delete after gc: %v\n%s", err, out)
	}
	if out, err := live.runc("delete", "-f", live.id); err != nil {
		t.Fatalf("runc delete: %v\n%s", err, out)
	}
	waitNoTraces(t, stateDir, live.id, image)
}

// runcCreate runs `runc create` and `runc start` with the output in a file:
// the container's process inherits runc's stdout and stderr, so a pipe
// would keep exec's Wait waiting for the container to exit.
func runcCreateStart(t testing.TB, b *bundle) {
	t.Helper()
	f, err := os.CreateTemp(b.dir, "runc-out-")
	must(t, err)
	defer f.Close()
	for _, args := range [][]string{{"create", "--bundle", b.dir, b.id}, {"start", b.id}} {
		cmd := exec.Command("runc", args...)
		cmd.Dir = b.dir
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Run(); err != nil {
			out, _ := os.ReadFile(f.Name())
			t.Fatalf("runc %s: %v\n%s", args[0], err, out)
		}
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}

// TestViewConcurrent: fifty containers with views (image views, and erofs
// file views sharing one image) started and stopped in parallel by podman
// leave no mount, loop device or state.
func TestViewConcurrent(t *testing.T) {
	p := newPodman(t, hooksDir)
	img := p.testImage()
	views := viewDir(t)
	var image string
	if _, err := exec.LookPath("mkfs.erofs"); err == nil {
		root := filepath.Join(t.TempDir(), "root")
		must(t, os.MkdirAll(filepath.Join(root, "boot"), 0o755))
		must(t, os.WriteFile(filepath.Join(root, "boot/vmlinuz"), []byte(imageKernel), 0o644))
		image = filepath.Join(views, "boot.erofs")
		if out, err := exec.Command("mkfs.erofs", "--quiet", image, root).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.erofs: %v\n%s", err, out)
		}
	}
	const n, parallel = 50, 10
	ids := make([]string, n)
	errs := make([]error, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			v := "image"
			if image != "" && i%2 == 1 {
				v = "file:" + image
			}
			cid := filepath.Join(p.dir, fmt.Sprintf("cid%d", i))
			out, err := p.runErr("run", "--rm", "--network=none", "--cidfile", cid,
				"--annotation", "io.ocisnap.view="+v,
				"--annotation", "io.ocisnap.view-binds=boot/vmlinuz:/run/boot/vmlinuz",
				img, "sh", "-c", "sha256sum /run/boot/vmlinuz")
			if b, rerr := os.ReadFile(cid); rerr == nil {
				ids[i] = strings.TrimSpace(string(b))
			}
			switch {
			case err != nil:
				errs[i] = fmt.Errorf("container %d (%s): %v\n%s", i, v, err, out)
			case !strings.Contains(out, sha(imageKernel)):
				errs[i] = fmt.Errorf("container %d (%s): wrong content: %s", i, v, out)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if id == "" {
			t.Fatal("a container id is missing")
		}
		waitNoTraces(t, defaultStateDir, id)
	}
	if image != "" {
		waitNoTraces(t, defaultStateDir, "no-such-container", image)
	}
}
