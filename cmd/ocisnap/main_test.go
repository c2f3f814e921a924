package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/pkg/layer"
)

// cli runs the CLI in-process with stdin and returns stdout, stderr and
// the exit status.
func cli(t *testing.T, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	errf, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close()
	a := &app{stdin: bytes.NewReader(stdin), stdout: out, stderr: errf, log: slog.Default()}
	code := runApp(a, args)
	o, _ := os.ReadFile(out.Name())
	e, _ := os.ReadFile(errf.Name())
	return string(o), string(e), code
}

func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"version"}, 0, ""},
		{[]string{"bogus"}, 2, "unknown command"},
		{[]string{"export"}, 2, "required flag"},
		{[]string{"export", "-o", "x.tar"}, 2, "exactly one of"},
		{[]string{"export", "a", "b", "-o", "x"}, 2, "accepts at most 1 arg"},
		{[]string{"export", "--format", "tgz", "-o", "x", "id"}, 2, "--format"},
		{[]string{"export", "--upper", "/nonexistent-ocisnap", "-o", "-"}, 1, "--upper"},
		{[]string{"apply", "only-one"}, 2, "accepts 2 arg"},
		{[]string{"apply", "--max-bytes", "lots", "a", "b"}, 2, "--max-bytes"},
		{[]string{"apply", "--uidmap", "0:100000", "a", "b"}, 2, "--uidmap"},
		{[]string{"apply", "/nonexistent-ocisnap.tar", "/tmp"}, 1, "snapshot"},
		{[]string{"convert", "a", "b"}, 2, "required flag"},
		{[]string{"convert", "--to", "zip", "a", "b"}, 2, "--to"},
		{[]string{"hooks", "--annotation", "novalue"}, 2, "KEY=VALUE"},
		{[]string{"hooks", "--stage", "later", "--hooks-dir", "/nonexistent"}, 2, "--stage"},
		{[]string{"--log-level", "loud", "version"}, 2, "--log-level"},
		{[]string{"gc", "--allow-dir", "relative", "--state-dir", "/nonexistent"}, 2, "absolute"},
		{[]string{"gc", "--allow-dir", "/srv/snaps", "--allow-view-dir", "/srv/snaps/views", "--state-dir", "/nonexistent"}, 2,
			`view directory "/srv/snaps/views" (--allow-view-dir) and allowed directory "/srv/snaps" (--allow-dir) overlap`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, stderr, code := cli(t, nil, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", code, tc.code, stderr)
			}
			if tc.err == "" {
				if stderr != "" {
					t.Fatalf("stderr %q", stderr)
				}
				return
			}
			first := strings.SplitN(stderr, "\n", 2)[0]
			if !strings.HasPrefix(first, "ocisnap") || !strings.Contains(first, tc.err) {
				t.Fatalf("first stderr line %q, want it to name %q", first, tc.err)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); (tc.code == 1 && n != 0) || n > 1 {
				t.Fatalf("error is not one line (plus the usage hint):\n%s", stderr)
			}
		})
	}
}

func TestParseIDMaps(t *testing.T) {
	m, err := parseIDMaps([]string{"0:100000:65536"}, []string{"0:200000:1", "1:300000:10"})
	if err != nil {
		t.Fatal(err)
	}
	want := &layer.IDMap{
		UIDs: []layer.IDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GIDs: []layer.IDMapping{{ContainerID: 0, HostID: 200000, Size: 1}, {ContainerID: 1, HostID: 300000, Size: 10}},
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %+v", m)
	}
	if m, err := parseIDMaps(nil, nil); m != nil || err != nil {
		t.Fatalf("no maps: %v, %v", m, err)
	}
	for _, bad := range []string{"1:2", "a:1:1", "1:2:3:4", "-1:0:1", "0:0:4294967296"} {
		if _, err := parseIDMaps([]string{bad}, nil); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// upperDir makes an overlay-upper-like directory: a file, a directory,
// a whiteout needs a device node, so only plain entries here.
func upperDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(d, "etc/app"), 0o755))
	must(os.WriteFile(filepath.Join(d, "etc/app/app.conf"), []byte("conf\n"), 0o644))
	must(os.WriteFile(filepath.Join(d, "new"), []byte("new\n"), 0o600))
	must(os.Symlink("new", filepath.Join(d, "link")))
	return d
}

func TestExportConvertDiffApply(t *testing.T) {
	up := upperDir(t)
	dir := t.TempDir()
	snap := filepath.Join(dir, "snap.tar")
	if _, stderr, code := cli(t, nil, "export", "--upper", up, "-o", snap); code != 0 {
		t.Fatalf("export: %d %s", code, stderr)
	}
	// The output is atomic: nothing else is left in the directory.
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("output directory holds %v", ents)
	}
	orig, _ := os.ReadFile(snap)

	// stdout, refused for a directory output.
	stdout, _, code := cli(t, nil, "export", "--upper", up, "-o", "-")
	if code != 0 || stdout != string(orig) {
		t.Fatalf("export to stdout: exit %d, equal %t", code, stdout == string(orig))
	}
	if _, stderr, code := cli(t, nil, "export", "--upper", up, "-o", dir); code != 1 || !strings.Contains(stderr, "is a directory") {
		t.Fatalf("directory output: %d %s", code, stderr)
	}

	// convert both ways, byte-identical; stdin to stdout.
	oci := filepath.Join(dir, "oci.tar.zst")
	if _, stderr, code := cli(t, nil, "convert", "--to", "oci", "--compression", "zstd", snap, oci); code != 0 {
		t.Fatalf("convert: %s", stderr)
	}
	ociBytes, _ := os.ReadFile(oci)
	back, stderr, code := cli(t, ociBytes, "convert", "--to", "overlay", "-", "-")
	if code != 0 || back != string(orig) {
		t.Fatalf("round trip: exit %d (%s), identical %t", code, stderr, back == string(orig))
	}

	// diff without a base: all added; with the upper itself as base: no
	// addition at all.
	out, stderr, code := cli(t, nil, "diff", snap)
	if code != 0 {
		t.Fatal(stderr)
	}
	want := "A /etc\nA /etc/app\nA /etc/app/app.conf\nA /link\nA /new\n"
	if out != want {
		t.Fatalf("diff:\n%s\nwant:\n%s", out, want)
	}
	out, stderr, code = cli(t, nil, "diff", "--json", "--base", up, snap)
	if code != 0 {
		t.Fatalf("diff --json --base: exit %d\n%s", code, stderr)
	}
	var js []map[string]any
	if err := json.Unmarshal([]byte(out), &js); err != nil {
		t.Fatal(err)
	}
	for _, c := range js {
		if c["kind"] == "A" {
			t.Errorf("against itself, %v is an addition", c)
		}
	}

	// apply onto an empty directory reproduces the upper.
	target := t.TempDir()
	if _, stderr, code := cli(t, nil, "apply", oci, target); code != 0 {
		t.Fatalf("apply: %s", stderr)
	}
	if b, err := os.ReadFile(filepath.Join(target, "etc/app/app.conf")); err != nil || string(b) != "conf\n" {
		t.Fatalf("applied file: %q, %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(target, "link")); err != nil || l != "new" {
		t.Fatalf("applied link: %q, %v", l, err)
	}
}

func TestApplyConfined(t *testing.T) {
	snap := testutil.Tar(t, testutil.File("../evil", ""))
	parent := t.TempDir()
	target := filepath.Join(parent, "root")
	os.Mkdir(target, 0o755)
	_, stderr, code := cli(t, snap, "apply", "-", target)
	if code != 1 || !strings.Contains(stderr, "../evil") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(parent, "evil")); err == nil {
		t.Fatal("written outside the target")
	}
}

func TestHooksCommand(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(t.TempDir(), "ocisnap-hook")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	hookJSON := `{"version": "1.0.0", "hook": {"path": "` + bin + `", "args": ["ocisnap-hook", "--allow-dir", "/var/lib/ocisnap"]},
	  "when": {"annotations": {"^io\\.ocisnap\\.": ".*"}}, "stages": ["createRuntime", "poststop"]}`
	os.WriteFile(filepath.Join(dir, "ocisnap.json"), []byte(hookJSON), 0o644)
	os.WriteFile(filepath.Join(dir, "README"), []byte("not a hook"), 0o644)

	out, stderr, code := cli(t, nil, "hooks", "--hooks-dir", dir, "-a", "io.ocisnap.export=/var/lib/ocisnap/a.tar")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"ocisnap.json: ok (ocisnap)", "createRuntime:", "record-export:", "poststop:", "export: write the writable layer to /var/lib/ocisnap/a.tar"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	// A refused action is reported, not an error of the command: exit 0.
	out, stderr, code = cli(t, nil, "hooks", "--hooks-dir", dir, "-a", "io.ocisnap.export=/tmp/a.tar", "--stage", "prestart")
	if code != 0 || !strings.Contains(out, "FAILS") || strings.Contains(out, "poststop:") {
		t.Errorf("export outside the allow-dir, createRuntime only: exit %d\n%s\n%s", code, out, stderr)
	}

	os.WriteFile(filepath.Join(dir, "zz-bad.json"), []byte(`{"version": "1.0.0", "hook": {"path": "`+bin+`"}, "stages": ["sometime"]}`), 0o644)
	out, stderr, code = cli(t, nil, "hooks", "--hooks-dir", dir, "-a", "io.ocisnap.export=/var/lib/ocisnap/a.tar")
	if code != 1 || !strings.Contains(stderr, "zz-bad.json") || !strings.Contains(out, "zz-bad.json: INVALID") ||
		!strings.Contains(out, "cannot load") || !strings.Contains(out, "record-export:") {
		t.Fatalf("invalid file: exit %d\n%s\n%s", code, out, stderr)
	}
}

// TestHooksCommandForms: -a takes what podman's --annotation takes (a value
// split at commas, CSV-quoted to keep them; ';' between list items), and
// the report never shows an empty "error:", nor says no ocisnap hook runs
// for a per-container key of another container that it just listed.
func TestHooksCommandForms(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(t.TempDir(), "ocisnap-hook")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "ocisnap.json"), []byte(`{"version": "1.0.0", "hook": {"path": "`+bin+`", "args": ["ocisnap-hook"]},
	  "when": {"annotations": {"^io\\.ocisnap\\.": ".*"}}, "stages": ["createRuntime", "poststop"]}`), 0o644)
	hooks := func(ann ...string) (string, string, int) {
		args := []string{"hooks", "--hooks-dir", dir}
		for _, a := range ann {
			args = append(args, "-a", a)
		}
		return cli(t, nil, args...)
	}
	for _, ann := range [][]string{
		{"io.ocisnap.view=image", "io.ocisnap.view-binds=a:/a;b:/b"},
		{"io.ocisnap.view=image", `"io.ocisnap.view-binds=a:/a,b:/b"`},
		{"io.ocisnap.view=image,io.ocisnap.view-binds=a:/a;b:/b"},
	} {
		out, stderr, code := hooks(ann...)
		if code != 0 || !strings.Contains(out, "view: view image, bind a -> /a, bind b -> /b") {
			t.Errorf("%q: exit %d\n%s\n%s", ann, code, out, stderr)
		}
	}
	_, stderr, code := hooks("io.ocisnap.view=image", "io.ocisnap.view-binds=a:/a,b:/b")
	if code != 2 || !strings.Contains(stderr, `"b:/b"`) || !strings.Contains(stderr, "separate list items with ';'") {
		t.Errorf("a list split at its comma: exit %d: %s", code, stderr)
	}

	out, _, code := hooks("io.ocisnap.restor=/var/lib/ocisnap/a.tar")
	if code != 0 || !strings.Contains(out, "error: the hook refuses the annotations") || !strings.Contains(out, "did you mean io.ocisnap.restore?") {
		t.Errorf("typo: exit %d\n%s", code, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == "error:" {
			t.Errorf("empty error line:\n%s", out)
		}
	}

	out, _, code = hooks("io.ocisnap.restore.web=/var/lib/ocisnap/a.tar")
	if code != 0 || strings.Contains(out, "no ocisnap hook runs") || !strings.Contains(out, `io.ocisnap.restore.web is for container "web"`) {
		t.Errorf("another container's key: exit %d\n%s", code, out)
	}
	out, _, _ = hooks("foo=bar")
	if !strings.Contains(out, "no ocisnap hook runs") {
		t.Errorf("an unrelated annotation:\n%s", out)
	}
}

// TestGCHelp: gc lists the flags it uses, and accepts the hook's others
// unlisted, so that the hook's arguments can be passed unchanged.
func TestGCHelp(t *testing.T) {
	out, _, code := cli(t, nil, "gc", "--help")
	if code != 0 || !strings.Contains(out, "--allow-dir") || !strings.Contains(out, "--state-dir") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, f := range []string{"--max-bytes", "--max-entries", "--allow-devices", "--gvisor-compat", "--strict-export", "--status-dir"} {
		if strings.Contains(out, f) {
			t.Errorf("gc --help lists %s", f)
		}
	}
	_, stderr, code := cli(t, nil, "gc", "--state-dir", t.TempDir(), "--allow-dir", t.TempDir(), "--max-bytes", "5", "--strict-export", "--gvisor-compat")
	if code != 0 {
		t.Errorf("gc with the hook's other flags: exit %d: %s", code, stderr)
	}
}
