package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// podman is an isolated podman (own --root/--runroot, runc, cgroupfs) using
// a given hooks directory.
type podman struct {
	t        testing.TB
	dir      string
	hooksDir string
	env      []string
}

func newPodman(t testing.TB, hooksDir string) *podman {
	t.Helper()
	testutil.RequireTools(t, "podman", "runc", "busybox")
	// Short: podman refuses a runroot longer than 50 characters.
	dir, err := os.MkdirTemp("", "pm")
	must(t, err)
	conf := filepath.Join(dir, "containers.conf")
	must(t, os.WriteFile(conf, []byte(`[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
events_logger = "file"
cgroup_manager = "cgroupfs"
tmp_dir = "`+filepath.Join(dir, "tmp")+`"
`), 0o644))
	p := &podman{t: t, dir: dir, hooksDir: hooksDir, env: append(os.Environ(), "CONTAINERS_CONF="+conf)}
	t.Cleanup(func() {
		p.runErr("rm", "-af", "-t", "0")
		p.runErr("system", "reset", "-f")
		exec.Command("umount", "-R", filepath.Join(dir, "storage")).Run()
		os.RemoveAll(dir)
	})
	return p
}

func (p *podman) args(a ...string) []string {
	base := []string{"--root", filepath.Join(p.dir, "storage"), "--runroot", filepath.Join(p.dir, "run"),
		"--storage-driver", "overlay", "--runtime", "runc", "--cgroup-manager", "cgroupfs",
		"--events-backend", "file", "--hooks-dir", p.hooksDir}
	return append(base, a...)
}

// run runs podman and fails the test on error; it returns trimmed stdout.
func (p *podman) run(a ...string) string {
	p.t.Helper()
	out, err := p.runErr(a...)
	if err != nil {
		p.t.Fatalf("podman %s: %v\n%s", strings.Join(a, " "), err, out)
	}
	return out
}

// runErr runs podman and returns stdout (and stderr on failure).
//
// "podman rm" races with the "podman container cleanup" that conmon starts
// when the container exits: both unmount the container's userdata/shm, and
// the loser fails with EBUSY after it has already dropped the container
// from the database (podman 4.3, with --uidmap containers, no hook at all).
// That one failure is podman's and leaves nothing of ours behind: it is
// logged and taken as the success it is once podman confirms the container
// is gone.
func (p *podman) runErr(a ...string) (string, error) {
	out, err := p.runOnce(a...)
	if err != nil && len(a) > 0 && a[0] == "rm" && strings.Contains(out, "/userdata/shm: device or resource busy") {
		for i := 1; i < len(a); i++ {
			id := a[i]
			if id == "-t" || id == "--time" {
				i++ // its value
				continue
			}
			if strings.HasPrefix(id, "-") {
				continue
			}
			if _, xerr := p.runOnce("container", "exists", id); xerr == nil {
				return out, err // still there: a real failure
			}
		}
		p.t.Logf("podman rm %v: podman's shm unmount race, container removed: %s", a[1:], out)
		return "", nil
	}
	return out, err
}

func (p *podman) runOnce(a ...string) (string, error) {
	cmd := exec.Command("podman", p.args(a...)...)
	cmd.Env = p.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return strings.TrimSpace(stdout.String() + "\n" + stderr.String()), err
	}
	return strings.TrimSpace(stdout.String()), nil
}

// mergedDir is the container's rootfs as seen from the host.
func (p *podman) mergedDir(id string) string {
	p.t.Helper()
	return p.run("inspect", "--format", "{{.GraphDriver.Data.MergedDir}}", id)
}

func (p *podman) upperDir(id string) string {
	p.t.Helper()
	return p.run("inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", id)
}

// testImage imports a local busybox image with content to change, delete
// and replace (no registry needed) and returns its name.
func (p *podman) testImage() string {
	p.t.Helper()
	root := filepath.Join(p.dir, "imgroot")
	buildImageRoot(p.t, root)
	tarPath := filepath.Join(p.dir, "img.tar")
	out, err := exec.Command("tar", "-C", root, "--numeric-owner", "-cf", tarPath, ".").CombinedOutput()
	if err != nil {
		p.t.Fatalf("tar: %v\n%s", err, out)
	}
	p.run("import", "-q", tarPath, "localhost/ocisnap-e2e:latest")
	return "localhost/ocisnap-e2e:latest"
}

// buildImageRoot writes a small busybox rootfs with known content.
func buildImageRoot(t testing.TB, r string) {
	t.Helper()
	for _, d := range []string{"bin", "etc/app", "data/old/sub", "boot", "tmp", "proc", "sys", "dev", "root", "run", "var/log"} {
		must(t, os.MkdirAll(filepath.Join(r, d), 0o755))
	}
	bb, err := exec.LookPath("busybox")
	must(t, err)
	data, err := os.ReadFile(bb)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(r, "bin/busybox"), data, 0o755))
	for _, c := range strings.Fields("sh ls cat echo mkdir rm touch sleep ln mkfifo chmod chown stat sha256sum find sort head dd mv cp wc sync true test md5sum printf sed") {
		must(t, os.Symlink("busybox", filepath.Join(r, "bin", c)))
	}
	files := map[string]string{
		"etc/app/app.conf":  "image-conf\n",
		"etc/app/keep.conf": "keep\n",
		"etc/passwd":        "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":         "root:x:0:\n",
		"data/old/f1":       "old1\n",
		"data/old/f2":       "old2\n",
		"data/old/sub/f3":   "old3\n",
		"README":            "image-readme\n",
		"urunc.json":        `{"cmdline":"console=ttyS0"}` + "\n",
		"boot/vmlinuz":      strings.Repeat("K", 4096),
		"boot/initrd.img":   strings.Repeat("I", 2048),
		"var/log/image.log": "log\n",
	}
	for name, content := range files {
		must(t, os.WriteFile(filepath.Join(r, name), []byte(content), 0o644))
	}
	must(t, os.Chmod(filepath.Join(r, "tmp"), 0o1777))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func jsonMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	must(t, err)
	return b
}
