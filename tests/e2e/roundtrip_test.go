package e2e

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/pkg/layer"
)

// changes is what the first container does to its filesystem: every kind of
// change the contract lists.
const changes = `set -e
mkdir -p /new/dir/sub && echo hello > /new/dir/file && : > /new/empty
dd if=/dev/urandom of=/new/big bs=1M count=64 2>/dev/null
echo modified >> /etc/app/app.conf
rm /README && rm -rf /data/old
mkdir -p /opq && echo x > /opq/lower
ln -s ../etc/app/app.conf /new/link && ln /new/dir/file /new/hl && mkfifo /new/fifo
echo s > /new/suid && chmod 4755 /new/suid && echo g > /new/sgid && chmod 2711 /new/sgid
mkdir /new/sticky && chmod 1777 /new/sticky
echo o > /new/owned && chown 1234:5678 /new/owned
rm -rf /etc/app && mkdir /etc/app && echo fresh > /etc/app/fresh
echo old > /new/old && touch -d '2001-02-03 04:05:06' /new/old
sync`

// snapshotDir makes a fresh directory inside the default allow-dir.
func snapshotDir(t testing.TB) string {
	t.Helper()
	must(t, os.MkdirAll("/var/lib/ocisnap", 0o700))
	d, err := os.MkdirTemp("/var/lib/ocisnap", "e2e-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func TestPodmanRoundTrip(t *testing.T) {
	p := newPodman(t, hooksDir)
	img := p.testImage()
	snapDir := snapshotDir(t)
	for _, v := range []struct{ format, comp string }{
		{"overlay", "none"}, {"oci", "none"}, {"overlay", "zstd"}, {"oci", "gzip"},
	} {
		t.Run(v.format+"-"+v.comp, func(t *testing.T) {
			snap := filepath.Join(snapDir, v.format+"-"+v.comp+".tar")
			id := p.run("run", "-d", "--network=none",
				"--annotation", "io.ocisnap.export="+snap,
				"--annotation", "io.ocisnap.export-format="+v.format,
				"--annotation", "io.ocisnap.export-compression="+v.comp,
				img, "sleep", "1000")
			p.run("exec", id, "sh", "-c", changes)
			merged := p.mergedDir(id)
			must(t, unix.Lsetxattr(filepath.Join(merged, "new/dir/file"), "user.e2e", []byte("xv"), 0))
			want := manifest(t, merged)
			p.run("stop", "-t", "0", id)
			p.run("rm", id)

			if _, err := os.Stat(snap); err != nil {
				t.Fatalf("no snapshot after stop: %v", err)
			}
			assertNoTemps(t, snapDir)
			checkSnapshotFormat(t, snap, layer.Format(v.format))

			id2 := p.run("run", "-d", "--network=none", "--annotation", "io.ocisnap.restore="+snap, img, "sleep", "1000")
			got := manifest(t, p.mergedDir(id2))
			p.run("rm", "-f", "-t", "0", id2)
			if got != want {
				t.Fatalf("restored container differs from the exported one:\n%s", testutil.TreeDiff(want, got))
			}
			for _, gone := range []string{"README", "data/old", "etc/app/app.conf", "etc/app/keep.conf"} {
				if strings.Contains(got, "\n"+gone+" ") || strings.HasPrefix(got, gone+" ") {
					t.Errorf("%s should be deleted after restore", gone)
				}
			}
		})
	}
}

// TestPodmanKeepAcrossRestarts: restore and export naming the same path
// keep a container's writable layer across restarts.
func TestPodmanKeepAcrossRestarts(t *testing.T) {
	p := newPodman(t, hooksDir)
	img := p.testImage()
	snap := filepath.Join(snapshotDir(t), "state.tar.zst")
	both := []string{"--annotation", "io.ocisnap.restore=" + snap, "--annotation", "io.ocisnap.export=" + snap,
		"--annotation", "io.ocisnap.export-compression=zstd"}
	// First run: no snapshot yet, so only export.
	p.run("run", "--network=none", "--annotation", "io.ocisnap.export="+snap,
		"--annotation", "io.ocisnap.export-compression=zstd", img, "sh", "-c", "echo one > /one && rm /README")
	args := append([]string{"run", "--network=none"}, both...)
	p.run(append(args, img, "sh", "-c", "test -f /one && test ! -e /README && echo two > /two")...)
	out := p.run(append(args, img, "sh", "-c", "cat /one /two; test ! -e /README && echo gone")...)
	if out != "one\ntwo\ngone" {
		t.Fatalf("third run saw %q, want one, two and README gone", out)
	}
}

func assertNoTemps(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	for _, e := range ents {
		if strings.Contains(e.Name(), "tmp") {
			t.Errorf("temporary file left in snapshot dir: %s", e.Name())
		}
	}
}

// checkSnapshotFormat reads the raw tar bytes back (independently of our
// reader) and checks the format's markers and the excluded stubs.
func checkSnapshotFormat(t testing.TB, snap string, f layer.Format) {
	t.Helper()
	names := readTarHeaders(t, snap)
	if _, ok := names["./"]; !ok {
		t.Errorf("no ./ root entry")
	}
	switch f {
	case layer.FormatOverlay:
		if h := names["./README"]; h == nil || h.Typeflag != tar.TypeChar || h.Devmajor != 0 || h.Devminor != 0 {
			t.Errorf("./README is not a char 0/0 whiteout: %+v", h)
		}
		if h := names["./etc/app/"]; h == nil || h.PAXRecords["SCHILY.xattr.trusted.overlay.opaque"] != "y" {
			t.Errorf("./etc/app/ is not opaque: %+v", h)
		}
	case layer.FormatOCI:
		for _, n := range []string{"./.wh.README", "./data/.wh.old", "./etc/app/.wh..wh..opq"} {
			if names[n] == nil {
				t.Errorf("no %s entry", n)
			}
		}
	}
	for n, h := range names {
		for _, stub := range []string{"./proc/", "./sys/", "./dev/", "./etc/hosts", "./etc/resolv.conf", "./etc/hostname", "./run/.containerenv"} {
			if strings.HasPrefix(n, stub) && n != "./run/" {
				t.Errorf("runtime stub exported: %s", n)
			}
		}
		for k := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.trusted.overlay.") && k != "SCHILY.xattr.trusted.overlay.opaque" {
				t.Errorf("%s: overlay-internal xattr exported: %s", n, k)
			}
		}
	}
	if h := names["./new/hl"]; h == nil || h.Typeflag != tar.TypeLink {
		if h2 := names["./new/dir/file"]; h2 == nil || h2.Typeflag != tar.TypeLink {
			t.Errorf("hard link not preserved (./new/hl %+v)", h)
		}
	}
	if h := names["./new/owned"]; h == nil || h.Uid != 1234 || h.Gid != 5678 {
		t.Errorf("./new/owned owner: %+v", h)
	}
	if h := names["./new/suid"]; h == nil || h.Mode&04000 == 0 {
		t.Errorf("./new/suid lost setuid: %+v", h)
	}
	if h := names["./new/empty"]; h == nil || h.ModTime.Nanosecond() == 0 {
		t.Errorf("./new/empty lost its mtime's nanoseconds: %+v", h)
	}
	if h := names["./new/old"]; h == nil || h.ModTime.Year() != 2001 {
		t.Errorf("./new/old lost its mtime: %+v", h)
	}
}

// readTarHeaders decompresses with the system tools' view of the format
// (gzip/zstd magic) and returns the headers by name.
func readTarHeaders(t testing.TB, snap string) map[string]*tar.Header {
	t.Helper()
	f, err := os.Open(snap)
	must(t, err)
	defer f.Close()
	rc, _, err := layer.Decompress(f)
	must(t, err)
	defer rc.Close()
	tr := tar.NewReader(rc)
	names := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		must(t, err)
		names[h.Name] = h
	}
	return names
}

// TestGNUTarReadsExport: GNU tar lists our overlay export as expected.
func TestGNUTarReadsExport(t *testing.T) {
	p := newPodman(t, hooksDir)
	img := p.testImage()
	snap := filepath.Join(snapshotDir(t), "gnu.tar")
	p.run("run", "--network=none", "--annotation", "io.ocisnap.export="+snap, img, "sh", "-c",
		"mkdir /d && echo a > /d/f && ln -s f /d/l && rm /README")
	out, err := exec.Command("tar", "--numeric-owner", "-tvf", snap).CombinedOutput()
	if err != nil {
		t.Fatalf("GNU tar -tvf: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{"./d/f", "./d/l -> f", "./README", "./d/"} {
		if !strings.Contains(s, want) {
			t.Errorf("GNU tar listing lacks %q:\n%s", want, s)
		}
	}
	for _, l := range strings.Split(s, "\n") {
		if strings.HasSuffix(l, " ./README") && !strings.HasPrefix(l, "c") {
			t.Errorf("README whiteout is not a char device in GNU tar's view: %s", l)
		}
	}
}
