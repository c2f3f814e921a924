// Package e2e runs ocisnap end to end with real tools: podman + runc with
// hooks.d, plain runc bundles with hooks in config.json, and the CRI-O flow
// (hooks loaded with go.podman.io/common/pkg/hooks, storage unmounted before
// `runc delete`). It needs root; under CI=true a missing tool fails. Under
// -short nothing runs (TestMain).
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// Paths of the installed product, set by TestMain.
var (
	prefix   string // make install PREFIX=
	hookBin  string // $prefix/libexec/oci/hooks.d/ocisnap-hook (the gate; the engine is beside it)
	cliBin   string // $prefix/bin/ocisnap
	nriBin   string // $prefix/libexec/ocisnap/ocisnap-nri
	hooksDir string // $prefix/share/containers/oci/hooks.d
	repoRoot string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// -short (`make unit`, `go test -short ./...`): none of these runs,
	// and nothing is built or installed. `make test` runs them.
	flag.Parse()
	if testing.Short() {
		fmt.Fprintln(os.Stderr, "e2e: skipped (-short: the end-to-end tests drive podman and runc)")
		return 0
	}
	// Not root: every test here would skip, so none runs; under CI=true
	// that is a failure (as testutil.RequireRoot makes it for one test).
	if os.Geteuid() != 0 {
		if testutil.InCI() {
			fmt.Fprintln(os.Stderr, "e2e: CI=true: the end-to-end tests need root")
			return 1
		}
		fmt.Fprintln(os.Stderr, "e2e: skipped (needs root)")
		return 0
	}
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	var err error
	prefix, err = os.MkdirTemp("", "ocisnap-e2e-prefix-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(prefix)
	cmd := exec.Command("make", "-C", repoRoot, "install", "PREFIX="+prefix)
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: make install: %v\n%s", err, out)
		return 1
	}
	hookBin = filepath.Join(prefix, "libexec/oci/hooks.d/ocisnap-hook")
	cliBin = filepath.Join(prefix, "bin/ocisnap")
	nriBin = filepath.Join(prefix, "libexec/ocisnap/ocisnap-nri")
	hooksDir = filepath.Join(prefix, "share/containers/oci/hooks.d")
	return m.Run()
}
