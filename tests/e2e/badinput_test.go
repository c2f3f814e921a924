package e2e

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// tarEntry is one entry of a hand-built (hostile) tar.
type tarEntry struct {
	name, link string
	typ        byte
	body       string
	major      int64
}

func buildTar(t testing.TB, path string, ents []tarEntry, truncate bool) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)),
			ModTime: time.Unix(1700000000, 0), Devmajor: e.major, Format: tar.FormatPAX}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		must(t, tw.WriteHeader(h))
		if h.Size > 0 {
			_, err := tw.Write([]byte(e.body))
			must(t, err)
		}
	}
	if truncate {
		must(t, tw.Flush())
	} else {
		must(t, tw.Close())
	}
	must(t, os.WriteFile(path, buf.Bytes(), 0o600))
}

// TestBadInput: each hostile or broken request fails the container start
// with a message naming the annotation and the cause, and writes nothing
// outside the rootfs or the allowed directory.
func TestBadInput(t *testing.T) {
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	snapDir := snapshotDir(t)
	outside := t.TempDir() // not an allowed dir
	good := filepath.Join(outside, "good.tar")
	buildTar(t, good, []tarEntry{{name: "./", typ: tar.TypeDir}, {name: "./f", body: "x"}}, false)
	must(t, os.Symlink(outside, filepath.Join(snapDir, "escape")))
	must(t, os.WriteFile(filepath.Join(snapDir, "garbage.tar"), bytes.Repeat([]byte("not a tar at all "), 100), 0o600))

	hostAbs := "/ocisnap-e2e-abs-" + filepath.Base(snapDir)
	cases := []struct {
		name    string
		ents    []tarEntry // written to snapDir/<name>.tar when set
		trunc   bool
		restore string // annotation value when ents is nil
		export  string
		want    []string // substrings of the error
	}{
		{name: "outside-allow-dir", restore: good, want: []string{"io.ocisnap.restore", "not inside an allowed directory"}},
		{name: "symlink-out-of-allow-dir", restore: filepath.Join(snapDir, "escape", "good.tar"), want: []string{"io.ocisnap.restore", "escape"}},
		{name: "missing", restore: filepath.Join(snapDir, "missing.tar"), want: []string{"io.ocisnap.restore", "missing.tar"}},
		{name: "not-a-tar", restore: filepath.Join(snapDir, "garbage.tar"), want: []string{"io.ocisnap.restore", "tar"}},
		{name: "truncated", ents: []tarEntry{{name: "./a", body: "a"}, {name: "./b", body: "b"}}, trunc: true, want: []string{"truncated"}},
		{name: "dotdot", ents: []tarEntry{{name: "../x", body: "evil"}}, want: []string{"../x", "insecure path"}},
		{name: "absolute", ents: []tarEntry{{name: hostAbs, body: "evil"}}, want: []string{hostAbs}},
		{name: "inner-dotdot", ents: []tarEntry{{name: "a/../../x", body: "evil"}}, want: []string{"a/../../x"}},
		{name: "symlink-to-root", ents: []tarEntry{{name: "./evil", typ: tar.TypeSymlink, link: "/"},
			{name: "./evil{bundle}/victim", body: "evil"}}, want: []string{"evil"}},
		{name: "symlink-dotdot", ents: []tarEntry{{name: "./up", typ: tar.TypeSymlink, link: "../"},
			{name: "./up/victim", body: "evil"}}, want: []string{"up/victim"}},
		{name: "hardlink-host", ents: []tarEntry{{name: "./shadow", typ: tar.TypeLink, link: "/etc/shadow"}}, want: []string{"shadow"}},
		{name: "hardlink-victim", ents: []tarEntry{{name: "./v", typ: tar.TypeLink, link: "../victim"}}, want: []string{"../victim"}},
		{name: "device", ents: []tarEntry{{name: "./sda", typ: tar.TypeBlock, major: 8}}, want: []string{"sda", "device"}},
		{name: "export-outside", export: filepath.Join(outside, "out.tar"), want: []string{"io.ocisnap.export", "not inside an allowed directory"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBundle(t, img)
			victim := filepath.Join(b.dir, "victim")
			must(t, os.WriteFile(victim, []byte("victim"), 0o644))
			restore := c.restore
			if c.ents != nil {
				restore = filepath.Join(snapDir, c.name+".tar")
				ents := append([]tarEntry(nil), c.ents...)
				for i := range ents {
					ents[i].name = strings.ReplaceAll(ents[i].name, "{bundle}", b.dir)
				}
				buildTar(t, restore, ents, c.trunc)
			}
			if restore != "" {
				b.spec.Annotations["io.ocisnap.restore"] = restore
			}
			if c.export != "" {
				b.spec.Annotations["io.ocisnap.export"] = c.export
			}
			crioHooks(t, b, hooksDir)
			out, err := b.runToCompletion("sh", "-c", "echo started > /started")
			if err == nil {
				t.Fatalf("container started despite bad input:\n%s", out)
			}
			for _, w := range append(c.want, b.id) {
				if !strings.Contains(out, w) {
					t.Errorf("error does not mention %q:\n%s", w, out)
				}
			}
			if _, err := os.Stat(filepath.Join(b.rootfs, "started")); err == nil {
				t.Errorf("the container's process ran")
			}
			if data, err := os.ReadFile(victim); err != nil || string(data) != "victim" {
				t.Errorf("victim beside the rootfs changed: %q %v", data, err)
			}
			for _, p := range []string{hostAbs, filepath.Join(b.dir, "x"), filepath.Join(filepath.Dir(b.dir), "x"), filepath.Join(outside, "out.tar")} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was written", p)
					os.Remove(p)
				}
			}
			if _, err := os.Stat(filepath.Join(b.rootfs, "shadow")); err == nil {
				t.Errorf("hard link to a host file was created")
			}
		})
	}
}

// TestExportRefusedAtPoststop: a poststop-only export to a forbidden path
// writes nothing, and the runtime's delete still succeeds.
func TestExportRefusedAtPoststop(t *testing.T) {
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "img")
	buildImageRoot(t, img)
	outside := t.TempDir()
	b := newBundle(t, img)
	b.spec.Annotations["io.ocisnap.export"] = filepath.Join(outside, "out.tar")
	logFile := filepath.Join(t.TempDir(), "hook.log")
	b.spec.Hooks = &specs.Hooks{Poststop: []specs.Hook{ocisnapHook("--log-file", logFile)}}
	out, err := b.runToCompletion("sh", "-c", "echo x > /x")
	if err != nil {
		t.Fatalf("runc run/delete failed: %v\n%s", err, out)
	}
	if log, _ := os.ReadFile(logFile); !strings.Contains(string(log), "not inside an allowed directory") {
		t.Errorf("the refusal was not logged:\n%s", log)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("files written outside the allowed dir: %v", ents)
	}
	if _, err := b.runc("state", b.id); err == nil {
		t.Errorf("container still exists after runc run returned")
	}
}
