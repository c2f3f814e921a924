package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// startupResult is what a restore adds to a real container start: podman
// run of a container restoring the small workload's snapshot (the hook at
// createRuntime), the same without a restore, and `ocisnap apply` of the
// snapshot alone onto a fresh overlay over the same image. The hook's own
// overhead is (with − without) − apply.
type startupResult struct {
	Desc                      string
	WithRestore, NoRestore    stats
	Apply                     stats
	HookOverhead, RestoreAdds time.Duration
}

// startup needs podman, runc and busybox; podman is isolated as the e2e
// tests do (own root and runroot, runc, cgroupfs, file events, its own
// containers.conf and hooks directory).
func (b *bench) startup() (*startupResult, error) {
	if err := requireTools("podman", "runc", "busybox"); err != nil {
		return nil, fmt.Errorf("startup: %w", err)
	}
	w := smallWorkload("startup", 1000, 20, 100, 500, 20)
	e, err := b.prepare(w, false)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	// podman's storage on the workload's filesystem; its runroot short
	// (podman refuses one over 50 characters).
	run, err := os.MkdirTemp("", "pmb")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(run)
	store := filepath.Join(e.fs.dir, "pm")
	snapDir := filepath.Join(e.fs.dir, "snaps")
	hooksDir := filepath.Join(run, "hooks.d")
	imgRoot := filepath.Join(e.fs.dir, "imgroot")
	for _, d := range []string{store, snapDir, hooksDir, filepath.Join(imgRoot, "bin"), filepath.Join(run, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	snap := filepath.Join(snapDir, "small.tar")
	if err := sh("cp", e.snapOverlay, snap); err != nil {
		return nil, err
	}
	conf := filepath.Join(run, "containers.conf")
	if err := os.WriteFile(conf, []byte(`[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
events_logger = "file"
cgroup_manager = "cgroupfs"
tmp_dir = "`+filepath.Join(run, "tmp")+`"
`), 0o644); err != nil {
		return nil, err
	}
	hookJSON := fmt.Sprintf(`{"version":"1.0.0","hook":{"path":%q,"args":["ocisnap-hook","--allow-dir",%q]},"when":{"annotations":{"^io\\.ocisnap\\.":".*"}},"stages":["createRuntime","poststop"]}`, b.hook, snapDir)
	if err := os.WriteFile(filepath.Join(hooksDir, "ocisnap.json"), []byte(hookJSON), 0o644); err != nil {
		return nil, err
	}
	podman := func(a ...string) []string {
		return append([]string{"env", "CONTAINERS_CONF=" + conf, "podman", "--root", store, "--runroot", filepath.Join(run, "run"),
			"--storage-driver", "overlay", "--runtime", "runc", "--cgroup-manager", "cgroupfs",
			"--events-backend", "file", "--hooks-dir", hooksDir}, a...)
	}
	defer func() {
		for _, a := range [][]string{podman("rm", "-af", "-t", "0"), podman("system", "reset", "-f"), {"umount", "-R", store}} {
			exec.Command(a[0], a[1:]...).Run()
		}
	}()
	// A busybox image: what the container runs is `true`.
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return nil, err
	}
	if err := sh("cp", bb, filepath.Join(imgRoot, "bin", "busybox")); err != nil {
		return nil, err
	}
	for _, c := range []string{"sh", "true"} {
		if err := os.Symlink("busybox", filepath.Join(imgRoot, "bin", c)); err != nil {
			return nil, err
		}
	}
	imgTar := filepath.Join(e.fs.dir, "img.tar")
	if err := sh("tar", "-C", imgRoot, "--numeric-owner", "-cf", imgTar, "."); err != nil {
		return nil, err
	}
	const image = "localhost/ocisnap-bench:latest"
	if a := podman("import", "-q", imgTar, image); true {
		if err := sh(a[0], a[1:]...); err != nil {
			return nil, fmt.Errorf("startup: %w", err)
		}
	}
	// Not --rm: removing the container (its upper, the restored files)
	// would be timed with the start; it is done after each run, untimed.
	withRestore := podman("run", "--network=none", "--annotation", "io.ocisnap.restore="+snap, image, "true")
	noRestore := podman("run", "--network=none", image, "true")
	rmAll := podman("rm", "-af", "-t", "0")
	applyBase := filepath.Join(e.fs.dir, "apply")
	samples := make([][]sample, 3)
	n := max(10, 2*b.runs)
	for r := 0; r <= n; r++ {
		for _, j := range b.order(r, 3) {
			var s sample
			var err error
			switch j {
			case 0, 1:
				argv := withRestore
				if j == 1 {
					argv = noRestore
				}
				if s, err = measure(argv, e.fs.dir, ""); err == nil {
					err = sh(rmAll[0], rmAll[1:]...)
				}
			case 2:
				var o *overlay
				if o, err = mountOverlay(applyBase, imgRoot); err == nil {
					s, err = measure([]string{b.cli, "apply", snap, o.merged}, e.fs.dir, "")
					if rerr := o.remove(); err == nil {
						err = rerr
					}
				}
			}
			if err != nil {
				return nil, fmt.Errorf("startup: %w", err)
			}
			if r > 0 {
				samples[j] = append(samples[j], s)
			}
		}
		b.logf("startup: round %d/%d", r, n)
	}
	res := &startupResult{
		Desc:        fmt.Sprintf("the small workload's snapshot (%d entries, %s), a busybox image, `true`; podman's storage and the overlay of `ocisnap apply` on the same loop ext4 (%s)", w.entries, mib(fileSize(snap)), strings.Fields(w.backing)[0]),
		WithRestore: summarize(samples[0]), NoRestore: summarize(samples[1]), Apply: summarize(samples[2]),
	}
	res.RestoreAdds = res.WithRestore.Median - res.NoRestore.Median
	res.HookOverhead = res.RestoreAdds - res.Apply.Median
	return res, nil
}
