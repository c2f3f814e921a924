package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
	"github.com/ocisnap/ocisnap/internal/testutil/registryfixture"
)

// The registry fixture (internal/testutil/registryfixture, shared with the
// benchmark), bound to a test: a failure to start fails it, the registry
// is killed at its end.

const regPassword = registryfixture.Password

type testRegistry struct {
	*registryfixture.Registry
	t   testing.TB
	dir string

	imageTar string // the one base image every node imports
	mu       sync.Mutex
}

func startRegistry(t testing.TB) *testRegistry {
	t.Helper()
	testutil.RequireTools(t, registryfixture.Tools...)
	dir := t.TempDir()
	reg, err := registryfixture.New(filepath.Join(dir, "registry"))
	must(t, err)
	r := &testRegistry{Registry: reg, t: t, dir: dir}
	r.Start()
	t.Cleanup(r.Kill)
	return r
}

// Start starts the registry and waits until it answers.
func (r *testRegistry) Start() {
	r.t.Helper()
	must(r.t, r.Registry.Start())
}

// node is one "node": its own podman store, state dir, allow-dir and
// spool, sharing nothing with another node but the registry.
type node struct {
	*podman
	allow, state, spool, hooks string
	img                        string
}

// newNode makes a node whose hook allows the registry's "snaps/"
// repositories with the given auth file (and extra hook flags).
func newNode(t testing.TB, r *testRegistry, authFile string, extra ...string) *node {
	t.Helper()
	r.mu.Lock()
	if r.imageTar == "" {
		root := filepath.Join(r.dir, "imgroot")
		buildImageRoot(t, root)
		r.imageTar = filepath.Join(r.dir, "img.tar")
		if out, err := exec.Command("tar", "-C", root, "--numeric-owner", "-cf", r.imageTar, ".").CombinedOutput(); err != nil {
			t.Fatalf("tar: %v\n%s", err, out)
		}
	}
	r.mu.Unlock()
	base := t.TempDir()
	n := &node{allow: snapshotDir(t), state: filepath.Join(base, "state"), spool: filepath.Join(base, "spool")}
	// A restore's timeout covers its apply too: 90s keeps a loaded 2-core
	// runner from failing a healthy restore (the timeout test sets its own).
	args := append([]string{"--allow-dir", n.allow, "--state-dir", n.state, "--spool-dir", n.spool,
		"--allow-registry", r.Host + "/snaps/", "--registry-auth-file", authFile,
		"--registry-certs-dir", r.CertsDir, "--registry-timeout", "90s"}, extra...)
	n.hooks = writeHooksDir(t, filepath.Join(base, "hooks.d"), hookBin, 0, args...)
	n.podman = newPodman(t, n.hooks)
	// Every node imports the same image tar: the same files, mtimes
	// included, as nodes pulling one image from a registry have.
	n.img = "localhost/ocisnap-e2e:latest"
	n.run("import", "-q", r.imageTar, n.img)
	return n
}

// cli runs the ocisnap CLI with the registry's credentials and CA.
func (r *testRegistry) cli(t testing.TB, args ...string) (string, error) {
	t.Helper()
	full := append([]string{"--registry-auth-file", r.AuthFile, "--registry-certs-dir", r.CertsDir}, args...)
	out, err := exec.Command(cliBin, full...).CombinedOutput()
	return string(out), err
}

// skopeo runs skopeo with the registry's credentials and CA.
func (r *testRegistry) skopeo(t testing.TB, args ...string) string {
	t.Helper()
	testutil.RequireTools(t, "skopeo")
	out, err := exec.Command("skopeo", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
