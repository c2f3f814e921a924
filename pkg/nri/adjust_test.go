package nri

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"

	"github.com/ocisnap/ocisnap/pkg/ocistate"
)

// The shipped hooks.d rule (oci-hooks.d/ocisnap.json) with a hook path
// that exists in the test.
const ocisnapJSON = `{
  "version": "1.0.0",
  "hook": {"path": %q, "args": ["ocisnap-hook", "--allow-dir", "/srv/snaps/{namespace}"]},
  "when": {"annotations": {"^io\\.ocisnap\\.(restore|export|view)(\\.[^.]+)?$": ".+"}},
  "stages": ["createRuntime", "poststop"]
}`

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// hooksDir writes files (name → content, %q filled with a hook binary's
// path) into a new directory.
func hooksDir(t *testing.T, files map[string]string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(t.TempDir(), "ocisnap-hook")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for n, c := range files {
		writeHook(t, filepath.Join(dir, n), c, bin)
	}
	return dir, bin
}

func writeHook(t *testing.T, path, content, bin string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(sprintf(content, bin)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func pod(ann map[string]string) *api.PodSandbox {
	return &api.PodSandbox{Id: "pod1", Name: "web", Namespace: "team-a", Annotations: ann}
}

func ctr(name string, ann map[string]string) *api.Container {
	return &api.Container{Id: "c-" + name, PodSandboxId: "pod1", Name: name, Annotations: ann, Args: []string{"/bin/sh"}}
}

// TestAdjustPerContainerKeys: two containers of one pod with per-container
// pod annotations each get their own keys (not the other's) and the hooks;
// pod keys are copied because containerd passes none to containers.
func TestAdjustPerContainerKeys(t *testing.T) {
	dir, bin := hooksDir(t, map[string]string{"ocisnap.json": ocisnapJSON})
	hd := NewHooksDir([]string{dir}, quietLog())
	p := pod(map[string]string{
		"io.ocisnap.export.app1":   "/srv/snaps/team-a/app1.tar",
		"io.ocisnap.export.app2":   "/srv/snaps/team-a/app2.tar",
		"io.ocisnap.export-format": "overlay",
		"unrelated":                "x",
	})
	for _, tc := range []struct{ name, own, other string }{{"app1", "io.ocisnap.export.app1", "io.ocisnap.export.app2"}, {"app2", "io.ocisnap.export.app2", "io.ocisnap.export.app1"}} {
		d, err := Adjust(p, ctr(tc.name, nil), hd)
		if err != nil {
			t.Fatal(err)
		}
		a := d.Adjustment
		if a == nil {
			t.Fatalf("%s: no adjustment (%s)", tc.name, d.Why)
		}
		if a.Annotations[tc.own] != p.Annotations[tc.own] || a.Annotations["io.ocisnap.export-format"] != "overlay" {
			t.Errorf("%s: annotations %v", tc.name, a.Annotations)
		}
		if _, ok := a.Annotations[tc.other]; ok {
			t.Errorf("%s got the other container's key %s", tc.name, tc.other)
		}
		if _, ok := a.Annotations["unrelated"]; ok {
			t.Errorf("%s: a key that is not ocisnap's was copied", tc.name)
		}
		h := a.GetHooks()
		if len(h.GetCreateRuntime()) != 1 || len(h.GetPoststop()) != 1 || len(h.GetPrestart()) != 0 || len(h.GetCreateContainer()) != 0 {
			t.Fatalf("%s: hooks %v", tc.name, h)
		}
		if got := h.CreateRuntime[0]; got.Path != bin || !slices.Equal(got.Args, []string{"ocisnap-hook", "--allow-dir", "/srv/snaps/{namespace}"}) {
			t.Errorf("%s: hook %v, want the file's path and args unchanged", tc.name, got)
		}
	}
}

// TestAdjustPrecedence: a container-level key replaces the pod's key of the
// same name; the per-container key of either source is copied beside the
// plain one (the hook prefers it, ocistate.Container.Annotation).
func TestAdjustPrecedence(t *testing.T) {
	dir, _ := hooksDir(t, map[string]string{"ocisnap.json": ocisnapJSON})
	hd := NewHooksDir([]string{dir}, quietLog())
	p := pod(map[string]string{"io.ocisnap.export": "/pod.tar", "io.ocisnap.restore.app1": "/pod-r.tar"})
	c := ctr("app1", map[string]string{"io.ocisnap.export": "/ctr.tar", "io.ocisnap.view": "image"})
	d, err := Adjust(p, c, hd)
	if err != nil || d.Adjustment == nil {
		t.Fatal(err, d)
	}
	want := map[string]string{"io.ocisnap.export": "/ctr.tar", "io.ocisnap.restore.app1": "/pod-r.tar", "io.ocisnap.view": "image"}
	for k, v := range want {
		if d.Adjustment.Annotations[k] != v {
			t.Errorf("%s = %q, want %q", k, d.Adjustment.Annotations[k], v)
		}
	}
	if !slices.Equal(d.Copied, []string{"io.ocisnap.export", "io.ocisnap.restore.app1", "io.ocisnap.view"}) {
		t.Errorf("copied %v", d.Copied)
	}
}

// TestAdjustStampsAndForgedKeys: the namespace, pod and container names
// come from NRI's pod data; a user's value for those keys (or any key under
// the plugin's prefix) is replaced or removed, also from a container that
// asks nothing else, and is never copied from the pod.
func TestAdjustStampsAndForgedKeys(t *testing.T) {
	dir, _ := hooksDir(t, map[string]string{"ocisnap.json": ocisnapJSON})
	hd := NewHooksDir([]string{dir}, quietLog())
	p := pod(map[string]string{
		"io.ocisnap.export.app1":              "/srv/snaps/team-b/x.tar",
		ocistate.AnnotationNRINamespace:       "team-b",
		ocistate.AnnotationNRIPodName:         "other",
		"io.kubernetes.cri.sandbox-namespace": "team-b",
	})
	c := ctr("app1", map[string]string{ocistate.AnnotationNRINamespace: "team-b", ocistate.AnnotationNRIPrefix + "extra": "x"})
	d, err := Adjust(p, c, hd)
	if err != nil || d.Adjustment == nil {
		t.Fatal(err, d)
	}
	a := d.Adjustment.Annotations
	for k, v := range map[string]string{
		ocistate.AnnotationNRINamespace:     "team-a",
		ocistate.AnnotationNRIPodName:       "web",
		ocistate.AnnotationNRIContainerName: "app1",
	} {
		if a[k] != v {
			t.Errorf("stamp %s = %q, want %q", k, a[k], v)
		}
	}
	if _, ok := a[api.MarkForRemoval(ocistate.AnnotationNRIPrefix+"extra")]; !ok {
		t.Errorf("a forged key under the plugin's prefix is not removed: %v", a)
	}
	if _, ok := a["io.kubernetes.cri.sandbox-namespace"]; ok {
		t.Error("the engine's namespace key was copied from the pod")
	}
	// Nothing asked: only the forged keys go, no hooks.
	d, err = Adjust(p, ctr("app2", map[string]string{ocistate.AnnotationNRINamespace: "team-b"}), hd)
	if err != nil || d.Adjustment == nil {
		t.Fatal(err, d)
	}
	if d.Adjustment.GetHooks() != nil || len(d.Adjustment.Annotations) != 1 {
		t.Errorf("a container asking nothing got %v", d.Adjustment)
	}
	if _, ok := d.Adjustment.Annotations[api.MarkForRemoval(ocistate.AnnotationNRINamespace)]; !ok {
		t.Errorf("forged stamp not removed: %v", d.Adjustment.Annotations)
	}
	// A pod without a namespace: the forged value is removed, not kept.
	np := &api.PodSandbox{Id: "pod2", Name: "x", Annotations: map[string]string{"io.ocisnap.export": "/a.tar"}}
	d, err = Adjust(np, ctr("app1", map[string]string{ocistate.AnnotationNRINamespace: "team-b"}), hd)
	if err != nil || d.Adjustment == nil {
		t.Fatal(err, d)
	}
	if _, ok := d.Adjustment.Annotations[api.MarkForRemoval(ocistate.AnnotationNRINamespace)]; !ok {
		t.Errorf("forged namespace kept for a pod without one: %v", d.Adjustment.Annotations)
	}
}

// TestAdjustNothing: the sandbox container, an unannotated container, one
// that only names other containers, and one whose keys no hooks.d file
// matches get a nil adjustment.
func TestAdjustNothing(t *testing.T) {
	dir, _ := hooksDir(t, map[string]string{"ocisnap.json": ocisnapJSON})
	hd := NewHooksDir([]string{dir}, quietLog())
	ann := map[string]string{"io.ocisnap.export": "/a.tar"}
	for _, tc := range []struct {
		name string
		p    *api.PodSandbox
		c    *api.Container
	}{
		{"sandbox by id", pod(ann), &api.Container{Id: "pod1", Name: "pause", Annotations: ann}},
		{"sandbox by containerd type", pod(ann), ctr("pause", map[string]string{"io.kubernetes.cri.container-type": "sandbox"})},
		{"sandbox by CRI-O type", pod(ann), ctr("pause", map[string]string{"io.kubernetes.cri-o.ContainerType": "sandbox"})},
		{"unannotated", pod(nil), ctr("app1", nil)},
		{"other container's key", pod(map[string]string{"io.ocisnap.export.app2": "/a.tar"}), ctr("app1", nil)},
		{"option only, no file matches", pod(map[string]string{"io.ocisnap.export-format": "oci"}), ctr("app1", nil)},
		{"empty value, no file matches", pod(map[string]string{"io.ocisnap.export": ""}), ctr("app1", nil)},
	} {
		d, err := Adjust(tc.p, tc.c, hd)
		if err != nil {
			t.Fatal(err)
		}
		if d.Adjustment != nil {
			t.Errorf("%s: got %v", tc.name, d.Adjustment)
		}
		p := &Plugin{Hooks: hd, Log: quietLog()}
		adj, upd, err := p.CreateContainer(t.Context(), tc.p, tc.c)
		if adj != nil || upd != nil || err != nil {
			t.Errorf("%s: CreateContainer = %v, %v, %v; want nil, nil, nil", tc.name, adj, upd, err)
		}
	}
}

// TestHooksDirStagesAndReload: the stages, args and "when" rules of the
// administrator's files are kept (commands, hasBindMounts, several files in
// name order, the override directory's file replacing the default one);
// other vendors' files are ignored; a changed file is read again.
func TestHooksDirStagesAndReload(t *testing.T) {
	dflt, bin := hooksDir(t, map[string]string{
		"ocisnap.json": ocisnapJSON,
		"ocisnap-view.json": `{"version": "1.0.0", "hook": {"path": %q, "args": ["ocisnap-hook", "createContainer"]},
		  "when": {"annotations": {"^io\\.ocisnap\\.view$": "image"}, "commands": ["^/bin/sh$"]},
		  "stages": ["prestart", "createContainer"]}`,
		"other-vendor.json": `{"version": "1.0.0", "hook": {"path": %q}, "when": {"always": true}, "stages": ["poststart"]}`,
		"ocisnap-bad.json":  `{"version": "9"}`,
		"ocisnap-gone.json": `{"version": "1.0.0", "hook": {"path": "/nonexistent/ocisnap-hook%.0q"}, "when": {"always": true}, "stages": ["poststart"]}`,
	})
	hd := NewHooksDir([]string{dflt}, quietLog())
	c := ctr("app1", map[string]string{"io.ocisnap.view": "image"})
	d, err := Adjust(pod(nil), c, hd)
	if err != nil || d.Adjustment == nil {
		t.Fatal(err, d)
	}
	h := d.Adjustment.Hooks
	if !slices.Equal(d.Files, []string{"ocisnap-view.json", "ocisnap.json"}) {
		t.Errorf("files %v", d.Files)
	}
	if len(h.Prestart) != 1 || len(h.CreateContainer) != 1 || len(h.CreateRuntime) != 1 || len(h.Poststop) != 1 || len(h.Poststart) != 0 {
		t.Errorf("stages: %v", h)
	}
	if !slices.Equal(h.CreateContainer[0].Args, []string{"ocisnap-hook", "createContainer"}) {
		t.Errorf("args %v", h.CreateContainer[0].Args)
	}
	// "commands" is matched against the container's args.
	c2 := ctr("app1", map[string]string{"io.ocisnap.view": "image"})
	c2.Args = []string{"/app"}
	if d, _ := Adjust(pod(nil), c2, hd); !slices.Equal(d.Files, []string{"ocisnap.json"}) {
		t.Errorf("commands rule: files %v", d.Files)
	}
	// An override directory's file of the same name wins; a change is
	// seen on the next container.
	override := t.TempDir()
	hd = NewHooksDir([]string{dflt, override}, quietLog())
	writeHook(t, filepath.Join(override, "ocisnap.json"),
		`{"version": "1.0.0", "hook": {"path": %q, "args": ["ocisnap-hook", "--allow-dir", "/override"]},
		  "when": {"annotations": {"^io\\.ocisnap\\.": ".+"}, "hasBindMounts": true}, "stages": ["createRuntime"]}`, bin)
	if d, _ := Adjust(pod(nil), c2, hd); d.Adjustment != nil {
		t.Errorf("hasBindMounts rule matched a container without binds: %v", d.Files)
	}
	c2.Mounts = []*api.Mount{{Destination: "/data", Source: "/srv/data", Type: "bind", Options: []string{"rbind"}}}
	d, _ = Adjust(pod(nil), c2, hd)
	if d.Adjustment == nil || !slices.Equal(d.Adjustment.Hooks.CreateRuntime[0].Args, []string{"ocisnap-hook", "--allow-dir", "/override"}) {
		t.Fatalf("override not used: %v", d)
	}
	time.Sleep(10 * time.Millisecond) // a new mtime
	writeHook(t, filepath.Join(override, "ocisnap.json"),
		`{"version": "1.0.0", "hook": {"path": %q, "args": ["ocisnap-hook", "--allow-dir", "/changed"]},
		  "when": {"always": true}, "stages": ["poststop"]}`, bin)
	d, _ = Adjust(pod(nil), c2, hd)
	if d.Adjustment == nil || len(d.Adjustment.Hooks.Poststop) != 1 || d.Adjustment.Hooks.Poststop[0].Args[2] != "/changed" {
		t.Fatalf("changed file not reloaded: %v", d.Adjustment)
	}
	if err := os.Remove(filepath.Join(override, "ocisnap.json")); err != nil {
		t.Fatal(err)
	}
	if d, _ = Adjust(pod(nil), c2, hd); !slices.Equal(d.Files, []string{"ocisnap.json"}) || d.Adjustment.Hooks.CreateRuntime[0].Args[2] != "/srv/snaps/{namespace}" {
		t.Fatalf("removed override still used: %v", d.Files)
	}
}

// TestAdjustHooksAlreadyThere: a container that already has the file's
// hooks (CRI-O read hooks.d itself) does not get them twice; one that has
// only some gets the rest.
func TestAdjustHooksAlreadyThere(t *testing.T) {
	dir, bin := hooksDir(t, map[string]string{"ocisnap.json": ocisnapJSON})
	hd := NewHooksDir([]string{dir}, quietLog())
	args := []string{"ocisnap-hook", "--allow-dir", "/srv/snaps/{namespace}"}
	c := ctr("app1", map[string]string{"io.ocisnap.export": "/srv/snaps/team-a/s.tar"})
	c.Hooks = &api.Hooks{CreateRuntime: []*api.Hook{{Path: bin, Args: args}}, Poststop: []*api.Hook{{Path: bin, Args: args}}}
	d, err := Adjust(pod(nil), c, hd)
	if err != nil {
		t.Fatal(err)
	}
	if d.Adjustment != nil {
		t.Errorf("hooks added twice: %v", d.Adjustment)
	}
	c.Hooks = &api.Hooks{CreateRuntime: []*api.Hook{{Path: bin, Args: args}}}
	d, err = Adjust(pod(nil), c, hd)
	if err != nil || d.Adjustment == nil {
		t.Fatal(err, d)
	}
	if h := d.Adjustment.Hooks; len(h.CreateRuntime) != 0 || len(h.Poststop) != 1 {
		t.Errorf("hooks %v, want only poststop", h)
	}
}

// TestConfigure: the runtime's configuration sets the hooks.d directories
// (a plugin started from /opt/nri/plugins has no command line); a bad one
// fails the registration; none keeps the command line's.
func TestConfigure(t *testing.T) {
	dir, _ := hooksDir(t, map[string]string{"ocisnap.json": ocisnapJSON})
	p := &Plugin{Hooks: NewHooksDir([]string{t.TempDir()}, quietLog()), Log: quietLog()}
	c := ctr("app1", map[string]string{"io.ocisnap.export": "/a.tar"})
	if d, _ := Adjust(pod(nil), c, p.Hooks); d.Adjustment != nil {
		t.Fatal("hooks from an empty directory")
	}
	if _, err := p.Configure(t.Context(), "", "containerd", "2.4"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Configure(t.Context(), `{"hooksDirs": [`+strconv.Quote(dir)+`]}`, "containerd", "2.4"); err != nil {
		t.Fatal(err)
	}
	if adj, _, err := p.CreateContainer(t.Context(), pod(nil), c); err != nil || adj == nil || len(adj.Hooks.CreateRuntime) != 1 {
		t.Fatalf("after Configure: %v, %v", adj, err)
	}
	for _, bad := range []string{`{"hooksDir": ["/x"]}`, `{"hooksDirs": ["rel"]}`, `not json`} {
		if _, err := p.Configure(t.Context(), bad, "containerd", "2.4"); err == nil {
			t.Errorf("Configure(%s) accepted", bad)
		}
	}
}
