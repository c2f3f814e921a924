// Package testutil holds helpers shared by the project's tests.
package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true), where a missing
// privilege or tool is a failure rather than a reason to skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// SkipOrFail skips the test on a developer machine and fails it under CI.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true: "+format, args...)
	}
	t.Skipf(format, args...)
}

// RequireRoot skips (or fails under CI) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "test needs root")
	}
}

// RequireTools skips (or fails under CI) unless every named program is in PATH.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			SkipOrFail(t, "test needs %s in PATH", tool)
		}
	}
}

// SkipIfShort skips a test that drives a container engine or runtime
// (podman, runc) when the tests run with -short, which is how `make unit`
// asks for the unit tests only. It skips under CI=true too: -short is an
// explicit request, not a missing tool; `make test` runs without it.
func SkipIfShort(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: skipped, it drives %s", what)
	}
}
