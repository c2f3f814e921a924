// Package version holds the build's version, set at link time from the
// VERSION file and git (see the Makefile's LDFLAGS).
package version

import (
	"fmt"
	"runtime"
)

// Set with -ldflags "-X github.com/ocisnap/ocisnap/internal/version.Version=...".
var (
	Version = "0.0.0-dev"
	Commit  = "unknown"
)

// String is the one-line version report of the named program.
func String(prog string) string {
	return fmt.Sprintf("%s version %s (commit %s, %s)", prog, Version, Commit, runtime.Version())
}
