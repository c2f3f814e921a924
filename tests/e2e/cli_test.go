package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ocisnap/ocisnap/hooks"
	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/pkg/cgroupfreeze"
	"github.com/ocisnap/ocisnap/pkg/procstat"
	"github.com/ocisnap/ocisnap/pkg/runtimestate"
	"github.com/ocisnap/ocisnap/pkg/statefile"
)

// cliResult is one run of the installed ocisnap CLI.
type cliResult struct {
	stdout, stderr string
	code           int
}

func ocisnap(t testing.TB, stdin io.Reader, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(cliBin, args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run ocisnap %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// mustCLI runs the CLI and fails the test unless it exits 0.
func mustCLI(t testing.TB, args ...string) string {
	t.Helper()
	r := ocisnap(t, nil, args...)
	if r.code != 0 {
		t.Fatalf("ocisnap %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// oneErrorLine checks the CLI's error report: one line on stderr naming
// the command, containing want.
func oneErrorLine(t testing.TB, r cliResult, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "ocisnap ") || !strings.Contains(lines[0], want) {
		t.Errorf("want one error line containing %q, got:\n%s", want, r.stderr)
	}
}

// writerLoop runs in the live-export container: each generation g.N is a
// directory holding a 1 MiB file and its checksum, built under a temporary
// name and renamed into place, and the previous generation is renamed away
// before it is removed. So at every instant every g.N is complete and
// consistent; only a snapshot that is not of one instant can hold a g.N
// whose data and sum disagree (or that lacks one of them). /w/big makes an
// export take a while.
const writerLoop = `set -e
mkdir -p /w && cd /w && head -c 8388608 /dev/urandom > big
i=0
while :; do
  i=$((i+1))
  mkdir t.$i
  head -c 1048576 /dev/urandom > t.$i/data
  set -- $(sha256sum t.$i/data)
  echo $1 > t.$i/sum
  mv t.$i g.$i
  if test $i -gt 1; then mv g.$((i-1)) x.$((i-1)); rm -rf x.$((i-1)); fi
  echo $i > count
done`

// live is a running container with the writer loop. After it is started,
// the tests look at it through runc and the host's view of its rootfs
// only, not through podman's database.
type live struct {
	id     string
	merged string
	cg     *cgroupfreeze.Cgroup
}

// liveContainer starts the writer loop in a podman (runc) container.
func liveContainer(t *testing.T, p *podman) *live {
	t.Helper()
	img := p.testImage()
	id := p.run("run", "-d", "--network=none", img, "sh", "-c", writerLoop)
	runcCleanup(t, id)
	l := &live{id: id, merged: p.mergedDir(id)}
	rc, err := runtimestate.Find([]string{"/run/runc"}, id)
	if err != nil {
		t.Fatalf("podman's runc container not under /run/runc: %v", err)
	}
	if l.cg, err = cgroupfreeze.FromPaths(rc.CgroupPaths); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the writer loop to get going", func() bool { return l.generation() >= 3 })
	return l
}

// generation is the writer loop's counter, read on the host.
func (l *live) generation() int {
	b, err := os.ReadFile(filepath.Join(l.merged, "w/count"))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// runcCleanup deletes a podman container through runc at the end of the
// test, whatever podman's own database says about it by then (podman
// instances share /run/libpod: another test's `podman system reset` makes
// podman forget that this container runs).
func runcCleanup(t testing.TB, id string) {
	t.Cleanup(func() { exec.Command("runc", "--root", "/run/runc", "delete", "--force", id).Run() })
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// assertRunningThawed: runc says the container is running (it says
// "paused" for a frozen one), its cgroup is thawed, and its writer loop
// goes on.
func assertRunningThawed(t *testing.T, l *live) {
	t.Helper()
	if st, err := l.cg.State(); err != nil || st != cgroupfreeze.Thawed {
		t.Fatalf("cgroup %s state %s, %v: want THAWED", l.cg.Path, st, err)
	}
	out, err := exec.Command("runc", "--root", "/run/runc", "state", l.id).Output()
	must(t, err)
	var st struct{ Status string }
	must(t, json.Unmarshal(out, &st))
	if st.Status != "running" {
		t.Fatalf("runc state: status %q, want running", st.Status)
	}
	g := l.generation()
	waitFor(t, "the writer loop to go on after the export", func() bool { return l.generation() > g })
}

// checkConsistent reads a snapshot of the writer loop's container with
// archive/tar and checks every complete generation.
func checkConsistent(t *testing.T, snap string) {
	t.Helper()
	f, err := os.Open(snap)
	must(t, err)
	defer f.Close()
	data, sums := map[string]string{}, map[string]string{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		must(t, err)
		dir, base := filepath.Split(strings.TrimPrefix(h.Name, "./"))
		if !strings.HasPrefix(dir, "w/g.") {
			continue
		}
		b, err := io.ReadAll(tr)
		must(t, err)
		switch base {
		case "data":
			s := sha256.Sum256(b)
			data[dir] = hex.EncodeToString(s[:])
		case "sum":
			sums[dir] = strings.TrimSpace(string(b))
		}
	}
	if len(data) == 0 {
		t.Fatalf("%s: no complete generation in the snapshot", snap)
	}
	for dir, h := range data {
		if sums[dir] != h {
			t.Errorf("%s: %s: checksum %q does not match the data (%s): not a consistent snapshot", snap, dir, sums[dir], h)
		}
	}
	for dir := range sums {
		if _, ok := data[dir]; !ok {
			t.Errorf("%s: %s has a checksum but no data: not a consistent snapshot", snap, dir)
		}
	}
}

// TestCLIExportLive: `ocisnap export` of a running podman container whose
// writer loop never stops: every snapshot is consistent and the container
// runs on, thawed, also after a failed or interrupted export.
func TestCLIExportLive(t *testing.T) {
	p := newPodman(t, hooksDir)
	l := liveContainer(t, p)
	id, cg := l.id, l.cg
	dir := t.TempDir()

	t.Run("consistent", func(t *testing.T) {
		for i := range 5 {
			snap := filepath.Join(dir, "live-"+strconv.Itoa(i)+".tar")
			mustCLI(t, "export", id, "-o", snap)
			checkConsistent(t, snap)
			assertRunningThawed(t, l)
		}
		// A unique prefix of the id works as with podman; stdout works too.
		cmd := exec.Command(cliBin, "export", id[:12], "-o", "-")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("export to stdout: %v", err)
		}
		snap := filepath.Join(dir, "stdout.tar")
		must(t, os.WriteFile(snap, out, 0o600))
		checkConsistent(t, snap)
		assertRunningThawed(t, l)
	})

	t.Run("invalid-output", func(t *testing.T) {
		for _, out := range []string{"/nonexistent-ocisnap/dir/x.tar", dir, "/proc/version/x.tar"} {
			r := ocisnap(t, nil, "export", id, "-o", out)
			if r.code != 1 {
				t.Fatalf("-o %s: exit %d, want 1\n%s", out, r.code, r.stderr)
			}
			oneErrorLine(t, r, "output")
			assertRunningThawed(t, l)
		}
	})

	t.Run("disk-full-while-frozen", func(t *testing.T) {
		// The output fills up while the container is frozen: the export
		// fails, leaves no file, and the container is thawed.
		small := t.TempDir()
		must(t, unix.Mount("tmpfs", small, "tmpfs", 0, "size=1m"))
		defer unix.Unmount(small, unix.MNT_DETACH)
		r := ocisnap(t, nil, "export", id, "-o", filepath.Join(small, "full.tar"))
		if r.code != 1 {
			t.Fatalf("exit %d, want 1\n%s", r.code, r.stderr)
		}
		oneErrorLine(t, r, "no space left on device")
		if ents, _ := os.ReadDir(small); len(ents) != 0 {
			t.Errorf("files left in the output directory: %v", ents)
		}
		assertRunningThawed(t, l)
	})

	t.Run("sigint", func(t *testing.T) {
		// Export to a pipe nobody reads: the export blocks with the
		// container frozen. SIGINT must thaw it and end the command.
		pr, pw, err := os.Pipe()
		must(t, err)
		defer pr.Close()
		cmd := exec.Command(cliBin, "export", id, "-o", "-")
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = pw, &stderr
		must(t, cmd.Start())
		pw.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		waitFor(t, "the export to freeze the container", func() bool {
			st, err := cg.State()
			return err == nil && st == cgroupfreeze.Frozen
		})
		time.Sleep(200 * time.Millisecond) // mid-export, blocked on the pipe
		select {
		case err := <-done:
			t.Fatalf("export ended before SIGINT: %v\n%s", err, stderr.String())
		default:
		}
		must(t, cmd.Process.Signal(unix.SIGINT))
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatal("export did not end after SIGINT")
		}
		if code := cmd.ProcessState.ExitCode(); code != 128+int(unix.SIGINT) {
			t.Errorf("exit %d after SIGINT, want %d\n%s", code, 128+int(unix.SIGINT), stderr.String())
		}
		if !strings.Contains(stderr.String(), "interrupted by SIGINT") {
			t.Errorf("stderr does not say it was interrupted:\n%s", stderr.String())
		}
		assertRunningThawed(t, l)
	})

	t.Run("sigint-file", func(t *testing.T) {
		// SIGINT as soon as the container is frozen, with a file output:
		// no partial file, container thawed. (If the export wins the race
		// and finishes first, its file must be whole.)
		out := filepath.Join(t.TempDir(), "int.tar")
		cmd := exec.Command(cliBin, "export", id, "-o", out)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		must(t, cmd.Start())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		deadline := time.Now().Add(time.Minute)
	poll:
		for {
			select {
			case <-done:
				break poll
			default:
			}
			if st, err := cg.State(); err == nil && st == cgroupfreeze.Frozen {
				must(t, cmd.Process.Signal(unix.SIGINT))
				<-done
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatal("export neither froze the container nor ended")
			}
			time.Sleep(time.Millisecond)
		}
		if code := cmd.ProcessState.ExitCode(); code == 0 {
			t.Log("the export finished before SIGINT")
			checkConsistent(t, out)
		} else {
			if code != 128+int(unix.SIGINT) {
				t.Errorf("exit %d, want %d\n%s", code, 128+int(unix.SIGINT), stderr.String())
			}
			if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
				t.Errorf("interrupted export left files: %v", ents)
			}
		}
		assertRunningThawed(t, l)
	})
}

// podmanInitInodes are the paths `podman diff` leaves out of a container's
// changes (libpod's initInodes: what podman itself creates).
var podmanInitInodes = []string{"/dev", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/proc", "/run",
	"/run/notify", "/run/.containerenv", "/run/secrets", "/sys", "/etc/mtab"}

// changeSet turns diff lines ("A /path") into a sorted set, without
// podman's own exclusions and ocisnap's O lines.
func changeSet(out string) []string {
	var set []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		kind, p, ok := strings.Cut(l, " ")
		if !ok || kind == "O" || slices.Contains(podmanInitInodes, p) {
			continue
		}
		set = append(set, l)
	}
	sort.Strings(set)
	return slices.Compact(set)
}

// TestCLISnapshotTools: export a changed container with the CLI, then
// apply, diff, convert and progress on that snapshot.
func TestCLISnapshotTools(t *testing.T) {
	testutil.RequireTools(t, "script", "tar")
	p := newPodman(t, hooksDir)
	img := p.testImage()
	// The changes run as the container's command (no podman exec: the
	// test then needs nothing of podman's state but the container's
	// storage).
	id := p.run("run", "-d", "--network=none", img, "sh", "-c", changes+"\ntouch /run/done && sleep 1000")
	runcCleanup(t, id)
	merged := p.mergedDir(id)
	waitFor(t, "the changes", func() bool {
		_, err := os.Stat(filepath.Join(merged, "run/done"))
		return err == nil
	})
	must(t, unix.Lsetxattr(filepath.Join(merged, "new/dir/file"), "user.e2e", []byte("xv"), 0))
	dir := t.TempDir()
	snap := filepath.Join(dir, "snap.tar")
	mustCLI(t, "export", id, "-o", snap)
	checkSnapshotFormat(t, snap, "overlay")

	t.Run("apply", func(t *testing.T) {
		// The image, unpacked from the tar podman imported it from.
		target := t.TempDir()
		if out, err := exec.Command("tar", "-C", target, "--numeric-owner", "-xpf", filepath.Join(p.dir, "img.tar")).CombinedOutput(); err != nil {
			t.Fatalf("tar: %v\n%s", err, out)
		}
		mustCLI(t, "apply", snap, target)
		if got, want := manifest(t, target), manifest(t, merged); got != want {
			t.Fatalf("applied tree differs from the container:\n%s", testutil.TreeDiff(want, got))
		}
	})

	t.Run("diff-like-podman", func(t *testing.T) {
		lower := p.run("inspect", "--format", "{{.GraphDriver.Data.LowerDir}}", id)
		if strings.Contains(lower, ":") {
			t.Fatalf("test image has more than one layer: %s", lower)
		}
		want := changeSet(p.run("diff", id))
		got := changeSet(mustCLI(t, "diff", "--base", lower, snap))
		t.Logf("podman diff: %v", want)
		if !slices.Equal(got, want) {
			t.Fatalf("ocisnap diff --base differs from podman diff:\nocisnap: %v\npodman:  %v", got, want)
		}
		// JSON and the opaque directory.
		var js []struct {
			Path, Kind string
			Opaque     bool
		}
		must(t, json.Unmarshal([]byte(mustCLI(t, "diff", "--json", "--base", lower, snap)), &js))
		opaque := false
		for _, c := range js {
			if c.Path == "/etc/app" && c.Opaque {
				opaque = true
			}
		}
		if !opaque {
			t.Errorf("/etc/app not reported opaque in %v", js)
		}
		// Without a base: additions and deletions.
		plain := mustCLI(t, "diff", snap)
		for _, l := range []string{"A /new/big", "D /README", "D /data/old", "O /etc/app"} {
			if !strings.Contains(plain, l+"\n") {
				t.Errorf("diff without --base lacks %q:\n%s", l, plain)
			}
		}
	})

	t.Run("convert-round-trip", func(t *testing.T) {
		orig, err := os.ReadFile(snap)
		must(t, err)
		oci := filepath.Join(dir, "snap.oci.tar")
		back := filepath.Join(dir, "snap.back.tar")
		mustCLI(t, "convert", "--to", "oci", snap, oci)
		checkSnapshotFormat(t, oci, "oci")
		mustCLI(t, "convert", "--to", "overlay", oci, back)
		if b, _ := os.ReadFile(back); !bytes.Equal(b, orig) {
			t.Fatal("overlay -> oci -> overlay is not byte-identical")
		}
		// oci -> overlay -> oci, through compressions and stdin/stdout.
		ociBytes, err := os.ReadFile(oci)
		must(t, err)
		gz := filepath.Join(dir, "snap.tar.gz")
		mustCLI(t, "convert", "--to", "overlay", "--compression", "gzip", oci, gz)
		f, err := os.Open(gz)
		must(t, err)
		defer f.Close()
		r := ocisnap(t, f, "convert", "--to", "oci", "-", "-")
		if r.code != 0 {
			t.Fatalf("convert - -: exit %d\n%s", r.code, r.stderr)
		}
		if !bytes.Equal([]byte(r.stdout), ociBytes) {
			t.Fatal("oci -> overlay+gzip -> oci is not byte-identical")
		}
	})

	t.Run("progress", func(t *testing.T) {
		// Under a pseudo-terminal a bar is drawn (the snapshot holds a
		// 64 MiB file); piped, nothing.
		target := t.TempDir()
		cmdline := shellQuote(cliBin, "apply", snap, target)
		out, err := exec.Command("script", "-qec", cmdline, "/dev/null").CombinedOutput()
		if err != nil {
			t.Fatalf("script -c %s: %v\n%s", cmdline, err, out)
		}
		if s := string(out); !strings.Contains(s, "apply") || !strings.Contains(s, "MiB") || !strings.Contains(s, "%") {
			t.Errorf("no progress bar under a pty:\n%q", s)
		}
		r := ocisnap(t, nil, "apply", snap, t.TempDir())
		if r.code != 0 || r.stderr != "" || r.stdout != "" {
			t.Errorf("piped apply printed something (exit %d):\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("apply-errors", func(t *testing.T) {
		r := ocisnap(t, nil, "apply", filepath.Join(dir, "missing.tar"), t.TempDir())
		if r.code != 1 {
			t.Fatalf("exit %d, want 1", r.code)
		}
		oneErrorLine(t, r, "missing.tar")
		r = ocisnap(t, nil, "apply", snap)
		if r.code != 2 {
			t.Fatalf("missing argument: exit %d, want 2", r.code)
		}
		// A hostile snapshot is confined like the hook's restore.
		evil := filepath.Join(dir, "evil.tar")
		writeTar(t, evil, []testutil.Node{testutil.File("../escape", "x")}, false)
		target := t.TempDir()
		r = ocisnap(t, nil, "apply", evil, target)
		if r.code != 1 {
			t.Fatalf("hostile snapshot: exit %d, want 1", r.code)
		}
		oneErrorLine(t, r, "../escape")
		if _, err := os.Stat(filepath.Join(filepath.Dir(target), "escape")); err == nil {
			t.Fatal("a write escaped the target directory")
		}
	})
}

func shellQuote(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// hooksJSON is the part of `ocisnap hooks --json` the tests read.
type hooksJSON struct {
	Files []struct {
		Name, Error string
		Valid       bool
	}
	Stages map[string][]struct {
		File    string
		Ocisnap bool
		Actions []hooks.Action
	}
}

// TestCLIHooks: `ocisnap hooks` loads the installed hooks.d as CRI-O and
// Podman do and says which ocisnap hooks run, and flags a bad file.
func TestCLIHooks(t *testing.T) {
	decode := func(r cliResult) hooksJSON {
		t.Helper()
		var h hooksJSON
		if err := json.Unmarshal([]byte(r.stdout), &h); err != nil {
			t.Fatalf("decode %q: %v\n%s", r.stdout, err, r.stderr)
		}
		return h
	}
	actions := func(h hooksJSON, stage string) []string {
		var out []string
		for _, sh := range h.Stages[stage] {
			if !sh.Ocisnap || !strings.HasSuffix(sh.File, "ocisnap.json") {
				t.Errorf("stage %s: unexpected hook %+v", stage, sh)
			}
			for _, a := range sh.Actions {
				out = append(out, a.Action)
			}
		}
		return out
	}
	snap := "/var/lib/ocisnap/x.tar"

	r := ocisnap(t, nil, "hooks", "--json", "--hooks-dir", hooksDir,
		"--annotation", "io.ocisnap.export="+snap, "--annotation", "io.ocisnap.restore="+snap)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	h := decode(r)
	if got := actions(h, "createRuntime"); !slices.Equal(got, []string{"restore", "record-export"}) {
		t.Errorf("createRuntime actions %v", got)
	}
	if got := actions(h, "poststop"); !slices.Equal(got, []string{"export"}) {
		t.Errorf("poststop actions %v", got)
	}

	// Per-container key of a pod (CRI-O's container name), --stage.
	r = ocisnap(t, nil, "hooks", "--json", "--hooks-dir", hooksDir, "--stage", "poststop",
		"-a", "io.kubernetes.container.name=app", "-a", "io.ocisnap.export.app="+snap)
	if r.code != 0 {
		t.Fatalf("per-container key, --stage poststop: exit %d\n%s", r.code, r.stderr)
	}
	h = decode(r)
	if got := actions(h, "poststop"); !slices.Equal(got, []string{"export"}) || len(h.Stages["createRuntime"]) != 0 {
		t.Errorf("per-container key, --stage poststop: %+v", h.Stages)
	}

	// No ocisnap annotation: no hook; a path outside the allow-list: the
	// action is reported as failing.
	r = ocisnap(t, nil, "hooks", "--hooks-dir", hooksDir, "-a", "foo=bar")
	if r.code != 0 || !strings.Contains(r.stdout, "no ocisnap hook runs") {
		t.Errorf("unrelated annotation: exit %d\n%s", r.code, r.stdout)
	}
	r = ocisnap(t, nil, "hooks", "--hooks-dir", hooksDir, "-a", "io.ocisnap.restore=/etc/shadow")
	if r.code != 0 || !strings.Contains(r.stdout, "FAILS") || !strings.Contains(r.stdout, "not inside an allowed directory") {
		t.Errorf("refused restore source not reported (or not with exit 0): exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	// An invalid JSON file in a later directory: named, exit 1, and the
	// valid files still explained.
	bad := t.TempDir()
	must(t, os.WriteFile(filepath.Join(bad, "broken.json"), []byte(`{"version": "1.0.0", "hook": {`), 0o644))
	r = ocisnap(t, nil, "hooks", "--json", "--hooks-dir", hooksDir, "--hooks-dir", bad, "-a", "io.ocisnap.export="+snap)
	if r.code != 1 {
		t.Fatalf("invalid hooks.d file: exit %d, want 1\n%s", r.code, r.stderr)
	}
	oneErrorLine(t, r, "broken.json")
	h = decode(r)
	found := false
	for _, f := range h.Files {
		if f.Name == "broken.json" && !f.Valid && f.Error != "" {
			found = true
		}
	}
	if !found {
		t.Errorf("broken.json not flagged: %+v", h.Files)
	}
	if got := actions(h, "poststop"); !slices.Equal(got, []string{"export"}) {
		t.Errorf("with a bad file next to it, poststop actions %v", got)
	}
}

// TestCLIVersion: version, commit and Go version.
func TestCLIVersion(t *testing.T) {
	out := mustCLI(t, "version")
	v, err := os.ReadFile(filepath.Join(repoRoot, "VERSION"))
	must(t, err)
	if !strings.Contains(out, strings.TrimSpace(string(v))) || !strings.Contains(out, "commit ") || !strings.Contains(out, "go1.") {
		t.Errorf("version output %q", out)
	}
}

// TestHookUsageErrors: a bad command line of the installed ocisnap-hook
// exits 2 and says why on stderr (runtimes put a hook's stderr in their
// error message), followed by the usage hint.
func TestHookUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--alow-dir", "/x"}, "ocisnap-hook: unknown flag: --alow-dir"},
		{[]string{"--max-bytes", "lots"}, `ocisnap-hook: invalid argument "lots" for "--max-bytes"`},
		{[]string{"createRuntime", "poststop"}, "ocisnap-hook: at most one argument (the stage) expected"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := exec.Command(hookBin, tc.args...)
			cmd.Stdin = strings.NewReader("{}")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit: %v, want status 2\n%s", err, stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], tc.want) || lines[1] != "Run 'ocisnap-hook --help' for usage." {
				t.Errorf("stderr:\n%s\nwant a line starting %q and the usage hint", stderr.String(), tc.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
		})
	}
}

// TestCLIGC: `ocisnap gc` forgets containers whose process is gone, keeps
// live ones, and removes stale temporary export files.
func TestCLIGC(t *testing.T) {
	testutil.RequireRoot(t)
	stateDir, allow := t.TempDir(), t.TempDir()
	sd := statefile.Dir{Path: stateDir}
	// A container whose process is gone: a pid that ran and exited.
	dead := exec.Command("true")
	must(t, dead.Run())
	must(t, sd.Write(&statefile.Record{ID: "dead", Pid: dead.Process.Pid, PidStart: 1, Created: time.Now()}))
	// A live one: this test's process.
	start, err := procstat.StartTime(os.Getpid())
	must(t, err)
	must(t, sd.Write(&statefile.Record{ID: "live", Pid: os.Getpid(), PidStart: start, Created: time.Now()}))
	// A temporary file of an export that died (nobody holds its lock).
	temp := filepath.Join(allow, "sub", ".snap.tar.ocisnap-tmp-0123456789abcdef")
	must(t, os.MkdirAll(filepath.Dir(temp), 0o700))
	must(t, os.WriteFile(temp, []byte("partial"), 0o600))

	var rep hooks.GCReport
	out := mustCLI(t, "gc", "--json", "--state-dir", stateDir, "--allow-dir", allow)
	must(t, json.Unmarshal([]byte(out), &rep))
	if !slices.Equal(rep.Removed, []string{"dead"}) || !slices.Equal(rep.Live, []string{"live"}) || !slices.Equal(rep.Temps, []string{temp}) {
		t.Fatalf("gc report %+v", rep)
	}
	if _, err := sd.Read("dead"); err == nil {
		t.Error("the dead container's record is still there")
	}
	if _, err := sd.Read("live"); err != nil {
		t.Errorf("the live container's record is gone: %v", err)
	}
	if _, err := os.Stat(temp); err == nil {
		t.Error("the stale temporary file is still there")
	}
	r := ocisnap(t, nil, "gc", "--allow-dir", "relative")
	if r.code != 2 {
		t.Errorf("relative --allow-dir: exit %d, want 2", r.code)
	}
}
