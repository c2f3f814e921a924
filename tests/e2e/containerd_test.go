package e2e

import (
	"bytes"
	"crypto/md5"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// TestContainerdPerContainerSnapshots: one pod, containers app1 and app2,
// pod annotations io.ocisnap.export.app1 / .app2 (containerd passes no pod
// annotation to containers: ocisnap-nri copies them). After stopp/rmp each
// snapshot holds only its container's changes, deletions of image files
// included; a new pod with io.ocisnap.restore.app1 / .app2 gives each
// container its own state. The sandbox container and a container the
// annotations do not name have no ocisnap hook in their runtime spec.
func TestContainerdPerContainerSnapshots(t *testing.T) {
	c := newCtrd(t)
	s1, s2 := filepath.Join(c.snaps, "app1.tar"), filepath.Join(c.snaps, "app2.tar")
	p := c.runPod(podSpec{name: "web", namespace: "default", annotations: map[string]string{
		"io.ocisnap.export.app1": s1, "io.ocisnap.export.app2": s2,
	}}, false,
		ctrSpec{name: "app1", script: "echo app1 > /etc/app/app.conf; rm /data/old/f1; echo a1 > /new1"},
		ctrSpec{name: "app2", script: "echo app2 > /etc/app/app.conf; rm /data/old/f2; echo a2 > /new2"},
		ctrSpec{name: "plain", script: "echo plain > /etc/app/app.conf"},
	)
	for _, n := range []string{"app1", "app2"} {
		if h := ocisnapHooks(p.runtimeSpec(n)); len(h) != 2 {
			t.Errorf("%s: ocisnap hooks %v, want createRuntime and poststop", n, h)
		}
	}
	if h := ocisnapHooks(p.runtimeSpec("plain")); len(h) != 0 {
		t.Errorf("unannotated container has ocisnap hooks %v", h)
	}
	if h := ocisnapHooks(p.runtimeSpec("")); len(h) != 0 {
		t.Errorf("pod sandbox container has ocisnap hooks %v", h)
	}
	ann, _ := p.runtimeSpec("app1")["annotations"].(map[string]any)
	if ann["io.ocisnap.export.app1"] != s1 || ann["io.ocisnap.export.app2"] != nil || ann["io.ocisnap.nri.namespace"] != "default" {
		t.Errorf("app1's annotations: %v", ann)
	}
	p.remove()

	for _, tc := range []struct {
		snap   string
		want   map[string]string
		others []string // the other container's changes
	}{
		{s1, map[string]string{"./etc/app/app.conf": "f:app1\n", "./data/old/f1": "c", "./new1": "f:a1\n"}, []string{"./new2", "./data/old/f2"}},
		{s2, map[string]string{"./etc/app/app.conf": "f:app2\n", "./data/old/f2": "c", "./new2": "f:a2\n"}, []string{"./new1", "./data/old/f1"}},
	} {
		got := tarContents(t, tc.snap)
		for name, v := range tc.want {
			if got[name] != v {
				t.Errorf("%s: %s = %q, want %q", filepath.Base(tc.snap), name, got[name], v)
			}
		}
		for _, name := range tc.others {
			if _, ok := got[name]; ok {
				t.Errorf("%s holds %s, the other container's change", filepath.Base(tc.snap), name)
			}
		}
	}

	q := c.runPod(podSpec{name: "web2", namespace: "default", annotations: map[string]string{
		"io.ocisnap.restore.app1": s1, "io.ocisnap.restore.app2": s2,
	}}, false, ctrSpec{name: "app1"}, ctrSpec{name: "app2"})
	if got := q.read("app1", "etc/app/app.conf"); got != "app1\n" {
		t.Errorf("restored app1 app.conf = %q", got)
	}
	if got := q.read("app2", "etc/app/app.conf"); got != "app2\n" {
		t.Errorf("restored app2 app.conf = %q", got)
	}
	if q.exists("app1", "data/old/f1") || !q.exists("app1", "data/old/f2") || q.exists("app1", "new2") {
		t.Error("app1's restored rootfs has app2's state or lacks its own deletion")
	}
	if q.exists("app2", "data/old/f2") || !q.exists("app2", "data/old/f1") || q.exists("app2", "new1") {
		t.Error("app2's restored rootfs has app1's state or lacks its own deletion")
	}
	q.remove()
}

// TestContainerdContainerAnnotationsAndImageView: annotations in the
// container config (not the pod) work the same; io.ocisnap.view=image works
// on containerd's overlayfs snapshotter (lowers
// .../io.containerd.snapshotter.v1.overlayfs/snapshots/N/fs) with a bind;
// the export leaves out the bind's stub; nothing stays mounted after rmp.
func TestContainerdContainerAnnotationsAndImageView(t *testing.T) {
	c := newCtrd(t)
	snap := filepath.Join(c.snaps, "ctr.tar")
	p := c.runPod(podSpec{name: "viewer", namespace: "default"}, false, ctrSpec{
		name: "app",
		annotations: map[string]string{
			"io.ocisnap.export":     snap,
			"io.ocisnap.view":       "image",
			"io.ocisnap.view-binds": "boot/vmlinuz:/artifacts/vmlinuz",
		},
		script: "md5sum < /artifacts/vmlinuz > /tmp/kernel.md5; echo changed > /etc/app/app.conf; rm /README",
	})
	kernel := strings.Repeat("K", 4096)
	// The sum is the container's own view of the bound file.
	if got, want := strings.Fields(p.read("app", "tmp/kernel.md5")), md5hex(kernel); len(got) == 0 || got[0] != want {
		t.Errorf("/artifacts/vmlinuz inside the container: md5 %v, want %s", got, want)
	}
	if h := ocisnapHooks(p.runtimeSpec("app")); len(h) != 2 {
		t.Errorf("ocisnap hooks %v", h)
	}
	// The view's layers are containerd's overlayfs snapshots.
	rec, err := statefile.Dir{Path: c.state}.Read(p.ctrs["app"])
	must(t, err)
	if rec.Overlay == nil || len(rec.Overlay.Lowers) == 0 {
		t.Fatalf("no overlay recorded: %+v", rec)
	}
	for _, l := range rec.Overlay.Lowers {
		if !strings.Contains(l, "/io.containerd.snapshotter.v1.overlayfs/snapshots/") || !strings.HasSuffix(l, "/fs") {
			t.Errorf("lower %s is not a containerd overlayfs snapshot", l)
		}
	}
	p.remove()
	// The hook's views directory stays a private mount (by design: views
	// are mounted below it, see pkg/view); nothing else may be left.
	for _, m := range c.mountsUnder() {
		if m != filepath.Join(c.state, "views") {
			t.Errorf("mounted after rmp: %s", m)
		}
	}
	if data, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(data, []byte(p.ctrs["app"])) {
		t.Errorf("a mount of container %s is left after rmp", p.ctrs["app"])
	}
	got := tarContents(t, snap)
	if got["./etc/app/app.conf"] != "f:changed\n" || got["./README"] != "c" {
		t.Errorf("export of the container-annotated container: %v", got)
	}
	if _, ok := got["./artifacts/vmlinuz"]; ok {
		t.Errorf("the bind's stub was exported: %v", got)
	}
	if _, ok := got["./tmp/kernel.md5"]; !ok {
		t.Errorf("the container's own file is missing from the export: %v", got)
	}
}

// TestContainerdTenants: --allow-dir .../tenants/{namespace}: a pod in
// team-a exports and restores in its own directory (created at its first
// export); a team-a pod naming team-b's snapshot, for restore or export, is
// refused at start, also when its pod or container annotations claim
// io.kubernetes.cri.sandbox-namespace: team-b, and team-b's snapshot is
// untouched. containerd passes every annotation through to the specs here,
// so the forged keys do reach them, before containerd writes its own. With
// --identity-from nri the plugin's stamp is used; a forged stamp is
// replaced.
func TestContainerdTenants(t *testing.T) {
	c := newCtrdWith(t, ctrdOpts{passthrough: true})
	tenants := filepath.Join(c.dir, "tenants")
	must(t, os.Mkdir(tenants, 0o700))
	c.writeHooksD("--allow-dir", filepath.Join(tenants, "{namespace}"))
	time.Sleep(20 * time.Millisecond)

	bSnap := filepath.Join(tenants, "team-b", "s.tar")
	b := c.runPod(podSpec{name: "b", namespace: "team-b", annotations: map[string]string{"io.ocisnap.export": bSnap}}, false,
		ctrSpec{name: "app", script: "echo team-b > /etc/app/app.conf"})
	b.remove()
	bData, err := os.ReadFile(bSnap)
	must(t, err)
	if tarContents(t, bSnap)["./etc/app/app.conf"] != "f:team-b\n" {
		t.Fatal("team-b's export")
	}

	aSnap := filepath.Join(tenants, "team-a", "s.tar")
	a := c.runPod(podSpec{name: "a", namespace: "team-a", annotations: map[string]string{"io.ocisnap.export": aSnap}}, false,
		ctrSpec{name: "app", script: "echo team-a > /etc/app/app.conf"})
	a.remove()
	a2 := c.runPod(podSpec{name: "a2", namespace: "team-a", annotations: map[string]string{"io.ocisnap.restore": aSnap}}, false,
		ctrSpec{name: "app"})
	if got := a2.read("app", "etc/app/app.conf"); got != "team-a\n" {
		t.Errorf("team-a's restore: %q", got)
	}
	a2.remove()

	forged := map[string]string{"io.kubernetes.cri.sandbox-namespace": "team-b"}
	for _, tc := range []struct {
		name         string
		pod, ctr     map[string]string
		wantInStderr string
	}{
		{"restore team-b's", map[string]string{"io.ocisnap.restore": bSnap}, nil, "io.ocisnap.restore"},
		{"export to team-b's", map[string]string{"io.ocisnap.export": bSnap}, nil, "io.ocisnap.export"},
		{"restore, forged pod namespace", merge(map[string]string{"io.ocisnap.restore": bSnap}, forged), nil, "io.ocisnap.restore"},
		{"restore, forged container namespace", map[string]string{"io.ocisnap.restore": bSnap}, forged, "io.ocisnap.restore"},
		{"restore, forged nri stamp", map[string]string{"io.ocisnap.restore": bSnap, "io.ocisnap.nri.namespace": "team-b"},
			map[string]string{"io.ocisnap.nri.namespace": "team-b"}, "io.ocisnap.restore"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := c.runPod(podSpec{name: "evil", namespace: "team-a", annotations: merge(tc.pod, map[string]string{"e2e.ocisnap.pod": "passed"})}, true,
				ctrSpec{name: "app", annotations: merge(tc.ctr, map[string]string{"e2e.ocisnap.ctr": "passed"})})
			ann, _ := p.runtimeSpec("app")["annotations"].(map[string]any)
			if ann["e2e.ocisnap.pod"] != "passed" || ann["e2e.ocisnap.ctr"] != "passed" {
				t.Fatalf("containerd does not pass annotations through: %v", ann)
			}
			if ann["io.kubernetes.cri.sandbox-namespace"] != "team-a" || ann["io.ocisnap.nri.namespace"] != "team-a" {
				t.Errorf("namespace keys in the spec: cri %v, nri %v; want team-a", ann["io.kubernetes.cri.sandbox-namespace"], ann["io.ocisnap.nri.namespace"])
			}
			out, err := c.crictlErr("start", p.ctrs["app"])
			if err == nil {
				t.Fatalf("a team-a container naming team-b's snapshot started")
			}
			if !strings.Contains(out, tc.wantInStderr) {
				t.Errorf("start error does not name %s: %s", tc.wantInStderr, out)
			}
			p.remove()
			if now, _ := os.ReadFile(bSnap); !bytes.Equal(now, bData) {
				t.Error("team-b's snapshot changed")
			}
		})
	}

	// --identity-from nri: the plugin's stamp names the namespace; the
	// hooks.d file is read again by the running plugin.
	c.writeHooksD("--allow-dir", filepath.Join(tenants, "{namespace}"), "--identity-from", "nri")
	time.Sleep(20 * time.Millisecond)
	n := c.runPod(podSpec{name: "n", namespace: "team-a", annotations: map[string]string{
		"io.ocisnap.restore": aSnap, "io.ocisnap.nri.namespace": "team-b"}}, false, ctrSpec{name: "app"})
	if got := n.read("app", "etc/app/app.conf"); got != "team-a\n" {
		t.Errorf("restore with --identity-from nri: %q", got)
	}
	if ann, _ := n.runtimeSpec("app")["annotations"].(map[string]any); ann["io.ocisnap.nri.namespace"] != "team-a" {
		t.Errorf("stamp: %v", ann["io.ocisnap.nri.namespace"])
	}
	n.remove()
	nb := c.runPod(podSpec{name: "nb", namespace: "team-a", annotations: map[string]string{"io.ocisnap.restore": bSnap}}, true, ctrSpec{name: "app"})
	if _, err := c.crictlErr("start", nb.ctrs["app"]); err == nil {
		t.Error("--identity-from nri: a team-a container restored team-b's snapshot")
	}
	nb.remove()
}

// TestContainerdPluginStopped: without the plugin, annotated pods start
// without hooks and no snapshot is overwritten; the plugin started again,
// the next annotated pod restores. The plugin also reconnects by itself
// when containerd restarts.
func TestContainerdPluginStopped(t *testing.T) {
	c := newCtrd(t)
	snap := filepath.Join(c.snaps, "s.tar")
	p := c.runPod(podSpec{name: "first", namespace: "default", annotations: map[string]string{"io.ocisnap.export": snap}}, false,
		ctrSpec{name: "app", script: "echo first > /etc/app/app.conf"})
	p.remove()
	before, err := os.ReadFile(snap)
	must(t, err)

	c.stopPlugin()
	q := c.runPod(podSpec{name: "unplugged", namespace: "default", annotations: map[string]string{
		"io.ocisnap.export": snap, "io.ocisnap.restore": snap}}, false,
		ctrSpec{name: "app", script: "echo unplugged > /etc/app/app.conf"})
	if h := ocisnapHooks(q.runtimeSpec("app")); len(h) != 0 {
		t.Errorf("hooks without the plugin: %v", h)
	}
	if got := q.read("app", "etc/app/app.conf"); got != "unplugged\n" {
		t.Errorf("app.conf = %q", got)
	}
	q.remove()
	if now, _ := os.ReadFile(snap); !bytes.Equal(now, before) {
		t.Fatal("the snapshot was overwritten while the plugin was stopped")
	}

	c.startPlugin()
	r := c.runPod(podSpec{name: "replugged", namespace: "default", annotations: map[string]string{"io.ocisnap.restore": snap}}, false,
		ctrSpec{name: "app"})
	if got := r.read("app", "etc/app/app.conf"); got != "first\n" {
		t.Errorf("restore after the plugin restarted: %q", got)
	}
	r.remove()

	// containerd restarts: the running plugin registers again.
	c.stopContainerd()
	c.startContainerd()
	c.waitPluginStarts(c.pluginLog(), 2)
	s := c.runPod(podSpec{name: "after-restart", namespace: "default", annotations: map[string]string{"io.ocisnap.restore": snap}}, false,
		ctrSpec{name: "app"})
	if got := s.read("app", "etc/app/app.conf"); got != "first\n" {
		t.Errorf("restore after containerd restarted: %q", got)
	}
	s.remove()
}

// TestContainerdPreinstalledPlugin: the plugin linked into containerd's NRI
// plugin_path as 10-ocisnap (as the packages install it in
// /opt/nri/plugins) is started by containerd, takes its hooks.d directory
// from plugin_config_path/10-ocisnap.conf, exits when containerd stops, and
// is started again with containerd.
func TestContainerdPreinstalledPlugin(t *testing.T) {
	c := newCtrdWith(t, ctrdOpts{preinstalled: true})
	if n := len(c.preinstalledPlugins()); n != 1 {
		t.Fatalf("%d plugin processes started by containerd, want 1", n)
	}
	snap := filepath.Join(c.snaps, "pre.tar")
	p := c.runPod(podSpec{name: "pre", namespace: "default", annotations: map[string]string{"io.ocisnap.export": snap}}, false,
		ctrSpec{name: "app", script: "echo pre > /etc/app/app.conf"})
	if h := ocisnapHooks(p.runtimeSpec("app")); len(h) != 2 {
		t.Errorf("hooks from the pre-installed plugin: %v", h)
	}
	p.remove()
	if tarContents(t, snap)["./etc/app/app.conf"] != "f:pre\n" {
		t.Fatal("no export through the pre-installed plugin")
	}
	c.stopContainerd()
	c.waitFor("the pre-installed plugin to exit with containerd", 10*time.Second, func() bool { return len(c.preinstalledPlugins()) == 0 })
	c.startContainerd()
	c.waitFor("containerd to start the plugin again", 10*time.Second, func() bool { return len(c.preinstalledPlugins()) == 1 })
	q := c.runPod(podSpec{name: "pre2", namespace: "default", annotations: map[string]string{"io.ocisnap.restore": snap}}, false, ctrSpec{name: "app"})
	if got := q.read("app", "etc/app/app.conf"); got != "pre\n" {
		t.Errorf("restore after containerd restarted its plugin: %q", got)
	}
	q.remove()
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func md5hex(s string) string { return fmt.Sprintf("%x", md5.Sum([]byte(s))) }

// TestNRIPluginCommandLine: a bad flag or an argument exits 2 naming it;
// --version prints the version; a socket nobody serves is retried, not
// fatal, until SIGTERM (exit 0).
func TestNRIPluginCommandLine(t *testing.T) {
	for _, args := range [][]string{{"--frobnicate"}, {"extra"}, {"--log-level", "loud"}} {
		out, err := exec.Command(nriBin, args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), args[0]) {
			t.Errorf("ocisnap-nri %v: %v, %s; want exit 2 naming %s", args, err, out, args[0])
		}
	}
	out, err := exec.Command(nriBin, "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ocisnap-nri version ") {
		t.Errorf("--version: %v, %s", err, out)
	}
	cmd := exec.Command(nriBin, "--socket", filepath.Join(t.TempDir(), "none.sock"), "--hooks-dir", t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	must(t, cmd.Start())
	time.Sleep(1500 * time.Millisecond)
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	if err := cmd.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "reconnecting in") {
		t.Errorf("no retry logged:\n%s", stderr.String())
	}
}
