package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// immutableFile makes an existing snapshot at dir/name that nobody, root
// included, can replace (chattr +i), and undoes it at cleanup. The
// directory's file system must take the flag: if it does not (a tmpfs),
// dir gets a small ext4 loop file system mounted on it first.
func immutableFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	testutil.RequireTools(t, "chattr", "lsattr", "mkfs.ext4")
	p := filepath.Join(dir, name)
	must(t, os.WriteFile(p, []byte(content), 0o600))
	out, err := exec.Command("chattr", "+i", p).CombinedOutput()
	if err != nil {
		t.Logf("chattr +i on %s: %v %s; using an ext4 loop file system", dir, err, out)
		must(t, os.Remove(p))
		img := filepath.Join(t.TempDir(), "ext4.img")
		must(t, os.WriteFile(img, nil, 0o600))
		must(t, os.Truncate(img, 32<<20))
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v\n%s", err, out)
		}
		if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
			t.Fatalf("mount %s: %v\n%s", img, err, out)
		}
		t.Cleanup(func() { exec.Command("umount", dir).Run() })
		must(t, os.WriteFile(p, []byte(content), 0o600))
		if out, err := exec.Command("chattr", "+i", p).CombinedOutput(); err != nil {
			t.Fatalf("chattr +i on ext4: %v\n%s", err, out)
		}
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", p).Run() })
	return p
}

// TestFailedExportRecorded (docs/failure-behaviour.md): an export whose
// destination cannot be replaced fails at poststop; `podman run --rm` still
// exits 0 (Podman throws the poststop's stderr away), the previous snapshot
// is untouched, and `ocisnap status` (text and --json) shows the failure
// with the container, the destination and the cause.
func TestFailedExportRecorded(t *testing.T) {
	testutil.RequireRoot(t)
	stateDir, statusDir := t.TempDir(), t.TempDir()
	hd := writeHooksDir(t, t.TempDir(), hookBin, 0, "--state-dir", stateDir, "--status-dir", statusDir)
	p := newPodman(t, hd)
	img := p.testImage()
	dest := immutableFile(t, snapshotDir(t), "app.tar", "previous snapshot")

	cidFile := filepath.Join(t.TempDir(), "cid")
	out, err := p.runErr("run", "--rm", "--network=none", "--cidfile", cidFile,
		"--annotation", "io.ocisnap.export="+dest, img, "sh", "-c", "echo new > /new")
	if err != nil {
		t.Fatalf("podman run --rm with a failing export: %v (want exit 0)\n%s", err, out)
	}
	cid, err := os.ReadFile(cidFile)
	must(t, err)
	id := strings.TrimSpace(string(cid))
	if got, err := os.ReadFile(dest); err != nil || string(got) != "previous snapshot" {
		t.Errorf("the previous snapshot changed: %q, %v", got, err)
	}
	assertNoTemps(t, filepath.Dir(dest))

	text := mustCLI(t, "status", "--state-dir", stateDir, "--status-dir", statusDir)
	t.Logf("ocisnap status:\n%s", text)
	for _, want := range []string{"export failed", "container " + id, "io.ocisnap.export=" + dest, "operation not permitted"} {
		if !strings.Contains(text, want) {
			t.Errorf("ocisnap status does not show %q", want)
		}
	}
	var st struct {
		Failures []struct {
			Kind, Container, Annotation, Dest, Cause string
			Time                                     time.Time
		}
		Containers []any
		Pending    []any
	}
	must(t, json.Unmarshal([]byte(mustCLI(t, "status", "--json", "--state-dir", stateDir, "--status-dir", statusDir)), &st))
	if len(st.Failures) != 1 {
		t.Fatalf("status --json: %d failures, want 1: %+v", len(st.Failures), st)
	}
	f := st.Failures[0]
	if f.Kind != "export" || f.Container != id || f.Dest != dest || !strings.Contains(f.Cause, "operation not permitted") ||
		time.Since(f.Time) > 5*time.Minute {
		t.Errorf("failure record %+v", f)
	}
	if len(st.Containers) != 0 || st.Pending == nil || len(st.Pending) != 0 {
		t.Errorf("status --json: containers %v, pending %v; want none and an empty list", st.Containers, st.Pending)
	}
}

// TestMissingRestoreSource: a restore source that does not exist fails the
// start with "snapshot "<abs path>" does not exist", which Podman does not
// take for a missing command (no exit status 127, no "command that was not
// found").
func TestMissingRestoreSource(t *testing.T) {
	p := newPodman(t, hooksDir)
	img := p.testImage()
	missing := filepath.Join(snapshotDir(t), "missing.tar")
	out, err := p.runErr("run", "--rm", "--network=none", "--annotation", "io.ocisnap.restore="+missing, img, "echo", "the command ran")
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("podman run: %v, want a failed start\n%s", err, out)
	}
	t.Logf("podman (exit %d): %s", ee.ExitCode(), out)
	if ee.ExitCode() == 127 || strings.Contains(out, "command that was not found") {
		t.Errorf("podman took the missing snapshot for a missing command (exit %d):\n%s", ee.ExitCode(), out)
	}
	for _, want := range []string{`snapshot "` + missing + `" does not exist`, "io.ocisnap.restore=" + missing} {
		if !strings.Contains(out, want) {
			t.Errorf("podman's error does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "no such file or directory") || strings.Contains(out, "the command ran") {
		t.Errorf("podman's error:\n%s", out)
	}
}

// TestFailedStartReclaimed (docs/failure-behaviour.md): a container with a
// view whose command does not exist fails after createRuntime and never
// gets a poststop; its view stays mounted and its state recorded, until a
// later hook run (another container's start) reclaims them: no mount under
// the views directory and no state file of it remain.
func TestFailedStartReclaimed(t *testing.T) {
	testutil.RequireRoot(t)
	stateDir := t.TempDir()
	t.Cleanup(func() { exec.Command("umount", "-R", "-l", filepath.Join(stateDir, "views")).Run() })
	hd := writeHooksDir(t, t.TempDir(), hookBin, 0, "--state-dir", stateDir, "--status-dir", t.TempDir())
	p := newPodman(t, hd)
	img := p.testImage()
	view := []string{"--annotation", "io.ocisnap.view=image", "--annotation", "io.ocisnap.view-binds=boot/vmlinuz:/run/boot/vmlinuz"}

	cidFile := filepath.Join(t.TempDir(), "cid")
	out, err := p.runErr(append(append([]string{"run", "--rm", "--network=none", "--cidfile", cidFile}, view...),
		img, "/no/such/command")...)
	if err == nil {
		t.Fatalf("a missing command started:\n%s", out)
	}
	cid, err := os.ReadFile(cidFile)
	must(t, err)
	id := strings.TrimSpace(string(cid))
	sd := statefile.Dir{Path: stateDir}
	// What the issue saw: podman calls no poststop after the failed start.
	views := filepath.Join(stateDir, "views")
	left := append(viewTraces(t, stateDir, id), mountsUnder(t, views)...)
	if len(mountsUnder(t, views)) == 0 || len(left) == 0 {
		t.Fatalf("nothing of the failed container's view to reclaim (did poststop run?): %v; podman: %s", left, out)
	}
	t.Logf("after the failed start: %v", left)
	// The reclaim leaves records younger than 10s alone.
	rec, err := sd.Read(id)
	must(t, err)
	time.Sleep(time.Until(rec.Created.Add(11 * time.Second)))

	out = p.run(append(append([]string{"run", "--rm", "--network=none"}, view...), img, "cat", "/run/boot/vmlinuz")...)
	if len(out) != 4096 {
		t.Errorf("the later container's view: %d bytes", len(out))
	}
	waitNoTraces(t, stateDir, id)
	if m := mountsUnder(t, views); len(m) != 0 {
		t.Errorf("mounts left under %s: %v", views, m)
	}
	if recs, errs := sd.List(); len(recs) != 0 || len(errs) != 0 {
		t.Errorf("state left: %v %v", recs, errs)
	}
}

// mountsUnder lists the mount points below dir (dir itself is the hook's
// own private mount of the views directory).
func mountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	must(t, err)
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// TestCLIExportByPodmanName: `ocisnap export NAME` with a podman
// container's name resolves it through podman (its configuration from the
// environment, here this test's storage); a name nobody knows says to give
// the container's id.
func TestCLIExportByPodmanName(t *testing.T) {
	p := newPodman(t, hooksDir)
	img := p.testImage()
	name := "ocisnap-e2e-named"
	id := p.run("run", "-d", "--network=none", "--name", name, img, "sh", "-c", "echo mine > /mine; exec sleep 1000")
	runcCleanup(t, id)
	waitFor(t, "the container to write /mine", func() bool {
		_, err := os.Stat(filepath.Join(p.upperDir(id), "mine"))
		return err == nil
	})
	storageConf := filepath.Join(p.dir, "storage.conf")
	must(t, os.WriteFile(storageConf, []byte(`[storage]
driver = "overlay"
graphroot = "`+filepath.Join(p.dir, "storage")+`"
runroot = "`+filepath.Join(p.dir, "run")+`"
`), 0o644))
	cli := func(args ...string) (string, string, error) {
		cmd := exec.Command(cliBin, args...)
		cmd.Env = append(p.env, "CONTAINERS_STORAGE_CONF="+storageConf)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	snap := filepath.Join(t.TempDir(), "named.tar")
	if _, stderr, err := cli("export", name, "-o", snap); err != nil {
		t.Fatalf("ocisnap export %s: %v\n%s", name, err, stderr)
	}
	if readTarHeaders(t, snap)["./mine"] == nil {
		t.Errorf("the export of %s lacks the container's /mine", name)
	}
	_, stderr, err := cli("export", "no-such-name", "-o", filepath.Join(t.TempDir(), "x.tar"))
	if err == nil || !strings.Contains(stderr, "give the container's id") || !strings.Contains(stderr, "no-such-name") {
		t.Errorf("an unknown name: %v\n%s", err, stderr)
	}
}
