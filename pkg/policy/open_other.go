//go:build !linux

package policy

import "os"

// Outside Linux ocisnap does not run as a hook; these keep the package
// building for tools and tests.
const (
	readFlags = os.O_RDONLY
	dirFlag   = 0
)

func clearNonblock(*os.File) error { return nil }
