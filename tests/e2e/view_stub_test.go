package e2e

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestViewStubPodman: a view bind at /artifacts/vmlinuz (the image has no
// /artifacts: the hook creates it and the kernel's mountpoint) and one at
// /run/k/initrd.img; the container writes /artifacts/notes.txt and
// /artifacts/sub/f beside the bound kernel. After the stop the exported
// snapshot holds them and no stub (neither the kernel's mountpoint nor
// /run/k, where nothing was written), and a new container restored from
// it sees them.
func TestViewStubPodman(t *testing.T) {
	p := newPodman(t, hooksDir)
	img := p.testImage()
	snap := filepath.Join(snapshotDir(t), "stub.tar")
	id := p.run("run", "-d", "--network=none",
		"--annotation", "io.ocisnap.view=image",
		"--annotation", annotation("io.ocisnap.view-binds", "boot/vmlinuz:/artifacts/vmlinuz,boot/initrd.img:/run/k/initrd.img"),
		"--annotation", "io.ocisnap.export="+snap,
		img, "sleep", "1000")
	out := p.run("exec", id, "sh", "-c", "echo NOTES > /artifacts/notes.txt && mkdir /artifacts/sub && echo F > /artifacts/sub/f && "+
		viewCheck("/artifacts/vmlinuz", "/run/k/initrd.img"))
	expectView(t, out, map[string]string{"/artifacts/vmlinuz": imageKernel, "/run/k/initrd.img": imageInitrd})
	p.run("stop", "-t", "0", id)
	p.run("rm", id)
	waitNoTraces(t, defaultStateDir, id)

	got := snapshotFiles(t, snap)
	for name, want := range map[string]string{"./artifacts/notes.txt": "NOTES\n", "./artifacts/sub/f": "F\n"} {
		if c, ok := got[name]; !ok || c != want {
			t.Errorf("snapshot %s = %q (present: %v), want %q", name, c, ok, want)
		}
	}
	for _, stub := range []string{"./artifacts/vmlinuz", "./run/k/", "./run/k/initrd.img"} {
		if _, ok := got[stub]; ok {
			t.Errorf("snapshot holds the stub %s", stub)
		}
	}
	if t.Failed() {
		t.Logf("snapshot entries: %v", got)
	}

	out = p.run("run", "--rm", "--network=none", "--annotation", "io.ocisnap.restore="+snap, img,
		"sh", "-c", "cat /artifacts/notes.txt /artifacts/sub/f; ls -a /artifacts; test -e /run/k && echo STUB-RUN-K; true")
	if want := "NOTES\nF\n.\n..\nnotes.txt\nsub"; out != want {
		t.Errorf("restored container sees:\n%s\nwant:\n%s", out, want)
	}
}

// snapshotFiles maps each entry name of an uncompressed snapshot tar to its
// content ("" for a non-regular entry).
func snapshotFiles(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	out := make(map[string]string)
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		must(t, err)
		var b strings.Builder
		if h.Typeflag == tar.TypeReg {
			_, err := io.Copy(&b, tr)
			must(t, err)
		}
		out[h.Name] = b.String()
	}
}
