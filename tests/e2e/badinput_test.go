package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// writeTar writes nodes to path as a snapshot; truncate leaves out the
// end-of-archive blocks.
func writeTar(t testing.TB, path string, nodes []testutil.Node, truncate bool) {
	t.Helper()
	b := testutil.Tar(t, nodes...)
	if truncate {
		b = testutil.TarUnterminated(t, nodes...)
	}
	must(t, os.WriteFile(path, b, 0o600))
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
	writeTar(t, good, []testutil.Node{testutil.Dir("./"), testutil.File("./f", "x")}, false)
	must(t, os.Symlink(outside, filepath.Join(snapDir, "escape")))
	must(t, os.WriteFile(filepath.Join(snapDir, "garbage.tar"), bytes.Repeat([]byte("not a tar at all "), 100), 0o600))

	hostAbs := "/ocisnap-e2e-abs-" + filepath.Base(snapDir)
	cases := []struct {
		name    string
		ents    []testutil.Node // written to snapDir/<name>.tar when set
		trunc   bool
		restore string // annotation value when ents is nil
		export  string
		want    []string // substrings of the error
	}{
		{name: "outside-allow-dir", restore: good, want: []string{"io.ocisnap.restore", "not inside an allowed directory"}},
		{name: "symlink-out-of-allow-dir", restore: filepath.Join(snapDir, "escape", "good.tar"), want: []string{"io.ocisnap.restore", "escape"}},
		{name: "missing", restore: filepath.Join(snapDir, "missing.tar"), want: []string{"io.ocisnap.restore", "missing.tar"}},
		{name: "not-a-tar", restore: filepath.Join(snapDir, "garbage.tar"), want: []string{"io.ocisnap.restore", "tar"}},
		{name: "truncated", ents: []testutil.Node{testutil.File("./a", "a"), testutil.File("./b", "b")}, trunc: true, want: []string{"truncated"}},
		{name: "dotdot", ents: []testutil.Node{testutil.File("../x", "evil")}, want: []string{"../x", "insecure path"}},
		{name: "absolute", ents: []testutil.Node{testutil.File(hostAbs, "evil")}, want: []string{hostAbs}},
		{name: "inner-dotdot", ents: []testutil.Node{testutil.File("a/../../x", "evil")}, want: []string{"a/../../x"}},
		{name: "symlink-to-root", ents: []testutil.Node{
			testutil.Symlink("./evil", "/"),
			testutil.File("./evil{bundle}/victim", "evil"),
		}, want: []string{"evil"}},
		{name: "symlink-dotdot", ents: []testutil.Node{
			testutil.Symlink("./up", "../"),
			testutil.File("./up/victim", "evil"),
		}, want: []string{"up/victim"}},
		{name: "hardlink-host", ents: []testutil.Node{testutil.Hardlink("./shadow", "/etc/shadow")}, want: []string{"shadow"}},
		{name: "hardlink-victim", ents: []testutil.Node{testutil.Hardlink("./v", "../victim")}, want: []string{"../victim"}},
		{name: "device", ents: []testutil.Node{testutil.Block("./sda", 8, 0)}, want: []string{"sda", "device"}},
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
				ents := append([]testutil.Node(nil), c.ents...)
				for i := range ents {
					ents[i].Header.Name = strings.ReplaceAll(ents[i].Header.Name, "{bundle}", b.dir)
				}
				writeTar(t, restore, ents, c.trunc)
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
