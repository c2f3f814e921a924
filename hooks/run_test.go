package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	cihooks "go.podman.io/common/pkg/hooks"

	"github.com/ocisnap/ocisnap/pkg/failurelog"
)

func TestStageOf(t *testing.T) {
	for _, c := range []struct {
		forced string
		status specs.ContainerState
		want   string
		err    bool
	}{
		{"", specs.StateCreating, StageCreateRuntime, false}, // runc
		{"", specs.StateCreated, StageCreateRuntime, false},  // crun
		{"", specs.StateStopped, StagePoststop, false},
		{"", specs.StateRunning, "", true},
		{"createContainer", specs.StateCreating, StageCreateContainer, false},
		{"poststop", specs.StateRunning, StagePoststop, false},
		{"bogus", specs.StateCreating, "", true},
	} {
		got, err := stageOf(c.forced, &specs.State{Status: c.status})
		if (err != nil) != c.err || got != c.want {
			t.Errorf("stageOf(%q, %q) = %q, %v; want %q, err=%v", c.forced, c.status, got, err, c.want, c.err)
		}
	}
}

// TestNothingAskedTouchesNothing: with no relevant annotation the hook
// returns at once, before it even loads config.json (the bundle here does
// not exist).
func TestNothingAskedTouchesNothing(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.StatusDir = filepath.Join(t.TempDir(), "status")
	for _, status := range []string{"creating", "stopped"} {
		st, _ := json.Marshal(map[string]any{"ociVersion": "1.0.2", "id": "c1", "status": status,
			"bundle": "/nonexistent/bundle", "annotations": map[string]string{"foo": "bar"}})
		if err := Run(context.Background(), cfg, bytes.NewReader(st)); err != nil {
			t.Errorf("status %s: %v", status, err)
		}
	}
	if _, err := os.Stat(cfg.StateDir); err == nil {
		t.Errorf("state dir created for a container that asked nothing")
	}
}

// TestShippedHooksJSON: the shipped hooks.d files load with the library
// CRI-O and Podman use, and match exactly the intended annotations: the
// main one every io.ocisnap.* key, whatever its value (a typo or an empty
// value must reach the hook, which refuses it), and nothing else.
func TestShippedHooksJSON(t *testing.T) {
	for _, c := range []struct {
		file   string
		ann    map[string]string
		match  bool
		stages []string
	}{
		{"../oci-hooks.d/ocisnap.json", map[string]string{KeyRestore: "/x"}, true, []string{"createRuntime", "poststop"}},
		{"../oci-hooks.d/ocisnap.json", map[string]string{KeyExport + ".app": "/x"}, true, nil},
		{"../oci-hooks.d/ocisnap.json", map[string]string{KeyView: "image"}, true, nil},
		{"../oci-hooks.d/ocisnap.json", map[string]string{KeyExportFormat: "oci"}, true, nil},
		{"../oci-hooks.d/ocisnap.json", map[string]string{KeyViewBinds: "a:/b"}, true, nil},
		{"../oci-hooks.d/ocisnap.json", map[string]string{KeyViewMount + ".app": "/m"}, true, nil},
		{"../oci-hooks.d/ocisnap.json", map[string]string{"io.ocisnap.restor": "/x"}, true, nil},
		{"../oci-hooks.d/ocisnap.json", map[string]string{"io.ocisnap.export-fromat.a.b": "oci"}, true, nil},
		{"../oci-hooks.d/ocisnap.json", map[string]string{KeyRestore: ""}, true, nil},
		{"../oci-hooks.d/ocisnap.json", map[string]string{"xio.ocisnap.restore": "/x"}, false, nil},
		{"../oci-hooks.d/ocisnap.json", map[string]string{"io.ocisnapx.restore": "/x"}, false, nil},
		{"../oci-hooks.d/ocisnap.json", map[string]string{"io.ocisnap": "/x"}, false, nil},
		{"../oci-hooks.d/ocisnap.json", map[string]string{KeyGVisorRestore: "/x"}, false, nil},
		{"../oci-hooks.d/ocisnap.json", map[string]string{"other": "io.ocisnap.restore"}, false, nil},
		{"../oci-hooks.d/examples/ocisnap-gvisor.json", map[string]string{KeyGVisorRestore: "/x"}, true, []string{"createRuntime"}},
		{"../oci-hooks.d/examples/ocisnap-gvisor.json", map[string]string{KeyGVisorRestore + ".app": "/x"}, true, nil},
	} {
		// hooks.Read checks that hook.path exists: point it at this test binary.
		data, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		data = bytes.Replace(data, []byte("/usr/libexec/oci/hooks.d/ocisnap-hook"), []byte(os.Args[0]), 1)
		tmp := filepath.Join(t.TempDir(), filepath.Base(c.file))
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			t.Fatal(err)
		}
		h, err := cihooks.Read(tmp, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if c.stages != nil && strings.Join(h.Stages, ",") != strings.Join(c.stages, ",") {
			t.Errorf("%s: stages %v, want %v", c.file, h.Stages, c.stages)
		}
		m, err := h.When.Match(&specs.Spec{}, c.ann, false)
		if err != nil {
			t.Fatal(err)
		}
		if m != c.match {
			t.Errorf("%s with %v: match=%v, want %v", c.file, c.ann, m, c.match)
		}
	}
}

// TestManPageHooksJSON: the hooks.d file that ocisnap-hook(8) shows is the
// shipped one, byte for byte.
func TestManPageHooksJSON(t *testing.T) {
	page, err := os.ReadFile("../docs/ocisnap-hook.8.md")
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := os.ReadFile("../oci-hooks.d/ocisnap.json")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(page), "*/usr/share/containers/oci/hooks.d/ocisnap.json*:\n\n```\n")
	example, _, closed := strings.Cut(after, "```\n")
	if !ok || !closed {
		t.Fatal("ocisnap-hook.8.md: no example of the shipped hooks.d file after its path")
	}
	if example != string(shipped) {
		t.Errorf("ocisnap-hook.8.md shows\n%s\nthe shipped oci-hooks.d/ocisnap.json is\n%s", example, shipped)
	}
}

// TestPoststopCorruptState: an unreadable state file is logged, recorded
// for ocisnap status, and the hook exits 0 (so the runtime's delete goes
// on), unless --strict-export.
func TestPoststopCorruptState(t *testing.T) {
	for _, strict := range []bool{false, true} {
		cfg := DefaultConfig()
		cfg.StateDir = t.TempDir()
		cfg.StatusDir = t.TempDir()
		cfg.StrictExport = strict
		var log bytes.Buffer
		cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
		if err := os.WriteFile(filepath.Join(cfg.StateDir, "c1.json"), []byte("{not json"), 0o600); err != nil {
			t.Fatal(err)
		}
		st, _ := json.Marshal(map[string]any{"ociVersion": "1.0.2", "id": "c1", "status": "stopped",
			"bundle": "/nonexistent", "annotations": map[string]string{KeyExport: "/var/lib/ocisnap/x.tar"}})
		err := Run(context.Background(), cfg, bytes.NewReader(st))
		if (err != nil) != strict {
			t.Errorf("strict=%v: err = %v", strict, err)
		}
		if !strings.Contains(log.String(), "unreadable state") {
			t.Errorf("strict=%v: not logged: %s", strict, log.String())
		}
		recs, errs := failurelog.Dir{Path: cfg.StatusDir}.List()
		if len(errs) != 0 || len(recs) != 1 || recs[0].Kind != failurelog.KindState || recs[0].Container != "c1" ||
			!strings.Contains(recs[0].Cause, "c1.json") {
			t.Errorf("strict=%v: failure records %+v %v", strict, recs, errs)
		}
	}
}

// TestDefaultAllowDirCreated: the built-in snapshot directory is created
// 0700 when still allowed; a directory the administrator named is not.
func TestDefaultAllowDirCreated(t *testing.T) {
	base := t.TempDir()
	def := filepath.Join(base, "home/.local/share/ocisnap")
	named := filepath.Join(base, "named")
	for _, c := range []struct {
		allow []string
		want  bool
	}{{[]string{named}, false}, {[]string{named, def}, true}} {
		cfg := DefaultConfig()
		cfg.defaultAllowDir = def
		cfg.Policy.AllowDirs = c.allow
		h := &hook{cfg: &cfg, log: slog.New(slog.DiscardHandler)}
		h.ensureDefaultAllowDir()
		fi, err := os.Stat(def)
		if (err == nil) != c.want {
			t.Fatalf("allow %v: default dir exists=%v, want %v", c.allow, err == nil, c.want)
		}
		if c.want && fi.Mode().Perm() != 0o700 {
			t.Errorf("default dir mode %v, want 0700", fi.Mode().Perm())
		}
		if _, err := os.Stat(named); err == nil {
			t.Errorf("a named allow dir was created")
		}
	}
}
