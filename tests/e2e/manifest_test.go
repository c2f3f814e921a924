package e2e

import (
	"testing"

	"github.com/ocisnap/ocisnap/internal/testutil"
)

// manifestSkip are runtime-made paths that differ between any two
// containers (mountpoints and their stubs).
var manifestSkip = []string{"proc", "sys", "dev", "run", "tmp", "etc/hosts", "etc/hostname", "etc/resolv.conf"}

// manifest describes a rootfs tree as two containers with the same content
// show it: all testutil.DescribeTree lists but the runtime's paths
// (manifestSkip), change times, directory times and sizes, link counts
// (overlayfs reports its own for merged directories), symlink times, and
// xattrs outside user.* (security labels are the runtime's).
func manifest(t testing.TB, root string) string {
	t.Helper()
	opts := []testutil.TreeOpt{testutil.WithoutCtime(), testutil.WithoutDirTimes(), testutil.WithoutDirSizes(),
		testutil.WithoutSymlinkTimes(), testutil.WithoutNlink(), testutil.OnlyXattrs("user.")}
	for _, p := range manifestSkip {
		opts = append(opts, testutil.SkipPath(p))
	}
	return testutil.DescribeTree(t, root, opts...)
}
