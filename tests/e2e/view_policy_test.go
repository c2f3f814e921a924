package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// defaultViewDir is the installed hook's default --allow-view-dir.
const defaultViewDir = "/var/lib/ocisnap-views"

// viewDir makes a fresh directory (root's, 0700) inside the default view
// directory, where the administrator puts file: and dir: view sources.
func viewDir(t testing.TB) string {
	t.Helper()
	must(t, os.MkdirAll(defaultViewDir, 0o700))
	d, err := os.MkdirTemp(defaultViewDir, "e2e-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// mkImage makes a file system image of src with the real tool: erofs or
// ext4, root's, mode 0644 (as an administrator would leave it).
func mkImage(t testing.TB, fstype, src, image string) {
	t.Helper()
	var cmds [][]string
	switch fstype {
	case "erofs":
		testutil.RequireTools(t, "mkfs.erofs")
		cmds = [][]string{{"mkfs.erofs", "--quiet", image, src}}
	case "ext4":
		testutil.RequireTools(t, "mkfs.ext4")
		cmds = [][]string{{"truncate", "-s", "8M", image}, {"mkfs.ext4", "-q", "-F", "-d", src, image}}
	default:
		t.Fatalf("mkImage: %s", fstype)
	}
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	must(t, os.Chmod(image, 0o644))
	must(t, os.Chown(image, 0, 0))
}

// viewSource is a small tree with a kernel and a config.
func viewSource(t testing.TB) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	must(t, os.MkdirAll(filepath.Join(src, "boot"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "boot/vmlinuz"), []byte("VIEW-KERNEL"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "config.json"), []byte("{}"), 0o644))
	return src
}

// TestViewPolicyPodman: with the installed hooks.d file (default
// --allow-dir /var/lib/ocisnap, --allow-view-dir /var/lib/ocisnap-views):
// an export into the view directory is refused at start and leaves the
// administrator's image alone; a snapshot tar in the snapshot directory
// that is also a valid erofs image (its first file's data at byte 1024) is
// refused as a file: view and nothing is mounted; images a tenant could
// have written (not root's, or group-writable) are refused; root's 0644
// erofs and ext4 images in the view directory still work.
func TestViewPolicyPodman(t *testing.T) {
	p := newPodman(t, hooksDir)
	img := p.testImage()
	views, snaps := viewDir(t), snapshotDir(t)
	src := viewSource(t)
	testutil.RequireTools(t, "mkfs.erofs")
	adminImage := filepath.Join(views, "boot.erofs")
	mkImage(t, "erofs", src, adminImage)
	adminBytes, err := os.ReadFile(adminImage)
	must(t, err)

	t.Run("export into the view dir", func(t *testing.T) {
		for i, dest := range []string{adminImage, filepath.Join(views, "new.erofs"), filepath.Join(views, "sub/new.tar")} {
			name := "viewexport" + strconv.Itoa(i)
			out, err := p.runErr("run", "--name", name, "--network=none",
				"--annotation", "io.ocisnap.export="+dest, img, "true")
			if err == nil {
				t.Fatalf("container with export=%s started:\n%s", dest, out)
			}
			for _, w := range []string{"io.ocisnap.export=" + dest, "inside the view directory"} {
				if !strings.Contains(out, w) {
					t.Errorf("error does not say %q:\n%s", w, out)
				}
			}
			id := p.run("inspect", "--format", "{{.Id}}", name)
			p.run("rm", "-f", name)
			waitNoTraces(t, defaultStateDir, id)
		}
		if got, err := os.ReadFile(adminImage); err != nil || !bytes.Equal(got, adminBytes) {
			t.Errorf("the administrator's image changed (%v)", err)
		}
		ents, err := os.ReadDir(views)
		must(t, err)
		if len(ents) != 1 {
			t.Errorf("the view directory holds more than the image: %v", ents)
		}
	})

	t.Run("snapshot tar as a file view", func(t *testing.T) {
		// The writer's layout for a root entry without PAX records: two
		// 512-byte headers, then the first file's data at byte 1024, where
		// erofs and ext4 keep their superblock. Data = the image from 1024
		// on: the tar is, byte for byte past 1024, a valid erofs image.
		tarPath := filepath.Join(snaps, "crafted.tar")
		// Whole-second mtimes: no PAX header moves the data off 1024.
		sec := time.Unix(1700000000, 0)
		writeTar(t, tarPath, []testutil.Node{testutil.Dir("./").WithMTime(sec), testutil.File("./fs", string(adminBytes[1024:])).WithMTime(sec)}, false)
		data, err := os.ReadFile(tarPath)
		must(t, err)
		if !bytes.Equal(data[1024:2048], adminBytes[1024:2048]) {
			t.Fatal("the crafted tar does not carry the superblock at 1024")
		}
		dirSrc := filepath.Join(snaps, "bootdir")
		must(t, exec.Command("cp", "-a", src, dirSrc).Run())
		for i, tc := range []struct{ view, image string }{
			{"file:" + tarPath, tarPath},
			{"dir:" + dirSrc, ""},
		} {
			name := "viewsnap" + strconv.Itoa(i)
			out, err := p.runErr("run", "--name", name, "--network=none",
				"--annotation", "io.ocisnap.view="+tc.view,
				"--annotation", "io.ocisnap.view-binds=boot/vmlinuz:/run/boot/vmlinuz",
				img, "cat", "/run/boot/vmlinuz")
			if err == nil {
				t.Fatalf("container with view=%s started:\n%s", tc.view, out)
			}
			for _, w := range []string{"io.ocisnap.view=" + tc.view, "inside the snapshot directory", "--allow-view-dir"} {
				if !strings.Contains(out, w) {
					t.Errorf("error does not say %q:\n%s", w, out)
				}
			}
			id := p.run("inspect", "--format", "{{.Id}}", name)
			var images []string
			if tc.image != "" {
				images = append(images, tc.image)
			}
			waitNoTraces(t, defaultStateDir, id, images...)
			p.run("rm", "-f", name)
		}
	})

	t.Run("images a tenant could have written", func(t *testing.T) {
		userImg := filepath.Join(views, "user.erofs")
		mkImage(t, "erofs", src, userImg)
		must(t, os.Chown(userImg, 1000, 1000))
		groupImg := filepath.Join(views, "group.erofs")
		mkImage(t, "erofs", src, groupImg)
		must(t, os.Chmod(groupImg, 0o664))
		t.Cleanup(func() { os.Remove(userImg); os.Remove(groupImg) })
		for i, tc := range []struct{ image, want string }{
			{userImg, "owned by uid 1000"},
			{groupImg, "writable by group or others"},
		} {
			name := "viewowner" + strconv.Itoa(i)
			out, err := p.runErr("run", "--name", name, "--network=none",
				"--annotation", "io.ocisnap.view=file:"+tc.image,
				"--annotation", "io.ocisnap.view-binds=boot/vmlinuz:/run/boot/vmlinuz",
				img, "true")
			if err == nil {
				t.Fatalf("container with view file:%s started:\n%s", tc.image, out)
			}
			for _, w := range []string{"io.ocisnap.view=file:" + tc.image, tc.want} {
				if !strings.Contains(out, w) {
					t.Errorf("error does not say %q:\n%s", w, out)
				}
			}
			id := p.run("inspect", "--format", "{{.Id}}", name)
			waitNoTraces(t, defaultStateDir, id, tc.image)
			p.run("rm", "-f", name)
		}
	})

	t.Run("root's images in the view dir", func(t *testing.T) {
		ext4 := filepath.Join(views, "boot.ext4")
		mkImage(t, "ext4", src, ext4)
		for _, image := range []string{adminImage, ext4} {
			fi, err := os.Stat(image)
			must(t, err)
			if fi.Mode().Perm() != 0o644 {
				t.Fatalf("%s: mode %v, want 0644", image, fi.Mode())
			}
			id := p.run("run", "-d", "--network=none",
				"--annotation", "io.ocisnap.view=file:"+image,
				"--annotation", "io.ocisnap.view-binds=boot/vmlinuz:/run/boot/vmlinuz",
				"--annotation", "io.ocisnap.view-mount=/mnt/boot",
				img, "sleep", "1000")
			out := p.run("exec", id, "sh", "-c", viewCheck("/run/boot/vmlinuz", "/mnt/boot/config.json"))
			expectView(t, out, map[string]string{"/run/boot/vmlinuz": "VIEW-KERNEL", "/mnt/boot/config.json": "{}"})
			if n := len(loopDevicesOf(image)); n != 1 {
				t.Errorf("%d loop devices on %s, want 1", n, image)
			}
			p.run("stop", "-t", "0", id)
			p.run("rm", id)
			waitNoTraces(t, defaultStateDir, id, image)
		}
	})
}

// TestViewPolicyOverlapFlags: a hooks.d file whose --allow-view-dir lies
// inside its --allow-dir makes the hook refuse to run (exit 2, both
// directories named on stderr), and so every container it is asked about
// fails to start, touching nothing.
func TestViewPolicyOverlapFlags(t *testing.T) {
	testutil.RequireRoot(t)
	allow := snapshotDir(t)
	views := filepath.Join(allow, "views")
	must(t, os.Mkdir(views, 0o700))
	stateDir := t.TempDir()
	args := []string{"--allow-dir", allow, "--allow-view-dir", views, "--state-dir", stateDir}
	cmd := exec.Command(hookBin, append(args, "createRuntime")...)
	cmd.Stdin = strings.NewReader(`{"ociVersion":"1.0.2","id":"c1","status":"creating","bundle":"/nonexistent",` +
		`"annotations":{"io.ocisnap.export":"` + allow + `/x.tar"}}`)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("hook with overlapping dirs: %v, want exit 2\n%s", err, stderr.String())
	}
	for _, d := range []string{allow, views} {
		if !strings.Contains(stderr.String(), strconv.Quote(d)) {
			t.Errorf("stderr does not name %s:\n%s", d, stderr.String())
		}
	}

	p := newPodman(t, writeHooksDir(t, t.TempDir(), hookBin, 0, args...))
	img := p.testImage()
	snap := filepath.Join(allow, "x.tar")
	out, err := p.runErr("run", "--rm", "--network=none", "--annotation", "io.ocisnap.export="+snap, img, "true")
	if err == nil {
		t.Fatalf("container started with a misconfigured hook:\n%s", out)
	}
	if !strings.Contains(out, "overlap") || !strings.Contains(out, strconv.Quote(views)) {
		t.Errorf("podman's error does not carry the hook's:\n%s", out)
	}
	if _, err := os.Lstat(snap); err == nil {
		t.Errorf("an export was written")
	}
	if ents, _ := os.ReadDir(stateDir); len(ents) > 0 {
		t.Errorf("state left: %v", ents)
	}
}
