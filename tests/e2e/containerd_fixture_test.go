package e2e

// A private containerd 2.4 with its CRI and NRI, driven with crictl, and
// ocisnap-nri connected to its NRI socket: the Kubernetes flow without a
// kubelet (README.md, "Kubernetes"). Pods use host networking, so no CNI is
// needed. containerd, its runc shim, ctr and crictl are built by
// hack/deps.sh into /var/cache/ocisnap-test/bin (OCISNAP_TEST_BIN).

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/pkg/layer"
)

const ctrdImage = "localhost/ocisnap-e2e-ctrd:latest"

// ctrdBinDir is where hack/deps.sh caches containerd and crictl.
func ctrdBinDir() string {
	if d := os.Getenv("OCISNAP_TEST_BIN"); d != "" {
		return d
	}
	return "/var/cache/ocisnap-test/bin"
}

// ctrdTool returns the path of a cached tool, or skips (fails under CI).
func ctrdTool(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(ctrdBinDir(), name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	testutil.SkipOrFail(t, "test needs %s (hack/deps.sh test builds it into %s)", name, ctrdBinDir())
	return ""
}

type ctrd struct {
	t        testing.TB
	dir      string // short: unix socket paths are limited to 108 bytes
	sock     string
	nriSock  string
	bins     string
	crictlB  string
	cmd      *exec.Cmd
	plugin   *exec.Cmd
	pluginN  int // plugin starts, for the log names
	hooksD   string
	snaps    string // the hook's --allow-dir (or the parent of its templates)
	views    string
	state    string
	hookLog  string
	hookArgs []string
}

// newCtrd starts containerd with NRI on its own socket, imports the test
// image (also the pinned sandbox image), writes a hooks.d file for the
// installed hook with extra hook args, and starts ocisnap-nri.
func newCtrd(t *testing.T, hookArgs ...string) *ctrd {
	t.Helper()
	return newCtrdWith(t, ctrdOpts{}, hookArgs...)
}

type ctrdOpts struct {
	// passthrough makes containerd pass every pod and container annotation
	// into the containers' specs (the runtime's pod_annotations and
	// container_annotations "*"), so that a forged engine key reaches the
	// spec before containerd writes its own.
	passthrough bool
	// preinstalled links the plugin into containerd's NRI plugin_path as
	// 10-ocisnap, with its hooks.d directory in plugin_config_path's
	// 10-ocisnap.conf, instead of starting it: containerd starts it.
	preinstalled bool
}

// newCtrdWith is newCtrd with options.
func newCtrdWith(t *testing.T, opts ctrdOpts, hookArgs ...string) *ctrd {
	t.Helper()
	passthrough := opts.passthrough
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "runc", "podman", "busybox")
	bins := ctrdBinDir()
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "crictl"} {
		ctrdTool(t, b)
	}
	dir, err := os.MkdirTemp("", "ctd")
	must(t, err)
	c := &ctrd{t: t, dir: dir, sock: filepath.Join(dir, "c.sock"), nriSock: filepath.Join(dir, "nri.sock"),
		bins: bins, crictlB: filepath.Join(bins, "crictl"), hooksD: filepath.Join(dir, "hooks.d"),
		snaps: filepath.Join(dir, "snaps"), views: filepath.Join(dir, "views"), state: filepath.Join(dir, "hstate"),
		hookLog: filepath.Join(dir, "hook.log"), hookArgs: hookArgs}
	for _, d := range []string{c.hooksD, c.snaps, c.views, filepath.Join(dir, "nri-plugins"), filepath.Join(dir, "nri-conf"), filepath.Join(dir, "logs")} {
		must(t, os.MkdirAll(d, 0o700))
	}
	t.Cleanup(c.cleanup)
	pass := ""
	if passthrough {
		pass = `    pod_annotations = ["*"]
    container_annotations = ["*"]`
	}
	conf := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[plugins."io.containerd.cri.v1.runtime"]
  # oom_score_adj cannot be lowered on these machines
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
%[8]s
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      BinaryName = "/usr/sbin/runc"
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = %[4]q
[plugins."io.containerd.nri.v1.nri"]
  disable = false
  socket_path = %[5]q
  plugin_path = %[6]q
  plugin_config_path = %[7]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, ctrdImage, c.nriSock,
		filepath.Join(dir, "nri-plugins"), filepath.Join(dir, "nri-conf"), pass)
	must(t, os.WriteFile(filepath.Join(dir, "config.toml"), []byte(conf), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "crictl.yaml"),
		[]byte("runtime-endpoint: unix://"+c.sock+"\nimage-endpoint: unix://"+c.sock+"\ntimeout: 60\n"), 0o600))
	c.writeHooksD(hookArgs...)
	if opts.preinstalled {
		must(t, os.Symlink(nriBin, filepath.Join(dir, "nri-plugins", "10-ocisnap")))
		must(t, os.WriteFile(filepath.Join(dir, "nri-conf", "10-ocisnap.conf"),
			jsonMarshal(t, map[string]any{"hooksDirs": []string{c.hooksD}}), 0o644))
	}
	c.startContainerd()
	c.importImage()
	if !opts.preinstalled {
		c.startPlugin()
	}
	return c
}

// preinstalledPlugins returns the pids of the plugins containerd started
// from its plugin_path.
func (c *ctrd) preinstalledPlugins() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); exe != nriBin {
			continue
		}
		cl, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cl, []byte(filepath.Join(c.dir, "nri-plugins"))) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (c *ctrd) startContainerd() {
	c.t.Helper()
	logf, err := os.OpenFile(filepath.Join(c.dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	must(c.t, err)
	defer logf.Close()
	cmd := exec.Command(filepath.Join(c.bins, "containerd"), "--config", filepath.Join(c.dir, "config.toml"))
	cmd.Env = append(os.Environ(), "PATH="+c.bins+":"+os.Getenv("PATH"))
	cmd.Stdout, cmd.Stderr = logf, logf
	must(c.t, cmd.Start())
	c.cmd = cmd
	c.waitFor("containerd's CRI", 30*time.Second, func() bool {
		_, err := c.crictlErr("version")
		return err == nil
	})
}

// stopContainerd stops containerd (its shims and containers keep running).
func (c *ctrd) stopContainerd() {
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
	c.cmd = nil
}

func (c *ctrd) importImage() {
	c.t.Helper()
	p := newPodman(c.t, hooksDir)
	root := filepath.Join(c.dir, "imgroot")
	buildImageRoot(c.t, root)
	tarPath := filepath.Join(c.dir, "img.tar")
	if out, err := exec.Command("tar", "-C", root, "--numeric-owner", "-cf", tarPath, ".").CombinedOutput(); err != nil {
		c.t.Fatalf("tar: %v\n%s", err, out)
	}
	// The same image is the pod sandbox (pause) image: its command sleeps.
	p.run("import", "-q", "--change", `CMD ["/bin/sleep", "1000000"]`, tarPath, ctrdImage)
	oci := filepath.Join(c.dir, "img-oci.tar")
	p.run("save", "-q", "--format", "oci-archive", "-o", oci, ctrdImage)
	out, err := exec.Command(filepath.Join(c.bins, "ctr"), "--address", c.sock, "-n", "k8s.io", "images", "import", oci).CombinedOutput()
	if err != nil {
		c.t.Fatalf("ctr images import: %v\n%s", err, out)
	}
}

// writeHooksD writes the installed hooks.d file with the hook's flags for
// this containerd (its own snapshot, view and state directories) plus args;
// ocisnap-nri reads it again when it changes.
func (c *ctrd) writeHooksD(args ...string) {
	c.t.Helper()
	data, err := os.ReadFile(filepath.Join(hooksDir, "ocisnap.json"))
	must(c.t, err)
	var f map[string]any
	must(c.t, json.Unmarshal(data, &f))
	h := f["hook"].(map[string]any)
	hargs := []any{"ocisnap-hook", "--allow-view-dir", c.views, "--state-dir", c.state, "--log-file", c.hookLog, "--log-level", "info"}
	hasAllow := false
	for _, a := range args {
		hasAllow = hasAllow || a == "--allow-dir"
		hargs = append(hargs, a)
	}
	if !hasAllow {
		hargs = append(hargs, "--allow-dir", c.snaps)
	}
	h["args"] = hargs
	tmp := filepath.Join(c.hooksD, ".ocisnap.json.tmp")
	must(c.t, os.WriteFile(tmp, jsonMarshal(c.t, f), 0o644))
	must(c.t, os.Rename(tmp, filepath.Join(c.hooksD, "ocisnap.json")))
}

// startPlugin starts the installed ocisnap-nri on containerd's NRI socket
// and waits until it is registered.
func (c *ctrd) startPlugin() {
	c.t.Helper()
	c.pluginN++
	logPath := filepath.Join(c.dir, fmt.Sprintf("nri-%d.log", c.pluginN))
	logf, err := os.Create(logPath)
	must(c.t, err)
	defer logf.Close()
	cmd := exec.Command(nriBin, "--socket", c.nriSock, "--hooks-dir", c.hooksD, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = logf, logf
	must(c.t, cmd.Start())
	c.plugin = cmd
	c.waitPluginStarts(logPath, 1)
}

// waitPluginStarts waits until the plugin's log shows n registrations.
func (c *ctrd) waitPluginStarts(logPath string, n int) {
	c.t.Helper()
	c.waitFor("ocisnap-nri to register", 30*time.Second, func() bool {
		data, _ := os.ReadFile(logPath)
		return strings.Count(string(data), "Started plugin") >= n
	})
}

func (c *ctrd) pluginLog() string {
	return filepath.Join(c.dir, fmt.Sprintf("nri-%d.log", c.pluginN))
}

func (c *ctrd) stopPlugin() {
	if c.plugin == nil {
		return
	}
	c.plugin.Process.Signal(syscall.SIGTERM)
	c.plugin.Wait()
	c.plugin = nil
}

func (c *ctrd) cleanup() {
	if c.cmd != nil {
		c.crictlErr("rmp", "-fa")
	}
	c.stopPlugin()
	c.stopContainerd()
	// The runc shims this containerd started (they outlive it).
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cl, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cl, []byte("containerd-shim")) && bytes.Contains(cl, []byte(c.sock)) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, pid := range c.preinstalledPlugins() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, m := range c.mountsUnder() {
		exec.Command("umount", "-l", m).Run()
	}
	if c.t.Failed() {
		for _, l := range []string{"containerd.log", filepath.Base(c.pluginLog()), "hook.log"} {
			if data, err := os.ReadFile(filepath.Join(c.dir, l)); err == nil {
				if len(data) > 8000 {
					data = data[len(data)-8000:]
				}
				c.t.Logf("--- %s (tail) ---\n%s", l, data)
			}
		}
	}
	os.RemoveAll(c.dir)
}

// mountsUnder lists the mountpoints below this containerd's directory.
func (c *ctrd) mountsUnder() []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], c.dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

func (c *ctrd) crictlErr(args ...string) (string, error) {
	a := append([]string{"--runtime-endpoint", "unix://" + c.sock, "--image-endpoint", "unix://" + c.sock, "--timeout", "60s"}, args...)
	cmd := exec.Command(c.crictlB, a...)
	cmd.Env = append(os.Environ(), "CRI_CONFIG_FILE="+filepath.Join(c.dir, "crictl.yaml"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return strings.TrimSpace(stdout.String() + "\n" + stderr.String()), err
	}
	return strings.TrimSpace(stdout.String()), nil
}

func (c *ctrd) crictl(args ...string) string {
	c.t.Helper()
	out, err := c.crictlErr(args...)
	if err != nil {
		c.t.Fatalf("crictl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *ctrd) waitFor(what string, d time.Duration, ok func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// podSpec is a pod sandbox config with host networking.
type podSpec struct {
	name, namespace string
	annotations     map[string]string
}

// ctrSpec is a container config: a shell script run by the test image.
type ctrSpec struct {
	name        string
	script      string
	annotations map[string]string
}

type pod struct {
	c       *ctrd
	id      string
	cfgPath string
	ctrs    map[string]string // container name → id
}

var podSeq int

// runPod starts a pod and creates its containers (started unless
// noStart); each container's script runs, then "touch /tmp/ready" and a
// sleep, and runPod waits for the ready file of every started container.
func (c *ctrd) runPod(ps podSpec, noStart bool, ctrs ...ctrSpec) *pod {
	c.t.Helper()
	podSeq++
	cfg := map[string]any{
		"metadata":      map[string]any{"name": ps.name, "namespace": ps.namespace, "uid": fmt.Sprintf("uid-%d", podSeq), "attempt": 0},
		"annotations":   ps.annotations,
		"log_directory": filepath.Join(c.dir, "logs", strconv.Itoa(podSeq)),
		"linux":         map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}},
	}
	p := &pod{c: c, cfgPath: filepath.Join(c.dir, fmt.Sprintf("pod-%d.json", podSeq)), ctrs: map[string]string{}}
	must(c.t, os.WriteFile(p.cfgPath, jsonMarshal(c.t, cfg), 0o600))
	p.id = c.crictl("runp", p.cfgPath)
	for _, cs := range ctrs {
		id := p.create(cs)
		if noStart {
			continue
		}
		c.crictl("start", id)
		c.waitFor(cs.name+" ready", 30*time.Second, func() bool {
			_, err := os.Stat(filepath.Join(p.rootfs(cs.name), "tmp/ready"))
			return err == nil
		})
	}
	return p
}

func (p *pod) create(cs ctrSpec) string {
	c := p.c
	c.t.Helper()
	cfg := map[string]any{
		"metadata":    map[string]any{"name": cs.name},
		"image":       map[string]any{"image": ctrdImage},
		"command":     []string{"/bin/sh", "-c", cs.script + "\ntouch /tmp/ready\nexec sleep 1000000"},
		"log_path":    cs.name + ".log",
		"annotations": cs.annotations,
		"linux":       map[string]any{},
	}
	path := filepath.Join(c.dir, fmt.Sprintf("ctr-%d-%s.json", podSeq, cs.name))
	must(c.t, os.WriteFile(path, jsonMarshal(c.t, cfg), 0o600))
	id := c.crictl("create", p.id, path, p.cfgPath)
	p.ctrs[cs.name] = id
	return id
}

// rootfs is the container's rootfs as containerd's shim mounted it.
func (p *pod) rootfs(name string) string {
	return filepath.Join(p.c.dir, "state", "io.containerd.runtime.v2.task", "k8s.io", p.ctrs[name], "rootfs")
}

func (p *pod) read(name, path string) string {
	p.c.t.Helper()
	data, err := os.ReadFile(filepath.Join(p.rootfs(name), path))
	if err != nil {
		p.c.t.Fatalf("container %s: %v", name, err)
	}
	return string(data)
}

func (p *pod) exists(name, path string) bool {
	_, err := os.Lstat(filepath.Join(p.rootfs(name), path))
	return err == nil
}

// remove stops and removes the pod (crictl stopp, rmp).
func (p *pod) remove() {
	p.c.t.Helper()
	p.c.crictl("stopp", p.id)
	p.c.crictl("rmp", p.id)
}

// runtimeSpec returns the OCI runtime spec of a container (crictl
// inspect) or, for name "", of the pod sandbox (crictl inspectp).
func (p *pod) runtimeSpec(name string) map[string]any {
	p.c.t.Helper()
	var out string
	if name == "" {
		out = p.c.crictl("inspectp", p.id)
	} else {
		out = p.c.crictl("inspect", p.ctrs[name])
	}
	var v struct {
		Info struct {
			RuntimeSpec map[string]any `json:"runtimeSpec"`
		} `json:"info"`
	}
	must(p.c.t, json.Unmarshal([]byte(out), &v))
	if v.Info.RuntimeSpec == nil {
		p.c.t.Fatalf("no runtimeSpec in crictl inspect output:\n%s", out)
	}
	return v.Info.RuntimeSpec
}

// ocisnapHooks returns "stage:path" of the hooks in spec whose path is
// ocisnap's hook.
func ocisnapHooks(spec map[string]any) []string {
	hooks, _ := spec["hooks"].(map[string]any)
	var out []string
	for stage, list := range hooks {
		l, _ := list.([]any)
		for _, h := range l {
			m, _ := h.(map[string]any)
			if p, _ := m["path"].(string); strings.Contains(p, "ocisnap") {
				out = append(out, stage+":"+p)
			}
		}
	}
	return out
}

// tarContents maps each entry of a snapshot to its type and, for a regular
// file, its content ("c" for a whiteout character device, "d" for a
// directory).
func tarContents(t testing.TB, snap string) map[string]string {
	t.Helper()
	f, err := os.Open(snap)
	must(t, err)
	defer f.Close()
	rc, _, err := layer.Decompress(f)
	must(t, err)
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		must(t, err)
		switch h.Typeflag {
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			must(t, err)
			out[h.Name] = "f:" + string(data)
		case tar.TypeChar:
			out[h.Name] = "c"
		case tar.TypeDir:
			out[h.Name] = "d"
		default:
			out[h.Name] = string(h.Typeflag)
		}
	}
}
