package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// goTool is the go command of the toolchain running the tests.
func goTool(t *testing.T) string {
	t.Helper()
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); runtime.GOROOT() != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command to build the gate with: %v", err)
	}
	return p
}

// buildGate builds the gate into a new directory and returns its path.
func buildGate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "ocisnap-hook")
	cmd := exec.Command(goTool(t), "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// run runs bin with stdin and returns its stdout, stderr, exit status and
// pid.
func run(t *testing.T, bin string, stdin []byte, args ...string) (string, string, int, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Args[0] = "ocisnap-hook"
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %s: %v", bin, err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode(), cmd.Process.Pid
}

func state(t *testing.T, status string, ann map[string]string) []byte {
	t.Helper()
	data, err := json.Marshal(map[string]any{"ociVersion": "1.0.2", "id": "gate-test-1", "status": status,
		"pid": 1, "bundle": "/nonexistent/bundle", "annotations": ann})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// fakeEngine puts a shell script as the engine beside the gate: it writes
// its argv, its pid and its stdin into dir.
func fakeEngine(t *testing.T, gate string) string {
	t.Helper()
	dir := t.TempDir()
	script := "#!/bin/sh\necho $$ > " + dir + "/pid\nprintf '%s\\n' \"$@\" > " + dir + "/args\ncat > " + dir + "/stdin\n" +
		"ls -l /proc/self/fd/0 > " + dir + "/fd0 2>&1\nexit 7\n"
	if err := os.WriteFile(filepath.Join(filepath.Dir(gate), "ocisnap-hook-engine"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestGate: the no-op path touches no engine (none is there) and exits 0;
// an annotated container, a typo key and a poststop of an unknown state
// are handed to the engine, same pid, same arguments, the state bytes
// intact on stdin; no engine is an error naming its path; usage errors,
// --help and --version are the gate's own.
func TestGate(t *testing.T) {
	gate := buildGate(t)
	engine := filepath.Join(filepath.Dir(gate), "ocisnap-hook-engine")
	stateDir := t.TempDir()
	args := []string{"--state-dir", stateDir, "--log-level", "debug"}
	none := map[string]string{"io.kubernetes.cri-o.Name": "x"}
	for _, status := range []string{"creating", "created", "stopped"} {
		out, stderr, code, _ := run(t, gate, state(t, status, none), args...)
		if code != 0 || out != "" || stderr != "" {
			t.Errorf("no-op %s without an engine: exit %d, stdout %q, stderr %q", status, code, out, stderr)
		}
	}
	_, stderr, code, _ := run(t, gate, state(t, "creating", map[string]string{"io.ocisnap.restore": "/x"}), args...)
	if code != 1 || !strings.Contains(stderr, engine) {
		t.Errorf("annotated, no engine: exit %d, stderr %q; want 1 naming %s", code, stderr, engine)
	}

	big := map[string]string{"io.ocisnap.restor": "/x", "filler": strings.Repeat("y", 3<<20)} // past maxInline
	for name, in := range map[string][]byte{
		"annotated": state(t, "creating", map[string]string{"io.ocisnap.export": "/var/lib/ocisnap/a.tar"}),
		"typo":      state(t, "creating", map[string]string{"io.ocisnap.exprot": "/x"}),
		"nri-stamp": state(t, "stopped", map[string]string{"io.ocisnap.nri.namespace": "a"}),
		"bad-state": []byte(`{"id": "x"`),
		"large":     state(t, "creating", big),
	} {
		t.Run(name, func(t *testing.T) {
			rec := fakeEngine(t, gate)
			_, stderr, code, pid := run(t, gate, in, append(args, "createRuntime")...)
			if code != 7 {
				t.Fatalf("exit %d (want the engine's 7): %s", code, stderr)
			}
			got, _ := os.ReadFile(filepath.Join(rec, "stdin"))
			if !bytes.Equal(got, in) {
				t.Errorf("the engine read %d bytes of state, want the %d given", len(got), len(in))
			}
			a, _ := os.ReadFile(filepath.Join(rec, "args"))
			if want := strings.Join(append(args, "createRuntime"), "\n") + "\n"; string(a) != want {
				t.Errorf("engine args %q, want %q", a, want)
			}
			p, _ := os.ReadFile(filepath.Join(rec, "pid"))
			if strings.TrimSpace(string(p)) != strconv.Itoa(pid) {
				t.Errorf("engine pid %s, gate pid %d: want exec, not fork", p, pid)
			}
			if fd0, _ := os.ReadFile(filepath.Join(rec, "fd0")); !strings.Contains(string(fd0), "memfd:ocisnap-state") {
				t.Errorf("engine stdin: %s; want the sealed memfd", fd0)
			}
		})
	}

	// A state record at poststop: handed over even without annotations.
	fakeEngine(t, gate)
	if err := os.WriteFile(filepath.Join(stateDir, "gate-test-1.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code, _ := run(t, gate, state(t, "stopped", none), args...); code != 7 {
		t.Errorf("poststop with a state record: exit %d, %s; want the engine's", code, stderr)
	}
	if _, _, code, _ := run(t, gate, state(t, "creating", none), args...); code != 0 {
		t.Errorf("createRuntime without annotations, engine present: exit %d, want 0 (no exec)", code)
	}

	// Log options the engine opens at once, or a level only it can
	// judge: every run goes to the engine, a no-op too.
	for _, extra := range [][]string{{"--log", "syslog"}, {"--log", filepath.Join(t.TempDir(), "l")}, {"--log-level", "info+2"}} {
		if _, stderr, code, _ := run(t, gate, state(t, "creating", none), append(slicesClone(args), extra...)...); code != 7 {
			t.Errorf("no-op with %q: exit %d, %s; want the engine's", extra, code, stderr)
		}
	}
	os.Remove(engine)
	// --log-file is opened (created) before the state is read, as the
	// engine does: a no-op creates it, and one that cannot be opened
	// fails every run.
	logFile := filepath.Join(t.TempDir(), "hook.log")
	if _, stderr, code, _ := run(t, gate, state(t, "creating", none), append(slicesClone(args), "--log-file", logFile)...); code != 0 {
		t.Errorf("no-op with --log-file: exit %d, %s", code, stderr)
	}
	if fi, err := os.Stat(logFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("--log-file after a no-op: %v, %v; want it created 0600 as the engine does", fi, err)
	}
	_, stderr, code, _ = run(t, gate, state(t, "creating", none), append(slicesClone(args), "--log-file", "/nonexistent/dir/l")...)
	if code != 2 || !strings.Contains(stderr, "ocisnap-hook: --log-file: open /nonexistent/dir/l") {
		t.Errorf("unopenable --log-file: exit %d, %q; want 2 naming it", code, stderr)
	}

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--alow-dir", "/x"}, 2, "ocisnap-hook: unknown flag: --alow-dir\nRun 'ocisnap-hook --help' for usage.\n"},
		{[]string{"--max-bytes", "lots"}, 2, `ocisnap-hook: invalid argument "lots" for "--max-bytes"`},
		{[]string{"createRuntime", "poststop"}, 2, "ocisnap-hook: at most one argument (the stage) expected\n"},
		{[]string{"--identity-from", "pod"}, 2, `ocisnap-hook: --identity-from "pod": want engine or nri`},
		{[]string{"--status-dir", "/var/lib/ocisnap/s"}, 2, "overlaps /var/lib/ocisnap"},
		{[]string{"--help"}, 0, "Usage: ocisnap-hook [flags] [stage] < state.json"},
	} {
		_, stderr, code, _ := run(t, gate, state(t, "creating", none), c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", c.args, code, stderr, c.code, c.want)
		}
	}
	_, stderr, _, _ = run(t, gate, nil, "--help")
	if !strings.Contains(stderr, "--allow-registry") || !strings.Contains(stderr, "--log-level") {
		t.Errorf("--help lacks flags:\n%s", stderr)
	}
	if out, _, code, _ := run(t, gate, nil, "--version"); code != 0 || !strings.HasPrefix(out, "ocisnap-hook ") {
		t.Errorf("--version: exit %d, %q", code, out)
	}
}

// TestGateDeps: the gate links none of the engine's heavy packages, whose
// initialisers every container on a node would pay for.
func TestGateDeps(t *testing.T) {
	out, err := exec.Command(goTool(t), "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 || !strings.Contains(string(out), "github.com/ocisnap/ocisnap/hooks/hookcli\n") {
		t.Fatalf("go list -deps gave no plausible list:\n%s", out)
	}
	// Whole packages, or module prefixes (ending in "/").
	heavy := []string{
		"github.com/ocisnap/ocisnap/hooks", "github.com/ocisnap/ocisnap/pkg/location", "github.com/ocisnap/ocisnap/pkg/layer",
		"github.com/ocisnap/ocisnap/pkg/statefile", "github.com/ocisnap/ocisnap/internal/logging",
		"github.com/google/go-containerregistry/", "github.com/opencontainers/go-digest/", "github.com/containerd/nri/",
		"github.com/BurntSushi/toml/", "github.com/pelletier/go-toml/", "github.com/klauspost/compress/",
		"net/http", "crypto/tls", "crypto/x509",
	}
	for _, d := range deps {
		for _, h := range heavy {
			if d == h || d == strings.TrimSuffix(h, "/") || strings.HasSuffix(h, "/") && strings.HasPrefix(d, h) {
				t.Errorf("the gate links %s", d)
			}
		}
	}
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }
